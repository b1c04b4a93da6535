"""Blocked attention (posenc.blocked) against the einsum path.

The reference is softmax(q k^T / sqrt(K) + bias) with masked logits at the
float32 minimum, written out here, and the model's own einsum path
(`model.attention='einsum'`): outputs, logits and gradients must agree to
float32 rounding for every encoding, with and without padding, causal or
not, and a short training run must follow the same losses. The backward
pass is FlashAttention-2's (Dao, 2023, Algorithm 2): P = exp(S - LSE),
dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)).
"""

import functools
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from posenc import blocked
from posenc import config as default
from posenc import data
from posenc import encodings
from posenc import models
from posenc import train
from posenc import validate
from posenc.encodings import attention as attention_encodings

B, H, K = 2, 4, 8


def _qkv(length, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(jnp.asarray(rng.standard_normal((B, length, H, K)),
                           jnp.float32) for _ in range(4))


def _reference(q, k, v, *, mask, causal, bias, positions):
  """softmax attention with every L x L array written out."""
  length = q.shape[1]
  s = jnp.einsum('bqhk,bshk->bhqs', q, k) / np.sqrt(K)
  if bias is not None:
    s += bias(positions, positions)
  allowed = jnp.ones((1, 1, length, length), bool)
  if mask is not None:
    allowed = allowed & mask[:, None, None, :]
  if causal:
    allowed = allowed & jnp.tril(jnp.ones((length, length), bool))
  s = jnp.where(allowed, s, jnp.finfo(jnp.float32).min)
  return jnp.einsum('bhqs,bshk->bqhk', jax.nn.softmax(s), v)


def _relative_bias(table):
  return encodings.PairBias(
      functools.partial(attention_encodings.relative_pair_bias, 32, 128),
      table)


@pytest.mark.parametrize('length,block_size', [(37, 8), (32, 8), (12, 64)])
@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('padded', [False, True])
def test_outputs_and_gradients_match_the_written_out_softmax(
    length, block_size, causal, padded):
  """With T's relative bias (a parameter gathered per block), so the
  bias's gradient is checked too; 37 steps in blocks of 8 pad the last
  block, 12 in a block of 64 is one block."""
  q, k, v, cotangent = _qkv(length)
  table = jnp.asarray(np.random.default_rng(1).standard_normal((32, H)),
                      jnp.float32)
  mask = (jnp.asarray(np.arange(length)[None] < np.array([[length], [5]]))
          if padded else None)
  positions = encodings.default_positions(B, length)

  def loss(attend, q, k, v, table):
    out = attend(q, k, v, mask=mask, causal=causal,
                 bias=_relative_bias(table), positions=positions)
    return (out * cotangent).sum(), out

  blocked_attend = lambda q, k, v, *, mask, causal, bias, positions: (
      blocked.blocked_attention(q, k, v, mask_BxL=mask, causal=causal,
                                bias=bias, positions_BxL=positions,
                                block_size=block_size))
  grads = lambda attend: jax.jit(jax.grad(
      functools.partial(loss, attend), argnums=(0, 1, 2, 3), has_aux=True))(
          q, k, v, table)
  want_grads, want = grads(_reference)
  got_grads, got = grads(blocked_attend)
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
  for name, g, w in zip(('q', 'k', 'v', 'bias table'), got_grads,
                        want_grads):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-5, err_msg=name)


@pytest.mark.parametrize('causal', [False, True])
def test_blocks_after_the_last_real_key_are_skipped_and_empty_rows_are_0(
    causal):
  """Real lengths 6 and 0 of 37 in blocks of 8: only the first key block is
  computed (NaN in the keys and values after it would otherwise reach every
  output: 0 weight times NaN is NaN), the first row matches the written-out
  softmax, and the row with no real key gets 0 and passes back 0."""
  q, k, v, cotangent = _qkv(37)
  mask = jnp.asarray(np.arange(37)[None] < np.array([[6], [0]]))
  positions = encodings.default_positions(B, 37)
  poison = lambda x: x.at[:, 8:].set(jnp.nan)

  def loss(attend, q, k, v):
    out = attend(q, k, v)
    return (out * cotangent).sum(), out

  blocked_attend = lambda q, k, v: blocked.blocked_attention(
      q, poison(k), poison(v), mask_BxL=mask, causal=causal,
      positions_BxL=positions, block_size=8)
  reference = lambda q, k, v: _reference(q, k, v, mask=mask, causal=causal,
                                         bias=None, positions=positions)
  grads = lambda attend: jax.grad(functools.partial(loss, attend),
                                  argnums=(0, 1, 2), has_aux=True)(q, k, v)
  (got_grads, got), (want_grads, want) = grads(blocked_attend), grads(
      reference)
  np.testing.assert_allclose(got[0], want[0], atol=2e-6, rtol=1e-5)
  np.testing.assert_array_equal(got[1], 0.0)
  for g, w in zip(got_grads, want_grads):
    np.testing.assert_allclose(g[0], w[0], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(g[1], 0.0)


def test_no_bias_and_bfloat16_products():
  """Without a bias and positions; bfloat16 inputs keep float32 sums, so
  the error is bfloat16's rounding of q, k, v and the weights."""
  q, k, v, _ = _qkv(40)
  want = _reference(q, k, v, mask=None, causal=False, bias=None,
                    positions=None)
  got = blocked.blocked_attention(q, k, v, block_size=16)
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
  low = blocked.blocked_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)),
                                  block_size=16)
  assert low.dtype == jnp.float32
  np.testing.assert_allclose(low, want, atol=0.05)
  assert float(jnp.abs(low - want).max()) > 0  # bfloat16 did round.
  # Against the same softmax of q, k, v rounded to bfloat16 once: what is
  # left is the rounding of the weights before their product with v.
  once = _reference(*(x.astype(jnp.bfloat16).astype(jnp.float32)
                      for x in (q, k, v)), mask=None, causal=False,
                    bias=None, positions=None)
  np.testing.assert_allclose(low, once, atol=0.02)


