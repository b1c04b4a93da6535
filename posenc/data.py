"""Datasets behind `config.data.name`, deterministic given the seed.

- Synthetic position suite ('argmax', 'before', 'sorted', 'marker', and the
  'random' baseline): float sequences generated in memory, any length; see
  `posenc.datasets.synthetic`.
- 'listops': nested MIN/MAX/MED/SM expressions as tokens, lengths in the band
  `[min_seq_len, seq_len]`; see `posenc.datasets.listops`.
- 'mnist1d' and 'mnist1d_shuffled': 40-step MNIST-1D sequences (4,000 train,
  1,000 test), grouped into tokens of `patch_size` steps; see
  `posenc.datasets.mnist1d`.

Every dataset has 'train' and 'eval' splits; ListOps and MNIST-1D also have
'test'. MNIST-1D's eval split is the last `num_eval` training sequences
(carved off for validation, disjoint from the `num_train` used to train).
ListOps and MNIST-1D take seconds to generate and are cached in
`data.cache_dir` (see `posenc.datasets.cache`); the synthetic tasks take
milliseconds and are generated on every run.

Splits are drawn from independent streams of one generator seeded with
`data.seed` (None: the run's `config.seed`).
"""

import dataclasses
from typing import Iterator

import ml_collections
import numpy as np

from posenc.datasets import cache
from posenc.datasets import listops
from posenc.datasets import mnist1d
from posenc.datasets import synthetic

DATASET_NAMES = synthetic.TASKS + ('listops', 'mnist1d', 'mnist1d_shuffled')
# Each dataset's random stream, fixed once and for all: a new dataset gets a
# new number, so no other dataset's examples change.
_STREAMS = {'argmax': 0, 'before': 1, 'random': 2, 'sorted': 3, 'marker': 4,
            'listops': 5}
SYNTHETIC = synthetic.TASKS
MNIST1D = ('mnist1d', 'mnist1d_shuffled')

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Splits (dicts with 'inputs', 'labels' and, for variable lengths,
  'mask') and metadata."""

  train: Batch
  eval: Batch
  num_classes: int
  vocab_size: int | None = None  # None: float features; else int tokens.
  test: Batch | None = None


def eval_seq_len(config: ml_collections.ConfigDict) -> int:
  return config.seq_len if config.eval_seq_len is None else config.eval_seq_len


def num_classes(config: ml_collections.ConfigDict) -> int:
  if config.name == 'listops':
    return listops.NUM_CLASSES
  if config.name in MNIST1D:
    return mnist1d.NUM_CLASSES
  return synthetic.num_classes(config)


def vocab_size(config: ml_collections.ConfigDict) -> int | None:
  """Token vocabulary of the dataset; None for float features."""
  return listops.VOCAB_SIZE if config.name == 'listops' else None


def input_shape(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """Shape of one training example's inputs: (L,) tokens or (L, F) floats."""
  if config.name == 'listops':
    return (config.seq_len,)
  if config.name in MNIST1D:
    return (config.seq_len, config.patch_size)
  return (config.seq_len, config.n_features)


def data_seed(config: ml_collections.ConfigDict, seed: int) -> int:
  return seed if config.seed is None else config.seed


def _split_rngs(config: ml_collections.ConfigDict, seed: int):
  stream = _STREAMS[config.name]
  return [np.random.default_rng([seed, stream, split]) for split in range(3)]


def _listops(config: ml_collections.ConfigDict, seed: int) -> Dataset:
  low = listops.SHORTEST if config.min_seq_len is None else config.min_seq_len
  params = dict(seed=seed, min_len=low, max_len=config.seq_len,
                eval_max_len=eval_seq_len(config), num_train=config.num_train,
                num_eval=config.num_eval, max_depth=config.listops_max_depth,
                max_args=config.listops_max_args)

  def generate():
    rngs = _split_rngs(config, seed)
    kwargs = dict(max_depth=config.listops_max_depth,
                  max_args=config.listops_max_args, min_len=low)
    train = listops.generate(rngs[0], config.num_train,
                             max_len=config.seq_len, **kwargs)
    seen = {listops.key(x) for x in train['inputs']}
    held_out = listops.generate(rngs[1], 2 * config.num_eval,
                                max_len=eval_seq_len(config), exclude=seen,
                                **kwargs)
    return {**{f'train_{k}': v for k, v in train.items()},
            **{f'held_{k}': v for k, v in held_out.items()}}

  arrays = cache.load_or_generate(config.cache_dir, 'listops', params,
                                  generate)
  train = {k[6:]: v for k, v in arrays.items() if k.startswith('train_')}
  held = {k[5:]: v for k, v in arrays.items() if k.startswith('held_')}
  n = config.num_eval
  return Dataset(train=train,
                 eval={k: v[:n] for k, v in held.items()},
                 test={k: v[n:] for k, v in held.items()},
                 num_classes=listops.NUM_CLASSES,
                 vocab_size=listops.VOCAB_SIZE)


