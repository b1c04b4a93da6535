"""Extending posenc from outside the package: a new encoding and a new
dataset registered from this file, your own arrays through the API and an
.npz file through the command line, configs loaded from any directory, and
checkpoints written before the registries existed."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from posenc import config as default
from posenc import data
from posenc import encodings
from posenc import evaluation
from posenc import models
from posenc import train

REPO = pathlib.Path(__file__).resolve().parents[1]
ONE_DEVICE = jax.devices()[:1]


class OneHot(encodings.Encoding):
  """Fixed one-hot positions added to the first L features (test only)."""

  name = 'test_onehot'
  acts = frozenset({'inputs'})

  def check(self, config) -> None:
    rows = config.model.max_len or config.data.seq_len
    if config.model.d_model < rows:
      raise ValueError(f'model.d_model={config.model.d_model} is smaller than '
                       f"the {rows} positions of 'test_onehot'.")

  def embed(self, site, x_BxLxD, positions_BxL):
    if positions_BxL is None:
      positions_BxL = encodings.default_positions(*x_BxLxD.shape[:2])
    return x_BxLxD + 3.0 * jax.nn.one_hot(positions_BxL, x_BxLxD.shape[-1])


class FirstVersusLast(data.Source):
  """Label 1 if feature 0 is larger at the first step than at the last
  (test only): invisible without positions."""

  streams = {'test_first_vs_last': 900}

  def check(self, config) -> None:
    if config.data.seq_len < 2:
      raise ValueError(f'data.seq_len={config.data.seq_len} is too short for '
                       "'test_first_vs_last'; valid: at least 2.")

  def load(self, config, seed):
    train_rng, eval_rng, _ = self.split_rngs(config.name, seed)

    def make(rng, n):
      x = rng.standard_normal((n, config.seq_len, config.n_features),
                              dtype=np.float32)
      return {'inputs': x, 'labels': (x[:, 0, 0] > x[:, -1, 0]).astype(
          np.int32)}

    return data.Dataset(train=make(train_rng, config.num_train),
                        eval=make(eval_rng, config.num_eval), num_classes=2)


@pytest.fixture(scope='module', autouse=True)
def _registered():
  """The entries exist while this module's tests run, and only then: other
  test modules see the built-in registries."""
  encodings.register(OneHot())
  data.register(FirstVersusLast())
  yield
  encodings.unregister('test_onehot')
  data.unregister('test_first_vs_last')


def _small(**changes) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.num_train, config.data.num_eval = 2048, 512
  config.model.d_model, config.model.mlp_dim = 32, 64
  config.train.num_epochs = 3
  config.train.log_every_steps = 64
  for field, value in changes.items():
    group, name = field.split('.')
    config[group][name] = value
  return config


def test_registered_encoding_trains_through_the_public_api(tmp_path):
  assert 'test_onehot' in encodings.names()
  summary = train.train_and_evaluate(
      _small(**{'model.posemb': 'test_onehot'}), tmp_path / 'onehot',
      devices=ONE_DEVICE)
  none = train.train_and_evaluate(
      _small(**{'model.posemb': 'none'}), tmp_path / 'none',
      devices=ONE_DEVICE)
  # argmax over 10 positions, chance 0.1; measured: one-hot 0.48 after
  # these 192 steps, none at chance (it is permutation-invariant).
  assert summary['eval_accuracy'] > 0.3
  assert none['eval_accuracy'] < 0.2
  # Its own check runs with the others, naming the field.
  with pytest.raises(ValueError, match='model.d_model=8 is smaller'):
    train.train_and_evaluate(
        _small(**{'model.posemb': 'test_onehot', 'model.d_model': 8,
                  'model.num_heads': 2}), tmp_path / 'small',
        devices=ONE_DEVICE)
  assert not (tmp_path / 'small').exists()


def test_registered_dataset_trains_through_the_public_api(tmp_path):
  config = _small(**{'data.name': 'test_first_vs_last'})
  summary = train.train_and_evaluate(config, tmp_path / 'learned',
                                     devices=ONE_DEVICE)
  # Two classes, chance 0.5; measured 0.93 (learned) and 0.50 (none).
  assert summary['eval_accuracy'] > 0.85
  config.model.posemb = 'none'
  none = train.train_and_evaluate(config, tmp_path / 'none',
                                  devices=ONE_DEVICE)
  assert abs(none['eval_accuracy'] - 0.5) < 0.1
  with pytest.raises(ValueError, match="data.seq_len=1 is too short for "
                     "'test_first_vs_last'"):
    train.train_and_evaluate(_small(**{'data.name': 'test_first_vs_last',
                                       'data.seq_len': 1}), tmp_path / 'x')


def test_registries_refuse_clashes_and_take_a_redefined_class():
  with pytest.raises(ValueError, match="'test_onehot' is registered already"):
    encodings.register(type('Other', (encodings.Encoding,),
                            {'name': 'test_onehot'})())
  # A class defined again (a reloaded module, a notebook cell run twice)
  # replaces its entry.
  again = type('OneHot', (OneHot,), {'__module__': OneHot.__module__,
                                     '__qualname__': OneHot.__qualname__})()
  assert encodings.register(again) is encodings.get('test_onehot')
  encodings.register(OneHot())
  data.register(FirstVersusLast())
  with pytest.raises(ValueError, match='acts .*sideways.* not known'):
    encodings.register(type('Odd', (encodings.Encoding,), {
        'name': 'test_odd', 'acts': frozenset({'sideways'})})())
  with pytest.raises(ValueError, match='has no name'):
    encodings.register(encodings.Encoding())
  with pytest.raises(ValueError, match=r'streams \[0\] are taken'):
    data.register(type('Clash', (data.Source,),
                       {'streams': {'test_clash': 0}})())
  with pytest.raises(ValueError, match="model.posemb='rotary' is not a known "
                     'positional encoding; valid names: learned, '):
    encodings.get('rotary')


def _arrays(n=1200, length=12, features=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, length, features)).astype(np.float32)
  return x, x[:, :, 0].argmax(1)


def test_own_arrays_train_through_the_api_and_resume_checks_them(tmp_path):
  x, y = _arrays()
  dataset = data.Dataset.from_arrays(train=(x[:1000], y[:1000]),
                                     eval=(x[1000:], y[1000:]))
  assert dataset.num_classes == 12 and dataset.vocab_size is None
  config = default.get_config()
  config.train.num_epochs = 8
  summary = train.train_and_evaluate(config, tmp_path, dataset=dataset,
                                     devices=ONE_DEVICE)
  assert summary['eval_accuracy'] > 0.6  # 12 classes; measured 0.86.
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['data_sha256'] == dataset.sha256()
  other = data.Dataset.from_arrays(train=(x[:1000], y[:1000]),
                                   eval=(x[1000:1100], y[1000:1100]))
  with pytest.raises(ValueError, match='data_sha256'):
    train.train_and_evaluate(config, tmp_path, dataset=other,
                             devices=ONE_DEVICE)


@pytest.mark.parametrize('change,message', [
    (lambda s: s['train'].update(labels=s['train']['labels'] + 20),
     r'train_labels holds 20\.\.31; valid: 0\.\.11'),
    (lambda s: s['eval']['inputs'].__setitem__((3, 2, 1), np.nan),
     r'eval_inputs holds NaN or Inf \(first at index \(3, 2, 1\)\)'),
    (lambda s: s['train'].update(mask=np.ones((1000, 5), bool)),
     r'train_mask has shape \(1000, 5\).*valid: bool of shape \(1000, 12\)'),
    (lambda s: s['eval'].update(inputs=s['eval']['inputs'][..., :2]),
     r'different feature shapes'),
    (lambda s: s['train'].update(labels=s['train']['labels'][:10]),
     r'train_labels has shape \(10,\).*\(1000,\)'),
    (lambda s: s['train'].update(inputs=s['train']['inputs'][:, :, 0]),
     r'train_inputs has shape \(1000, 12\).*float features \(N, L, F\)'),
])
def test_malformed_arrays_are_named(change, message):
  x, y = _arrays()
  splits = {'train': {'inputs': x[:1000], 'labels': y[:1000]},
            'eval': {'inputs': x[1000:].copy(), 'labels': y[1000:]}}
  change(splits)
  with pytest.raises(ValueError, match=message):
    data.Dataset.from_arrays(**splits, num_classes=12)


def test_token_arrays_infer_the_vocabulary():
  tokens = np.arange(40).reshape(8, 5) % 7
  labels = np.arange(8) % 3
  dataset = data.Dataset.from_arrays(train=(tokens, labels),
                                     eval=(tokens, labels))
  assert (dataset.vocab_size, dataset.num_classes) == (7, 3)
  assert dataset.train['inputs'].dtype == np.int32
  with pytest.raises(ValueError, match='mix int tokens and float features'):
    data.Dataset.from_arrays(train=(tokens, labels),
                             eval=(tokens.astype(np.float32), labels))


def _cli(cwd, *flags, config=REPO / 'configs' / 'learned.py'):
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['XLA_FLAGS'] = ''
  return subprocess.run(
      [sys.executable, '-m', 'posenc.main', f'--config={config}', *flags],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
      check=False)


def test_npz_file_trains_from_the_cli_in_another_directory(tmp_path):
  x, y = _arrays(n=1400, length=8)
  mask = np.ones(x.shape[:2], bool)
  mask[::2, 6:] = False  # Half the sequences are 6 steps long, padded.
  x[~mask] = 0.0
  y = np.where(mask, x[:, :, 0], -np.inf).argmax(1)
  path = tmp_path / 'mine.npz'
  np.savez(path, train_inputs=x[:1000], train_labels=y[:1000],
           train_mask=mask[:1000], eval_inputs=x[1000:1200],
           eval_labels=y[1000:1200], eval_mask=mask[1000:1200],
           test_inputs=x[1200:], test_labels=y[1200:], test_mask=mask[1200:])
  flags = ('--config.data.name=npz', f'--config.data.path={path}',
           '--config.train.num_epochs=6', '--workdir=work')
  result = _cli(tmp_path, *flags)  # cwd has no configs/ and no posenc/.
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads((tmp_path / 'work' / 'summary.json').read_text())
  assert summary['eval_accuracy'] > 0.6  # 8 classes; measured 0.875.
  assert 'test_accuracy' in summary
  saved = json.loads((tmp_path / 'work' / 'config.json').read_text())
  assert saved['data']['path'] == str(path)
  assert len(saved['data_sha256']) == 64

  np.savez(path, train_inputs=x[:1000], train_labels=y[:1000],
           eval_inputs=x[1000:1200], eval_labels=y[1000:1200])
  changed = _cli(tmp_path, *flags)
  assert changed.returncode != 0
  assert 'data_sha256' in changed.stderr and 'Traceback' not in changed.stderr

  (tmp_path / 'bad.npz').write_bytes(b'not a zip file')
  bad = _cli(tmp_path, '--config.data.name=npz',
             f'--config.data.path={tmp_path / "bad.npz"}', '--workdir=bad')
  assert bad.returncode != 0
  assert 'is not a readable .npz file' in bad.stderr
  assert not (tmp_path / 'bad').exists()


def test_every_config_file_loads_from_another_directory(tmp_path):
  # As the CLI's config flag does: the file imported by its path alone.
  script = ('import sys; from posenc import config as posenc_config\n'
            'for path in sys.argv[1:]:\n'
            '  config = posenc_config.load_file(path).get_config()\n'
            '  print(config.data.name, config.model.posemb)\n')
  paths = sorted(str(p) for p in (REPO / 'configs').glob('*.py'))
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  result = subprocess.run([sys.executable, '-c', script, *paths], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  lines = result.stdout.splitlines()
  assert len(lines) == len(paths)
  assert 'mnist1d_shuffled learned' in lines


def test_model_config_and_base_config_have_the_same_defaults():
  group = default.get_config().model.to_dict()
  assert models.ModelConfig(**group) == models.ModelConfig()
  assert set(group) == set(models.ModelConfig.__dataclass_fields__)


def test_create_train_state_takes_params_and_the_optimizer():
  config = _small()
  dataset = data.load(config.data, 0)
  model = train.make_model(config, dataset)
  inputs = dataset.example_inputs()
  fresh = train.create_train_state(jax.random.key(1), config, model, inputs)
  given = jax.tree.map(lambda p: p + 1.0, fresh.params)
  state = train.create_train_state(jax.random.key(2), config, model, inputs,
                                   params=given)
  jax.tree.map(np.testing.assert_array_equal, state.params, given)
  wrong = dict(given, head={'kernel': jnp.zeros((3, 3)),
                            'bias': given['head']['bias']})
  with pytest.raises(ValueError, match=r"params\['head'\]\['kernel'\] has "
                     r'shape and dtype \(\(3, 3\)'):
    train.create_train_state(jax.random.key(2), config, model, inputs,
                             params=wrong)
  # SGD from the config: one step moves every parameter by -lr * gradient.
  config.train.optimizer = 'sgd'
  state = train.create_train_state(jax.random.key(2), config, model, inputs,
                                   params=given)
  batch = {k: v[:32] for k, v in dataset.train.items()}
  new, _ = train.train_step(state, batch, jax.random.key(0))
  grads = jax.grad(lambda p: optax.softmax_cross_entropy_with_integer_labels(
      model.apply({'params': p}, batch['inputs'], train=True,
                  rngs={'dropout': jax.random.key(0),
                        'positions': jax.random.key(0)})[0],
      batch['labels']).mean())(given)
  jax.tree.map(lambda n, p, g: np.testing.assert_allclose(
      n, p - config.train.learning_rate * g, atol=1e-6),
               new.params, given, grads)


@pytest.mark.parametrize('name', ['learned_every_layer_cls', 'relative'])
def test_checkpoints_from_before_the_registries_still_load(name, tmp_path):
  """tests/testdata/pre_registry holds runs written by the code before the
  encoding and dataset registries (make.py wrote them); rerunning them
  restores the checkpoint and evaluates it to the same numbers."""
  source = REPO / 'tests' / 'testdata' / 'pre_registry' / name
  workdir = tmp_path / name
  shutil.copytree(source, workdir)
  saved = json.loads((source / 'config.json').read_text())
  config = default.get_config()
  for group in ('data', 'model', 'train'):
    config[group].update(saved[group])
  config.seed = saved['seed']
  expected = json.loads((source / 'summary.json').read_text())
  summary = train.train_and_evaluate(config, workdir, devices=ONE_DEVICE)
  assert summary['step'] == expected['step'] == 16
  assert summary['eval_accuracy'] == expected['eval_accuracy']
  np.testing.assert_allclose(summary['eval_loss'], expected['eval_loss'],
                             rtol=1e-6)
  record = evaluation.evaluate_checkpoint(config, workdir)
  assert record['eval_accuracy'] == expected['eval_accuracy']


def test_own_arrays_are_checked_by_their_own_lengths_not_the_config(tmp_path):
  """The config's data group (argmax, seq_len=10, num_train=16384) says
  nothing about given arrays: their lengths and count are what is checked."""
  x, y = _arrays(n=200, length=5)
  dataset = data.Dataset.from_arrays(train=(x[:160], y[:160]),
                                     eval=(x[160:], y[160:]))
  config = default.get_config()
  config.data.num_train = 16  # Not the given data's count: ignored.
  config.model.max_len = 8  # Shorter than data.seq_len=10: fine here.
  config.model.posemb_randomized = True
  config.train.num_epochs = 1
  summary = train.train_and_evaluate(config, tmp_path / 'ok', dataset=dataset,
                                     devices=ONE_DEVICE)
  assert summary['step'] == 160 // 32
  config.model.max_len = 5  # Randomizing over exactly L positions: refused.
  with pytest.raises(ValueError, match=r'max_len=5 must be larger than the '
                     r'training length 5'):
    train.train_and_evaluate(config, tmp_path / 'no', dataset=dataset,
                             devices=ONE_DEVICE)
  assert not (tmp_path / 'no').exists()
