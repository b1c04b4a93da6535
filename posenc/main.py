"""Trains a posenc config, or evaluates its checkpoint.

  python -m posenc.main --config=configs/learned.py [--workdir=runs/learned]
      [--config.model.posemb=none] [--config.model.d_model=32] ...

  # Two processes (hosts), each with its own devices, one global batch:
  python -m posenc.main --config=configs/learned.py \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0

  # Train on 'before' (10 steps), then evaluate the checkpoint on 20 steps,
  # its learned table resampled; the config must be the one trained, except
  # the eval length, the resampling and fields that act only in training:
  python -m posenc.main --config=configs/before.py --workdir=runs/before
  python -m posenc.main --config=configs/before.py --workdir=runs/before \
      --mode=eval --config.data.eval_seq_len=20 \
      --config.model.posemb_resample=linear
"""

import errno
import pathlib
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from posenc import allocator
from posenc import checkpoints
from posenc import checks
from posenc import distributed
from posenc import evaluation
from posenc import train
from posenc import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None,
    'Where config.json, metrics, TensorBoard events and checkpoints go. '
    'Default: runs/<config file stem>.')
_MODE = flags.DEFINE_enum(
    'mode', 'train', ['train', 'eval'],
    'train: train and evaluate; eval: evaluate the newest checkpoint in the '
    'workdir on the eval split (data.eval_seq_len steps).')
# Several processes (hosts): see docs/running.md, "Several hosts".
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0, the same for every process. Unset (and no '
    '--distributed_auto): one process.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'How many processes take part.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process: 0..num_processes-1 (0 logs and '
    'writes the metrics and summary).')
_AUTO = flags.DEFINE_bool(
    'distributed_auto', False,
    'Let JAX detect the cluster (TPU VM slices, SLURM, ...) instead of the '
    'three flags above.')
_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 120,
    'Seconds to wait for the other processes before failing.')
_RESTART_IF_DAMAGED = flags.DEFINE_bool(
    'restart_if_damaged', False,
    'When every checkpoint in the workdir is damaged, set them aside and '
    'train from step 0 (without it, such a run is refused).')
flags.mark_flags_as_required(['config'])


def default_workdir(config_path: str) -> str:
  return str(pathlib.Path('runs') / pathlib.Path(config_path).stem)


def fail(kind: str, message: str, code: int = 1):
  """Ends the process with one line on stderr: an expected failure needs no
  traceback."""
  logging.flush()
  print(f'{kind}: {message}', file=sys.stderr, flush=True)
  sys.exit(code)


def _one_line(text: str) -> str:
  return ' '.join(str(text).split())


