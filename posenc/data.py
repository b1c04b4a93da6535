"""Datasets behind `config.data.name`, deterministic given the seed, and
their batches.

Every dataset is one entry (`posenc.datasets.base.Source`) in a registry:
- the synthetic position suite ('argmax', 'before', 'sorted', 'marker', and
  the 'random' baseline): float sequences generated in memory, any length;
  see `posenc.datasets.synthetic`;
- 'listops': nested MIN/MAX/MED/SM expressions as tokens, lengths in the band
  `[min_seq_len, seq_len]`; see `posenc.datasets.listops`;
- 'mnist1d' and 'mnist1d_shuffled': 40-step MNIST-1D sequences, grouped into
  tokens of `patch_size` steps; see `posenc.datasets.mnist1d`;
- 'digits' and 'digits_shuffled': scikit-learn's 8x8 handwritten digits,
  pixels or square patches in raster order; see `posenc.datasets.digits`;
- 'vowels': JapaneseVowels, 7 to 29 frames of 12 coefficients, padded and
  masked; see `posenc.datasets.vowels`;
- 'npz': your own arrays from `data.path`; see `posenc.datasets.npz`;
- the Chomsky-hierarchy tasks of Ruoss et al. (2023), 'even_pairs',
  'parity_check', ... (`posenc.datasets.chomsky`), registered when that
  module is imported, as `configs/chomsky.py` does.

Every dataset has 'train' and 'eval' splits; ListOps, MNIST-1D, digits and
JapaneseVowels also have 'test'. ListOps, MNIST-1D and JapaneseVowels take a
second or more to generate or load and are cached in `data.cache_dir` (see
`posenc.datasets.cache`). Generated splits are drawn
from independent streams of one generator seeded with `data.seed` (None: the
run's `config.seed`).

Your own arrays, from Python: `Dataset.from_arrays(train=(x, y), eval=...)`
and `posenc.train.train_and_evaluate(config, workdir, dataset=...)`.
"""

from typing import Iterator

import ml_collections
import numpy as np

from posenc import checks
from posenc.datasets import base
# Importing an entry's module registers it; this order is the order of
# names() in messages.
# pylint: disable=g-bad-import-order,unused-import
from posenc.datasets import synthetic
from posenc.datasets import listops
from posenc.datasets import mnist1d
from posenc.datasets import digits
from posenc.datasets import vowels
from posenc.datasets import npz
# pylint: enable=g-bad-import-order,unused-import

Batch = base.Batch
Dataset = base.Dataset
Source = base.Source
register = base.register
unregister = base.unregister
get = base.get
names = base.names


def data_seed(config: ml_collections.ConfigDict, seed: int) -> int:
  """The data group's seed: `data.seed`, or the run's `seed` if unset."""
  return seed if config.seed is None else config.seed


def check_config(config: ml_collections.ConfigDict) -> None:
  """The data group's generic fields, every entry's own fields, then the
  selected dataset's checks. `config` is the whole config."""
  checks.choice(config, 'data.name', names())
  for field in ('seq_len', 'num_train', 'num_eval'):
    checks.positive_int(config, f'data.{field}')
  for field in ('min_seq_len', 'eval_seq_len', 'num_classes'):
    checks.positive_int(config, f'data.{field}', optional=True)
  checks.non_negative_int(config, 'data.seed', optional=True)
  checks.positive_int(config, 'data.patch_size')
  d = config.data
  if d.patch_size != 1 and not get(d.name).uses_patch_size:
    users = sorted(n for n in names() if get(n).uses_patch_size)
    raise ValueError(
        f'data.patch_size={d.patch_size} applies to {", ".join(users)}; '
        f'valid for data.name={d.name!r}: 1.')
  if not isinstance(d.cache_dir, str) or not d.cache_dir:
    raise ValueError(f'data.cache_dir={d.cache_dir!r} is not valid; '
                     'it must be a folder path.')
  if d.min_seq_len is not None and d.min_seq_len > d.seq_len:
    raise ValueError(
        f'data.min_seq_len={d.min_seq_len} is longer than data.seq_len='
        f'{d.seq_len}; valid: min_seq_len <= seq_len.')
  for source in {id(s): s for s in map(get, names())}.values():
    source.check_fields(config)
  get(d.name).check(config)


def lengths(config: ml_collections.ConfigDict) -> tuple[int, int] | None:
  """(training length, eval length) of the selected dataset, or None where
  only its data knows."""
  return get(config.data.name).lengths(config)


def load(config: ml_collections.ConfigDict, seed: int) -> Dataset:
  """Builds the dataset named by `config.name` (the `config.data` group).

  `seed` is the run's seed, used unless `config.seed` (data.seed) is set.
  """
  return get(config.name).load(config, data_seed(config, seed))


def references(config: ml_collections.ConfigDict, seed: int
               ) -> dict[str, dict[str, float]]:
  """Test accuracies beside which a run reports its own: 'computed' (simple
  models on the same split, `Source.references`) and 'published'
  (`Source.published`). `config` is the data group, `seed` the run's."""
  source = get(config.name)
  return {'computed': source.references(config, data_seed(config, seed)),
          'published': source.published(config)}


def fingerprint(config: ml_collections.ConfigDict) -> str | None:
  """A digest of the data where the config does not determine it (a file);
  None otherwise. `config` is the whole config."""
  return get(config.data.name).fingerprint(config)


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
