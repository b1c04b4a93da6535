"""Expected failures end in one line that names what is wrong and what to
do, with no traceback and nothing already saved lost: config files and
overrides, file-system errors, a disk that fills up mid-run, a second
Ctrl-C."""

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from posenc import checkpoints
from posenc import preemption

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs' / 'learned.py'
SMALL = ('--config.data.num_train=2048', '--config.data.num_eval=256')


def _run(cwd, *flags, config=CONFIG):
  env = {**os.environ, 'PYTHONPATH': str(REPO), 'XLA_FLAGS': ''}
  config_flag = () if config is None else (f'--config={config}',)
  return subprocess.run(
      [sys.executable, '-m', 'posenc.main', *config_flag, *flags], cwd=cwd,
      env=env, capture_output=True, text=True, timeout=300, check=False)


def _last_line(result) -> str:
  lines = result.stderr.strip().splitlines()
  return lines[-1] if lines else ''


def _expect_one_line(result, kind, *fragments, code):
  assert result.returncode == code, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr, result.stderr[-2000:]
  line = _last_line(result)
  assert line.startswith(f'{kind}: '), result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in line, line


@pytest.mark.parametrize('write,flags,kind,fragments', [
    (None, (), 'Invalid config file',
     ("No such file or directory: '{tmp}/missing.py'",)),
    ('def get_config(:\n', (), 'Invalid config file',
     ('{tmp}/bad.py:1: invalid syntax',)),
    ('x = 1\n', (), 'Invalid config file', ("no attribute 'get_config'",)),
    ('from posenc.config import get_config\n', ('--config.foo.bar=3',),
     'Invalid config override', ("'foo'", '--config.group.field=value')),
    ('from posenc.config import get_config\n', ('--config.model.dmodel=3',),
     'Invalid config override', ("--config.model.dmodel: the config has no "
                                 "field 'dmodel'", 'did you mean "d_model"')),
    ('def get_config():\n  return 3\n', (), 'Invalid config file',
     ('get_config() returned int',)),
    ('def get_config():\n  pass\n', (), 'Invalid config file',
     ('get_config() returned None',)),
    ('from posenc.config import get_config\n',
     ('--config.train.num_epochs=abc',), 'Invalid flags',
     ('--config.train.num_epochs=abc',)),
    ('from posenc.config import get_config\n', ('--config.model.d_model=7',),
     'Invalid config', ('model.d_model=7 is not divisible',)),
])
def test_config_file_and_override_errors_are_one_line(tmp_path, write, flags,
                                                     kind, fragments):
  name = {None: 'missing.py'}.get(write, 'bad.py')
  if write is not None:
    (tmp_path / name).write_text(write)
  result = _run(tmp_path, *flags, '--workdir=work', config=tmp_path / name)
  _expect_one_line(result, kind,
                   *(f.format(tmp=tmp_path) for f in fragments), code=2)
  assert 'USAGE' not in result.stderr  # No usage text for a config error.
  assert not (tmp_path / 'work').exists()


def test_workdir_that_is_a_file_is_named(tmp_path):
  (tmp_path / 'taken').write_text('a file')
  result = _run(tmp_path, *SMALL, f'--workdir={tmp_path / "taken"}')
  _expect_one_line(result, 'File system error', str(tmp_path / 'taken'),
                   'choose another --workdir', code=1)
  assert 'data.cache_dir' not in _last_line(result)  # Not the one to change.
  assert (tmp_path / 'taken').read_text() == 'a file'


def test_unwritable_cache_dir_is_named(tmp_path):
  (tmp_path / 'file').write_text('')
  result = _run(tmp_path, '--config.data.name=mnist1d', *SMALL,
                '--config.data.seq_len=10', '--config.data.patch_size=4',
                f'--config.data.cache_dir={tmp_path / "file" / "cache"}',
                '--workdir=work')
  _expect_one_line(result, 'File system error', str(tmp_path / 'file'),
                   code=1)


