"""A cache of generated arrays: written once, checked on every read.

Each entry is `<name>-<key>.npz` beside `<name>-<key>.json`, which records
the parameters it was generated from and the SHA-256 of the `.npz` file.
Both are written to a temporary name and renamed, so a crash mid-write never
leaves a half-written entry under the real name. A read that finds a missing
record, a digest that does not match, or a file numpy cannot parse logs a
warning and regenerates the entry: a damaged file is never used. Temporary
files a killed writer left behind (its PID dead on this host, or untouched
for STALE_SECONDS) are deleted on the next load.
"""

import hashlib
import json
import os
import pathlib
import re
import socket
import tempfile
import time
from typing import Any, Callable

import numpy as np
from absl import logging

from posenc import workdir

FORMAT = 2  # Bump when a generator's output changes for the same parameters.
STALE_SECONDS = 15 * 60  # A temporary file untouched this long is orphaned.
Arrays = dict[str, np.ndarray]
# .<entry>.tmp.<pid>.<host>.<random>; older versions wrote .<entry>.<random>
# (the entry <name>-<16 hex digits>.npz or .json), matched only with that
# entry name, so no other hidden file in a shared folder is taken for one.
_TEMP = re.compile(r'^\..+\.(npz|json)\.tmp\.(?P<pid>\d+)\.(?P<host>.+)\.'
                   r'[a-z0-9_]+$')
_OLD_TEMP = re.compile(r'^\..+-[0-9a-f]{16}\.(npz|json)\.[a-z0-9_]{8}$')


def _digest(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def remove_orphans(root: pathlib.Path) -> list[pathlib.Path]:
  """Deletes the temporary files in `root` whose writer died (its PID is not
  running on this host) or that nothing touched for STALE_SECONDS; returns
  them."""
  removed = []
  host, now = socket.gethostname(), time.time()
  for path in root.glob('.*'):
    match = _TEMP.match(path.name)
    if (match is None and not _OLD_TEMP.match(path.name)
        or not path.is_file()):
      continue
    try:
      age = now - path.stat().st_mtime
      dead = (match is not None and match['host'] == host
              and not workdir.alive(int(match['pid'])))
      if dead or age > STALE_SECONDS:
        path.unlink()
        removed.append(path)
        logging.warning('Deleted %s, left by a cache write that did not '
                        'finish (%s).', path, 'its writer is gone' if dead
                        else f'untouched for {age / 60:.0f} minutes')
    except FileNotFoundError:  # Renamed or deleted by its writer meanwhile.
      continue
  return removed


def _atomic_write(path: pathlib.Path, write: Callable[[Any], None]) -> None:
  fd, tmp = tempfile.mkstemp(
      dir=path.parent,
      prefix=f'.{path.name}.tmp.{os.getpid()}.{socket.gethostname()}.')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def _read(npz: pathlib.Path, record: pathlib.Path) -> Arrays | None:
  """The entry's arrays, or None (with a warning) if it is not intact."""
  if not npz.exists() and not record.exists():
    return None
  try:
    expected = json.loads(record.read_text())['sha256']
    if _digest(npz) != expected:
      raise ValueError('SHA-256 does not match the record')
    with np.load(npz, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Dataset cache entry %s is damaged (%s: %s); '
                    'regenerating it.', npz, type(e).__name__, e)
    return None


def load_or_generate(cache_dir: str | os.PathLike, name: str,
                     params: dict[str, Any],
                     generate: Callable[[], Arrays]) -> Arrays:
  """Returns the cached arrays for (name, params), generating them once."""
  params = {'format': FORMAT, **params}
  blob = json.dumps(params, sort_keys=True).encode()
  key = hashlib.sha256(blob).hexdigest()[:16]
  root = pathlib.Path(cache_dir).expanduser()
  npz, record = root / f'{name}-{key}.npz', root / f'{name}-{key}.json'
  if root.is_dir():
    remove_orphans(root)
  arrays = _read(npz, record)
  if arrays is not None:
    logging.info('Loaded %s from the cache: %s', name, npz)
    return arrays
  arrays = generate()
  root.mkdir(parents=True, exist_ok=True)
  _atomic_write(npz, lambda f: np.savez(f, **arrays))
  _atomic_write(record, lambda f: f.write(json.dumps(
      {'name': name, 'params': params, 'sha256': _digest(npz)},
      indent=2).encode()))
  logging.info('Generated %s and cached it in %s', name, npz)
  return arrays
