"""Datasets: the `Dataset` splits, and the registry of `Source` entries.

A `Source` is one `config.data.name`: it owns its generator or loader, its
config checks, the lengths it produces and its random stream. Your own arrays
need no entry: build a `Dataset` with `Dataset.from_arrays` and pass it to
`posenc.train.train_and_evaluate(..., dataset=...)`, or save them as `.npz`
and use `data.name='npz'` (`posenc.datasets.npz`).
"""

import dataclasses
import hashlib
from typing import Any, ClassVar

import numpy as np

from posenc import checks

Batch = dict[str, np.ndarray]
SPLITS = ('train', 'eval', 'test')


def _check_split(split: str, batch: Batch, num_classes: int,
                 vocab_size: int | None) -> None:
  """Raises ValueError naming the split and array that is malformed."""
  for key in ('inputs', 'labels'):
    if key not in batch:
      raise ValueError(f'{split} split has no {key!r}; it has '
                       f'{sorted(batch)}.')
  unknown = set(batch) - {'inputs', 'labels', 'mask'}
  if unknown:
    raise ValueError(f'{split} split has unknown arrays {sorted(unknown)}; '
                     'valid: inputs, labels, mask.')
  x, y = batch['inputs'], batch['labels']
  tokens = vocab_size is not None
  rank = 2 if tokens else 3
  what = 'int tokens (N, L)' if tokens else 'float features (N, L, F)'
  if x.ndim != rank or len(x) == 0 or x.shape[1] == 0:
    raise ValueError(f'{split}_inputs has shape {x.shape}; valid: {what} '
                     'with N, L >= 1 (every split of one kind).')
  if tokens:
    if not np.issubdtype(x.dtype, np.integer):
      raise ValueError(f'{split}_inputs has dtype {x.dtype}; valid: {what}.')
    if x.min() < 0 or x.max() >= vocab_size:
      raise ValueError(f'{split}_inputs holds tokens {x.min()}..{x.max()}; '
                       f'valid: 0..{vocab_size - 1} (vocab_size={vocab_size}).')
  else:
    if not np.issubdtype(x.dtype, np.floating):
      raise ValueError(f'{split}_inputs has dtype {x.dtype}; valid: {what}.')
    if not np.isfinite(x).all():
      bad = np.argwhere(~np.isfinite(x))[0]
      raise ValueError(f'{split}_inputs holds NaN or Inf (first at index '
                       f'{tuple(int(i) for i in bad)}); valid: finite values.')
  if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f'{split}_labels has shape {y.shape} and dtype {y.dtype}; '
                     f'valid: integers of shape ({len(x)},), one per example.')
  if y.min() < 0 or y.max() >= num_classes:
    raise ValueError(f'{split}_labels holds {y.min()}..{y.max()}; valid: '
                     f'0..{num_classes - 1} (num_classes={num_classes}).')
  if 'mask' in batch:
    m = batch['mask']
    if m.shape != x.shape[:2] or m.dtype != np.bool_:
      raise ValueError(f'{split}_mask has shape {m.shape} and dtype {m.dtype};'
                       f' valid: bool of shape {x.shape[:2]}, True at real '
                       'steps.')
    if not m.any(axis=1).all():
      row = int(np.flatnonzero(~m.any(axis=1))[0])
      raise ValueError(f'{split}_mask row {row} has no real step; valid: at '
                       'least one True per example.')


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Splits (dicts with 'inputs', 'labels' and, for variable lengths,
  'mask') and what the model needs to know of them."""

  train: Batch
  eval: Batch
  num_classes: int
  vocab_size: int | None = None  # None: float features; else int tokens.
  test: Batch | None = None

  @classmethod
  def from_arrays(cls, train: Any, eval: Any, test: Any = None, *,  # pylint: disable=redefined-builtin
                  num_classes: int | None = None,
                  vocab_size: int | None = None) -> 'Dataset':
    """A checked dataset from numpy arrays.

    Each split is `(inputs, labels)`, `(inputs, labels, mask)` or a dict
    with those keys: float features `(N, L, F)` or int tokens `(N, L)`, int
    labels `(N,)`, optional bool mask `(N, L)` True at real steps.
    `num_classes` defaults to the largest label + 1 and `vocab_size` (tokens)
    to the largest token + 1, over all splits.
    """
    splits = {}
    for name, value in (('train', train), ('eval', eval), ('test', test)):
      if value is None:
        continue
      if isinstance(value, dict):
        batch = {k: np.asarray(v) for k, v in value.items()}
      elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
        batch = dict(zip(('inputs', 'labels', 'mask'),
                         (np.asarray(v) for v in value)))
      else:
        raise ValueError(f'{name} split must be (inputs, labels), (inputs, '
                         f'labels, mask) or a dict; got {type(value).__name__}.')
      splits[name] = batch
    if 'train' not in splits or 'eval' not in splits:
      raise ValueError('a dataset needs train and eval splits.')
    is_int = [np.issubdtype(b['inputs'].dtype, np.integer)
              for b in splits.values() if 'inputs' in b]
    if any(is_int) and not all(is_int):
      raise ValueError('splits mix int tokens and float features; valid: '
                       'all one kind.')
    tokens = bool(is_int) and all(is_int)
    for batch in splits.values():
      if 'inputs' in batch:
        batch['inputs'] = batch['inputs'].astype(
            np.int32 if tokens else np.float32, copy=False)
      if 'labels' in batch and np.issubdtype(batch['labels'].dtype,
                                             np.integer):
        batch['labels'] = batch['labels'].astype(np.int32, copy=False)
    if num_classes is None:
      num_classes = 1 + max(int(b['labels'].max(initial=0))
                            for b in splits.values() if 'labels' in b)
      num_classes = max(num_classes, 2)
    if not tokens and vocab_size is not None:
      raise ValueError(f'vocab_size={vocab_size} applies to int token inputs, '
                       'but the inputs are float features; valid: None.')
    if tokens and vocab_size is None:
      vocab_size = 1 + max(int(b['inputs'].max(initial=0))
                           for b in splits.values() if 'inputs' in b)
    dataset = cls(train=splits['train'], eval=splits['eval'],
                  test=splits.get('test'), num_classes=num_classes,
                  vocab_size=vocab_size if tokens else None)
    dataset.check()
    return dataset

  def check(self) -> None:
    """Raises ValueError naming the split and array that is malformed."""
    if (not isinstance(self.num_classes, (int, np.integer))
        or self.num_classes < 2):
      raise ValueError(f'num_classes={self.num_classes!r} is not valid; '
                       'valid: an integer >= 2.')
    widths = set()
    for name in SPLITS:
      batch = getattr(self, name)
      if batch is None:
        continue
      _check_split(name, batch, self.num_classes, self.vocab_size)
      widths.add(batch['inputs'].shape[2:])
    if len(widths) > 1:
      raise ValueError(f'splits have different feature shapes {sorted(widths)};'
                       ' valid: the same F in every split.')

  @property
  def seq_len(self) -> int:
    """Steps of a training sequence (the longest, with padding)."""
    return self.train['inputs'].shape[1]

  @property
  def eval_seq_len(self) -> int:
    return self.eval['inputs'].shape[1]

  def example_inputs(self) -> np.ndarray:
    """One training example's inputs as zeros, `(1, L, ...)`: what
    parameters are initialised for."""
    x = self.train['inputs']
    return np.zeros((1,) + x.shape[1:], x.dtype)

  def sha256(self) -> str:
    """A digest of every array, for telling datasets apart on resume."""
    digest = hashlib.sha256()
    for name in SPLITS:
      batch = getattr(self, name)
      for key in sorted(batch or {}):
        a = np.ascontiguousarray(batch[key])
        digest.update(f'{name}/{key}/{a.dtype}/{a.shape}'.encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def eval_seq_len(config: Any) -> int:
  """`data.eval_seq_len`, or `data.seq_len` if unset (`config`: the data
  group)."""
  return config.seq_len if config.eval_seq_len is None else config.eval_seq_len


class Source:
  """One registered dataset, selected by `config.data.name`.

  Subclasses set `streams`, which maps each name the entry serves (one entry
  may serve several related names) to its random stream: a number fixed once
  and for all, so that adding a dataset never changes another's examples
  (None: the entry draws no numbers of its own); and implement `load`.
  """

  streams: ClassVar[dict[str, int | None]] = {}
  # Whether `data.patch_size` groups its steps into tokens (else it must
  # be 1).
  uses_patch_size: ClassVar[bool] = False
  # Whether its tokens are patches of a square grid in raster order, which
  # the 2-D encodings need; None: only the data knows (a file).
  grid: ClassVar[bool | None] = False

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(self.streams)

  def check_fields(self, config: Any) -> None:
    """Checks the config fields this entry owns; runs whichever dataset is
    selected (the fields are in every config)."""

  def check(self, config: Any) -> None:
    """Checks what must hold when this dataset is selected."""

  def lengths(self, config: Any) -> tuple[int, int] | None:
    """(training length, eval length) before loading; None if only the
    data knows (a file)."""
    return config.data.seq_len, eval_seq_len(config.data)

  def load(self, config: Any, seed: int) -> Dataset:
    """The dataset for the `config.data` group and data seed `seed`."""
    raise NotImplementedError

  def references(self, config: Any, seed: int) -> dict[str, float]:
    """Test accuracies of simple models computed on the same splits
    (`config`: the data group), logged beside the run's; {} if none."""
    del config, seed
    return {}

  def published(self, config: Any) -> dict[str, float]:
    """Test accuracies published for this test split (`config`: the data
    group), each named with its method and source; {} if none apply."""
    del config
    return {}

  def fingerprint(self, config: Any) -> str | None:
    """A digest of data that the config does not determine (a file), or
    None."""
    del config
    return None

  def split_rngs(self, name: str, seed: int) -> list[np.random.Generator]:
    """Independent generators for the train, eval and test splits of
    dataset `name`."""
    return [np.random.default_rng([seed, self.streams[name], split])
            for split in range(3)]


