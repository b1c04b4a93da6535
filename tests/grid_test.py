"""Tests of the 2-D encodings: sincos2d, learned2d (and its resample) and
rope2d, against their reference formulas."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc import config as default
from posenc import encodings
from posenc import evaluation
from posenc import models
from posenc import validate

SMALL = models.ModelConfig(d_model=16, num_heads=2, num_layers=1, mlp_dim=16)


def _model(**changes):
  return models.EncoderClassifier(dataclasses.replace(SMALL, **changes),
                                  num_classes=3)


def posemb_sincos_2d(h, w, width, temperature=10_000.):
  """big_vision/models/vit.py (google-research/big_vision), in NumPy."""
  y, x = np.mgrid[:h, :w]
  assert width % 4 == 0
  omega = np.arange(width // 4) / (width // 4 - 1)
  omega = 1. / (temperature**omega)
  y = np.einsum('m,d->md', y.flatten(), omega)
  x = np.einsum('m,d->md', x.flatten(), omega)
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)],
                        axis=1)[None]


def compute_axial_angles(dim, end_x, end_y, theta=100.0):
  """The angles of naver-ai/rope-vit's `compute_axial_cis` and `init_t_xy`
  (Heo et al., 2024), in NumPy: `(end_x * end_y, dim / 2)`."""
  freqs = 1.0 / (theta ** (np.arange(0, dim, 4)[:dim // 4] / dim))
  t = np.arange(end_x * end_y)
  t_x, t_y = t % end_x, t // end_x
  return np.concatenate([np.outer(t_x, freqs), np.outer(t_y, freqs)], -1)


@pytest.mark.parametrize('side,width', [(4, 16), (3, 8), (8, 64)])
def test_sincos2d_is_big_visions_table(side, width):
  positions = jnp.arange(side * side)
  rows, cols = encodings.grid.grid_coordinates(positions, side)
  np.testing.assert_allclose(encodings.sincos2d(rows, cols, width)[None],
                             posemb_sincos_2d(side, side, width), atol=1e-6)


def test_sincos2d_adds_the_table_to_the_inputs():
  model = _model(posemb='sincos2d')
  x = jnp.zeros((2, 9, 4))
  params = model.init(jax.random.key(0), x, train=False)
  hidden = model.apply(params, x, train=False)[1]['hidden'][0]
  bias = params['params']['input_proj']['bias']
  np.testing.assert_allclose(hidden - bias, np.broadcast_to(
      posemb_sincos_2d(3, 3, 16), (2, 9, 16)), atol=1e-6)


@pytest.mark.parametrize('head_dim,side', [(8, 4), (16, 3)])
def test_rope2d_angles_are_rope_vits(head_dim, side):
  positions = jnp.arange(side * side)
  rows, cols = encodings.grid.grid_coordinates(positions, side)
  np.testing.assert_allclose(
      encodings.axial_rope_angles(rows, cols, head_dim),
      compute_axial_angles(head_dim, side, side), rtol=1e-6)


def _rope2d_scores(q, k, rows, cols):
  """Scores of queries and keys rotated at the given grid coordinates."""
  angles = encodings.axial_rope_angles(jnp.array(rows), jnp.array(cols),
                                       q.shape[-1], 100.0)[None]
  rq = encodings.attention.rotate_pairs(q[None, :, None], angles)[0, :, 0]
  rk = encodings.attention.rotate_pairs(k[None, :, None], angles)[0, :, 0]
  return rq @ rk.T


def test_rope2d_scores_depend_on_the_2d_offset_only():
  q, k = jax.random.normal(jax.random.key(1), (2, 3, 8))
  rows, cols = [0, 2, 1], [1, 0, 3]
  base = _rope2d_scores(q, k, rows, cols)
  shifted = _rope2d_scores(q, k, [r + 3 for r in rows], [c + 5 for c in cols])
  np.testing.assert_allclose(base, shifted, atol=1e-4)
  # A transposed grid is another geometry: rows and columns are told apart.
  swapped = _rope2d_scores(q, k, cols, rows)
  assert float(jnp.abs(base - swapped).max()) > 1e-2


def test_rope2d_leaves_the_class_token_unrotated():
  cfg = dataclasses.replace(SMALL, posemb='rope2d', pooling='cls')
  x = jax.random.normal(jax.random.key(2), (1, 5, 2, 8))  # Class + 2 x 2.
  positions = jnp.arange(5)[None]
  rotated = encodings.get('rope2d').rotate(cfg, x, positions)
  np.testing.assert_array_equal(rotated[:, 0], x[:, 0])
  # Patch 0 (position 1) is at (0, 0) too; patch 3 at (1, 1) is rotated.
  np.testing.assert_allclose(rotated[:, 1], x[:, 1], atol=1e-6)
  assert float(jnp.abs(rotated[:, 4] - x[:, 4]).max()) > 1e-3


@pytest.mark.parametrize('method', encodings.RESAMPLE_2D_METHODS)
@pytest.mark.parametrize('old,new', [(4, 8), (3, 7), (8, 16)])
def test_resample_2d_keeps_corners_and_reproduces_smooth_tables(method, old,
                                                                new):
  table = jax.random.normal(jax.random.key(3), (1, old * old, 5))
  out = encodings.resample_2d(table, new * new, method)
  assert out.shape == (1, new * new, 5)
  grid_in, grid_out = table.reshape(old, old, 5), out.reshape(new, new, 5)
  for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
    np.testing.assert_allclose(grid_out[i, j], grid_in[i, j], atol=1e-5)
  # A table linear in (row, column) is reproduced exactly. A smooth one,
  # f(u, v) = sin(1.5 u) cos(v) on the unit square sampled every
  # h = 1 / (old - 1), within bilinear interpolation's error bound
  # h^2 / 8 (|f_uu| + |f_vv|) <= h^2 / 8 * (2.25 + 1); Keys' cubic is more
  # accurate still.
  rows, cols = np.mgrid[:new, :new] / (new - 1)
  r, c = np.mgrid[:old, :old] / (old - 1)
  h = 1 / (old - 1)
  for f, tol in ((lambda u, v: 2 * u - 3 * v + 1, 1e-5),
                 (lambda u, v: np.sin(1.5 * u) * np.cos(v), h**2 / 8 * 3.25)):
    table = jnp.asarray(f(r, c).reshape(1, old * old, 1), jnp.float32)
    out = encodings.resample_2d(table, new * new, method).reshape(new, new)
    np.testing.assert_allclose(out, f(rows, cols), atol=tol)


def test_resample_2d_identity_and_prefix_rows():
  table = jax.random.normal(jax.random.key(4), (1, 1 + 16, 3))
  np.testing.assert_array_equal(
      encodings.resample_2d(table, 16, 'bicubic', num_prefix=1), table)
  out = encodings.resample_2d(table, 64, 'bilinear', num_prefix=1)
  assert out.shape == (1, 65, 3)
  np.testing.assert_array_equal(out[:, :1], table[:, :1])  # Class token.
  with pytest.raises(ValueError, match='not a square grid'):
    encodings.resample_2d(table, 15, 'bilinear', num_prefix=1)


def test_learned2d_table_and_its_resample_for_a_finer_grid():
  model = _model(posemb='learned2d', max_len=16)
  x = jax.random.normal(jax.random.key(5), (2, 16, 4))
  params = model.init(jax.random.key(0), x, train=False)
  table = params['params']['posemb_learned2d']['pos_embedding']
  assert table.shape == (1, 16, 16)
  with pytest.raises(ValueError, match='resample the table'):
    model.apply(params, jnp.zeros((2, 64, 4)), train=False)
  same = evaluation.for_length(model, params['params'], 16, 'bilinear')
  assert same[2] is False
  bigger, new_params, resampled = evaluation.for_length(
      model, params['params'], 64, 'bicubic')
  assert resampled and bigger.config.max_len == 64
  np.testing.assert_allclose(
      new_params['posemb_learned2d']['pos_embedding'],
      encodings.resample_2d(table, 64, 'bicubic'))
  logits = bigger.apply({'params': new_params}, jnp.zeros((2, 64, 4)),
                        train=False)[0]
  assert logits.shape == (2, 3) and np.isfinite(logits).all()
  with pytest.raises(ValueError, match="posemb_resample='bilinear' or "):
    evaluation.for_length(model, params['params'], 64, 'linear')


def _config(**model):
  config = default.get_config()
  config.data.update(dict(name='digits', patch_size=2, seq_len=16,
                          num_train=512, num_eval=64))
  config.model.update(model)
  return config


@pytest.mark.parametrize('change,message', [
    (dict(posemb='sincos2d', d_model=12, num_heads=2), None),
    (dict(posemb='sincos2d', d_model=6, num_heads=1),
     r"'sincos2d'.*model.d_model=6; valid: a multiple of 4, at least 8"),
    (dict(posemb='rope2d', d_model=24, num_heads=4),
     r"'rope2d'.*= 6; valid: a multiple of 4"),
    (dict(posemb='learned2d', posemb_randomized=True, max_len=64),
     r"'learned2d' places tokens on a grid.*posemb_randomized=False"),
    (dict(posemb='learned2d', max_len=25),
     r'model.max_len=25; valid: unset or 16'),
    (dict(posemb='learned2d', posemb_resample='linear'),
     r"posemb_resample='linear' is not a method of the table of "
     r"model.posemb='learned2d'; valid: none or 'bilinear' or 'bicubic'"),
])
def test_grid_config_errors_name_the_field(change, message):
  config = _config(**change)
  if message is None:
    validate.check_config(config, num_devices=1)
    return
  with pytest.raises(ValueError, match=message):
    validate.check_config(config, num_devices=1, evaluating=True)


@pytest.mark.parametrize('posemb', ['sincos2d', 'learned2d', 'rope2d'])
def test_grid_encodings_need_a_square_grid(posemb):
  # Your own arrays (npz, or a dataset given to train_and_evaluate) are
  # checked once loaded.
  config = default.get_config()
  config.model.posemb = posemb
  with pytest.raises(ValueError, match=r'data.seq_len \(training\)=10: the '
                     'input has 10 tokens, which is not a square grid'):
    validate.check_lengths(config, 10, 10)
  with pytest.raises(ValueError, match=r'data.eval_seq_len=20: the input '
                     'has 20 tokens'):
    validate.check_lengths(config, 16, 20)


@pytest.mark.parametrize('name,fields', [
    ('vowels', dict(seq_len=16, num_train=200, num_eval=54)),
    ('mnist1d', dict(patch_size=10, seq_len=4, num_train=3600,
                     num_eval=400)),
    ('before', dict(seq_len=16)),
])
def test_grid_encodings_are_refused_on_sequences(name, fields):
  config = default.get_config()
  config.data.update(dict(name=name, **fields))
  config.model.posemb = 'rope2d'
  with pytest.raises(ValueError, match=rf"model.posemb='rope2d' places tokens"
                     rf" on a 2-D grid, but data.name='{name}' is a sequence; "
                     r'valid: a 1-D encoding \(learned, .*digits'):
    validate.check_config(config, num_devices=1)


def test_a_table_without_a_resample_is_refused_at_registration():
  class Table(encodings.Encoding):
    name = 'table_without_resample'
    acts = frozenset({'inputs'})
    has_table = True

  with pytest.raises(ValueError, match='has_table=True needs '
                     'resample_methods and a resample'):
    encodings.register(Table())
  assert 'table_without_resample' not in encodings.names()
