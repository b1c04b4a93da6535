"""One run per workdir: the lock, its holder, what a second run sees, and a
killed holder. The holders are real processes: separate processes (and a
real two-process jax.distributed run) are what the lock is for."""

import fcntl
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from posenc import workdir

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 180
# A process that holds a workdir's lock, as process `index` of its run
# (of `count`; with a coordinator address, a real jax.distributed run).
_HOLDER = '''
import sys, time
import jax
from posenc import distributed, workdir
path, address, seconds = sys.argv[1], sys.argv[4], float(sys.argv[5])
index, count = int(sys.argv[2]), int(sys.argv[3])
if address:
  distributed.initialize(distributed.Cluster(address, count, index, False, 60))
else:
  jax.process_index = lambda: index
try:
  with workdir.Lock(path):
    print('locked', flush=True)
    time.sleep(seconds)
except workdir.Busy as e:
  print('Busy:', e, flush=True)
  sys.exit(3)
'''


def _env():
  return {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': '',
          'JAX_PLATFORMS': 'cpu'}


def _hold(path, index=0, count=1, address='', seconds=600):
  """Starts a holder (`_wait_locked` waits until it holds the lock)."""
  proc = subprocess.Popen(
      [sys.executable, '-c', _HOLDER, str(path), str(index), str(count),
       address, str(seconds)], env=_env(), cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL, text=True)
  return proc


def _wait_locked(proc):
  line = proc.stdout.readline()
  assert line.strip() == 'locked', line


def _kill(proc):
  if proc.poll() is None:
    proc.kill()
  proc.wait()


@workdir.releasing
def _locked(path, **kwargs):
  """Acquires `path` and returns the holder its lock file names, while held."""
  workdir.acquire(path, **kwargs)
  return workdir.holder(workdir.lock_file(path, 0))


def _mtimes(path):
  return {p: p.stat().st_mtime_ns for p in [path, *path.rglob('*')]}


def test_lock_names_its_holder_and_is_released_on_return(tmp_path):
  held = _locked(tmp_path / 'run')
  assert held['pid'] == os.getpid()
  assert held['host'] == socket.gethostname()
  with open(workdir.lock_file(tmp_path / 'run', 0)) as f:  # Free again.
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_relocking_in_the_same_process_is_a_no_op(tmp_path):
  with workdir.Lock(tmp_path) as outer:
    with workdir.Lock(tmp_path):
      pass
    with open(outer.path) as f:  # Still held by `outer`.
      with pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  assert _locked(tmp_path)['pid'] == os.getpid()


def test_acquire_outside_releasing_is_refused(tmp_path):
  with pytest.raises(RuntimeError, match='releasing'):
    workdir.acquire(tmp_path)
  assert not list(tmp_path.iterdir())


def test_second_holder_fails_at_once_writing_nothing_until_the_first_dies(
    tmp_path):
  path = tmp_path / 'run'
  (path / 'checkpoints').mkdir(parents=True)
  (path / 'metrics.jsonl').write_text('{"step": 1}\n')
  holder = _hold(path)
  try:
    _wait_locked(holder)
    before = _mtimes(path)
    start = time.monotonic()
    with pytest.raises(workdir.Busy) as e:
      _locked(path)
    assert time.monotonic() - start < 1
    assert str(path) in str(e.value)
    assert f'PID {holder.pid} ' in str(e.value)
    assert not isinstance(e.value, ValueError)  # Not "Invalid config".
    assert _mtimes(path) == before  # Nothing written.
    holder.send_signal(signal.SIGKILL)  # The OS releases its lock.
    holder.wait()
    assert _locked(path)['pid'] == os.getpid()
  finally:
    _kill(holder)


def test_each_process_of_a_run_locks_its_own_file(tmp_path):
  # Process 0 of this run and process 1 of the same run (another process on
  # this host) do not block each other...
  holder = _hold(tmp_path, index=1)
  try:
    _wait_locked(holder)
    assert (tmp_path / '.lock.1').exists()
    assert _locked(tmp_path)['pid'] == os.getpid()
    # ...but process 1 of a second run finds its file taken.
    second = _hold(tmp_path, index=1)
    assert second.wait(timeout=TIMEOUT) == 3
    assert f'PID {holder.pid} ' in second.stdout.read()
  finally:
    _kill(holder)


def _port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_every_process_of_a_second_multi_process_run_fails(tmp_path):
  holder = _hold(tmp_path)  # A one-process run holds `.lock`.
  try:
    _wait_locked(holder)
    # A two-process run (jax.distributed): process 0 finds `.lock` taken,
    # process 1 finds `.lock.1` free, and both stop, each saying why.
    address = f'127.0.0.1:{_port()}'
    second = [_hold(tmp_path, i, 2, address) for i in range(2)]
    try:
      outputs = [p.communicate(timeout=TIMEOUT)[0] for p in second]
    finally:
      for proc in second:
        _kill(proc)
    assert [p.returncode for p in second] == [3, 3], outputs
    assert f'PID {holder.pid} ' in outputs[0]
    assert 'another process of this run' in outputs[1]
    assert not (tmp_path / '.lock.1').read_text()  # It wrote nothing.
  finally:
    _kill(holder)


