"""posenc.memory: exact parameter counts, an estimate that errs high but not
far (against XLA's own count), and configs that cannot fit refused by name
in well under a second, before anything is written."""

import functools
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc import encodings
from posenc import memory
from posenc import models
from posenc import train
from posenc import validate

REPO = pathlib.Path(__file__).resolve().parents[1]
ONE_DEVICE = jax.devices()[:1]


def _config(**fields):
  config = default.get_config()
  for field, value in fields.items():
    group, name = field.split('__')
    config[group][name] = value
  return config


def _real_count(m, *, num_classes, in_features=None, vocab_size=None):
  model = models.EncoderClassifier(m, num_classes=num_classes,
                                   vocab_size=vocab_size)
  shape = (1, m.max_len) if vocab_size else (1, m.max_len, in_features)
  inputs = jax.ShapeDtypeStruct(shape, jnp.int32 if vocab_size else
                                jnp.float32)
  params = jax.eval_shape(functools.partial(train.init_params, model=model),
                          jax.random.key(0), inputs=inputs)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


# posenc's own entries (tests may register and remove others).
@pytest.mark.parametrize('posemb', [
    n for n in encodings.names()
    if type(encodings.get(n)).__module__.startswith('posenc.')])
def test_parameter_count_is_exact_for_every_encoding(posemb):
  m = models.ModelConfig(posemb=posemb, max_len=16)  # 16: a 4 x 4 grid.
  assert memory.num_params(m, num_classes=10, max_len=16,
                           in_features=16) == _real_count(
                               m, num_classes=10, in_features=16)


@pytest.mark.parametrize('fields,sizes', [
    (dict(posemb='learned_every_layer', posemb_share=False, num_layers=3,
          max_len=12), dict(num_classes=2, in_features=3)),
    (dict(posemb='relative', pooling='cls', num_heads=8,
          relative_num_buckets=16, max_len=40),
     dict(num_classes=10, vocab_size=21)),
    (dict(posemb='learned', d_model=48, num_heads=3, mlp_dim=100,
          num_layers=1, max_len=37), dict(num_classes=37, in_features=1)),
    (dict(posemb='rope', pooling='cls', d_model=32, num_layers=4,
          max_len=8), dict(num_classes=5, vocab_size=7)),
])
def test_parameter_count_is_exact_for_other_shapes(fields, sizes):
  m = models.ModelConfig(**fields)
  assert memory.num_params(m, max_len=m.max_len, **sizes) == _real_count(
      m, **sizes)


def test_every_shipped_config_fits():
  for path in sorted((REPO / 'configs').glob('*.py')):
    config = default.load_file(path).get_config()
    total = sum(memory.estimate(config).values())
    assert total < 2 * memory.GIB, (path.name, memory.estimate(config))
    memory.check(config)
    memory.check(config, evaluating=True)


def _xla_bytes(config):
  """XLA's count for one train step: arguments and temporary buffers."""
  dataset = data.load(config.data, config.seed)
  model = train.make_model(config, dataset)
  state = train.create_train_state(jax.random.key(0), config, model,
                                   dataset.example_inputs())
  batch = {k: v[:config.train.batch_size] for k, v in dataset.train.items()}
  step = jax.jit(train.train_step, donate_argnums=0)
  analysis = step.lower(state, batch, jax.random.key(0)).compile(
  ).memory_analysis()
  if analysis is None:
    pytest.skip('no memory analysis on this backend')
  return analysis.temp_size_in_bytes + analysis.argument_size_in_bytes


# Measured (jax 0.10.2, XLA:CPU): XLA 123 MB, estimate 138 MB (1.12x);
# relative with a class token and padding 35 MB, estimate 44 MB.
@pytest.mark.parametrize('fields', [
    dict(data__seq_len=128),
    dict(data__seq_len=64, data__min_seq_len=32, model__posemb='relative',
         model__pooling='cls', model__num_heads=8, model__mlp_dim=512),
    dict(data__seq_len=64, model__posemb='fire'),
    dict(data__seq_len=64, model__posemb='kerple', model__causal=True,
         model__pooling='last'),
    dict(data__seq_len=512, model__posemb='relative', model__causal=True,
         model__pooling='last', model__attention='blocked',
         model__attention_block_size=64),
])
def test_estimate_errs_high_but_not_far_from_xla(fields):
  config = _config(data__num_train=64, data__num_eval=32, **fields)
  parts = memory.estimate(config)
  # The step's share: parameters, gradients and optimizer state on the
  # device (the estimate's host copy aside) and activations.
  estimate = (parts['parameters and optimizer state'] * 3 // 4 +
              parts['activations of one step'])
  xla = _xla_bytes(config)
  assert xla <= estimate <= 2 * xla, (estimate, xla)


