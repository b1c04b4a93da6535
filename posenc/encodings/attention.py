"""Encodings that act inside attention: rotary, ALiBi, T5 relative bias.

Shape legend: B = batch, L = sequence length, H = heads, K = width per head,
N = relative buckets.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from posenc import checks
from posenc.encodings.base import Encoding
from posenc.encodings.base import PairBias


ROPE_SCALINGS = ('none', 'linear', 'ntk', 'yarn')
# YaRN's defaults in Hugging Face's modeling_rope_utils (transformers 5.24):
# frequencies completing more than YARN_BETA_FAST rotations over the
# training length are kept, fewer than YARN_BETA_SLOW interpolated.
YARN_BETA_FAST = 32.0
YARN_BETA_SLOW = 1.0


def rope_frequencies(head_dim: int, base: float = 10_000.0,
                     scaling: str = 'none', factor: float = 1.0,
                     original_len: int | None = None
                     ) -> tuple[np.ndarray, float]:
  """`(inv_freq, attention_factor)` of rotary pairs i = 0..K/2-1.

  'none': inv_freq_i = base^(-2i/K) (Su et al., 2021). For a model trained
  on `original_len` steps and run on `factor` times as many:
  - 'linear': position interpolation (Chen et al., 2023), inv_freq / factor;
  - 'ntk': NTK-aware scaling (bloc97, 2023): the base becomes
    base * factor^(K / (K - 2)), which is Hugging Face's 'dynamic' rule at
    a length of factor * original_len with its own factor 1;
  - 'yarn': YaRN (Peng et al., 2023), as Hugging Face's
    `_compute_yarn_parameters` (truncated correction range, beta_fast 32,
    beta_slow 1): pairs completing many rotations over `original_len` keep
    their frequency, slow ones are divided by `factor`, a linear ramp in
    between; queries and keys are then both multiplied by
    attention_factor = 0.1 ln(factor) + 1, as Hugging Face multiplies cos
    and sin.
  Each is checked against numbers from transformers in
  tests/rope_scaling_test.py.
  """
  exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
  if scaling == 'none' or factor == 1.0:
    return base ** -exponents, 1.0
  if scaling == 'linear':
    return base ** -exponents / factor, 1.0
  if scaling == 'ntk':
    return (base * factor ** (head_dim / (head_dim - 2))) ** -exponents, 1.0
  if scaling != 'yarn':
    raise ValueError(f'model.rope_scaling={scaling!r} is not valid; valid: '
                     f'{", ".join(ROPE_SCALINGS)}.')

  def correction_dim(rotations):
    return (head_dim * math.log(original_len / (rotations * 2 * math.pi)) /
            (2 * math.log(base)))

  low = max(math.floor(correction_dim(YARN_BETA_FAST)), 0)
  high = min(math.ceil(correction_dim(YARN_BETA_SLOW)), head_dim - 1)
  if low == high:
    high += 0.001  # As Hugging Face: no division by zero.
  ramp = np.clip((np.arange(head_dim // 2) - low) / (high - low), 0, 1)
  keep = 1 - ramp  # 1: the frequency as trained; 0: interpolated.
  inv_freq = base ** -exponents
  inv_freq = inv_freq / factor * (1 - keep) + inv_freq * keep
  return inv_freq, 0.1 * math.log(factor) + 1.0


def apply_rope(x_BxLxHxK: jax.Array, positions_BxL: jax.Array,
               base: float = 10_000.0, scaling: str = 'none',
               factor: float = 1.0, original_len: int | None = None
               ) -> jax.Array:
  """Rotary embedding (Su et al., 2021) of queries or keys.

  Each pair of features (2i, 2i+1) is rotated by the angle
  p * inv_freq_i (`rope_frequencies`; base^(-2i/K) unscaled), so the dot
  product of a rotated query at p and a rotated key at p' depends on p - p'
  only. K must be even.
  """
  head_dim = x_BxLxHxK.shape[-1]
  if head_dim % 2:
    raise ValueError(f'rope needs an even head dimension (d_model / '
                     f'num_heads), got {head_dim}.')
  inv_freq, attention_factor = rope_frequencies(head_dim, base, scaling,
                                                factor, original_len)
  angles_BxLxK2 = (positions_BxL[..., None].astype(jnp.float32) *
                   jnp.asarray(inv_freq, jnp.float32))
  return rotate_pairs(x_BxLxHxK, angles_BxLxK2, attention_factor)


def rotate_pairs(x_BxLxHxK: jax.Array, angles_BxLxK2: jax.Array,
                 scale: float = 1.0) -> jax.Array:
  """Rotates each pair of features (2i, 2i+1) of every head by
  `angles[..., i]` and multiplies by `scale`."""
  cos = jnp.cos(angles_BxLxK2)[:, :, None, :] * scale
  sin = jnp.sin(angles_BxLxK2)[:, :, None, :] * scale
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


ALIBI_MODES = ('symmetric', 'directional')
# Added to the logits of keys a directional head does not see: exp() of it
# is exactly 0 in float32, and it stays finite in bfloat16.
HIDDEN = -1e9


def alibi_bias(num_heads: int, positions_BxL: jax.Array,
               mode: str = 'symmetric') -> jax.Array:
  """ALiBi's bias on the logits of every query and key, `(B, H, L, L)`
  (`alibi_pair_bias`)."""
  return alibi_pair_bias(num_heads, positions_BxL, positions_BxL, mode)


def alibi_pair_bias(num_heads: int, q_positions_BxQ: jax.Array,
                    k_positions_BxS: jax.Array, mode: str = 'symmetric'
                    ) -> jax.Array:
  """ALiBi's bias on the logits of queries at `q_positions` and keys at
  `k_positions`, `(B, H, Q, S)`.

  'symmetric': -slope_h * |i - j| (Press et al., 2021, with the absolute
  distance the ALiBi repository gives for encoders, issue #5).
  'directional': head h sees only keys at or before its query (h even) or
  at or after it (h odd), each with -slope_h * |i - j|, the slopes of all H
  heads interleaved over both directions: the causal ALiBi of the paper in
  one half of the heads and its mirror image in the other, a split of
  heads by what they see as the ALiBi repository suggests for
  bidirectional attention. Unlike 'symmetric', it tells left from right.
  """
  offset_BxQxS = (k_positions_BxS[:, None, :] -
                  q_positions_BxQ[:, :, None]).astype(jnp.float32)  # j - i
  slopes_H = jnp.asarray(alibi_slopes(num_heads))
  bias_BxHxQxS = -slopes_H[None, :, None, None] * jnp.abs(offset_BxQxS)[:, None]
  if mode == 'symmetric':
    return bias_BxHxQxS
  if mode != 'directional':
    raise ValueError(f'model.alibi_mode={mode!r} is not valid; valid: '
                     f'{", ".join(ALIBI_MODES)}.')
  looks_left_H = jnp.arange(num_heads) % 2 == 0
  hidden_BxHxQxS = jnp.where(looks_left_H[None, :, None, None],
                             offset_BxQxS[:, None] > 0,
                             offset_BxQxS[:, None] < 0)
  return jnp.where(hidden_BxHxQxS, HIDDEN, bias_BxHxQxS)


def _alibi_pair(num_heads: int, mode: str, params, context, q_positions_BxQ,
                k_positions_BxS) -> jax.Array:
  """`PairBias.fn` of ALiBi: no parameters, no context."""
  del params, context
  return alibi_pair_bias(num_heads, q_positions_BxQ, k_positions_BxS, mode)


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


def relative_pair_bias(num_buckets: int, max_distance: int,
                       table_NxH: jax.Array, context,
                       q_positions_BxQ: jax.Array, k_positions_BxS: jax.Array
                       ) -> jax.Array:
  """T5's bias of queries at `q_positions` and keys at `k_positions`: the
  table's row for the bucket of each offset j - i, `(B, H, Q, S)`."""
  del context
  relative_BxQxS = k_positions_BxS[:, None, :] - q_positions_BxQ[:, :, None]
  bucket_BxQxS = relative_position_bucket(relative_BxQxS, num_buckets,
                                          max_distance)
  return jnp.transpose(table_NxH[bucket_BxQxS], (0, 3, 1, 2))


class RelativePositionBias(nn.Module):
  """T5-style learned bias per head and relative-position bucket."""

  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128

  @nn.compact
  def pair_bias(self) -> PairBias:
    """The bias as a function of query and key positions."""
    table_NxH = self.param('rel_embedding', nn.initializers.normal(0.02),
                           (self.num_buckets, self.num_heads))
    return PairBias(functools.partial(relative_pair_bias, self.num_buckets,
                                      self.max_distance), table_NxH)

  def __call__(self, positions_BxL: jax.Array) -> jax.Array:
    """Returns the bias to add to attention logits: `(B, H, L, L)`."""
    return self.pair_bias()(positions_BxL, positions_BxL)


class Rope(Encoding):
  """Rotary embeddings of queries and keys (Su et al., 2021), optionally
  scaled beyond the training length (`model.rope_scaling`)."""

  name = 'rope'
  acts = frozenset({'rotation'})

  def check_fields(self, config) -> None:
    checks.real(config, 'model.rope_base', low=1.0)
    checks.choice(config, 'model.rope_scaling', ROPE_SCALINGS)
    m = config.model
    if m.rope_scaling_factor is not None:
      checks.real(config, 'model.rope_scaling_factor', low=1.0,
                  low_inclusive=True)
      if m.rope_scaling == 'none':
        raise ValueError(
            f'model.rope_scaling_factor={m.rope_scaling_factor} has no '
            "effect with model.rope_scaling='none'; valid: a scaling "
            "method ('linear', 'ntk', 'yarn'), or rope_scaling_factor=None.")

  def check(self, config) -> None:
    m = config.model
    head_dim = m.d_model // m.num_heads
    if head_dim % 2:
      raise ValueError(
          f"model.posemb='rope' rotates pairs of features, but the head "
          f'dimension d_model / num_heads = {m.d_model} / {m.num_heads} = '
          f'{head_dim} is odd; valid: an even head dimension.')
    if m.rope_scaling == 'ntk' and head_dim < 4:
      raise ValueError(
          "model.rope_scaling='ntk' raises the base to K / (K - 2) for the "
          f'head dimension K = {head_dim}; valid: K >= 4.')

  @staticmethod
  def scaling_factor(config, seq_len: int) -> float:
    """`rope_scaling_factor`, or the input's length over the training
    length (`max_len`) where it is longer; 1 without scaling."""
    if config.rope_scaling == 'none':
      return 1.0
    if config.rope_scaling_factor is not None:
      return float(config.rope_scaling_factor)
    trained = seq_len if config.max_len is None else config.max_len
    return max(1.0, seq_len / trained)

  def rotate(self, config, x_BxLxHxK, positions_BxL):
    seq_len = x_BxLxHxK.shape[1] - (config.pooling == 'cls')
    original = seq_len if config.max_len is None else config.max_len
    return apply_rope(x_BxLxHxK, positions_BxL, config.rope_base,
                      config.rope_scaling,
                      self.scaling_factor(config, seq_len), original)


class Alibi(Encoding):
  """ALiBi (Press et al., 2021) with the paper's geometric slopes:
  `model.alibi_mode` 'symmetric' (-slope_h * |i - j|) or 'directional'
  (`alibi_bias`).

  Symmetric ALiBi cannot tell left from right. Theorem: without a causal
  mask, with mean (or no) pooling and no class token, the classifier's
  logits are exactly invariant to reversing each sequence (its real steps,
  padding kept at the end). Proof: the encoder without positions is
  equivariant to any permutation P of the steps; the bias matrix
  B_ij = -m |p_i - p_j| over positions p = 0..L-1 satisfies P B P^T = B for
  the reversal P, because |(L-1-i) - (L-1-j)| = |i - j|; so the hidden
  states are permuted by P and mean pooling removes P. On 'before' and
  'marker', reversing a sequence flips its label, so symmetric ALiBi's
  accuracy there is chance by this symmetry, not for lack of an anchor
  (tests/direction_test.py checks the invariance to float precision and
  the flip on 'before'). The theorem is about positions 0..L-1 and a
  pooling that ignores order ('mean'); 'cls' and 'last' pooling, causal
  attention and randomized positions each break the symmetry.
  """

  name = 'alibi'
  acts = frozenset({'bias'})

  def check_fields(self, config) -> None:
    checks.choice(config, 'model.alibi_mode', ALIBI_MODES)

  def check(self, config) -> None:
    m = config.model
    if m.alibi_mode == 'directional' and m.num_heads < 2:
      raise ValueError(
          "model.alibi_mode='directional' splits the heads between keys "
          f'before and after the query, but model.num_heads={m.num_heads}; '
          'valid: num_heads >= 2.')
    if config.model.alibi_mode == 'directional' and config.model.causal:
      raise ValueError(
          "model.alibi_mode='directional' gives half the heads only the keys "
          'after their query, which model.causal=True hides: those heads '
          "would see only themselves; valid with causal: alibi_mode="
          "'symmetric' (causal attention already tells left from right).")

  def pair_bias(self, site, positions_BxL):
    del positions_BxL
    return PairBias(functools.partial(_alibi_pair, site.config.num_heads,
                                      site.config.alibi_mode))


class Relative(Encoding):
  """T5's learned bias per head and log-spaced offset bucket, one table
  shared by all blocks (Raffel et al., 2020); 'posemb_relative'."""

  name = 'relative'
  acts = frozenset({'bias'})

  def check_fields(self, config) -> None:
    checks.positive_int(config, 'model.relative_num_buckets')
    checks.positive_int(config, 'model.relative_max_distance')

  def check(self, config) -> None:
    m = config.model
    if m.relative_num_buckets < 4 or m.relative_num_buckets % 2:
      raise ValueError(
          f'model.relative_num_buckets={m.relative_num_buckets} is not '
          'valid; valid: an even number >= 4 (half for each direction).')
    if m.relative_max_distance <= m.relative_num_buckets // 4:
      raise ValueError(
          f'model.relative_max_distance={m.relative_max_distance} is not '
          'valid; valid: larger than relative_num_buckets // 4 = '
          f'{m.relative_num_buckets // 4}, the last exact offset.')

  def num_params(self, model, rows) -> int:
    return model.relative_num_buckets * model.num_heads

  def pair_bias(self, site, positions_BxL):
    del positions_BxL
    cfg = site.config
    bias = site.module('posemb_relative', lambda name: RelativePositionBias(
        cfg.num_heads, cfg.relative_num_buckets, cfg.relative_max_distance,
        name=name))
    return bias.pair_bias()
