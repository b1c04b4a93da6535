"""Encodings that act inside attention: rotary, ALiBi, T5 relative bias.

Shape legend: B = batch, L = sequence length, H = heads, K = width per head,
N = relative buckets.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from posenc import checks
from posenc.encodings.base import Encoding


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


class Rope(Encoding):
  """Rotary embeddings of queries and keys (Su et al., 2021)."""

  name = 'rope'
  acts = frozenset({'rotation'})

  def check_fields(self, config) -> None:
    checks.real(config, 'model.rope_base', low=1.0)

  def check(self, config) -> None:
    m = config.model
    head_dim = m.d_model // m.num_heads
    if head_dim % 2:
      raise ValueError(
          f"model.posemb='rope' rotates pairs of features, but the head "
          f'dimension d_model / num_heads = {m.d_model} / {m.num_heads} = '
          f'{head_dim} is odd; valid: an even head dimension.')

  def rotate(self, config, x_BxLxHxK, positions_BxL):
    return apply_rope(x_BxLxHxK, positions_BxL, config.rope_base)


class Alibi(Encoding):
  """Symmetric ALiBi, `-slope_h * |i - j|` on the logits (Press et al.,
  2021), with the paper's geometric slopes."""

  name = 'alibi'
  acts = frozenset({'bias'})

  def attention_bias(self, site, positions_BxL):
    return alibi_bias(site.config.num_heads, positions_BxL)


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

  def attention_bias(self, site, positions_BxL):
    cfg = site.config
    bias = site.module('posemb_relative', lambda name: RelativePositionBias(
        cfg.num_heads, cfg.relative_num_buckets, cfg.relative_max_distance,
        name=name))
    return bias(positions_BxL)