@contextlib.contextmanager
def _tmpfs(path: pathlib.Path, size: str, *options: str):
  """A small file system of its own (root and mount needed; else skip)."""
  path.mkdir()
  mounted = subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', ','.join((f'size={size}',) + options),
       f'posenc-test-{uuid.uuid4().hex[:8]}', str(path)],
      capture_output=True, check=False)
  if mounted.returncode != 0:
    pytest.skip(f'cannot mount a tmpfs here: {mounted.stderr!r}')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def test_read_only_workdir_is_named(tmp_path):
  with _tmpfs(tmp_path / 'ro', '1m', 'ro') as ro:
    result = _run(tmp_path, *SMALL, f'--workdir={ro / "run"}')
  _expect_one_line(result, 'File system error', str(ro / 'run'),
                   'read-only', code=1)


def test_disk_full_mid_run_stops_cleanly_and_resumes(tmp_path):
  flags = (*SMALL, '--config.train.checkpoint_every_steps=64',
           '--config.train.keep_checkpoints=1')
  with _tmpfs(tmp_path / 'disk', '8m') as disk:
    filler = disk / 'filler'
    # 3 MiB free: room for the first checkpoint (1.3 MiB of parameters and
    # Adam moments; posenc wants 1.25x that plus 1 MiB free before saving),
    # not for a second beside it.
    filler.write_bytes(b'\0' * (shutil.disk_usage(disk).free - 3 * 2**20))
    work = disk / 'run'
    full = _run(tmp_path, *flags, f'--workdir={work}')
    _expect_one_line(full, 'File system error', 'disk full', str(work),
                     'run the same command to resume', code=1)
    assert 'is intact' in _last_line(full)
    saved = checkpoints.steps(work)
    assert saved and max(saved) < 320  # 5 epochs of 64 steps.
    assert f'(step {max(saved)}) is intact' in _last_line(full)
    assert not list((work / 'checkpoints').glob('*tmp*'))

    filler.unlink()
    resumed = _run(tmp_path, *flags, f'--workdir={work}')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'Resuming from the checkpoint of step {max(saved)}' in (
        resumed.stderr)
    assert max(checkpoints.steps(work)) == 320


def test_second_signal_stops_at_once_without_a_traceback(monkeypatch):
  exits = []
  monkeypatch.setattr(os, '_exit', exits.append)
  with preemption.Preemption() as stopper:
    assert not stopper.should_stop(1)
    os.kill(os.getpid(), signal.SIGINT)
    assert stopper.requested == 'SIGINT' and stopper.should_stop(2)
    assert not exits  # The first signal only asks to stop after a step.
    os.kill(os.getpid(), signal.SIGINT)
    assert exits == [128 + signal.SIGINT]
  # Outside the loop, Ctrl-C is Python's again.
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler



def test_ctrl_c_outside_the_training_loop_is_one_line(monkeypatch, capsys):
  from posenc import main  # pylint: disable=import-outside-toplevel
  from posenc import train  # pylint: disable=import-outside-toplevel

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt  # As while the step compiles.

  monkeypatch.setattr(train, 'train_and_evaluate', interrupted)
  main.flags.FLAGS.unparse_flags()
  main.parse_flags(['main', f'--config={CONFIG}', '--workdir=/nonexistent'])
  try:
    with pytest.raises(SystemExit) as stopped:
      main.main(['main'])
  finally:
    main.flags.FLAGS.unparse_flags()
  assert stopped.value.code == 130
  line = capsys.readouterr().err.strip().splitlines()[-1]
  assert line.startswith('Interrupted: stopped outside the training loop')


def test_a_full_disk_at_the_start_is_refused_before_writing(tmp_path,
                                                            monkeypatch):
  from posenc import diskspace  # pylint: disable=import-outside-toplevel
  from posenc import train  # pylint: disable=import-outside-toplevel
  from configs import learned  # pylint: disable=import-outside-toplevel
  full = shutil.disk_usage(tmp_path)._replace(free=1000)
  monkeypatch.setattr(diskspace.shutil, 'disk_usage', lambda path: full)
  with pytest.raises(OSError, match='starting the run needs about 1.0 MiB'):
    train.train_and_evaluate(learned.get_config(), tmp_path / 'run')
  assert [p.name for p in (tmp_path / 'run').iterdir()] == ['.lock']