def _mnist1d_arrays(config: ml_collections.ConfigDict, seed: int):
  return cache.load_or_generate(config.cache_dir, 'mnist1d', {'seed': seed},
                                lambda: mnist1d.generate(seed))


def mnist1d_permutation(config: ml_collections.ConfigDict,
                        seed: int) -> np.ndarray:
  """'mnist1d_shuffled' holds step `permutation[j]` of the signal at step j
  (`seed`: the run's, unless data.seed is set)."""
  return _mnist1d_arrays(config, data_seed(config, seed))['permutation']


def _mnist1d(config: ml_collections.ConfigDict, seed: int) -> Dataset:
  arrays = _mnist1d_arrays(config, seed)
  x, x_test = arrays['x'], arrays['x_test']
  if config.name == 'mnist1d_shuffled':
    x, x_test = x[:, arrays['permutation']], x_test[:, arrays['permutation']]
  # (N, 40) steps -> (N, 40 / patch_size, patch_size) tokens.
  tokens = lambda a: a.reshape(len(a), -1, config.patch_size)
  n_eval = config.num_eval
  return Dataset(
      train={'inputs': tokens(x[:config.num_train]),
             'labels': arrays['y'][:config.num_train]},
      eval={'inputs': tokens(x[len(x) - n_eval:]),
            'labels': arrays['y'][len(x) - n_eval:]},
      test={'inputs': tokens(x_test), 'labels': arrays['y_test']},
      num_classes=mnist1d.NUM_CLASSES)


def load(config: ml_collections.ConfigDict, seed: int) -> Dataset:
  """Builds the dataset named by `config.name` (the `config.data` group).

  `seed` is the run's seed, used unless `config.seed` (data.seed) is set.
  """
  if config.name not in DATASET_NAMES:
    raise ValueError(
        f'data.name={config.name!r} is not a known dataset; valid names: '
        f'{", ".join(DATASET_NAMES)}.')
  seed = data_seed(config, seed)
  if config.name == 'listops':
    return _listops(config, seed)
  if config.name in MNIST1D:
    return _mnist1d(config, seed)
  train_rng, eval_rng, _ = _split_rngs(config, seed)
  return Dataset(
      train=synthetic.generate(config, train_rng, config.num_train,
                               config.seq_len),
      eval=synthetic.generate(config, eval_rng, config.num_eval,
                              eval_seq_len(config)),
      num_classes=num_classes(config))


def num_examples(split: Batch) -> int:
  return len(split['labels'])


def _rows(batch_size: int, shard: tuple[int, int]) -> slice:
  """The rows of a global batch that process `shard[0]` of `shard[1]`
  holds: a contiguous block, in device order."""
  index, count = shard
  if batch_size % count:
    raise ValueError(f'train.batch_size={batch_size} does not divide over '
                     f'{count} processes; valid: a multiple of {count}.')
  per = batch_size // count
  return slice(index * per, (index + 1) * per)


def train_batches(split: Batch, batch_size: int, rng: np.random.Generator,
                  start: int = 0, shard: tuple[int, int] = (0, 1)
                  ) -> Iterator[Batch]:
  """One epoch of shuffled full batches from batch `start` on (a resumed
  run's position); the remainder is dropped.

  With `shard=(i, n)`, yields only process i's rows of each global batch
  (every process draws the same order from the same `rng`).
  """
  order = rng.permutation(num_examples(split))
  rows = _rows(batch_size, shard)
  for start in range(start * batch_size, len(order) - batch_size + 1,
                     batch_size):
    idx = order[start:start + batch_size][rows]
    yield {k: v[idx] for k, v in split.items()}


def eval_batches(split: Batch, batch_size: int,
                 shard: tuple[int, int] = (0, 1)) -> Iterator[Batch]:
  """Every example once, in order; the last batch is padded to `batch_size`.

  Each batch carries 'weights' (1 for real examples, 0 for padding) so that
  metrics summed with these weights are exact. `shard` as in
  `train_batches`.
  """
  n = num_examples(split)
  rows = _rows(batch_size, shard)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    batch = {k: np.concatenate([v[start:stop],
                                np.zeros((pad,) + v.shape[1:], v.dtype)])
             for k, v in split.items()}
    batch['weights'] = np.concatenate(
        [np.ones(stop - start, np.float32), np.zeros(pad, np.float32)])
    yield {k: v[rows] for k, v in batch.items()}
