"""`--mode=eval` evaluates only what the workdir trained: its config.json is
compared with the eval config (`validate.check_eval`), which may differ only
in `validate.EVAL_CHANGES`; anything else, the data's fingerprint included,
is refused by name before anything is written."""

import ast
import json
import os
import pathlib
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc import evaluation
from posenc import train
from posenc import validate

REPO = pathlib.Path(__file__).resolve().parents[1]
ONE_DEVICE = jax.devices()[:1]
# The documented commands, shortened: 32 steps.
SHORT = ('--config.data.num_train=1024', '--config.train.num_epochs=1')


def _cli(*args):
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': ''}
  return subprocess.run([sys.executable, '-m', 'posenc.main', *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300, check=False)


def _documented_commands():
  """The posenc.main docstring's commands on configs/before.py, as
  argument lists (without `python -m posenc.main`)."""
  doc = ast.get_docstring(ast.parse(
      (REPO / 'posenc' / 'main.py').read_text()))
  text = doc.replace('\\\n', ' ')
  commands = [shlex.split(line.strip()) for line in text.splitlines()
              if line.strip().startswith('python -m posenc.main')]
  return [c[3:] for c in commands if '--config=configs/before.py' in c]


def _with_workdir(args, workdir):
  return [f'--workdir={workdir}' if a.startswith('--workdir=') else a
          for a in args]


def _before_config():
  config = default.load_file(REPO / 'configs' / 'before.py').get_config()
  config.data.num_train, config.train.num_epochs = 1024, 1
  return config


@pytest.fixture(scope='module')
def before_run(tmp_path_factory):
  """The docstring's training command, shortened, from the command line."""
  train_cmd, _ = _documented_commands()
  workdir = tmp_path_factory.mktemp('before') / 'run'
  result = _cli(*_with_workdir(train_cmd, workdir), *SHORT)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _lines(path):
  return path.read_text().splitlines() if path.exists() else []


def test_the_documented_eval_command_works(before_run):
  train_cmd, eval_cmd = _documented_commands()
  assert '--mode=eval' in eval_cmd and '--mode=eval' not in train_cmd
  result = _cli(*_with_workdir(eval_cmd, before_run), *SHORT)
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.loads(_lines(before_run / 'eval.jsonl')[-1])
  assert record['eval_seq_len'] == 20 and record['train_seq_len'] == 10
  assert record['posemb_resample'] == 'linear'
  assert record['step'] == 32 and 0 <= record['eval_accuracy'] <= 1


def test_the_old_example_is_refused_naming_the_task(tmp_path):
  # The example as it was: configs/learned.py trains 'argmax'; evaluating
  # its checkpoint on 'before' appended an accuracy for the wrong task.
  config = default.load_file(REPO / 'configs' / 'learned.py').get_config()
  config.data.num_train, config.train.num_epochs = 1024, 1
  train.train_and_evaluate(config, tmp_path, devices=ONE_DEVICE)
  result = _cli('--config=configs/learned.py', f'--workdir={tmp_path}',
                '--mode=eval', '--config.data.name=before',
                '--config.data.eval_seq_len=20',
                '--config.model.posemb_resample=linear', *SHORT)
  assert result.returncode != 0
  assert 'Invalid config: ' in result.stderr
  assert "data.name: 'argmax' in the workdir, 'before' now" in result.stderr
  assert 'Traceback' not in result.stderr
  assert not (tmp_path / 'eval.jsonl').exists()


@pytest.mark.parametrize('field,value,message', [
    ('model.d_model', 32, 'model.d_model: 64 in the workdir, 32 now'),
    ('model.posemb', 'none', "model.posemb: 'learned' in the workdir, 'none' "
     'now'),
    ('data.name', 'argmax', "data.name: 'before' in the workdir, 'argmax' "
     'now'),
    ('seed', 1, 'seed: 0 in the workdir, 1 now'),
    ('data.num_eval', 100, 'data.num_eval: 2048 in the workdir, 100 now'),
    ('train.optimizer', 'sgd', "train.optimizer: 'adam' in the workdir, "
     "'sgd' now"),
    ('model.matmul_dtype', 'bfloat16', 'model.matmul_dtype'),
])
def test_other_models_and_data_are_refused_by_name(before_run, field, value,
                                                   message):
  config = _before_config()
  *groups, name = field.split('.')
  (config[groups[0]] if groups else config)[name] = value
  before = _lines(before_run / 'eval.jsonl')
  with pytest.raises(ValueError, match='holds a run trained with another '
                     'config') as error:
    evaluation.evaluate_checkpoint(config, before_run)
  assert message in str(error.value)
  assert 'changing only: data.eval_seq_len, model.posemb_resample' in str(
      error.value)
  assert _lines(before_run / 'eval.jsonl') == before  # Nothing written.


def test_what_evaluation_may_change_is_accepted(before_run, tmp_path):
  config = _before_config()
  reference = evaluation.evaluate_checkpoint(config, before_run)
  config.train.batch_size = 64  # Evaluates in other batches...
  config.train.num_epochs = 9  # ...and what acts only in training.
  config.train.learning_rate = 1.0
  config.train.log_every_steps = 3
  config.train.parallel = 'pmap'
  config.model.dropout_rate = 0.3
  config.train.memory_limit_gib = 16.0
  config.data.cache_dir = str(tmp_path / 'cache')
  config.model.remat = True
  assert {'train.batch_size', 'train.num_epochs', 'train.learning_rate',
          'train.log_every_steps', 'train.parallel', 'model.dropout_rate',
          'train.memory_limit_gib', 'data.cache_dir', 'model.remat'} <= set(
              validate.EVAL_CHANGES)
  record = evaluation.evaluate_checkpoint(config, before_run)
  assert record['eval_accuracy'] == reference['eval_accuracy']
  np.testing.assert_allclose(record['eval_loss'], reference['eval_loss'],
                             rtol=1e-6)


def _npz(path, seed):
  rng = np.random.default_rng(seed)
  arrays = {f'{split}_{key}': value for split, n in (('train', 64),
                                                      ('eval', 32))
            for key, value in (('inputs', rng.standard_normal(
                (n, 6, 3)).astype(np.float32)),
                               ('labels', rng.integers(0, 2, n)))}
  np.savez(path, **arrays)


def _npz_config(path):
  config = default.get_config()
  config.data.name, config.data.path = 'npz', str(path)
  config.train.batch_size, config.train.num_epochs = 16, 1
  return config


def test_other_data_in_the_same_file_is_refused(tmp_path):
  path, workdir = tmp_path / 'mine.npz', tmp_path / 'run'
  _npz(path, seed=0)
  train.train_and_evaluate(_npz_config(path), workdir, devices=ONE_DEVICE)
  evaluation.evaluate_checkpoint(_npz_config(path), workdir)
  _npz(path, seed=1)  # Same path, other arrays.
  with pytest.raises(ValueError, match=r"data_sha256: '[0-9a-f]{64}' in the "
                     r"workdir, '[0-9a-f]{64}' now"):
    evaluation.evaluate_checkpoint(_npz_config(path), workdir)
  assert len(_lines(workdir / 'eval.jsonl')) == 1


def test_a_run_on_own_arrays_is_not_evaluated_on_generated_data(tmp_path):
  config = default.get_config()
  config.data.num_train, config.data.num_eval = 256, 64
  generated = data.load(config.data, config.seed)
  own = data.Dataset.from_arrays(
      train=(generated.train['inputs'][::-1], generated.train['labels'][::-1]),
      eval=(generated.eval['inputs'], generated.eval['labels']),
      num_classes=generated.num_classes)
  config.train.num_epochs = 1
  train.train_and_evaluate(config, tmp_path, dataset=own, devices=ONE_DEVICE)
  with pytest.raises(ValueError, match=r"data_sha256: '[0-9a-f]{64}' in the "
                     r"workdir, '<absent>' now"):
    evaluation.evaluate_checkpoint(config, tmp_path)
  assert not (tmp_path / 'eval.jsonl').exists()
