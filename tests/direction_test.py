"""Properties every encoding must have, checked for every registered one:
time reversal (which encodings cannot tell a sequence from its reverse),
causal attention (nothing flows from later steps), the fused attention path,
explicit positions, and padding with last-token pooling.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc import config as posenc_config
from posenc import data
from posenc import encodings
from posenc import models

SMALL = models.ModelConfig(posemb='learned', max_len=12, d_model=16,
                           num_heads=4, num_layers=2, mlp_dim=16)
# Encodings (with options) that depend on |i - j| only, or on nothing: with
# mean pooling and no causal mask the classifier is exactly invariant to
# reversing a sequence (posenc.encodings.attention.Alibi's docstring).
REVERSAL_INVARIANT = {('none', 'symmetric'), ('alibi', 'symmetric'),
                      ('kerple', 'symmetric')}
# Reversal, padding and random positions are 1-D notions: the sequence
# encodings (the grid ones: tests/grid_test.py).
VARIANTS = ([(name, 'symmetric') for name in encodings.sequence_names()] +
            [('alibi', 'directional')])
# Directional ALiBi is refused under a causal mask (tests/validate_test.py).
CAUSAL_VARIANTS = [v for v in VARIANTS if v[1] == 'symmetric']


def _model(**changes):
  cfg = dataclasses.replace(SMALL, **changes)
  return models.EncoderClassifier(cfg, num_classes=3)


def _reverse_real_steps(x, lengths):
  """Reverses the first lengths[b] steps of each row, padding kept last."""
  out = np.array(x)
  for b, n in enumerate(lengths):
    out[b, :n] = out[b, :n][::-1]
  return out


def _init(model, x, mask=None):
  # Kerple's and FIRE's biases start near zero or flat: perturb every
  # parameter so that each encoding acts with some strength.
  params = model.init(jax.random.key(0), x, mask=mask, train=False)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  return jax.tree.unflatten(tree, [
      p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize('posemb,mode', VARIANTS)
def test_reversal_invariance_exactly_where_the_encoding_is_symmetric(
    posemb, mode):
  lengths = [8, 5, 8]
  x = np.asarray(jax.random.normal(jax.random.key(2), (3, 8, 4)))
  mask = jnp.arange(8)[None] < jnp.array(lengths)[:, None]
  x = np.where(mask[..., None], x, 0.0)
  model = _model(posemb=posemb, alibi_mode=mode)
  params = _init(model, x, mask)
  logits = model.apply(params, x, mask=mask, train=False)[0]
  reversed_logits = model.apply(params, _reverse_real_steps(x, lengths),
                                mask=mask, train=False)[0]
  gap = float(jnp.abs(logits - reversed_logits).max())
  if (posemb, mode) in REVERSAL_INVARIANT:
    assert gap < 1e-5
  else:
    assert gap > 1e-3
  # A causal mask tells left from right for every encoding.
  if mode == 'symmetric':
    causal = _model(posemb=posemb, causal=True, pooling='last')
    params = _init(causal, x, mask)
    gap = float(jnp.abs(
        causal.apply(params, x, mask=mask, train=False)[0] -
        causal.apply(params, _reverse_real_steps(x, lengths), mask=mask,
                     train=False)[0]).max())
    assert gap > 1e-3


def test_reversal_flips_the_label_of_before():
  """So on 'before' a reversal-invariant classifier is at chance: it gives x
  and its reverse the same class, one of which is wrong."""
  config = posenc_config.get_config()
  config.data.name = 'before'
  config.data.num_train, config.data.num_eval = 64, 256
  source = data.get('before')
  dataset = data.load(config.data, 0)
  inputs = dataset.eval['inputs'][:, ::-1].copy()
  n, length = inputs.shape[:2]
  relabelled = source.labels(config.data, np.random.default_rng(0), inputs,
                             np.ones((n, length), bool), np.full(n, length))
  np.testing.assert_array_equal(relabelled, 1 - dataset.eval['labels'])


@pytest.mark.parametrize('posemb,mode', CAUSAL_VARIANTS)
def test_causal_steps_do_not_see_later_steps(posemb, mode):
  del mode  # Symmetric: the option of alibi alone.
  model = _model(posemb=posemb, causal=True, pooling='last')
  x = jax.random.normal(jax.random.key(3), (2, 8, 4))
  params = _init(model, x)
  changed = x.at[:, 5:].set(jax.random.normal(jax.random.key(4), (2, 3, 4)))
  hidden = model.apply(params, x, train=False)[1]['hidden']
  hidden_changed = model.apply(params, changed, train=False)[1]['hidden']
  np.testing.assert_allclose(hidden[:, :, :5], hidden_changed[:, :, :5],
                             atol=1e-5)
  assert float(jnp.abs(hidden[-1, :, 5:] - hidden_changed[-1, :, 5:]).max()) > 1e-3


@pytest.mark.parametrize('posemb,mode,causal',
                         [(*v, False) for v in VARIANTS] +
                         [(*v, True) for v in CAUSAL_VARIANTS])
def test_fused_attention_matches_einsum(posemb, mode, causal):
  lengths = jnp.array([8, 6])
  x = jax.random.normal(jax.random.key(5), (2, 8, 4))
  mask = jnp.arange(8)[None] < lengths[:, None]
  pooling = 'last' if causal else 'cls'
  einsum = _model(posemb=posemb, alibi_mode=mode, causal=causal,
                  pooling=pooling)
  fused = _model(posemb=posemb, alibi_mode=mode, causal=causal,
                 pooling=pooling, attention='fused')
  params = _init(einsum, x, mask)
  np.testing.assert_allclose(
      einsum.apply(params, x, mask=mask, train=False)[0],
      fused.apply(params, x, mask=mask, train=False)[0], rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize('posemb', [p for p in encodings.sequence_names()
                                    if encodings.get(p).uses_positions])
def test_explicit_positions_without_training(posemb):
  """Given positions are used as given, in training (instead of a draw) and
  in evaluation alike; `0..L-1` given explicitly is the default."""
  model = _model(posemb=posemb, posemb_randomized=True, max_len=24)
  x = jax.random.normal(jax.random.key(6), (2, 8, 4))
  lengths = jnp.array([8, 5])
  mask = jnp.arange(8)[None] < lengths[:, None]
  params = _init(model, x, mask)
  positions = encodings.random_positions(jax.random.key(7), 2, 8, 24, lengths)
  trained = model.apply(params, x, mask=mask, positions=positions,
                        train=True, rngs={'positions': jax.random.key(0)})[0]
  given = model.apply(params, x, mask=mask, positions=positions,
                      train=False)[0]
  np.testing.assert_array_equal(trained, given)
  default = model.apply(params, x, mask=mask, train=False)[0]
  explicit = model.apply(params, x, mask=mask, train=False,
                         positions=encodings.default_positions(2, 8))[0]
  np.testing.assert_allclose(default, explicit, atol=1e-6)
  assert float(jnp.abs(default - given).max()) > 1e-4


@pytest.mark.parametrize('posemb', encodings.sequence_names())
def test_last_pooling_reads_the_last_real_step(posemb):
  model = _model(posemb=posemb, causal=True, pooling='last')
  x = jax.random.normal(jax.random.key(8), (2, 6, 4))
  garbage = 50.0 * jax.random.normal(jax.random.key(9), (2, 3, 4))
  mask = jnp.array([[True] * 6 + [False] * 3] * 2)
  params = _init(model, x)
  plain = model.apply(params, x, train=False)[0]
  padded = model.apply(params, jnp.concatenate([x, garbage], 1), mask=mask,
                       train=False)[0]
  np.testing.assert_allclose(plain, padded, atol=1e-5)
