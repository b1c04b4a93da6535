"""Datasets, generated in memory and deterministic given the seed.

- 'random': the seed project's dummy data: Gaussian features, uniformly random
  labels. Nothing to learn; a sanity baseline that should stay at chance.
- 'argmax': the same Gaussian features, labelled with the position at which
  feature 0 is largest (one class per position). The label depends only on the
  ORDER of the steps, so an encoder without positional information (and mean
  pooling) is permutation-invariant and cannot beat chance, while one with
  positions can solve it.
- 'before': the same features; label 1 if the step where feature 0 is largest
  comes before the step where feature 1 is largest, else 0. Two classes at
  any length, so a model can be evaluated on longer sequences than it saw.

With `min_seq_len` set, each sequence has a length drawn uniformly from
`[min_seq_len, length]`, is zero-padded to `length` and carries a boolean
'mask' (True at real steps); labels look at the real steps only. The eval
split has length `eval_seq_len` (default: `seq_len`).

Train and eval examples are drawn from independent streams of one generator;
with continuous features a repeated sequence has probability zero (and a test
checks it).
"""

import dataclasses
from typing import Iterator

import ml_collections
import numpy as np

DATASET_NAMES = ('argmax', 'before', 'random')

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and eval splits (dicts with 'inputs', 'labels' and, for variable
  lengths, 'mask') and metadata."""

  train: Batch
  eval: Batch
  num_classes: int
  vocab_size: int | None = None  # None: float features; else int tokens.


def eval_seq_len(config: ml_collections.ConfigDict) -> int:
  return config.seq_len if config.eval_seq_len is None else config.eval_seq_len


def num_classes(config: ml_collections.ConfigDict) -> int:
  return {'argmax': config.seq_len, 'before': 2,
          'random': config.num_classes}[config.name]


def _split(config: ml_collections.ConfigDict, rng: np.random.Generator,
           n: int, length: int) -> Batch:
  """n examples of at most `length` steps."""
  inputs = rng.standard_normal((n, length, config.n_features),
                               dtype=np.float32)
  batch = {}
  if config.min_seq_len is not None:
    lengths = rng.integers(min(config.min_seq_len, length), length + 1, size=n)
    batch['mask'] = np.arange(length)[None, :] < lengths[:, None]
    inputs *= batch['mask'][:, :, None]
  valid = batch.get('mask', np.ones((n, length), bool))
  # Padded steps can never be the largest: they are set to -inf here.
  first_largest = lambda f: np.where(valid, inputs[:, :, f], -np.inf).argmax(1)
  if config.name == 'random':
    labels = rng.integers(0, config.num_classes, size=n)
  elif config.name == 'argmax':
    labels = first_largest(0)
  else:  # before
    labels = first_largest(0) < first_largest(1)
  return {'inputs': inputs, 'labels': labels.astype(np.int32), **batch}


def load(config: ml_collections.ConfigDict, seed: int) -> Dataset:
  """Builds the dataset named by `config.name` (the `config.data` group)."""
  if config.name not in DATASET_NAMES:
    raise ValueError(
        f'data.name={config.name!r} is not a known dataset; valid names: '
        f'{", ".join(DATASET_NAMES)}.')
  train_rng, eval_rng = (
      np.random.default_rng([seed, DATASET_NAMES.index(config.name), split])
      for split in (0, 1))
  return Dataset(
      train=_split(config, train_rng, config.num_train, config.seq_len),
      eval=_split(config, eval_rng, config.num_eval, eval_seq_len(config)),
      num_classes=num_classes(config))


def num_examples(split: Batch) -> int:
  return len(split['labels'])


def train_batches(split: Batch, batch_size: int,
                  rng: np.random.Generator) -> Iterator[Batch]:
  """One epoch of shuffled full batches; the remainder is dropped."""
  order = rng.permutation(num_examples(split))
  for start in range(0, len(order) - batch_size + 1, batch_size):
    idx = order[start:start + batch_size]
    yield {k: v[idx] for k, v in split.items()}


def eval_batches(split: Batch, batch_size: int) -> Iterator[Batch]:
  """Every example once, in order; the last batch is padded to `batch_size`.

  Each batch carries 'weights' (1 for real examples, 0 for padding) so that
  metrics summed with these weights are exact.
  """
  n = num_examples(split)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    batch = {k: np.concatenate([v[start:stop],
                                np.zeros((pad,) + v.shape[1:], v.dtype)])
             for k, v in split.items()}
    batch['weights'] = np.concatenate(
        [np.ones(stop - start, np.float32), np.zeros(pad, np.float32)])
    yield batch