def _hlo_has_square(fn, length, *args) -> bool:
  """Whether the compiled program of `fn` holds any array with two
  dimensions of `length` or more."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  for dims in re.findall(r'\[([0-9,]+)\]', text):
    if sum(int(d) >= length for d in dims.split(',') if d) >= 2:
      return True
  return False


def test_no_length_by_length_array_in_forward_or_backward():
  """The whole gradient program at L = 256 in blocks of 32, an ALiBi bias
  included, has no array with two dimensions of 256; the einsum path's has
  (the control)."""
  length = 256
  q, k, v, _ = _qkv(length)
  positions = encodings.default_positions(B, length)
  alibi = encodings.get('alibi').pair_bias(
      encodings.Site(models.ModelConfig(num_heads=H), length, True),
      positions)

  def grad_of(attend):
    return jax.grad(lambda q, k, v: attend(q, k, v).sum(), argnums=(0, 1, 2))

  blocked_attend = lambda q, k, v: blocked.blocked_attention(
      q, k, v, mask_BxL=None, causal=True, bias=alibi,
      positions_BxL=positions, block_size=32)
  einsum_attend = lambda q, k, v: _reference(
      q, k, v, mask=None, causal=True, bias=alibi, positions=positions)
  assert not _hlo_has_square(grad_of(blocked_attend), length, q, k, v)
  assert _hlo_has_square(grad_of(einsum_attend), length, q, k, v)


def _model_cases():
  """Every registered encoding (the grid ones on a 4 x 4 grid). Those acting
  inside attention, causal or not, with and without padding; those that
  only add to the residual stream, which attention never sees as positions,
  once each (padded, bidirectional)."""
  for name in encodings.names():
    entry = encodings.get(name)
    if not entry.acts & {'bias', 'rotation'}:
      yield name, False, True, {}
      continue
    for causal in (False, True):
      for padded in (False, True):
        yield name, causal, padded, {}
        if name == 'alibi' and not causal:  # Directional is bidirectional.
          yield name, causal, padded, {'alibi_mode': 'directional'}


@pytest.mark.parametrize('posemb,causal,padded,extra', list(_model_cases()))
def test_model_logits_and_gradients_match_the_einsum_path(posemb, causal,
                                                          padded, extra):
  """The classifier with attention='blocked' (blocks of 4 over 16 steps,
  and with a class token over 17, so the last block is padded) against
  attention='einsum', from the same parameters."""
  pooling = 'last' if causal else 'cls'
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.standard_normal((3, 16, 5)), jnp.float32)
  mask = (jnp.asarray(np.arange(16)[None] < np.array([[16], [9], [2]]))
          if padded else None)
  labels = jnp.array([0, 1, 2])

  def model(attention):
    return models.EncoderClassifier(
        models.ModelConfig(posemb=posemb, causal=causal, pooling=pooling,
                           d_model=16, num_heads=4, mlp_dim=32, max_len=16,
                           attention=attention, attention_block_size=4,
                           **extra), num_classes=3)

  params = jax.jit(lambda key: model('einsum').init(
      key, inputs, mask=mask, train=False)['params'])(jax.random.key(0))

  def loss(attention, params):
    logits, _ = model(attention).apply({'params': params}, inputs, mask=mask,
                                       train=False)
    loss = -jax.nn.log_softmax(logits)[jnp.arange(3), labels].mean()
    return loss, logits

  results = {a: jax.jit(jax.grad(functools.partial(loss, a), has_aux=True))(
      params) for a in ('einsum', 'blocked')}
  (want_grads, want), (got_grads, got) = results['einsum'], results['blocked']
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got_grads),
                          jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(g, w, atol=2e-5, rtol=1e-4,
                               err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize('posemb', ['learned', 'fire'])
def test_training_follows_the_einsum_losses(posemb):
  """30 Adam steps from the same state on one padded batch: the losses of
  the two paths stay within 1e-4 of each other while they fall."""
  config = default.get_config()
  config.model.posemb = posemb
  config.model.attention_block_size = 8
  rng = np.random.default_rng(0)
  arrays = {'inputs': rng.standard_normal((8, 20, 16)).astype(np.float32),
            'labels': rng.integers(0, 4, 8).astype(np.int32),
            'mask': np.arange(20)[None] < rng.integers(3, 21, (8, 1))}
  dataset = data.Dataset.from_arrays(train=arrays, eval=arrays, num_classes=4)
  batch = {k: jnp.asarray(v) for k, v in arrays.items()}
  losses = {}
  for attention in ('einsum', 'blocked'):
    config.model.attention = attention
    state = train.create_train_state(jax.random.key(0), config,
                                     train.make_model(config, dataset),
                                     dataset.example_inputs())
    step = jax.jit(train.train_step)
    losses[attention] = []
    for _ in range(30):
      state, metrics = step(state, batch, jax.random.key(1))
      losses[attention].append(float(metrics['train_loss']))
  np.testing.assert_allclose(losses['blocked'], losses['einsum'], atol=1e-4)
  assert losses['einsum'][-1] < 0.5 * losses['einsum'][0]


def _config(**model) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.update(model)
  return config


def test_config_refusals_name_the_field():
  with pytest.raises(ValueError, match=r"attention='blocked'.*no dropout.*"
                     r'attention_dropout_rate=0.1; valid: 0.0'):
    validate.check_config(_config(attention='blocked',
                                  attention_dropout_rate=0.1), 1)
  with pytest.raises(ValueError, match='model.attention_block_size'):
    validate.check_config(_config(attention='blocked',
                                  attention_block_size=0), 1)


class FullBiasOnly(encodings.Encoding):
  """A bias given only for every pair: einsum and fused, not blocked."""

  name = 'full_bias_only_test'
  acts = frozenset({'bias'})

  def attention_bias(self, site, positions_BxL):
    return jnp.zeros((positions_BxL.shape[0], site.config.num_heads,
                      positions_BxL.shape[1], positions_BxL.shape[1]))


class RelativeVariant(attention_encodings.Relative):
  """Changes the bias for every pair but inherits Relative's pair_bias,
  which would give the old one: not blockable."""

  name = 'relative_variant_test'

  def attention_bias(self, site, positions_BxL):
    return 2 * super().attention_bias(site, positions_BxL)


def test_an_inherited_pair_bias_older_than_attention_bias_is_not_trusted():
  assert not RelativeVariant().blockable
  assert encodings.get('relative').blockable


def test_an_encoding_without_pair_bias_is_refused_by_blocked():
  encodings.register(FullBiasOnly())
  try:
    assert not encodings.get('full_bias_only_test').blockable
    assert all(encodings.get(n).blockable for n in encodings.names()
               if n != 'full_bias_only_test')
    validate.check_config(_config(posemb='full_bias_only_test'), 1)
    with pytest.raises(ValueError, match=r"attention='blocked'.*"
                       r"posemb='full_bias_only_test'.*no pair_bias"):
      validate.check_config(_config(posemb='full_bias_only_test',
                                    attention='blocked'), 1)
  finally:
    encodings.unregister('full_bias_only_test')


@pytest.mark.parametrize('mode', ['jit', 'pmap'])
def test_sharded_and_pmapped_steps_match_one_device_einsum(mode):
  """Three steps with the batch split over 8 devices (jit over a mesh, or
  pmap), padded and with ALiBi's bias, against einsum on one device."""
  config = default.get_config()
  config.data.update(name='argmax', seq_len=12, min_seq_len=4,
                     num_train=64, num_eval=16)
  config.model.update(posemb='alibi', d_model=16, num_heads=2, mlp_dim=32,
                      attention_block_size=4)
  config.train.batch_size = 16
  dataset = data.load(config.data, config.seed)
  batches = [{k: v[i:i + 16] for k, v in dataset.train.items()}
             for i in range(0, 48, 16)]
  results = {}
  for attention, devices in (('einsum', jax.devices()[:1]),
                             ('blocked', jax.devices())):
    config.model.attention = attention
    model = train.make_model(config, dataset)
    state = train.create_train_state(jax.random.key(0), config, model,
                                     dataset.example_inputs())
    parallel = train.make_parallel(mode if attention == 'blocked' else 'jit',
                                   model.apply, devices)
    state = parallel.place_state(state)
    for batch in batches:
      state, metrics = parallel.step(state, parallel.place_batch(batch),
                                     jax.random.key(1))
    results[attention] = (parallel.host_state(state).params,
                          parallel.host_metrics(metrics)['train_loss'])
  assert len(jax.devices()) == 8
  np.testing.assert_allclose(results['blocked'][1], results['einsum'][1],
                             rtol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4,
                                 atol=1e-5), results['blocked'][0],
               results['einsum'][0])
