"""Several processes (jax.distributed on 127.0.0.1, gloo collectives): the
same training as one process with as many devices, checkpoints that move
between the two, and clear errors. Every process is killed at the end."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import chex
import jax
import pytest

from configs import learned
from posenc import checkpoints
from posenc import data
from posenc import train

REPO = pathlib.Path(__file__).resolve().parents[1]
FLAGS = ['--config=configs/learned.py', '--config.data.num_train=256',
         '--config.train.log_every_steps=4']
TIMEOUT = 300


def _env(devices: int) -> dict[str, str]:
  return {**os.environ, 'PYTHONPATH': str(REPO), 'JAX_PLATFORMS': 'cpu',
          'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _cluster(workdir, *flags, processes=2, devices=2):
  """Runs posenc.main in `processes` processes of `devices` CPU devices;
  returns [(returncode, stderr)]."""
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'posenc.main', *FLAGS, *flags,
       f'--workdir={workdir}', f'--coordinator_address=127.0.0.1:{port}',
       f'--num_processes={processes}', f'--process_id={i}'],
      cwd=REPO, env=_env(devices), stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True) for i in range(processes)]
  try:
    errors = [p.communicate(timeout=TIMEOUT)[1] for p in procs]
    return [(p.returncode, e) for p, e in zip(procs, errors)]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def _single(workdir, *flags, devices=4):
  result = subprocess.run(
      [sys.executable, '-m', 'posenc.main', *FLAGS, *flags,
       f'--workdir={workdir}'], cwd=REPO, env=_env(devices),
      capture_output=True, text=True, timeout=TIMEOUT, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stderr


def _params(workdir):
  config = learned.get_config()
  config.data.num_train = 256
  dataset = data.load(config.data, config.seed)
  target = train.create_train_state(jax.random.key(0), config,
                                    train.make_model(config, dataset),
                                    dataset.example_inputs())
  state, progress = checkpoints.restore_latest(workdir, target)
  return state.params, progress['step']


def _check(results):
  for i, (code, stderr) in enumerate(results):
    assert code == 0, f'process {i}:\n{stderr[-3000:]}'


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Two processes of 2 devices and one process of 4, each 2 epochs (16
  steps, checkpoints at 8 and 16)."""
  root = tmp_path_factory.mktemp('scale')
  flags = ['--config.train.num_epochs=2',
           '--config.train.checkpoint_every_steps=8']
  _check(_cluster(root / 'two', *flags))
  _single(root / 'one', *flags)
  return root / 'two', root / 'one'


def test_two_processes_train_what_one_process_with_four_devices_trains(runs):
  two_dir, one_dir = runs
  two, two_step = _params(two_dir)
  one, one_step = _params(one_dir)
  assert two_step == one_step == 16
  # The same global batches; only the all-reduce's summation order differs.
  chex.assert_trees_all_close(two, one, atol=1e-5, rtol=1e-5)
  # One set of files, written by process 0 alone.
  records = [json.loads(line) for line in
             (two_dir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records if 'train_loss' in r] == [4, 8, 12, 16]
  summary = json.loads((two_dir / 'summary.json').read_text())
  reference = json.loads((one_dir / 'summary.json').read_text())
  assert abs(summary['eval_accuracy'] - reference['eval_accuracy']) < 2e-3


def test_two_processes_restore_their_own_checkpoint(runs, tmp_path):
  two_dir, _ = runs
  workdir = tmp_path / 'again'
  shutil.copytree(two_dir, workdir)
  before = json.loads((workdir / 'summary.json').read_text())
  results = _cluster(workdir, '--config.train.num_epochs=2',
                     '--config.train.checkpoint_every_steps=8')
  _check(results)
  assert 'Already trained to step 16; evaluating only' in results[0][1]
  after = json.loads((workdir / 'summary.json').read_text())
  assert after['step'] == 16
  assert abs(after['eval_accuracy'] - before['eval_accuracy']) < 1e-9


def test_checkpoint_of_two_processes_resumes_in_one(runs, tmp_path):
  two_dir, one_dir = runs
  workdir = tmp_path / 'run'
  shutil.copytree(two_dir, workdir)
  shutil.rmtree(workdir / 'checkpoints' / '16')  # Back to step 8.
  log = _single(workdir, '--config.train.num_epochs=2',
                '--config.train.checkpoint_every_steps=8')
  assert 'Resuming from the checkpoint of step 8' in log
  resumed, step = _params(workdir)
  reference, _ = _params(one_dir)
  assert step == 16
  chex.assert_trees_all_close(resumed, reference, atol=1e-5, rtol=1e-5)


def test_unreachable_coordinator_fails_within_the_timeout(tmp_path):
  port = _free_port()  # Nobody listens there.
  start = time.monotonic()
  result = subprocess.run(
      [sys.executable, '-m', 'posenc.main', *FLAGS,
       f'--workdir={tmp_path / "never"}',
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
       '--process_id=1', '--distributed_timeout=5'],
      cwd=REPO, env=_env(2), capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode == 1
  assert f'could not join the cluster at 127.0.0.1:{port} within 5s' in (
      result.stderr)
  assert time.monotonic() - start < 60
  assert not (tmp_path / 'never').exists()


@pytest.mark.parametrize('flags,message', [
    (['--num_processes=2'], '--num_processes given without '
     '--coordinator_address, --process_id'),
    (['--coordinator_address=localhost', '--num_processes=2',
      '--process_id=0'], "--coordinator_address='localhost' is not valid"),
    (['--coordinator_address=127.0.0.1:1', '--num_processes=2',
      '--process_id=2'], '--process_id=2 is not valid; valid: 0..1'),
])
def test_incomplete_or_invalid_cluster_flags_are_refused(tmp_path, flags,
                                                         message):
  result = subprocess.run(
      [sys.executable, '-m', 'posenc.main', *FLAGS,
       f'--workdir={tmp_path / "never"}', *flags], cwd=REPO, env=_env(1),
      capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode != 0
  assert message in result.stderr
  assert not (tmp_path / 'never').exists()


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(
    tmp_path):
  """SIGTERM to process 1 alone: JAX's preemption sync point makes both
  processes stop after the same step and save one checkpoint of it."""
  workdir, port = tmp_path / 'run', _free_port()
  logs = [open(tmp_path / f'{i}.log', 'w+') for i in range(2)]  # pylint: disable=consider-using-with
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'posenc.main', *FLAGS,
       '--config.train.num_epochs=200', f'--workdir={workdir}',
       f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=REPO, env=_env(2), stdout=subprocess.DEVNULL,
      stderr=logs[i], text=True) for i in range(2)]
  metrics = workdir / 'metrics.jsonl'
  try:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and procs[1].poll() is None:
      if metrics.exists() and len(metrics.read_text().splitlines()) >= 4:
        procs[1].send_signal(signal.SIGTERM)
        break
      time.sleep(0.05)
    codes = [p.wait(timeout=TIMEOUT) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  outputs = []
  for log in logs:
    log.seek(0)
    outputs.append(log.read())
  assert codes == [0, 0], [o[-2000:] for o in outputs]
  stops = [re.findall(r'Every process stops at step (\d+)', o) for o in outputs]
  assert len(stops[0]) == len(stops[1]) == 1 and stops[0] == stops[1], stops
  stop = int(stops[0][0])
  # Mid-run: the signal goes out once metrics.jsonl has 4 lines (train at
  # steps 4 and 8, eval at 8, train at 12), of 200 epochs of 8 steps.
  assert 12 <= stop < 1600
  assert max(checkpoints.steps(workdir)) == stop
  assert json.loads(metrics.read_text().splitlines()[-1])['step'] <= stop
