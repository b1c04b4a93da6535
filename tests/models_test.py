"""Tests of posenc.models.EncoderClassifier."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from posenc import encodings
from posenc import models

SMALL = models.ModelConfig(posemb='learned', max_len=5, d_model=8, num_heads=2,
                           num_layers=2, mlp_dim=16, dropout_rate=0.0)
WITH_POSITIONS = [p for p in encodings.names() if p != 'none']
# Padding and lengths that are not squares: the encodings of sequences (the
# grid ones are tested on square grids in tests/grid_test.py).
SEQUENCE = encodings.sequence_names()


def _length(posemb: str, length: int) -> int:
  """`length`, or for a grid encoding the square grid just above it."""
  if not encodings.get(posemb).grid:
    return length
  return math.ceil(math.sqrt(length)) ** 2


def _cfg(**changes) -> models.ModelConfig:
  return dataclasses.replace(SMALL, **changes)


def _init_apply(cfg, inputs, num_classes=4, vocab_size=None, mask=None):
  model = models.EncoderClassifier(cfg, num_classes=num_classes,
                                   vocab_size=vocab_size)
  params = model.init(jax.random.key(0), inputs, mask=mask, train=False)
  return model, params


class EncoderClassifierTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters('mean', 'cls')
  def test_shapes_and_finiteness(self, pooling):
    cfg = _cfg(pooling=pooling)
    x = jax.random.normal(jax.random.key(1), (3, 5, 3))
    model, params = _init_apply(cfg, x)
    apply = self.variant(lambda p, x: model.apply(p, x, train=False))
    logits, aux = apply(params, x)
    chex.assert_shape(logits, (3, 4))
    chex.assert_tree_all_finite(logits)
    extra = 1 if pooling == 'cls' else 0
    chex.assert_shape(aux['hidden'], (SMALL.num_layers + 1, 3, 5 + extra, 8))

  def test_exact_parameter_count(self):
    x = jnp.zeros((1, 5, 3))
    _, params = _init_apply(SMALL, x)
    d, f, m, t, c = 8, 3, 16, 5, 4
    block = (2 * d  # ln_attn
             + 3 * d * d + 2 * d  # query, key (no bias), value
             + d * d + d  # out
             + 2 * d  # ln_mlp
             + d * m + m + m * d + d)  # mlp
    expected = (f * d + d  # input_proj
                + t * d  # pos_embedding
                + 2 * block
                + 2 * d  # ln_final
                + d * c + c)  # head
    self.assertEqual(expected, 1308)  # By hand: 32 + 40 + 2 * 592 + 16 + 36.
    self.assertEqual(sum(p.size for p in jax.tree.leaves(params)), expected)

  def test_token_inputs(self):
    tokens = jnp.array([[1, 2, 3, 0, 9], [4, 4, 4, 4, 4]])
    model, params = _init_apply(SMALL, tokens, vocab_size=10)
    self.assertEqual(params['params']['token_embed']['embedding'].shape, (10, 8))
    logits, _ = model.apply(params, tokens, train=False)
    chex.assert_shape(logits, (2, 4))

  @parameterized.parameters([('none', True)] +
                            [(p, False) for p in WITH_POSITIONS])
  def test_permutation_invariance_only_without_positions(self, posemb,
                                                         invariant):
    length = _length(posemb, 5)
    cfg = _cfg(posemb=posemb, max_len=length)
    x = jax.random.normal(jax.random.key(2), (4, length, 3))
    model, params = _init_apply(cfg, x)
    perm = np.roll(np.arange(length), 2)
    logits, _ = model.apply(params, x, train=False)
    permuted, _ = model.apply(params, x[:, perm], train=False)
    if invariant:
      np.testing.assert_allclose(logits, permuted, atol=1e-5)
    else:
      self.assertGreater(float(jnp.abs(logits - permuted).max()), 1e-3)

  @parameterized.product(pooling=['mean', 'cls'], posemb=SEQUENCE)
  def test_logits_do_not_depend_on_padding(self, pooling, posemb):
    cfg = _cfg(max_len=10, pooling=pooling, posemb=posemb,
               posemb_share=False)
    x = jax.random.normal(jax.random.key(3), (2, 6, 3))
    garbage = 100.0 * jax.random.normal(jax.random.key(4), (2, 4, 3))
    padded = jnp.concatenate([x, garbage], axis=1)
    mask = jnp.array([[True] * 6 + [False] * 4] * 2)
    model, params = _init_apply(cfg, padded, mask=mask)
    plain, _ = model.apply(params, x, train=False)
    masked, _ = model.apply(params, padded, mask=mask, train=False)
    np.testing.assert_allclose(plain, masked, atol=1e-5)
    unmasked, _ = model.apply(params, padded, train=False)
    self.assertGreater(float(jnp.abs(plain - unmasked).max()), 1e-3)

  def test_dropout_is_active_only_in_training(self):
    cfg = _cfg(dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(5), (2, 5, 3))
    model, params = _init_apply(cfg, x)
    run = lambda seed: model.apply(params, x, train=True,
                                   rngs={'dropout': jax.random.key(seed)})[0]
    self.assertGreater(float(jnp.abs(run(0) - run(1)).max()), 1e-4)
    eval_a, _ = model.apply(params, x, train=False)
    eval_b, _ = model.apply(params, x, train=False)
    np.testing.assert_array_equal(eval_a, eval_b)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*encodings.names())
  def test_every_encoding_shapes_and_finiteness(self, posemb):
    length = _length(posemb, 5)
    cfg = _cfg(posemb=posemb, max_len=max(8, length))
    x = jax.random.normal(jax.random.key(6), (3, length, 3))
    mask = jnp.arange(length)[None] < jnp.array([length, 3, 4])[:, None]
    model, params = _init_apply(cfg, x, mask=mask)
    apply = self.variant(lambda p, x: model.apply(p, x, mask=mask, train=False))
    logits, aux = apply(params, x)
    chex.assert_shape(logits, (3, 4))
    chex.assert_tree_all_finite((logits, aux))

  @parameterized.parameters(True, False)
  def test_learned_every_layer_tables(self, share):
    cfg = _cfg(posemb='learned_every_layer', num_layers=3, posemb_share=share)
    x = jax.random.normal(jax.random.key(7), (2, 5, 3))
    _, params = _init_apply(cfg, x)
    tables = sorted(k for k in params['params'] if k.startswith('posemb'))
    expected = (['posemb_learned'] if share else
                ['posemb_learned', 'posemb_learned_1', 'posemb_learned_2'])
    self.assertEqual(tables, expected)

  def test_learned_every_layer_adds_the_table_before_every_block(self):
    # With all blocks' weights zeroed, each block is the identity, so the
    # output of block i holds i + 1 copies of the shared table (one added
    # before the first block, one more before each later block).
    cfg = _cfg(posemb='learned_every_layer', num_layers=3)
    x = jnp.zeros((1, 5, 3))
    model, params = _init_apply(cfg, x)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v)
        if 'block' in jax.tree_util.keystr(path) else v, params)
    _, aux = model.apply(params, x, train=False)
    table = params['params']['posemb_learned']['pos_embedding'][0]
    bias = params['params']['input_proj']['bias']
    for i in range(4):  # hidden[0]: the embedded input; hidden[i]: block i-1.
      np.testing.assert_allclose(aux['hidden'][i, 0],
                                 bias + max(i, 1) * table, rtol=1e-5, atol=1e-5)

  @parameterized.parameters('learned', 'sinusoidal', 'rope')
  def test_randomized_positions_only_in_training(self, posemb):
    cfg = _cfg(posemb=posemb, max_len=40, posemb_randomized=True)
    x = jax.random.normal(jax.random.key(8), (2, 5, 3))
    model, params = _init_apply(cfg, x)
    run = lambda seed: model.apply(params, x, train=True,
                                   rngs={'positions': jax.random.key(seed)})[0]
    self.assertGreater(float(jnp.abs(run(0) - run(1)).max()), 1e-4)
    np.testing.assert_array_equal(run(0), run(0))
    plain = dataclasses.replace(cfg, posemb_randomized=False)
    np.testing.assert_array_equal(
        model.apply(params, x, train=False)[0],
        models.EncoderClassifier(plain, 4).apply(params, x, train=False)[0])

