"""Runs that survive: SIGKILL, SIGTERM and SIGINT mid-run, damaged checkpoints
and metrics, mismatched configs, divergence, an unwritable eval.jsonl. The
trainer runs as a subprocess on one CPU device, as a user would run it, and
is really killed."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import learned
from posenc import checkpoints
from posenc import data
from posenc import metrics
from posenc import train

REPO = pathlib.Path(__file__).resolve().parents[1]
# 32 steps per epoch, 640 in all (about 10 s); checkpoints every 50 steps.
FLAGS = ('--config.data.num_train=1024', '--config.data.num_eval=256',
         '--config.model.d_model=32', '--config.model.mlp_dim=64',
         '--config.model.dropout_rate=0.1', '--config.train.num_epochs=20',
         '--config.train.log_every_steps=10',
         '--config.train.checkpoint_every_steps=50')
TIMEOUT = 180


def _command(workdir, *flags):
  return [sys.executable, '-m', 'posenc.main',
          f'--config={REPO / "configs" / "learned.py"}',
          f'--workdir={workdir}', *FLAGS, *flags]


def _env():
  return {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': ''}


def _run(workdir, *flags):
  return subprocess.run(_command(workdir, *flags), env=_env(), cwd=REPO,
                        capture_output=True, text=True, timeout=TIMEOUT,
                        check=False)


def _run_and_signal(workdir, sig, at_step):
  """Starts a run and sends `sig` once it has logged `at_step`."""
  log = open(workdir.parent / f'{workdir.name}.log', 'w+')  # pylint: disable=consider-using-with
  proc = subprocess.Popen(_command(workdir), env=_env(), cwd=REPO,
                          stdout=log, stderr=subprocess.STDOUT, text=True)
  metrics = workdir / 'metrics.jsonl'
  deadline = time.monotonic() + TIMEOUT
  try:
    while time.monotonic() < deadline and proc.poll() is None:
      if metrics.exists() and any(
          json.loads(line)['step'] >= at_step
          for line in metrics.read_text().splitlines() if line.strip()):
        proc.send_signal(sig)
        break
      time.sleep(0.01)
    returncode = proc.wait(timeout=TIMEOUT)
  finally:
    if proc.poll() is None:
      proc.kill()
  log.seek(0)
  return returncode, log.read()


def _params(workdir):
  config = learned.get_config()
  config.model.d_model, config.model.mlp_dim = 32, 64
  dataset = data.load(config.data, config.seed)
  model = train.make_model(config, dataset)
  target = train.create_train_state(jax.random.key(0), config, model,
                                    dataset.example_inputs())
  state, _ = checkpoints.restore(workdir, target)
  return jax.device_get(state.params)


def _metrics(workdir, name='metrics.jsonl'):
  """metrics.jsonl without timings, which differ between runs."""
  return [{k: v for k, v in json.loads(line).items() if k != 'steps_per_sec'}
          for line in (workdir / name).read_text().splitlines()]


def _assert_same_params(a, b):
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(x, y)  # Bit for bit.


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  result = _run(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


# SIGINT (Ctrl-C) takes SIGTERM's path through the same handler.
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_resumes_to_identical_parameters_and_metrics(
    reference, tmp_path, sig):
  workdir = tmp_path / 'run'
  returncode, output = _run_and_signal(workdir, sig, at_step=120)
  assert not (workdir / 'summary.json').exists(), 'finished before the kill'
  if sig == signal.SIGKILL:
    assert returncode == -signal.SIGKILL
  else:  # Preemption: finish the step, save, exit cleanly.
    assert returncode == 0, output[-3000:]
    assert f'Received {sig.name}' in output
    stopped = int(output.split(f'Stopped by {sig.name} at step ')[1].split()[0])
    assert stopped >= 120
    assert (workdir / 'checkpoints' / str(stopped)).is_dir()

  resumed = _run(workdir)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming from the checkpoint of step' in resumed.stderr
  if sig != signal.SIGKILL:
    assert f'checkpoint of step {stopped}' in resumed.stderr
  _assert_same_params(_params(workdir), _params(reference))
  assert _metrics(workdir) == _metrics(reference)
  summary = json.loads((workdir / 'summary.json').read_text())
  expected = json.loads((reference / 'summary.json').read_text())
  assert summary['eval_accuracy'] == expected['eval_accuracy']


def _copy_of(reference, tmp_path):
  workdir = tmp_path / 'run'
  subprocess.run(['cp', '-r', str(reference), str(workdir)], check=True)
  return workdir


@pytest.mark.parametrize('damage', ['truncate', 'garble', 'delete'])
def test_damaged_newest_checkpoint_is_set_aside_and_previous_used(
    reference, tmp_path, damage):
  workdir = _copy_of(reference, tmp_path)
  newest = workdir / 'checkpoints' / '640'
  files = sorted((p for p in newest.rglob('*') if p.is_file()
                  and p.name != checkpoints.DIGEST_FILE),
                 key=lambda p: p.stat().st_size)
  victim = files[-1]  # The largest file: array data.
  raw = victim.read_bytes()
  if damage == 'truncate':
    victim.write_bytes(raw[:len(raw) // 2])
  elif damage == 'garble':
    victim.write_bytes(raw[:100] + bytes(b ^ 0xFF for b in raw[100:110])
                       + raw[110:])
  else:
    victim.unlink()
  # Train 2 more epochs: resumes from 600 (640 is damaged), ends at 704.
  result = _run(workdir, '--config.train.num_epochs=22')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Checkpoint of step 640 is damaged' in result.stderr
  assert 'Resuming from the checkpoint of step 600' in result.stderr
  (moved,) = (workdir / 'checkpoints' / 'damaged').iterdir()
  assert moved.name.startswith('640-')  # Kept, not deleted.
  assert json.loads((workdir / 'summary.json').read_text())['step'] == 704
  # 600 -> 640 again gives what the reference had at 640.
  assert [r for r in _metrics(workdir) if r['step'] <= 640] == _metrics(
      reference)


@pytest.mark.parametrize('flag,message', [
    ('--config.model.d_model=16', "model.d_model: 32 in the workdir, 16 now"),
    ('--config.model.posemb=sinusoidal',
     "model.posemb: 'learned' in the workdir, 'sinusoidal' now"),
])
def test_mismatched_config_stops_before_touching_files(reference, tmp_path,
                                                       flag, message):
  workdir = _copy_of(reference, tmp_path)
  # Every file but the lock, which records who last held the workdir.
  mtimes = lambda: {p: p.stat().st_mtime_ns for p in workdir.rglob('*')
                    if not p.name.startswith('.lock')}
  before = mtimes()
  result = _run(workdir, flag)
  assert result.returncode != 0
  assert message in result.stderr
  assert 'Traceback' not in result.stderr
  assert mtimes() == before


def test_divergence_stops_naming_the_step_and_keeps_the_last_checkpoint(
    tmp_path):
  workdir = tmp_path / 'run'
  # A learning rate of 1e6 gives a NaN loss at step 2 (measured; the same up
  # to 1e30): the first step's huge update overflows the attention logits.
  result = _run(workdir, '--config.train.learning_rate=1e6',
                '--config.train.checkpoint_every_steps=1')
  assert result.returncode == 1
  assert 'Training diverged: non-finite metrics at step' in result.stderr
  step = int(result.stderr.split('non-finite metrics at step ')[1].split(':')[0])
  assert step == 2
  assert checkpoints.steps(workdir) == [1]  # Only the one before it...
  params = _params(workdir)  # ...and they restore, finite.
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  assert not (workdir / 'summary.json').exists()


def test_rerunning_a_finished_run_evaluates_only_and_changes_no_metrics(
    reference, tmp_path):
  workdir = _copy_of(reference, tmp_path)
  result = _run(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Already trained to step 640; evaluating only.' in result.stderr
  assert _metrics(workdir) == _metrics(reference)
  summary = json.loads((workdir / 'summary.json').read_text())
  expected = json.loads((reference / 'summary.json').read_text())
  assert summary == expected  # The training's wall time included.
  # Fewer epochs than the workdir holds: refused, naming the field.
  fewer = _run(workdir, '--config.train.num_epochs=10')
  assert fewer.returncode != 0
  assert 'train.num_epochs=10 makes 320 steps' in fewer.stderr


@pytest.mark.parametrize('damage', ['garbage_line_21', 'cut_last_line',
                                    'cut_last_train_line'])
def test_damaged_metrics_lines_are_set_aside_and_the_rest_kept(
    reference, tmp_path, damage):
  workdir = _copy_of(reference, tmp_path)
  path = workdir / 'metrics.jsonl'
  lines = path.read_text().splitlines(keepends=True)
  if damage == 'garbage_line_21':
    victim = 21
    lines[20] = 'GARBAGE\n'
  elif damage == 'cut_last_line':  # The final eval line: written again.
    victim = len(lines)
    assert json.loads(lines[-1])['epoch'] == 20
    lines[-1] = lines[-1][:len(lines[-1]) // 2]
  else:  # The final train line: the summary keeps its numbers.
    victim = max(i for i, l in enumerate(lines) if 'train_loss' in l) + 1
    assert json.loads(lines[victim - 1])['step'] == 640
    lines[victim - 1] = lines[victim - 1][:30] + '\n'
  path.write_text(''.join(lines))
  result = _run(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f'1 line(s) of {path} are damaged' in result.stderr
  (aside,) = (workdir / metrics.DAMAGED_FILE).read_text().splitlines()
  assert json.loads(aside)['line'] == victim
  expected = _metrics(reference)
  if damage != 'cut_last_line':  # That line is gone; every other stays.
    del expected[victim - 1]
  assert _metrics(workdir) == expected
  summary = json.loads((workdir / 'summary.json').read_text())
  reference_summary = json.loads((reference / 'summary.json').read_text())
  assert summary == reference_summary


def test_every_checkpoint_damaged_is_refused_naming_the_workdir(
    reference, tmp_path):
  workdir = _copy_of(reference, tmp_path)
  for step_dir in (workdir / 'checkpoints').iterdir():
    (step_dir / checkpoints.DIGEST_FILE).write_text('{}garbled')
  steps = checkpoints.steps(workdir)
  result = _run(workdir)
  assert result.returncode != 0
  assert f'every checkpoint in {workdir / "checkpoints"} is damaged' in (
      result.stderr)
  assert 'restart_if_damaged' in result.stderr
  assert 'Traceback' not in result.stderr
  assert 'First step' not in result.stderr  # Refused, not restarted.
  assert checkpoints.steps(workdir) == steps  # Left in place.
  assert _metrics(workdir) == _metrics(reference)
  # Opting in: they are set aside and training starts again (1 epoch here).
  restarted = _run(workdir, '--config.train.num_epochs=1',
                   '--restart_if_damaged')
  assert restarted.returncode == 0, restarted.stderr[-3000:]
  assert 'First step' in restarted.stderr
  assert json.loads((workdir / 'summary.json').read_text())['step'] == 32
  assert checkpoints.steps(workdir) == [32]
  assert len(list((workdir / 'checkpoints' / 'damaged').iterdir())) == 3
  (before,) = workdir.glob('metrics.before-restart-*.jsonl')  # Kept.
  assert _metrics(before.parent, before.name) == _metrics(reference)
  assert max(r['step'] for r in _metrics(workdir)) == 32


def test_eval_reads_only_and_skips_a_damaged_checkpoint(reference, tmp_path):
  workdir = _copy_of(reference, tmp_path)
  digests = workdir / 'checkpoints' / '640' / checkpoints.DIGEST_FILE
  digests.write_text('{}garbled')
  result = _run(workdir, '--mode=eval')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Checkpoint of step 640 is damaged' in result.stderr
  last = json.loads((workdir / 'eval.jsonl').read_text().splitlines()[-1])
  assert last['step'] == 600
  # Nothing moved: evaluation works on a read-only copy of a workdir.
  assert digests.read_text() == '{}garbled'
  assert not (workdir / 'checkpoints' / 'damaged').exists()
  for step_dir in (workdir / 'checkpoints').iterdir():
    (step_dir / checkpoints.DIGEST_FILE).write_text('{}garbled')
  none_left = _run(workdir, '--mode=eval')
  assert none_left.returncode == 1
  assert 'there is nothing to evaluate' in none_left.stderr.splitlines()[-1]
  assert 'restart_if_damaged' not in none_left.stderr
  assert not (workdir / 'checkpoints' / 'damaged').exists()


def test_eval_result_survives_a_failed_write(reference, tmp_path):
  workdir = _copy_of(reference, tmp_path)
  # eval.jsonl cannot be appended to, as on a read-only file system (a
  # folder stands in: as root, permissions would not stop the write).
  (workdir / 'eval.jsonl').mkdir()
  result = _run(workdir, '--mode=eval')
  assert result.returncode != 0
  logged = result.stderr.split('as a line of eval.jsonl: ')[1].splitlines()[0]
  assert json.loads(logged)['step'] == 640
  assert str(workdir / 'eval.jsonl') in result.stderr
  assert 'could not append the result to eval.jsonl' in result.stderr
