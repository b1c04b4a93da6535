"""One run at a time in a workdir: an exclusive lock held for the run's life.

Each process of a run locks its own file in the workdir with `fcntl.flock`:
`.lock` for process 0, `.lock.<i>` for process i, so the processes of one
multi-host run never block each other, while every process of a second run
finds its file taken. The processes then agree (one all-gather), so all of
them stop if any of them found its lock held. The OS releases a lock when
its process ends, however it ends (SIGKILL included), so no stale lock is
ever left behind. On locking, a process writes its PID, host, start time
and command into its file at once (and puts back what was there if another
process of its run was refused); a run that finds a lock held raises `Busy`
naming the workdir and that holder, before it writes anything.

`acquire` takes the locks of a workdir until the innermost function
decorated with `releasing` returns or raises; `Lock` is the same as a
context manager. Within one process, locking a workdir again is a no-op.
On a file system without locks (some FUSE mounts) a warning says that
nothing protects the workdir, and the run goes on.
"""

import contextlib
import datetime
import errno
import fcntl
import functools
import json
import os
import pathlib
import shlex
import socket
import sys
import threading
from typing import Any, Callable, TypeVar

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

LOCK_FILE = '.lock'
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
_F = TypeVar('_F', bound=Callable[..., Any])


class Busy(RuntimeError):
  """Another run holds the workdir."""


def lock_file(workdir: pathlib.Path, process_index: int) -> pathlib.Path:
  """The file process `process_index` of a run locks."""
  name = LOCK_FILE if process_index == 0 else f'{LOCK_FILE}.{process_index}'
  return pathlib.Path(workdir) / name


def holder(path: pathlib.Path) -> dict[str, Any]:
  """What the process holding (or that last held) the lock `path` wrote."""
  try:
    info = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, ValueError):
    return {}
  return info if isinstance(info, dict) else {}


def alive(pid: int) -> bool:
  """Whether process `pid` of this host is running."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True


def _all_processes_agree(ok: bool) -> bool:
  """Whether every process of the run has `ok` (a collective: all call it)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


class _Held:
  """A locked file and how many `Lock`s of this process hold it."""

  def __init__(self, fd: int):
    self.fd, self.count = fd, 1


_held: dict[str, _Held] = {}  # By the lock file's real path.
_held_guard = threading.Lock()


class Lock:
  """An exclusive lock on `workdir`, as a context manager (see the module
  docstring). `read_only_ok`: where the workdir is missing or cannot be
  written, nothing is locked (with a warning where it exists); for readers
  such as evaluation, which fail later if they do need to write."""

  def __init__(self, workdir: str | os.PathLike, *, read_only_ok: bool = False):
    self.workdir = pathlib.Path(workdir)
    self.read_only_ok = read_only_ok
    self.path = lock_file(self.workdir, jax.process_index())
    self._key = os.path.realpath(self.path)
    self._held = False  # Whether this Lock counts in `_held`.

  def _open(self) -> int | None:
    """The lock file, open; None where `read_only_ok` and it cannot be."""
    if self.read_only_ok and not self.workdir.is_dir():
      return None
    self.workdir.mkdir(parents=True, exist_ok=True)
    try:
      return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      if not (self.read_only_ok and e.errno in _READ_ONLY):
        raise
    try:  # flock needs no write access.
      return os.open(self.path, os.O_RDONLY)
    except OSError:
      logging.warning('%s cannot be written, so it is not locked against '
                      'other runs.', self.workdir)
      return None

  def _busy(self, mine_held: bool) -> Busy:
    if not mine_held:
      return Busy(f'{self.workdir} is in use by another run: another process '
                  'of this run found its lock file held (see its log). Wait '
                  'for that run to finish or stop it, or use another '
                  '--workdir. Nothing was written.')
    info = holder(self.path)
    pid = info.get('pid')
    if (info.get('host') == socket.gethostname() and isinstance(pid, int)
        and not alive(pid)):
      info = {}  # The lock was taken a moment ago; its holder not written.
    who = (f'PID {info.get("pid", "unknown")} on host '
           f'{info.get("host", "unknown")}, started {info.get("started", "?")}')
    if info.get('command'):
      who += f': {info["command"]}'
    stop = (f' (kill {info["pid"]} there)' if 'pid' in info else
            ' (see `fuser -v` on its .lock file)')
    return Busy(f'{self.workdir} is in use by another run ({who}). Wait for '
                f'it to finish or stop it{stop}, or use another --workdir. '
                'Nothing was written.')

  def __enter__(self) -> 'Lock':
    with _held_guard:
      entry = _held.get(self._key)
      if entry is not None:
        entry.count += 1
    ok, fd, previous = True, None, None
    if entry is None:
      fd = self._open()
      if fd is not None:
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
          previous = os.pread(fd, 1 << 16, 0)
          self._write_holder(fd)  # At once: a refused run reads it.
        except BlockingIOError:
          os.close(fd)
          fd, ok = None, False
        except OSError as e:  # A file system without locks (some FUSE).
          if e.errno not in _NO_LOCKS:
            raise
          logging.warning('%s cannot be locked on its file system (%s): '
                          'nothing stops a second run from using it.',
                          self.workdir, e)
          os.close(fd)
          fd = None
    self._held = entry is not None
    if not _all_processes_agree(ok):
      self.__exit__()
      if fd is not None:
        if previous is not None:  # Another process's lock was held.
          self._write(fd, previous)
        os.close(fd)
      raise self._busy(mine_held=not ok) from None
    if fd is not None:  # None: read-only, not locked.
      with _held_guard:
        _held[self._key] = _Held(fd)
      self._held = True
    return self

  def _write_holder(self, fd: int) -> None:
    """Records this process in its lock file (not where it is read-only)."""
    info = {'pid': os.getpid(), 'host': socket.gethostname(),
            'process_index': jax.process_index(),
            'started': datetime.datetime.now().astimezone().isoformat(
                timespec='seconds'),
            'command': shlex.join([sys.executable, *sys.argv])}
    self._write(fd, (json.dumps(info) + '\n').encode())

  @staticmethod
  def _write(fd: int, content: bytes) -> None:
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, content, 0)
    except OSError:  # Read-only: the lock holds without it.
      pass

  def __exit__(self, *exc_info) -> None:
    if not self._held:
      return
    self._held = False
    with _held_guard:
      entry = _held[self._key]
      entry.count -= 1
      if entry.count == 0:
        del _held[self._key]
        os.close(entry.fd)  # Closing releases the flock.


_scopes = threading.local()


def releasing(fn: _F) -> _F:
  """Decorates a function that calls `acquire`: the locks it takes are
  released when it returns or raises."""

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    stack = _scopes.__dict__.setdefault('stack', [])
    with contextlib.ExitStack() as scope:
      stack.append(scope)
      try:
        return fn(*args, **kwargs)
      finally:
        stack.pop()

  return wrapper  # type: ignore[return-value]


def acquire(workdir: str | os.PathLike, *, read_only_ok: bool = False) -> None:
  """Locks `workdir` until the innermost `releasing` function returns;
  raises `Busy` (having written nothing) if another run holds it."""
  stack = _scopes.__dict__.get('stack')
  if not stack:
    raise RuntimeError('workdir.acquire must be called within a function '
                       'decorated with workdir.releasing.')
  stack[-1].enter_context(Lock(workdir, read_only_ok=read_only_ok))
