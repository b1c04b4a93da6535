"""Datasets, generated in memory and deterministic given the seed.

- 'random': the seed project's dummy data: Gaussian features, uniformly random
  labels. Nothing to learn; a sanity baseline that should stay at chance.
- 'argmax': the same Gaussian features, labelled with the position at which
  feature 0 is largest (one class per position). The label depends only on the
  ORDER of the steps, so an encoder without positional information (and mean
  pooling) is permutation-invariant and cannot beat chance, while one with
  positions can solve it.

Both draw `num_train + num_eval` examples from one stream and split it, so the
splits are disjoint.
"""

import dataclasses
from typing import Iterator

import ml_collections
import numpy as np

DATASET_NAMES = ('argmax', 'random')

Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and eval splits (dicts with 'inputs' and 'labels') and metadata."""

  train: Batch
  eval: Batch
  num_classes: int
  vocab_size: int | None = None  # None: float features; else int tokens.


def _gaussian_features(rng: np.random.Generator, n: int, seq_len: int,
                       n_features: int) -> np.ndarray:
  return rng.standard_normal((n, seq_len, n_features), dtype=np.float32)


def load(config: ml_collections.ConfigDict, seed: int) -> Dataset:
  """Builds the dataset named by `config.name` (the `config.data` group)."""
  if config.name not in DATASET_NAMES:
    raise ValueError(
        f'data.name={config.name!r} is not a known dataset; valid names: '
        f'{", ".join(DATASET_NAMES)}.')
  rng = np.random.default_rng([seed, DATASET_NAMES.index(config.name)])
  n = config.num_train + config.num_eval
  inputs = _gaussian_features(rng, n, config.seq_len, config.n_features)
  if config.name == 'random':
    num_classes = config.num_classes
    labels = rng.integers(0, num_classes, size=n, dtype=np.int32)
  else:  # argmax
    num_classes = config.seq_len
    labels = inputs[:, :, 0].argmax(axis=1).astype(np.int32)
  split = lambda s: {'inputs': inputs[s], 'labels': labels[s]}
  return Dataset(train=split(slice(0, config.num_train)),
                 eval=split(slice(config.num_train, n)),
                 num_classes=num_classes)


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
