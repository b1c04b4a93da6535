"""Encodings added to the residual stream: learned tables, sin/cos, none.

Shape legend: B = batch, L = sequence length, D = model width, M = rows of a
table (max_len).
"""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from posenc import checks
from posenc.encodings.base import Encoding

# Default stddev of the learned table's normal initialiser: the seed's N(0, 1).
# ViT and BERT use 0.02, big_vision 1/sqrt(D). On configs/learned.py (D=64),
# 0.02 stayed at chance after 5 epochs (eval accuracy 0.105), 0.125 reached
# 0.931 and 1.0 reached 0.958: a small table is drowned by the projected inputs.
DEFAULT_POSEMB_INIT_STD = 1.0
RESAMPLE_METHODS = ('linear', 'nearest')


def default_positions(batch: int, seq_len: int) -> jax.Array:
  """`0..L-1` for every sequence: `(B, L)` int32."""
  return jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32),
                          (batch, seq_len))


def random_positions(rng: jax.Array, batch: int, seq_len: int, max_len: int,
                     lengths_B: jax.Array | None = None) -> jax.Array:
  """A sorted random subset of `0..max_len-1` per sequence (Ruoss et al.,
  2023): `(B, L)` int32.

  Of size L, or with `lengths_B` of each sequence's real length: the first
  `lengths_B[b]` entries of row b are a uniformly drawn sorted subset of that
  size, and the padded steps after them get other positions below max_len.
  """
  noise_BxM = jax.random.uniform(rng, (batch, max_len))
  if lengths_B is None:
    subset_BxL = jnp.argsort(noise_BxM, axis=-1)[:, :seq_len]
    return jnp.sort(subset_BxL, axis=-1).astype(jnp.int32)
  # Ranks of a random permutation; the lengths_B[b] smallest are chosen, and
  # a stable sort of "not chosen" lists the chosen first, in order.
  rank_BxM = jnp.argsort(jnp.argsort(noise_BxM, axis=-1), axis=-1)
  chosen_BxM = rank_BxM < lengths_B[:, None]
  return jnp.argsort(~chosen_BxM, axis=-1, stable=True)[:, :seq_len].astype(
      jnp.int32)


def _check_table_rows(seq_len: int, max_len: int) -> None:
  if seq_len > max_len:
    raise ValueError(
        f'input seq_len={seq_len} is longer than the position table '
        f'(max_len={max_len}); raise model.max_len or resample the table.')


class LearnedPosEmbed(nn.Module):
  """Adds rows of a learned `(1, max_len, D)` table to the input.

  Without `positions` the first L rows are added; with them, row
  `positions[b, l]` is added to `x[b, l]`.

  Attributes:
    max_len: rows in the table; inputs may be shorter, never longer.
    init_std: stddev of the normal initialiser of the table.
  """

  max_len: int
  init_std: float = DEFAULT_POSEMB_INIT_STD

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array,
               positions_BxL: jax.Array | None = None) -> jax.Array:
    chex.assert_rank(x_BxLxD, 3)
    batch, seq_len, d_model = x_BxLxD.shape
    table_1xMxD = self.param(
        'pos_embedding', nn.initializers.normal(stddev=self.init_std),
        (1, self.max_len, d_model))
    chex.assert_shape(table_1xMxD, (1, self.max_len, d_model),
                      custom_message='pos_embedding does not match d_model')
    if positions_BxL is None:
      _check_table_rows(seq_len, self.max_len)
      pos = table_1xMxD[:, :seq_len]
      chex.assert_shape(pos, (1, seq_len, d_model))
    else:
      chex.assert_shape(positions_BxL, (batch, seq_len))
      _check_table_rows(seq_len, self.max_len)
      pos = table_1xMxD[0][positions_BxL]
      chex.assert_shape(pos, (batch, seq_len, d_model))
    return x_BxLxD + pos.astype(x_BxLxD.dtype)


def sinusoidal_table(positions: jax.Array, d_model: int,
                     base: float = 10_000.0) -> jax.Array:
  """Vaswani et al. (2017): PE(p, 2i) = sin(p / base^(2i/D)), PE(p, 2i+1) = cos.

  Takes positions of any shape `S` and returns `S + (D,)` float32.
  """
  i = jnp.arange((d_model + 1) // 2, dtype=jnp.float32)
  inv_freq = base ** (-2.0 * i / d_model)
  angles = positions[..., None].astype(jnp.float32) * inv_freq
  table = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)
  return table.reshape(positions.shape + (-1,))[..., :d_model]


