"""Two-dimensional positions: tokens that are patches of a square grid.

The tokens of an image are its patches in raster order (`data.patch_size`),
so flattened position p sits at row p // W and column p % W of a W x W grid,
W = sqrt(L). The grid is read from the input's length, so a model trained
on 4 x 4 patches runs on 8 x 8 (an image of twice the resolution) with
each encoding's own rule: `sincos2d` and `rope2d` compute the new grid's
positions, and `learned2d`'s table is resampled in 2-D at evaluation
(`model.posemb_resample`). The 1-D encodings see the same tokens as a
flattened sequence.

Shape legend: B = batch, L = sequence length (patches), D = model width,
H = heads, K = width per head, M = rows of a table (a G x G grid).
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from posenc import checks
from posenc.encodings import attention
from posenc.encodings.absolute import LearnedPosEmbed
from posenc.encodings.absolute import default_positions
from posenc.encodings.base import Encoding

RESAMPLE_2D_METHODS = ('bilinear', 'bicubic')
# big_vision's posemb_sincos_2d temperature, and RoPE-ViT's axial base
# (Heo et al., 2024: compute_axial_cis(..., theta=100.0)).
SINCOS2D_TEMPERATURE = 10_000.0
DEFAULT_ROPE2D_BASE = 100.0


def grid_side(length: int, what: str = 'the sequence') -> int:
  """W for a W x W grid of `length` tokens; ValueError if not a square."""
  side = math.isqrt(length)
  if side * side != length:
    raise ValueError(
        f'{what} has {length} tokens, which is not a square grid; 2-D '
        'encodings need W x W patches (e.g. digits with data.patch_size '
        'dividing data.image_size).')
  return side


def grid_coordinates(positions: jax.Array, side: int
                     ) -> tuple[jax.Array, jax.Array]:
  """`(row, column)` of flattened positions in a `side`-wide grid."""
  return positions // side, positions % side


def sincos2d(rows: jax.Array, cols: jax.Array, d_model: int,
             temperature: float = SINCOS2D_TEMPERATURE) -> jax.Array:
  """big_vision's `posemb_sincos_2d` (MoCo v3) at given grid coordinates.

  With F = D / 4 frequencies omega_f = temperature^(-f / (F - 1)),
  f = 0..F-1, the embedding of (row y, column x) is
  [sin(x omega), cos(x omega), sin(y omega), cos(y omega)]: `S + (D,)` for
  coordinates of shape S. D must be a multiple of 4, at least 8.
  """
  if d_model % 4 or d_model < 8:
    raise ValueError(f'sincos2d needs d_model a multiple of 4, at least 8; '
                     f'got {d_model}.')
  quarter = d_model // 4
  omega = 1.0 / temperature ** (np.arange(quarter) / (quarter - 1))
  omega = jnp.asarray(omega, jnp.float32)
  x = cols[..., None].astype(jnp.float32) * omega
  y = rows[..., None].astype(jnp.float32) * omega
  return jnp.concatenate([jnp.sin(x), jnp.cos(x), jnp.sin(y), jnp.cos(y)],
                         axis=-1)


def _extrapolate(grid: jax.Array, axis: int, width: int) -> jax.Array:
  """`grid` with `width` more rows on each side along `axis`, continued
  linearly from the two outermost rows (a table linear in the rows stays
  linear)."""
  first, second = (jnp.take(grid, jnp.array([i]), axis=axis) for i in (0, 1))
  last, before = (jnp.take(grid, jnp.array([i]), axis=axis) for i in (-1, -2))
  steps = jnp.arange(1, width + 1, dtype=grid.dtype)
  shape = [1] * grid.ndim
  shape[axis] = width
  steps = steps.reshape(shape)
  head = first - jnp.flip(steps, axis) * (second - first)
  tail = last + steps * (last - before)
  return jnp.concatenate([head, grid, tail], axis=axis)


def resample_2d(table: jax.Array, new_len: int, method: str = 'bilinear',
                num_prefix: int = 0) -> jax.Array:
  """Resizes a `(1, P + G*G, D)` table to `(1, P + new_len, D)` in 2-D.

  The first `num_prefix` rows (P: a class token's, where a checkpoint keeps
  it in the table) are kept apart, unchanged; the G x G grid after them is
  resized to S x S, S = sqrt(new_len), with the corners' centres aligned:
  output (i, j) samples the old grid at (i, j) * (G - 1) / (S - 1), as
  big_vision's `resample_posemb` (scipy.ndimage.zoom) does, so the corners
  are kept. 'bilinear' interpolates between the 4 nearest rows, 'bicubic'
  with Keys' cubic kernel (a = -0.5) over 16. jax.image.resize centres
  half-pixels instead, which moves a bicubic corner, so the grid goes
  through its engine, `jax.image.scale_and_translate`, with the scale and
  shift of aligned corners; it is first continued linearly by two rows on
  each side so that the cubic kernel never reaches past the border: both
  methods then reproduce a table linear in (row, column) exactly.
  """
  chex.assert_rank(table, 3)
  if method not in RESAMPLE_2D_METHODS:
    raise ValueError(f'2-D resample method {method!r} is not valid; valid: '
                     f'{", ".join(RESAMPLE_2D_METHODS)}.')
  prefix, grid = table[:, :num_prefix], table[0, num_prefix:]
  old, new = grid_side(grid.shape[0], 'the table'), grid_side(new_len)
  d_model = grid.shape[-1]
  grid = grid.reshape(old, old, d_model).astype(jnp.float32)
  if old == new:
    resized = grid
  elif old == 1 or new == 1:  # One sample: the top-left corner, repeated.
    resized = jnp.broadcast_to(grid[:1, :1], (new, new, d_model))
  else:
    pad = 2  # Keys' kernel reaches 2 rows either side.
    padded = _extrapolate(_extrapolate(grid, 0, pad), 1, pad)
    # Pixel centres sit at index + 0.5: old row r (padded row r + pad)
    # lands on new row r * scale.
    scale = (new - 1) / (old - 1)
    translation = 0.5 - (pad + 0.5) * scale
    resized = jax.image.scale_and_translate(
        padded, (new, new, d_model), (0, 1), jnp.array([scale, scale]),
        jnp.array([translation, translation]),
        method={'bilinear': 'linear', 'bicubic': 'cubic'}[method],
        antialias=False)
  resized = resized.reshape(1, new * new, d_model).astype(table.dtype)
  return jnp.concatenate([prefix, resized], axis=1)


def _check_grid(config, train_len: int, eval_len: int, name: str) -> None:
  m = config.model
  if m.posemb_randomized:
    raise ValueError(
        f"model.posemb={name!r} places tokens on a grid; randomized "
        'positions (model.posemb_randomized=True) draw 1-D subsets; valid: '
        "posemb_randomized=False, or a 1-D encoding such as 'learned'.")
  for what, length in (('data.seq_len (training)', train_len),
                       ('data.eval_seq_len', eval_len)):
    grid_side(length, f'{what}={length}: the input')


class SinCos2d(Encoding):
  """The fixed 2-D sin/cos table added to the inputs (big_vision's
  `posemb_sincos_2d`), at the input's grid."""

  name = 'sincos2d'
  grid = True
  acts = frozenset({'inputs'})

  def check(self, config) -> None:
    d = config.model.d_model
    if d % 4 or d < 8:
      raise ValueError(
          f"model.posemb='sincos2d' splits d_model into sin and cos of rows "
          f'and columns, but model.d_model={d}; valid: a multiple of 4, at '
          'least 8.')

  def check_lengths(self, config, train_len, eval_len) -> None:
    _check_grid(config, train_len, eval_len, self.name)

  def embed(self, site, x_BxLxD, positions_BxL):
    batch, seq_len, d_model = x_BxLxD.shape
    if positions_BxL is None:
      positions_BxL = default_positions(batch, seq_len)
    rows, cols = grid_coordinates(positions_BxL, grid_side(seq_len))
    return x_BxLxD + sincos2d(rows, cols, d_model).astype(x_BxLxD.dtype)


