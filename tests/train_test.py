"""Tests of posenc.train: the pure step, its sharded and pmapped forms, eval."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc import parallel
from posenc import train


def _small_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.num_train = 64
  config.data.num_eval = 40
  config.model.d_model = 16
  config.model.num_heads = 2
  config.model.mlp_dim = 32
  config.train.batch_size = 16
  return config


def _setup(config, mode='jit', devices=None):
  dataset = data.load(config.data, config.seed)
  model = train.make_model(config, dataset)
  state = train.create_train_state(jax.random.key(0), config, model,
                                   dataset.example_inputs())
  parallel = train.make_parallel(mode, model.apply, devices)
  return dataset, model, state, parallel


def _run_steps(config, mode, devices, num_steps=3):
  """(host state, host metrics, the jit cache's size after each step).

  The cache is jax's for `train.train_step`, shared with other tests in the
  process that jit it: only its growth after the first step is this run's.
  """
  dataset, _, state, parallel = _setup(config, mode, devices)
  state = parallel.place_state(state)
  batches = data.train_batches(dataset.train, config.train.batch_size,
                               np.random.default_rng(0))
  cache_sizes = []
  for _, batch in zip(range(num_steps), batches):
    state, metrics = parallel.step(state, parallel.place_batch(batch),
                                   jax.random.key(1))
    if mode == 'jit':
      cache_sizes.append(parallel.step._cache_size())  # pylint: disable=protected-access
  return (parallel.host_state(state), parallel.host_metrics(metrics),
          cache_sizes)


def test_loss_falls_on_a_fixed_batch():
  config = _small_config()
  dataset, _, state, parallel = _setup(config, devices=jax.devices()[:1])
  batch = parallel.place_batch(
      {k: v[:16] for k, v in dataset.train.items()})
  state = parallel.place_state(state)
  losses = []
  for _ in range(40):
    state, metrics = parallel.step(state, batch, jax.random.key(1))
    losses.append(parallel.host_metrics(metrics)['train_loss'])
  assert losses[-1] < 0.5 * losses[0], losses


def test_sharded_step_matches_one_device():
  assert jax.device_count() == 8
  config = _small_config()
  one, m_one, _ = _run_steps(config, 'jit', jax.devices()[:1])
  eight, m_eight, cache_sizes = _run_steps(config, 'jit', jax.devices())
  assert jax.tree.structure(one.params) == jax.tree.structure(eight.params)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4,
                                 atol=1e-5), one.params, eight.params)
  np.testing.assert_allclose(m_one['train_loss'], m_eight['train_loss'],
                             rtol=1e-5)
  # The parameters moved: the comparison is not between two initial states.
  _, _, init, _ = _setup(config)
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()),
                       init.params, eight.params)
  assert max(jax.tree.leaves(moved)) > 1e-3
  # Three steps, one compilation: placement never triggers a retrace.
  assert len(cache_sizes) == 3 and len(set(cache_sizes)) == 1, cache_sizes


def test_pmapped_step_matches_jitted_step():
  config = _small_config()
  jitted, m_jit, _ = _run_steps(config, 'jit', jax.devices())
  pmapped, m_pmap, _ = _run_steps(config, 'pmap', jax.devices())
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4,
                                 atol=1e-5), jitted.params, pmapped.params)
  assert int(pmapped.step) == int(jitted.step) == 3
  np.testing.assert_allclose(m_jit['train_accuracy'],
                             m_pmap['train_accuracy'], rtol=1e-6)


def test_dropout_key_is_folded_with_the_step():
  config = _small_config()
  config.model.dropout_rate = 0.5
  dataset, _, state, _ = _setup(config)
  batch = {k: v[:16] for k, v in dataset.train.items()}
  step = jax.jit(train.train_step)
  a, _ = step(state, batch, jax.random.key(1))
  b, _ = step(state, batch, jax.random.key(1))
  c, _ = step(state, batch, jax.random.key(2))
  leaf = lambda s: s.params['head']['kernel']
  np.testing.assert_array_equal(leaf(a), leaf(b))
  assert not np.array_equal(leaf(a), leaf(c))


def test_evaluate_is_exact_over_a_padded_last_batch():
  config = _small_config()  # 40 eval examples, batches of 16: 16 + 16 + 8.
  dataset, model, state, par = _setup(config)
  state = par.place_state(state)
  got = parallel.evaluate(par.eval_fn, par.place_eval_batch,
                          par.eval_params(state), dataset.eval, 16)
  params = par.host_state(state).params
  logits, _ = model.apply({'params': params}, dataset.eval['inputs'],
                          train=False)
  labels = dataset.eval['labels']
  loss = -jax.nn.log_softmax(logits)[np.arange(40), labels].mean()
  np.testing.assert_allclose(got['eval_loss'], loss, rtol=1e-5)
  np.testing.assert_allclose(got['eval_accuracy'],
                             (logits.argmax(-1) == labels).mean(), rtol=1e-6)


@pytest.mark.parametrize('mode', ['jit', 'pmap'])
def test_train_and_evaluate_writes_the_workdir(tmp_path, mode):
  config = _small_config()
  config.train.parallel = mode
  config.train.num_epochs = 2
  config.train.log_every_steps = 3
  summary = train.train_and_evaluate(config, tmp_path)
  assert summary['step'] == 8
  assert (tmp_path / 'config.json').exists()
  assert list((tmp_path / 'checkpoints').iterdir())
  assert 0.0 <= summary['eval_accuracy'] <= 1.0


def test_non_finite_loss_stops_with_the_step(tmp_path):
  config = _small_config()
  config.train.learning_rate = 1e30
  config.train.num_epochs = 20
  config.train.log_every_steps = 1
  with pytest.raises(FloatingPointError, match=r'non-finite metrics at step'):
    train.train_and_evaluate(config, tmp_path)


def _trajectory(config, num_steps=6):
  """Per-step train losses and final parameters, 1 device, fixed batches."""
  dataset, model, state, _ = _setup(config)
  batches = data.train_batches(dataset.train, config.train.batch_size,
                               np.random.default_rng(0))
  step = jax.jit(train.train_step)
  losses = []
  for _, batch in zip(range(num_steps), batches):
    state, metrics = step(state, batch, jax.random.key(1))
    losses.append(float(metrics['train_loss']))
  return np.array(losses), state.params, model


def _options_config() -> ml_collections.ConfigDict:
  config = _small_config()
  config.data.min_seq_len = 4  # Padded batches: attention sees a mask...
  config.model.posemb = 'alibi'  # ...and a bias.
  config.model.dropout_rate = 0.1
  return config


@pytest.fixture(scope='module')
def plain_trajectory():
  return _trajectory(_options_config())


@pytest.mark.parametrize('option, value, rtol', [
    ('remat', True, 0.0),  # Same arithmetic, recomputed.
    ('matmul_dtype', 'bfloat16', 2e-3),
    ('attention', 'fused', 1e-5),
])
def test_speed_options_follow_the_plain_loss_trajectory(plain_trajectory,
                                                        option, value, rtol):
  plain_losses, plain_params, _ = plain_trajectory
  config = _options_config()
  config.model[option] = value
  losses, params, model = _trajectory(config)
  assert plain_losses[-1] < plain_losses[0] - 0.05  # Training moves.
  np.testing.assert_allclose(losses, plain_losses, rtol=rtol)
  if option == 'matmul_dtype':  # Active: not bit-identical to float32...
    assert not np.array_equal(losses, plain_losses)
    # ...while parameters and Adam's state stay float32.
    assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype('float32')}
  if option == 'remat':  # Active: the gradient's program recomputes.
    dummy = jnp.zeros((2, config.data.seq_len, config.data.n_features))
    grad = jax.grad(lambda p: model.apply({'params': p}, dummy,
                                          train=False)[0].sum())
    assert 'remat' in str(jax.make_jaxpr(grad)(params))
    jax.tree.map(np.testing.assert_array_equal, params, plain_params)