class SinusoidalPosEmbed(nn.Module):
  """Adds the fixed sin/cos table at the given positions (not trained)."""

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array,
               positions_BxL: jax.Array | None = None) -> jax.Array:
    chex.assert_rank(x_BxLxD, 3)
    batch, seq_len, d_model = x_BxLxD.shape
    if positions_BxL is None:
      positions_BxL = default_positions(batch, seq_len)
    pos_BxLxD = sinusoidal_table(positions_BxL, d_model)
    chex.assert_shape(pos_BxLxD, (batch, seq_len, d_model))
    return x_BxLxD + pos_BxLxD.astype(x_BxLxD.dtype)


def resample_pos_embedding(table: jax.Array, new_len: int,
                           method: str = 'linear') -> jax.Array:
  """Resizes a `(1, M, D)` table to `(1, new_len, D)` along positions.

  Row j of the result samples the old table at j * (M - 1) / (new_len - 1), so
  the first and last rows are kept and the same length is the identity; as
  ViT resizes its 2-D table for a new resolution, here in 1-D. `method` is
  'linear' (interpolation between neighbouring rows) or 'nearest'.
  """
  chex.assert_rank(table, 3)
  if method not in RESAMPLE_METHODS:
    raise ValueError(f'resample method {method!r} is not valid; valid: '
                     f'{", ".join(RESAMPLE_METHODS)}.')
  if new_len < 1:
    raise ValueError(f'new_len={new_len} must be positive.')
  old_len = table.shape[1]
  if old_len == 1 or new_len == 1:
    src = np.zeros((new_len,))
  else:
    src = np.arange(new_len) * (old_len - 1) / (new_len - 1)
  if method == 'nearest':
    return table[:, np.rint(src).astype(np.int32)]
  lo = np.floor(src).astype(np.int32)
  hi = np.minimum(lo + 1, old_len - 1)
  w = jnp.asarray(src - lo, table.dtype)[None, :, None]
  return (1 - w) * table[:, lo] + w * table[:, hi]


class Learned(Encoding):
  """The seed's learned `(1, max_len, D)` table added to the inputs
  (BERT, ViT); parameter 'posemb_learned/pos_embedding'."""

  name = 'learned'
  acts = frozenset({'inputs'})
  has_table = True
  resample_methods = RESAMPLE_METHODS

  def check_fields(self, config) -> None:
    checks.real(config, 'model.posemb_init_std', low=0.0)

  def num_params(self, model, rows) -> int:
    return rows * model.d_model

  def resample(self, table, new_len, method):
    return resample_pos_embedding(table, new_len, method)

  def embed(self, site, x_BxLxD, positions_BxL):
    table = site.module('posemb_learned', lambda name: LearnedPosEmbed(
        site.max_len, site.config.posemb_init_std, name=name))
    return table(x_BxLxD, positions_BxL)


class LearnedEveryLayer(Learned):
  """A learned table added before every block (ViT's ablation, Dosovitskiy
  et al., 2021): one table shared by all blocks (`model.posemb_share`) or
  one per block ('posemb_learned', 'posemb_learned_1', ...)."""

  name = 'learned_every_layer'
  acts = frozenset({'inputs', 'blocks'})

  def check_fields(self, config) -> None:
    super().check_fields(config)
    checks.boolean(config, 'model.posemb_share')

  def num_params(self, model, rows) -> int:
    tables = 1 if model.posemb_share else model.num_layers
    return tables * rows * model.d_model

  def before_block(self, site, index, x_BxLxD, positions_BxL):
    name = ('posemb_learned' if site.config.posemb_share
            else f'posemb_learned_{index}')
    table = site.module(name, lambda name: LearnedPosEmbed(
        site.max_len, site.config.posemb_init_std, name=name))
    return table(x_BxLxD, positions_BxL)


class Sinusoidal(Encoding):
  """The fixed sin/cos table added to the inputs (Vaswani et al., 2017)."""

  name = 'sinusoidal'
  acts = frozenset({'inputs'})

  def embed(self, site, x_BxLxD, positions_BxL):
    return site.module('posemb_sinusoidal', SinusoidalPosEmbed)(
        x_BxLxD, positions_BxL)


class NoPosition(Encoding):
  """Nothing (NoPE): with mean pooling the classifier is then invariant to
  permutations of its input steps."""

  name = 'none'
  uses_positions = False