_REGISTRY: dict[str, Source] = {}


def register(entry: Source) -> Source:
  """Adds `entry` under each of its names; returns it."""
  if not entry.names:
    raise ValueError(f'{type(entry).__name__} has no names.')
  taken = {stream for name, source in _REGISTRY.items()
           if not checks.same_class(source, entry)
           for stream in [source.streams[name]] if stream is not None}
  clash = sorted({s for s in entry.streams.values() if s is not None} & taken)
  if clash:
    raise ValueError(f'{type(entry).__name__}: streams {clash} are taken; '
                     f'taken: {sorted(taken)}.')
  for name in entry.names:
    if name in _REGISTRY and not checks.same_class(_REGISTRY[name], entry):
      raise ValueError(f'a dataset named {name!r} is registered already '
                       f'({type(_REGISTRY[name]).__name__}); unregister it '
                       'first.')
    _REGISTRY[name] = entry
  return entry


def unregister(name: str) -> None:
  """Removes the dataset `name` (for tests and notebooks)."""
  get(name)  # A clear error for an unknown name.
  del _REGISTRY[name]


def names() -> tuple[str, ...]:
  return tuple(_REGISTRY)


def get(name: str) -> Source:
  if name not in _REGISTRY:
    raise ValueError(f'data.name={name!r} is not a known dataset; valid '
                     f'names: {", ".join(_REGISTRY)}.')
  return _REGISTRY[name]
