"""Positional encodings.

Shape legend: B = batch, L = sequence length, D = model width, H = heads,
K = width per head, M = rows of a table (max_len), N = relative buckets.

Two families:
- added to the inputs (before the first block, or before every block):
  `learned` (`LearnedPosEmbed`), `sinusoidal` (`sinusoidal_table`),
  `learned_every_layer`;
- applied inside attention: `rope` (`apply_rope`, to queries and keys),
  `alibi` (`alibi_bias`) and `relative` (`RelativePositionBias`), both biases
  on the attention logits.
`none` adds nothing. Each takes integer positions `(B, L)`: `0..L-1` normally,
or a sorted random subset of `0..max_len-1` during training with randomized
positions (Ruoss et al., 2023; `random_positions`).
"""

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Default stddev of the learned table's normal initialiser: the seed's N(0, 1).
# ViT and BERT use 0.02, big_vision 1/sqrt(D). On configs/learned.py (D=64),
# 0.02 stayed at chance after 5 epochs (eval accuracy 0.098), 0.125 reached
# 0.945 and 1.0 reached 0.962: a small table is drowned by the projected inputs.
DEFAULT_POSEMB_INIT_STD = 1.0

POSEMB_NAMES = ('learned', 'sinusoidal', 'none', 'rope', 'alibi', 'relative',
                'learned_every_layer')
LEARNED_TABLES = ('learned', 'learned_every_layer')  # Trained tables.
RESAMPLE_METHODS = ('linear', 'nearest')


def check_posemb(name: str) -> None:
  if name not in POSEMB_NAMES:
    raise ValueError(
        f'model.posemb={name!r} is not a known positional encoding; valid '
        f'names: {", ".join(POSEMB_NAMES)}.')


def default_positions(batch: int, seq_len: int) -> jax.Array:
  """`0..L-1` for every sequence: `(B, L)` int32."""
  return jnp.broadcast_to(jnp.arange(seq_len, dtype=jnp.int32),
                          (batch, seq_len))


def random_positions(rng: jax.Array, batch: int, seq_len: int,
                     max_len: int) -> jax.Array:
  """A sorted random subset of `0..max_len-1` of size L per sequence."""
  noise_BxM = jax.random.uniform(rng, (batch, max_len))
  subset_BxL = jnp.argsort(noise_BxM, axis=-1)[:, :seq_len]
  return jnp.sort(subset_BxL, axis=-1).astype(jnp.int32)


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


def apply_rope(x_BxLxHxK: jax.Array, positions_BxL: jax.Array,
               base: float = 10_000.0) -> jax.Array:
  """Rotary embedding (Su et al., 2021) of queries or keys.

  Each pair of features (2i, 2i+1) is rotated by the angle p * base^(-2i/K),
  so the dot product of a rotated query at p and a rotated key at p' depends
  on p - p' only. K must be even.
  """
  head_dim = x_BxLxHxK.shape[-1]
  if head_dim % 2:
    raise ValueError(f'rope needs an even head dimension (d_model / '
                     f'num_heads), got {head_dim}.')
  inv_freq = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) /
                      head_dim)
  angles_BxLxK2 = positions_BxL[..., None].astype(jnp.float32) * inv_freq
  cos = jnp.cos(angles_BxLxK2)[:, :, None, :]
  sin = jnp.sin(angles_BxLxK2)[:, :, None, :]
  x = x_BxLxHxK.astype(jnp.float32)
  even, odd = x[..., 0::2], x[..., 1::2]
  rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], -1)
  return rotated.reshape(x_BxLxHxK.shape).astype(x_BxLxHxK.dtype)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """The geometric head slopes of ALiBi (Press et al., 2021).

  For n heads, a power of two, slopes are 2^(-8/n), 2^(-16/n), ... 2^(-8).
  Otherwise the paper takes the slopes of the closest smaller power of two and
  adds every other slope of twice that many heads.
  """
  def power_of_2(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]

  if math.log2(num_heads).is_integer():
    return np.array(power_of_2(num_heads), np.float32)
  closest = 2 ** math.floor(math.log2(num_heads))
  extra = power_of_2(2 * closest)[0::2][:num_heads - closest]
  return np.array(power_of_2(closest) + extra, np.float32)


def alibi_bias(num_heads: int, positions_BxL: jax.Array) -> jax.Array:
  """Symmetric ALiBi bias -slope_h * |i - j|: `(B, H, L, L)`."""
  distance_BxLxL = jnp.abs(positions_BxL[:, :, None] -
                           positions_BxL[:, None, :]).astype(jnp.float32)
  slopes_H = jnp.asarray(alibi_slopes(num_heads))
  return -slopes_H[None, :, None, None] * distance_BxLxL[:, None]


def relative_position_bucket(relative_position: jax.Array, num_buckets: int,
                             max_distance: int) -> jax.Array:
  """T5's bidirectional buckets (Raffel et al., 2020) of key - query offsets.

  Half the buckets are for keys after the query. Within a half, offsets below
  a quarter of `num_buckets` get their own bucket; larger ones share buckets
  spaced logarithmically up to `max_distance`, beyond which all share the last.
  """
  half = num_buckets // 2
  bucket = jnp.where(relative_position > 0, half, 0)
  distance = jnp.abs(relative_position)
  max_exact = half // 2
  log_ratio = (jnp.log(jnp.maximum(distance, 1).astype(jnp.float32) /
                       max_exact) / math.log(max_distance / max_exact))
  large = max_exact + (log_ratio * (half - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, half - 1)
  return bucket + jnp.where(distance < max_exact, distance, large)


class RelativePositionBias(nn.Module):
  """T5-style learned bias per head and relative-position bucket."""

  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128

  @nn.compact
  def __call__(self, positions_BxL: jax.Array) -> jax.Array:
    """Returns the bias to add to attention logits: `(B, H, L, L)`."""
    relative_BxLxL = positions_BxL[:, None, :] - positions_BxL[:, :, None]
    bucket_BxLxL = relative_position_bucket(relative_BxLxL, self.num_buckets,
                                            self.max_distance)
    table_NxH = self.param('rel_embedding', nn.initializers.normal(0.02),
                           (self.num_buckets, self.num_heads))
    return jnp.transpose(table_NxH[bucket_BxLxL], (0, 3, 1, 2))


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