class Learned2d(Encoding):
  """A learned `(1, G*G, D)` table for a G x G grid, added to the inputs
  (ViT); at evaluation on another grid it is resampled in 2-D
  (`resample_2d`, `model.posemb_resample` 'bilinear' or 'bicubic').
  Parameter 'posemb_learned2d/pos_embedding'; the class token is a separate
  parameter, never part of the table."""

  name = 'learned2d'
  grid = True
  acts = frozenset({'inputs'})
  has_table = True
  resample_methods = RESAMPLE_2D_METHODS

  def num_params(self, model, rows) -> int:
    return rows * model.d_model

  def check_lengths(self, config, train_len, eval_len) -> None:
    _check_grid(config, train_len, eval_len, self.name)
    m = config.model
    if m.max_len is not None and m.max_len != train_len:
      raise ValueError(
          f"model.posemb='learned2d' holds one row per patch of the training "
          f'grid ({train_len}), but model.max_len={m.max_len}; valid: unset '
          f'or {train_len}.')

  def needs_resample(self, rows: int, length: int) -> bool:
    return length != rows

  def resample(self, table, new_len, method):
    return resample_2d(table, new_len, method)

  def embed(self, site, x_BxLxD, positions_BxL):
    seq_len = x_BxLxD.shape[1]
    if positions_BxL is None and seq_len != site.max_len:
      raise ValueError(
          f'learned2d: input of {seq_len} patches, table of {site.max_len}; '
          'resample the table to the new grid (resample_2d, or --mode=eval '
          'with model.posemb_resample).')
    table = site.module('posemb_learned2d', lambda name: LearnedPosEmbed(
        site.max_len, site.config.posemb_init_std, name=name))
    return table(x_BxLxD, positions_BxL)


