"""End to end: the command line, as a user runs it, on one CPU device."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from posenc import allocator

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'learned.py'


def _run(cwd, *flags, config=CONFIG, timeout=300):
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': ''}
  return subprocess.run(
      [sys.executable, '-m', 'posenc.main', f'--config={config}', *flags],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
      check=False)


def _read_jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_default_config_learns_the_task_and_fills_the_workdir(tmp_path):
  result = _run(tmp_path)  # No --workdir: runs/<config stem> under the cwd.
  assert result.returncode == 0, result.stderr[-3000:]
  workdir = tmp_path / 'runs' / 'learned'

  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['eval_accuracy'] >= 0.95, summary
  assert 'Done:' in result.stderr and 'eval_accuracy=' in result.stderr

  config = json.loads((workdir / 'config.json').read_text())
  assert config['model']['posemb'] == 'learned'
  assert config['data']['seq_len'] == 10
  assert config['train']['num_epochs'] == 5

  records = _read_jsonl(workdir / 'metrics.jsonl')
  assert all('step' in r for r in records)
  evals = [r for r in records if 'eval_accuracy' in r]
  trains = [r for r in records if 'train_loss' in r]
  assert len(evals) == 5 and all('eval_loss' in r for r in evals)
  assert trains and all('train_accuracy' in r for r in trains)
  assert evals[-1]['eval_accuracy'] == summary['eval_accuracy']
  assert trains[-1]['step'] == summary['step']

  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  assert (workdir / 'checkpoints' / str(summary['step'])).is_dir()


# Every encoding's config from the command line, with a quarter of its
# training data to keep the suite short (eval_accuracy measured at seed 0:
# sinusoidal 0.918, rope 0.751, alibi 0.539, learned_every_layer 0.912,
# fire 0.639, kerple 0.307; chance 0.1). relative stays at chance until its
# full 16,384 sequences (10 epochs, where it passes 0.9): here, on 1,024, it
# only has to train and stay finite; none is at chance by invariance,
# whatever its training. Full-length results are in the configs'
# docstrings and the README.
@pytest.mark.parametrize('name,num_train,minimum', [
    ('sinusoidal', 4096, 0.8), ('rope', 4096, 0.65), ('alibi', 4096, 0.4),
    ('relative', 1024, 0.0), ('learned_every_layer', 4096, 0.8),
    ('fire', 4096, 0.45), ('kerple', 4096, 0.2), ('none', 1024, None)])
def test_every_encoding_config_trains_from_the_cli(tmp_path, name, num_train,
                                                   minimum):
  result = _run(REPO, f'--workdir={tmp_path}',
                f'--config.data.num_train={num_train}',
                config=REPO / 'configs' / f'{name}.py')
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  if minimum is None:  # Permutation-invariant: chance is 1 / 10.
    assert abs(summary['eval_accuracy'] - 0.1) <= 0.05, summary
  else:
    assert summary['eval_accuracy'] >= minimum, summary


# The encodings and options of [encodings-2] on 'before' from the command
# line, shortened (2,048 sequences, 1 epoch): each trains, and its
# checkpoint evaluates at twice the training length. Full-length numbers:
# `python -m experiments.encodings_table` (docs/results.md).
@pytest.mark.parametrize('flags,eval_flags', [
    (['--config.model.posemb=alibi', '--config.model.alibi_mode=directional'],
     []),
    (['--config.model.posemb=fire'], []),
    (['--config.model.posemb=kerple', '--config.model.causal=True',
      '--config.model.pooling=last'], []),
    (['--config.model.posemb=rope'], ['--config.model.rope_scaling=yarn']),
    (['--config.model.posemb=rope', '--config.model.rope_scaling=ntk'], []),
    (['--config.model.posemb=rope', '--config.model.rope_scaling=linear',
      '--config.model.rope_scaling_factor=2.0'], []),
])
def test_new_encodings_train_and_evaluate_twice_as_long(tmp_path, flags,
                                                        eval_flags):
  base = ['--config.data.num_train=2048', '--config.train.num_epochs=1',
          f'--workdir={tmp_path}', *flags]
  config = REPO / 'configs' / 'before.py'
  result = _run(REPO, *base, config=config)
  assert result.returncode == 0, result.stderr[-3000:]
  result = _run(REPO, *base, *eval_flags, '--mode=eval',
                '--config.data.eval_seq_len=20', config=config)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  [record] = _read_jsonl(tmp_path / 'eval.jsonl')
  assert record['eval_seq_len'] == 20
  assert np.isfinite([summary['eval_loss'], record['eval_loss']]).all()


def test_randomized_positions_evaluate_beyond_the_training_length(tmp_path):
  # Measured: 0.913 at length 10 (as trained; Ruoss et al.'s protocol,
  # 4 draws), 0.883 at length 40.
  config = REPO / 'configs' / 'learned_randomized.py'
  result = _run(REPO, f'--workdir={tmp_path}', config=config)
  assert result.returncode == 0, result.stderr[-3000:]
  for length in (10, 40):
    result = _run(REPO, f'--workdir={tmp_path}', '--mode=eval',
                  f'--config.data.eval_seq_len={length}', config=config)
    assert result.returncode == 0, result.stderr[-3000:]
  records = _read_jsonl(tmp_path / 'eval.jsonl')
  assert [r['eval_seq_len'] for r in records] == [10, 40]
  assert all(r['posemb_resample'] == 'none' for r in records)
  # At length 40 every draw is 0..39: one evaluation.
  assert [r['randomized_eval_draws'] for r in records] == [4, 1]
  assert all(r['eval_accuracy'] >= 0.85 for r in records), records


def test_learned_table_is_resampled_for_longer_eval(tmp_path):
  base = ['--config.data.name=before', '--config.data.num_train=2048',
          '--config.train.num_epochs=1', f'--workdir={tmp_path}']
  assert _run(REPO, *base).returncode == 0
  too_long = _run(REPO, *base, '--mode=eval', '--config.data.eval_seq_len=20')
  assert too_long.returncode != 0
  assert ('data.eval_seq_len=20 is longer than the learned table '
          '(model.max_len=10)') in too_long.stderr
  # One method from the command line ('nearest' is in encodings_test).
  result = _run(REPO, *base, '--mode=eval', '--config.data.eval_seq_len=20',
                '--config.model.posemb_resample=linear')
  assert result.returncode == 0, result.stderr[-3000:]
  records = _read_jsonl(tmp_path / 'eval.jsonl')
  assert [r['posemb_resample'] for r in records] == ['linear']
  assert all(r['eval_seq_len'] == 20 and 0 <= r['eval_accuracy'] <= 1
             for r in records)


def test_overrides_reach_the_resolved_config(tmp_path):
  result = _run(REPO, f'--workdir={tmp_path}', '--config.model.d_model=32',
                '--config.data.num_train=256', '--config.train.num_epochs=1',
                '--config.train.allocator=tcmalloc')
  assert result.returncode == 0, result.stderr[-3000:]
  if allocator.find_tcmalloc():  # The process restarted with it preloaded.
    assert 'restarting with LD_PRELOAD' in result.stderr
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['model']['d_model'] == 32
  assert json.loads((tmp_path / 'summary.json').read_text())['step'] == 8


@pytest.mark.parametrize('flag,message', [
    ('--config.model.posemb=rotary',
     "model.posemb='rotary' is not valid; valid values: learned, sinusoidal, "
     'none, rope, alibi, relative, learned_every_layer, fire, kerple, '
     'sincos2d, learned2d, rope2d.'),
    ('--config.model.num_heads=3',
     'model.d_model=64 is not divisible by model.num_heads=3'),
])
def test_bad_config_fails_before_anything_is_written(tmp_path, flag, message):
  workdir = tmp_path / 'never'
  result = _run(REPO, f'--workdir={workdir}', flag)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()


def test_mnist1d_reports_test_accuracy_above_the_published_mlp(tmp_path):
  # configs/mnist1d.py shortened to 2 blocks and 15 epochs: about 25 s,
  # measured 0.783 (the full config: 0.949). The published MLP row is 0.68.
  result = _run(REPO, f'--workdir={tmp_path / "run"}',
                f'--config.data.cache_dir={tmp_path / "cache"}',
                '--config.model.num_layers=2', '--config.train.num_epochs=15',
                config=REPO / 'configs' / 'mnist1d.py')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'test_accuracy=' in result.stderr
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert summary['test_accuracy'] >= 0.68, summary
  tests = [r for r in _read_jsonl(tmp_path / 'run' / 'metrics.jsonl')
           if 'test_accuracy' in r]
  assert len(tests) == 1 and tests[0]['step'] == summary['step']
  assert list((tmp_path / 'cache').glob('mnist1d-*.npz'))