HUGE = [('model__num_layers', 1_000_000, 'model.num_layers=1000000'),
        ('data__seq_len', 10**6, 'data.seq_len=1000000'),
        ('data__num_train', 10**9, 'data.num_train=1000000000'),
        ('model__d_model', 10**6, 'model.d_model=1000000')]


@pytest.mark.parametrize('field,value,named', HUGE)
def test_what_cannot_fit_is_refused_at_once_naming_the_field(
    tmp_path, field, value, named):
  workdir = tmp_path / 'run'
  config = _config(**{field: value})
  start = time.perf_counter()
  with pytest.raises(ValueError) as error:
    train.train_and_evaluate(config, workdir, devices=ONE_DEVICE)
  assert time.perf_counter() - start < 1.0
  message = str(error.value)
  assert f'most of it comes from {named}' in message, message
  assert 'GiB of memory' in message and 'valid: e.g.' in message, message
  assert not workdir.exists()


def test_suggested_value_fits_and_one_more_does_not():
  config = _config(model__num_layers=1_000_000)
  with pytest.raises(ValueError, match=r'model.num_layers <= (\d+)\.') as e:
    memory.check(config)
  largest = int(str(e.value).rsplit('<= ', 1)[1].rstrip('.'))
  config.model.num_layers = largest
  memory.check(config)
  config.model.num_layers = largest + 1
  with pytest.raises(ValueError):
    memory.check(config)


def test_memory_limit_is_configurable_and_named():
  config = _config(data__seq_len=512, data__num_train=1024)
  memory.check(config)  # Fits this machine...
  config.train.memory_limit_gib = 1.0  # ...but not 1 GiB.
  with pytest.raises(ValueError, match=r'more than the 1.00 GiB of '
                     r'train.memory_limit_gib=1.0; most of it comes from '
                     r'data.seq_len=512; valid: e.g. data.seq_len <= \d+'):
    validate.check_config(config, num_devices=1)
  with pytest.raises(ValueError, match=r'even with default sizes.*valid: '
                     r'train.memory_limit_gib of at least 0.5'):
    memory.check(_config(train__memory_limit_gib=0.1))  # < the runtime.


def test_longer_eval_is_checked_when_evaluating():
  config = _config(data__name='before', model__posemb='sinusoidal',
                   data__eval_seq_len=100_000)
  with pytest.raises(ValueError, match=r'data.eval_seq_len=100000'):
    validate.check_config(config, num_devices=1, evaluating=True)


def _own_dataset(seq_len):
  rng = np.random.default_rng(0)
  x = rng.standard_normal((64, seq_len, 2)).astype(np.float32)
  y = rng.integers(0, 2, 64).astype(np.int32)
  return data.Dataset.from_arrays(train=(x, y), eval=(x, y)), x, y


def test_own_arrays_are_checked_once_loaded():
  # Your own arrays (and 'npz', whose lengths only the file knows) are
  # checked in check_dataset, with their real shapes.
  config = _config(train__memory_limit_gib=4.0)
  dataset, x, y = _own_dataset(600)
  assert memory.estimate(config, dataset)['data arrays'] == 2 * 2 * (
      x.nbytes + y.nbytes)
  validate.check_dataset(config, dataset)
  config.model.num_layers = 30
  with pytest.raises(ValueError, match=r'most of it comes from '
                     r'model.num_layers=30; valid: e.g. model.num_layers <= '):
    validate.check_dataset(config, dataset)
  config.model.num_layers = 2
  with pytest.raises(ValueError, match=r'the given data \(sequences of 3000 '
                     r'steps.*even with the default sizes of model.\* and '
                     r'train.\*; valid: shorter sequences'):
    validate.check_dataset(config, _own_dataset(3000)[0])


def test_command_line_refuses_without_traceback(tmp_path):
  workdir = tmp_path / 'never'
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': ''}
  result = subprocess.run(
      [sys.executable, '-m', 'posenc.main',
       f'--config={REPO / "configs" / "learned.py"}', f'--workdir={workdir}',
       '--config.model.num_layers=1000000'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode != 0
  assert 'Invalid config: the run needs about' in result.stderr
  assert 'model.num_layers=1000000' in result.stderr
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()


def test_suggested_d_model_splits_into_the_heads():
  config = _config(model__d_model=10**6)
  with pytest.raises(ValueError, match=r'model.d_model <= (\d+)\.') as e:
    memory.check(config)
  largest = int(str(e.value).rsplit('<= ', 1)[1].rstrip('.'))
  assert largest % config.model.num_heads == 0, largest
  config.model.d_model = largest
  memory.check(config)
  validate.check_config(config, 1)
