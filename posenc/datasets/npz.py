"""Your own arrays from an `.npz` file: `data.name='npz'`, `data.path=FILE`.

The file holds `train_inputs`, `train_labels`, `eval_inputs`, `eval_labels`
and optionally `test_inputs`, `test_labels` and `{split}_mask`: float
features `(N, L, F)` or int tokens `(N, L)`, int labels `(N,)`, bool masks
`(N, L)` True at real steps. `num_classes` is read from the labels unless
`data.num_classes` is set. The file's SHA-256 is the run's data fingerprint,
so a resumed run refuses a file that changed.
"""

import hashlib
import pathlib
import zipfile

import numpy as np

from posenc.datasets import base

REQUIRED = ('train_inputs', 'train_labels', 'eval_inputs', 'eval_labels')
OPTIONAL = ('test_inputs', 'test_labels', 'train_mask', 'eval_mask',
            'test_mask')


def _path(config) -> pathlib.Path:
  return pathlib.Path(config.path).expanduser()


def file_sha256(path: pathlib.Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


class Npz(base.Source):
  """Arrays from `data.path`; `data.seq_len` and friends are read from it."""

  streams = {'npz': None}
  grid = None  # Your arrays may be patches of a square grid.

  def check(self, config) -> None:
    d = config.data
    if not isinstance(d.path, str) or not d.path:
      raise ValueError("data.name='npz' reads data.path, which is unset; "
                       'valid: the path of an .npz file with '
                       f'{", ".join(REQUIRED)}.')
    if not _path(d).is_file():
      raise ValueError(f'data.path={d.path!r} is not a file; valid: the path '
                       'of an .npz file.')

  def lengths(self, config):
    return None  # Only the file knows.

  def load(self, config, seed) -> base.Dataset:
    del seed  # The file is the data.
    path = _path(config)
    try:
      with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
      raise ValueError(f'data.path={str(path)!r} is not a readable .npz file '
                       f'({type(e).__name__}: {e}).') from None
    missing = [k for k in REQUIRED if k not in arrays]
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
      raise ValueError(
          f'data.path={str(path)!r} lacks {missing} or has unknown arrays '
          f'{unknown}; valid: {", ".join(REQUIRED)}, and optionally '
          f'{", ".join(OPTIONAL)}.')
    if ('test_inputs' in arrays) != ('test_labels' in arrays):
      raise ValueError(f'data.path={str(path)!r} has only one of test_inputs '
                       'and test_labels; valid: both or neither.')
    splits = {}
    for split in base.SPLITS:
      if f'{split}_inputs' in arrays:
        splits[split] = {key: arrays[f'{split}_{key}']
                         for key in ('inputs', 'labels', 'mask')
                         if f'{split}_{key}' in arrays}
      elif f'{split}_mask' in arrays:
        raise ValueError(f'data.path={str(path)!r} has {split}_mask but no '
                         f'{split}_inputs.')
    try:
      return base.Dataset.from_arrays(**splits,
                                      num_classes=config.num_classes)
    except ValueError as e:
      raise ValueError(f'data.path={str(path)!r}: {e}') from None

  def fingerprint(self, config) -> str | None:
    return file_sha256(_path(config.data))


base.register(Npz())
