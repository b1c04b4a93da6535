"""Free disk space, checked before a run writes, so that a filling disk
stops training cleanly with the newest checkpoint intact."""

import errno
import pathlib
import shutil
from typing import Any

import jax
import numpy as np

MIB = 2**20
# What a log step may append (metrics.jsonl, TensorBoard events) at most.
LOG_MARGIN_BYTES = 1 * MIB


def _mib(n: float) -> str:
  return f'{n / MIB:.1f} MiB'


def tree_bytes(tree: Any) -> int:
  """Bytes of every array in `tree`."""
  return sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))


def require(path: pathlib.Path, need: int, what: str) -> None:
  """Raises OSError(ENOSPC) naming `path` if its file system has less than
  `need` bytes free for `what`."""
  free = shutil.disk_usage(path).free
  if free < need:
    raise OSError(errno.ENOSPC, f'{what} needs about {_mib(need)}, but only '
                  f'{_mib(free)} is free', str(path))


def is_disk_full(error: BaseException) -> bool:
  """An OSError with ENOSPC, or a library's error that wraps one (Orbax
  reports a full disk as a ValueError naming 'No space left on device')."""
  if isinstance(error, OSError) and error.errno in (errno.ENOSPC,
                                                    errno.EDQUOT):
    return True
  return 'No space left on device' in str(error)


def discard_unfinished_saves(directory: pathlib.Path) -> list[str]:
  """Deletes Orbax's temporary folders of saves that failed (never adopted
  as checkpoints), freeing their space; returns their names."""
  removed = []
  if directory.is_dir():
    for path in directory.glob('*.orbax-checkpoint-tmp*'):
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path.name)
  return removed


def stopped_error(error: BaseException, workdir: pathlib.Path, step: int,
                  last_saved: int, checkpoint_dir: pathlib.Path) -> OSError:
  """The error a run stopped by a full disk ends with: what happened, where
  it stopped, which checkpoint is intact and what to do."""
  removed = discard_unfinished_saves(checkpoint_dir)
  newest = (f'the newest checkpoint (step {last_saved}) is intact in '
            f'{checkpoint_dir}' if last_saved else
            'no checkpoint was written yet')
  if removed:
    newest += f'; removed the unfinished save {", ".join(removed)}'
  return OSError(errno.ENOSPC, f'disk full while training ({error}); '
                 f'stopped at step {step}; {newest}. Free some space and run '
                 'the same command to resume', str(workdir))