def test_read_only_workdir_is_evaluated_unlocked_or_locked_read_only(
    tmp_path, monkeypatch):
  missing = tmp_path / 'missing'
  _locked(missing, read_only_ok=True)
  assert not missing.exists()  # Nothing created.
  _locked(tmp_path)  # Leaves a lock file.
  real_open = os.open

  def read_only_open(path, flags, *args):
    if flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
      raise PermissionError(13, 'Permission denied', str(path))
    return real_open(path, flags, *args)

  monkeypatch.setattr(os, 'open', read_only_open)
  with pytest.raises(PermissionError):  # Training needs to write.
    _locked(tmp_path)
  with workdir.Lock(tmp_path, read_only_ok=True) as lock:  # Evaluation.
    with open(lock.path) as f:
      with pytest.raises(BlockingIOError):
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  (tmp_path / '.lock').unlink()  # No lock file and none can be made.
  _locked(tmp_path, read_only_ok=True)


# Two real training runs on one workdir (command as in reliability_test).
FLAGS = ('--config.data.num_train=1024', '--config.data.num_eval=256',
         '--config.model.d_model=32', '--config.model.mlp_dim=64',
         '--config.train.log_every_steps=10',
         '--config.train.checkpoint_every_steps=50')


def _command(path, *flags):
  return [sys.executable, '-m', 'posenc.main', '--config=configs/learned.py',
          f'--workdir={path}', *FLAGS, *flags]


def _wait_for(path, proc):
  deadline = time.monotonic() + TIMEOUT
  while not path.exists():
    assert proc.poll() is None and time.monotonic() < deadline
    time.sleep(0.05)


def test_second_run_stops_at_once_and_the_first_completes(tmp_path):
  path = tmp_path / 'run'
  first = subprocess.Popen(_command(path, '--config.train.num_epochs=10'),
                           env=_env(), cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
  try:
    _wait_for(path / 'metrics.jsonl', first)  # Training.
    first.send_signal(signal.SIGSTOP)  # So that only the second could write.
    before = _mtimes(path)
    start = time.monotonic()
    second = subprocess.run(_command(path, '--config.train.num_epochs=10'),
                            env=_env(), cwd=REPO, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    took = time.monotonic() - start
    assert _mtimes(path) == before, 'the second run wrote'
    first.send_signal(signal.SIGCONT)
    assert second.returncode != 0
    assert f'{path} is in use by another run (PID {first.pid} ' in (
        second.stderr)
    assert 'First step' not in second.stderr  # Stopped before compiling.
    assert 'Traceback' not in second.stderr
    assert second.stderr.strip().splitlines()[-1].startswith('Workdir busy: ')
    assert took < 60, took  # Start-up and data; measured about 10 s.
    _, errors = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 0, errors[-3000:]
  finally:
    _kill(first)
  records = [json.loads(l) for l in
             (path / 'metrics.jsonl').read_text().splitlines()]
  train_steps = [r['step'] for r in records if 'train_loss' in r]
  assert train_steps == list(range(10, 321, 10))  # All, once, in order.
  assert [r['epoch'] for r in records if 'eval_loss' in r] == list(
      range(1, 11))
  assert json.loads((path / 'summary.json').read_text())['step'] == 320


def test_a_killed_run_leaves_no_lock_behind(tmp_path):
  path = tmp_path / 'run'
  command = _command(path, '--config.train.num_epochs=3')
  killed = subprocess.Popen(command, env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  try:
    _wait_for(path / 'metrics.jsonl', killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=TIMEOUT) == -signal.SIGKILL
  finally:
    _kill(killed)
  assert workdir.holder(path / '.lock')['pid'] == killed.pid
  rerun = subprocess.run(command, env=_env(), cwd=REPO, capture_output=True,
                         text=True, timeout=TIMEOUT, check=False)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert json.loads((path / 'summary.json').read_text())['step'] == 96


def test_a_file_system_without_locks_runs_unlocked_with_a_warning(
    tmp_path, monkeypatch, caplog):
  def no_locks(fd, operation):
    raise OSError(37, 'No locks available')  # ENOLCK

  monkeypatch.setattr(fcntl, 'flock', no_locks)
  assert _locked(tmp_path) == {}  # Runs; no holder recorded.
  assert 'cannot be locked on its file system' in caplog.text


def test_a_holder_that_has_ended_is_not_named_for_kill(tmp_path):
  # The lock's new holder has locked but not yet written itself: the file
  # still names the previous holder, whose PID may now be anyone's.
  ended = subprocess.Popen([sys.executable, '-c', 'pass'])
  ended.wait()
  lock = workdir.Lock(tmp_path)
  lock.path.write_text(json.dumps({'pid': ended.pid,
                                   'host': socket.gethostname()}))
  message = str(lock._busy(mine_held=True))  # pylint: disable=protected-access
  assert f'kill {ended.pid}' not in message and 'PID unknown' in message
  assert str(tmp_path) in message
