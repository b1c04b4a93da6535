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


class GetPosembTest(parameterized.TestCase):

  def test_none_adds_nothing(self):
    self.assertIsNone(encodings.get_posemb('none', max_len=4, init_std=1.0))

  def test_unknown_name_lists_valid_names(self):
    with pytest.raises(ValueError, match=r"'rotary'.*learned, none"):
      encodings.get_posemb('rotary', max_len=4, init_std=1.0)
