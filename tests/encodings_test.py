"""Tests of posenc.encodings."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from posenc import encodings


class LearnedPosEmbedTest(parameterized.TestCase):

  def _init(self, max_len=12, seq_len=10, d_model=8, batch=3, std=0.5):
    module = encodings.LearnedPosEmbed(max_len=max_len, init_std=std)
    x = jax.random.normal(jax.random.key(1), (batch, seq_len, d_model))
    params = module.init(jax.random.key(0), x)
    return module, params, x

  def test_parameter_shape_and_init_std(self):
    _, params, _ = self._init(max_len=512, d_model=64, std=0.5)
    table = params['params']['pos_embedding']
    chex.assert_shape(table, (1, 512, 64))
    # 32768 normal draws: the sample std is within 2% of the configured one.
    np.testing.assert_allclose(np.std(table), 0.5, rtol=0.02)

  @chex.variants(with_jit=True, without_jit=True)
  def test_output_is_input_plus_first_rows(self):
    module, params, x = self._init(max_len=12, seq_len=10)
    out = self.variant(module.apply)(params, x)
    table = params['params']['pos_embedding']
    np.testing.assert_array_equal(out, x + table[:, :10])
    # The same rows are added to every example of the batch.
    np.testing.assert_allclose(out[0] - x[0], out[2] - x[2], atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_shorter_input_uses_leading_rows(self):
    module, params, _ = self._init(max_len=12)
    x = jnp.zeros((2, 4, 8))
    out = self.variant(module.apply)(params, x)
    table = params['params']['pos_embedding']
    np.testing.assert_array_equal(out, jnp.broadcast_to(table[:, :4], x.shape))

  def test_gradient_reaches_exactly_the_first_seq_len_rows(self):
    module, params, x = self._init(max_len=12, seq_len=7)
    grads = jax.grad(lambda p: module.apply(p, x).sum())(params)
    g = grads['params']['pos_embedding']
    # d(sum)/d(row) = batch size for used rows, zero for the rest.
    np.testing.assert_array_equal(g[:, :7], np.full((1, 7, 8), 3.0))
    np.testing.assert_array_equal(g[:, 7:], np.zeros((1, 5, 8)))

  def test_longer_than_max_len_names_both_numbers(self):
    module, params, _ = self._init(max_len=12)
    with pytest.raises(ValueError, match=r'seq_len=13.*max_len=12'):
      module.apply(params, jnp.zeros((1, 13, 8)))

  def test_rank_is_enforced(self):
    module, params, _ = self._init()
    with pytest.raises(AssertionError):
      module.apply(params, jnp.zeros((10, 8)))

  def test_d_model_must_match_the_table(self):
    module, params, _ = self._init(d_model=8)
    with pytest.raises(Exception, match='pos_embedding'):
      module.apply(params, jnp.zeros((1, 10, 16)))


  @chex.variants(with_jit=True, without_jit=True)
  def test_explicit_positions_pick_rows(self):
    module, params, x = self._init(max_len=12, seq_len=3, batch=2)
    positions = jnp.array([[0, 5, 11], [2, 3, 4]])
    out = self.variant(module.apply)(params, x, positions)
    table = params['params']['pos_embedding'][0]
    np.testing.assert_array_equal(out, x + table[positions])


class SinusoidalTest(parameterized.TestCase):

  @parameterized.parameters((3, 0), (3, 1), (5, 4), (7, 9), (0, 15), (9, 14))
  def test_closed_form(self, pos, dim):
    d_model = 16
    table = encodings.sinusoidal_table(jnp.arange(10), d_model)
    angle = pos / 10_000 ** ((dim - dim % 2) / d_model)
    expected = np.sin(angle) if dim % 2 == 0 else np.cos(angle)
    np.testing.assert_allclose(table[pos, dim], expected, rtol=1e-5,
                               atol=1e-6)

  def test_odd_width_and_module(self):
    self.assertEqual(encodings.sinusoidal_table(jnp.arange(4), 7).shape,
                     (4, 7))
    module = encodings.SinusoidalPosEmbed()
    x = jnp.ones((2, 4, 6))
    params = module.init(jax.random.key(0), x)
    self.assertEqual(params, {})  # Nothing to train.
    np.testing.assert_allclose(
        module.apply(params, x),
        x + encodings.sinusoidal_table(jnp.arange(4), 6)[None])


class RopeTest(parameterized.TestCase):

  def _score(self, q, k, i, j):
    rot = lambda x, p: encodings.apply_rope(x[None, None, None],
                                            jnp.array([[p]]))[0, 0, 0]
    return jnp.dot(rot(q, i), rot(k, j))

  @parameterized.parameters((3, 1), (0, 7), (10, 10), (2, 40))
  def test_score_depends_only_on_the_offset(self, i, j):
    q, k = jax.random.normal(jax.random.key(0), (2, 16))
    base = self._score(q, k, i, j)
    for shift in (1, 5, 100):
      np.testing.assert_allclose(self._score(q, k, i + shift, j + shift),
                                 base, rtol=1e-4, atol=1e-4)
    # ...and does depend on it.
    self.assertGreater(abs(float(self._score(q, k, i + 1, j) - base)), 1e-3)

  def test_norms_are_preserved_and_position_zero_is_identity(self):
    x = jax.random.normal(jax.random.key(1), (2, 6, 3, 8))
    positions = jnp.broadcast_to(jnp.arange(6), (2, 6))
    rotated = encodings.apply_rope(x, positions)
    np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1),
                               jnp.linalg.norm(x, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(rotated[:, 0], x[:, 0], rtol=1e-6)

  def test_odd_head_dimension_is_an_error(self):
    with pytest.raises(ValueError, match='even head dimension'):
      encodings.apply_rope(jnp.ones((1, 2, 1, 5)), jnp.zeros((1, 2), int))


class AlibiTest(parameterized.TestCase):

  def test_paper_slopes_for_8_heads(self):
    np.testing.assert_allclose(encodings.alibi_slopes(8),
                               [2.0 ** -k for k in range(1, 9)])

  def test_slopes_for_a_head_count_that_is_not_a_power_of_two(self):
    # 6 heads: the 4-head slopes, then every other slope of 8 heads.
    np.testing.assert_allclose(encodings.alibi_slopes(6),
                               [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3])

  def test_bias_is_minus_slope_times_distance(self):
    positions = encodings.default_positions(1, 5)
    bias = encodings.alibi_bias(8, positions)
    chex.assert_shape(bias, (1, 8, 5, 5))
    for h in range(8):
      for i in range(5):
        for j in range(5):
          self.assertAlmostEqual(float(bias[0, h, i, j]),
                                 -(2.0 ** -(h + 1)) * abs(i - j), places=6)


class RelativeTest(parameterized.TestCase):

  def test_buckets_match_hand_computed_values(self):
    # num_buckets=32, max_distance=128: 16 buckets per direction, offsets
    # below 8 exact, then 8 + floor(log(d / 8) / log(16) * 8), capped at 15.
    # Keys after the query (positive offset) add 16.
    offsets = [0, -1, 1, -7, 7, -8, 8, -16, -20, 20, -127, -128, -1000, 1000]
    expected = [0, 1, 17, 7, 23, 8, 24, 10, 10, 26, 15, 15, 15, 31]
    got = encodings.relative_position_bucket(jnp.array(offsets), 32, 128)
    np.testing.assert_array_equal(got, expected)

  def test_bias_module_shape_and_sharing_by_bucket(self):
    module = encodings.RelativePositionBias(num_heads=3)
    positions = encodings.default_positions(2, 6)
    params = module.init(jax.random.key(0), positions)
    bias = module.apply(params, positions)
    chex.assert_shape(bias, (2, 3, 6, 6))
    # Same offset, same bias; the diagonal is bucket 0 for every query.
    np.testing.assert_array_equal(bias[:, :, 1, 2], bias[:, :, 3, 4])
    np.testing.assert_array_equal(
        bias[0, :, 2, 2], params['params']['rel_embedding'][0])


class RandomPositionsTest(parameterized.TestCase):

  def test_sorted_distinct_and_in_range(self):
    positions = encodings.random_positions(jax.random.key(0), 64, 10, 40)
    chex.assert_shape(positions, (64, 10))
    p = np.asarray(positions)
    self.assertTrue((np.diff(p, axis=1) > 0).all())
    self.assertTrue((p >= 0).all() and (p < 40).all())
    self.assertGreater(p.max(), 30)  # Reaches beyond the training length.


class ResampleTest(parameterized.TestCase):

  @parameterized.parameters('linear', 'nearest')
  def test_same_length_is_identity(self, method):
    table = jax.random.normal(jax.random.key(0), (1, 7, 4))
    np.testing.assert_array_equal(
        encodings.resample_pos_embedding(table, 7, method), table)

  @parameterized.parameters(('linear', 25), ('nearest', 25), ('linear', 4))
  def test_endpoints_are_kept(self, method, new_len):
    table = jax.random.normal(jax.random.key(1), (1, 10, 4))
    out = encodings.resample_pos_embedding(table, new_len, method)
    chex.assert_shape(out, (1, new_len, 4))
    np.testing.assert_allclose(out[:, 0], table[:, 0], rtol=1e-6)
    np.testing.assert_allclose(out[:, -1], table[:, -1], rtol=1e-6)

  def test_linear_data_stays_linear(self):
    rows = np.arange(10, dtype=np.float32)
    table = jnp.asarray(np.stack([3.0 * rows - 2.0, -rows], -1))[None]
    out = encodings.resample_pos_embedding(table, 37, 'linear')
    new_rows = np.arange(37) * 9 / 36
    np.testing.assert_allclose(out[0, :, 0], 3.0 * new_rows - 2.0, atol=1e-5)
    np.testing.assert_allclose(out[0, :, 1], -new_rows, atol=1e-5)

  def test_nearest_copies_rows(self):
    table = jnp.arange(5.0).reshape(1, 5, 1)
    out = encodings.resample_pos_embedding(table, 9, 'nearest')
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 2, 2, 2, 3, 4, 4])

  def test_unknown_method(self):
    with pytest.raises(ValueError, match="'cubic'.*linear, nearest"):
      encodings.resample_pos_embedding(jnp.ones((1, 3, 2)), 5, 'cubic')


def test_unknown_posemb_lists_valid_names():
  with pytest.raises(ValueError, match=r"'rotary'.*learned, sinusoidal, none, "
                     r'rope, alibi, relative, learned_every_layer'):
    encodings.get('rotary')