def _last_line(error: BaseException) -> str:
  """The last non-blank line of an error: config_flags puts the cause of a
  file that failed to load there."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  return lines[-1] if lines else str(error)


def _bad_override(e: Exception, argv: list[str]) -> str | None:
  """The override `e` (a KeyError or AttributeError from ml_collections)
  refuses, described; None if `e` names no field of an override in argv."""
  text = str(e.args[0] if e.args else e).replace('\\n', '\n')
  lines = [l.strip(' \\\'"') for l in text.splitlines() if l.strip(' \\\'"')]
  if not lines:
    return None
  for arg in argv:
    name = arg.partition('=')[0]
    if name.startswith('--config.') and lines[0] in name.split('.')[1:]:
      hint = f'; {lines[1][0].lower()}{lines[1][1:]}' if len(lines) > 1 else ''
      return (f'{name}: the config has no field {lines[0]!r}{hint} (an '
              'override must name an existing field: '
              '--config.group.field=value)')
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a config file that cannot be loaded (missing,
  not Python, no get_config) or an override of a field that does not exist
  reported in one line."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if '--config must have a value other than None' in str(e):
      fail('Invalid config file', 'its get_config() returned None; it must '
           'return an ml_collections.ConfigDict', 2)
    fail('Invalid flags', f'{_one_line(e)} (--helpfull lists the flags)', 2)
  except SyntaxError as e:
    fail('Invalid config file', f'{e.filename}:{e.lineno}: {e.msg}', 2)
  except (KeyError, AttributeError) as e:
    described = _bad_override(e, argv)
    if described is not None:
      fail('Invalid config override', described, 2)
    fail('Invalid config file', f'{type(e).__name__}: {_one_line(e)}', 2)
  except OSError as e:  # config_flags: the file could not be loaded.
    fail('Invalid config file', _last_line(e), 2)
  except Exception as e:  # pylint: disable=broad-except
    # Anything else raised while importing the file or calling get_config.
    fail('Invalid config file', f'{type(e).__name__}: {_one_line(e)}', 2)


def _file_system_error(e: OSError, cache_dir: str) -> str:
  """What failed, on which path, and what to do about it (choose another
  --workdir, or data.cache_dir where the path is in `cache_dir`)."""
  setting = '--workdir'
  if e.filename and pathlib.Path(e.filename).absolute().is_relative_to(
      pathlib.Path(cache_dir).expanduser().absolute()):
    setting = 'data.cache_dir'
  where = f' ({e.filename})' if e.filename else ''
  if e.errno in (errno.ENOSPC, errno.EDQUOT):
    todo = ('' if 'Free some space' in str(e.strerror) else
            '; free some space and run the same command again')
    return f'{e.strerror}{where}{todo}'
  hint = {errno.EACCES: f'make it writable or choose another {setting}',
          errno.EROFS: 'the file system is read-only; choose another '
                       f'{setting}',
          errno.ENOTDIR: 'a file stands where a folder is needed; choose '
                         f'another {setting}',
          errno.EEXIST: 'a file stands where a folder is needed; choose '
                        f'another {setting}',
          errno.EISDIR: 'a folder stands where a file is needed'}.get(
              e.errno, 'check the path')
  return f'{e.strerror or e}{where}; {hint}'


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    fail('Invalid flags', f'unexpected arguments {argv[1:]}', 2)
  try:  # config_flags defers a file that failed to load to here.
    config = _CONFIG.value
    config.get('seed')  # A file that failed to load raises on first use.
  except OSError as e:
    fail('Invalid config file', _last_line(e.__cause__ or e), 2)
  except AttributeError:
    fail('Invalid config file', f'its get_config() returned '
         f'{type(config).__name__}; it must return an '
         'ml_collections.ConfigDict', 2)
  try:  # First: it may restart this process.
    allocator.use(config.train.allocator)
  except ValueError as e:
    fail('Invalid config', str(e), 2)
  cluster = distributed.Cluster(_COORDINATOR.value, _NUM_PROCESSES.value,
                                _PROCESS_ID.value, _AUTO.value, _TIMEOUT.value)
  try:
    distributed.check(cluster)
  except ValueError as e:
    fail('Invalid flags', str(e), 2)
  try:
    distributed.initialize(cluster)
  except ConnectionError as e:
    fail('Could not start', str(e))
  if jax.process_index() != 0:  # Process 0 speaks for all.
    logging.set_verbosity(logging.WARNING)
  workdir = _WORKDIR.value or default_workdir(
      config_flags.get_config_filename(flags.FLAGS['config']))
  logging.info('Workdir: %s', workdir)
  try:
    if _MODE.value == 'eval':
      evaluation.evaluate_checkpoint(config, workdir)
    else:
      train.train_and_evaluate(
          config, workdir, restart_if_damaged=_RESTART_IF_DAMAGED.value)
  except checks.ConfigError as e:
    fail('Invalid config', str(e), 2)
  except workdir_lib.Busy as e:
    fail('Workdir busy', str(e))
  except checkpoints.AllDamaged as e:
    fail('Damaged checkpoints', str(e))
  except FloatingPointError as e:
    fail('Training diverged', str(e))
  except FileNotFoundError as e:
    fail('Not found', str(e))
  except OSError as e:
    fail('File system error', _file_system_error(e, config.data.cache_dir))
  except KeyboardInterrupt:  # In training, the loop itself stops and saves.
    fail('Interrupted', f'stopped outside the training loop (setting up or '
         f'evaluating); the checkpoints in {workdir} are as they were. Run '
         'the same command again to go on', 130)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