def axial_rope_angles(rows: jax.Array, cols: jax.Array, head_dim: int,
                      base: float = DEFAULT_ROPE2D_BASE) -> jax.Array:
  """RoPE-Axial's angles (Heo et al., 2024, `compute_axial_cis`): K / 4
  frequencies base^(-4f / K); the first K / 4 pairs turn with the column,
  the last K / 4 with the row. `S + (K / 2,)` for coordinates of shape S."""
  freqs = jnp.asarray(base ** (-np.arange(0, head_dim, 4)[:head_dim // 4] /
                               head_dim), jnp.float32)
  return jnp.concatenate(
      [cols[..., None].astype(jnp.float32) * freqs,
       rows[..., None].astype(jnp.float32) * freqs], axis=-1)


class Rope2d(Encoding):
  """Axial 2-D rotary embeddings of queries and keys (RoPE-Axial, Heo et
  al., 2024): half of each head's pairs rotate with the patch's column,
  half with its row, so scores depend on the 2-D offset only. A class token
  is not rotated (as in the reference code)."""

  name = 'rope2d'
  grid = True
  acts = frozenset({'rotation'})

  def check_fields(self, config) -> None:
    checks.real(config, 'model.rope2d_base', low=1.0)

  def check(self, config) -> None:
    m = config.model
    head_dim = m.d_model // m.num_heads
    if head_dim % 4:
      raise ValueError(
          "model.posemb='rope2d' gives a quarter of each head's features to "
          f'rows and columns, but d_model / num_heads = {m.d_model} / '
          f'{m.num_heads} = {head_dim}; valid: a multiple of 4.')

  def check_lengths(self, config, train_len, eval_len) -> None:
    _check_grid(config, train_len, eval_len, self.name)

  def rotate(self, config, x_BxLxHxK, positions_BxL):
    start = int(config.pooling == 'cls')  # A class token at position 0.
    side = grid_side(x_BxLxHxK.shape[1] - start)
    # The class token maps to (0, 0): the identity rotation.
    rows, cols = grid_coordinates(jnp.maximum(positions_BxL - start, 0), side)
    angles = axial_rope_angles(rows, cols, x_BxLxHxK.shape[-1],
                               config.rope2d_base)
    return attention.rotate_pairs(x_BxLxHxK, angles)
