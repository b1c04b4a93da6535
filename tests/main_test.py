"""End to end: the command line, as a user runs it, on one CPU device."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'learned.py'


def _run(cwd, *flags, timeout=300):
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': ''}
  return subprocess.run(
      [sys.executable, '-m', 'posenc.main', f'--config={CONFIG}', *flags],
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


def test_without_positions_the_task_stays_at_chance(tmp_path):
  result = _run(REPO, f'--workdir={tmp_path}', '--config.model.posemb=none')
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert abs(summary['eval_accuracy'] - 0.1) <= 0.05, summary


def test_overrides_reach_the_resolved_config(tmp_path):
  result = _run(REPO, f'--workdir={tmp_path}', '--config.model.d_model=32',
                '--config.data.num_train=256', '--config.train.num_epochs=1')
  assert result.returncode == 0, result.stderr[-3000:]
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['model']['d_model'] == 32
  assert json.loads((tmp_path / 'summary.json').read_text())['step'] == 8


@pytest.mark.parametrize('flag,message', [
    ('--config.model.posemb=rotary',
     "model.posemb='rotary' is not valid; valid values: learned, none"),
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
