"""The synthetic position suite: float sequences whose label depends on order.

Every step has `n_features` standard-normal features. The tasks:

- 'argmax': the position at which feature 0 is largest (one class per
  position): absolute position.
- 'before': 1 if the step where feature 0 is largest comes before the step
  where feature 1 is largest among the other steps: relative order, two
  classes at any length. (Excluding the first step keeps the two steps
  distinct: were they the same, the label would be readable without order.)
- 'sorted': 1 if feature 0 is in ascending order; a negative is a sorted
  sequence with two random steps swapped: order of all neighbours.
- 'marker': feature 1 is 0 except at one marker step (1.0); the label is 1 if
  feature 0 at `offset` steps after the marker is larger than at `offset`
  steps before it: a relative-offset lookup, two classes at any length.
- 'random': uniformly random labels; nothing to learn (the seed project's
  dummy data, a sanity baseline).

Each task except 'random' is invisible to a model without positions: swapping
two steps leaves the multiset of steps unchanged and, for a suitable swap,
changes the label, so a permutation-invariant model sees the same input for
labels that occur equally often (argmax: every position equally likely). The
'marker' task compares two steps instead of reading one value out for this
reason: the value at an offset would leak through the bag of values.

With `min_seq_len` set, each sequence has a length drawn uniformly from
`[min_seq_len, length]`, is zero-padded to `length` and carries a boolean
'mask' (True at real steps); labels look at real steps only.
"""

import ml_collections
import numpy as np

from posenc import checks
from posenc.datasets import base

Batch = dict[str, np.ndarray]
TASKS = ('argmax', 'before', 'random', 'sorted', 'marker')
MARKER_FEATURE = 1  # The feature that marks the marker step.


RANDOM_NUM_CLASSES = 10  # 'random' when data.num_classes is unset.


def num_classes(config: ml_collections.ConfigDict) -> int:
  if config.name == 'argmax':
    return config.seq_len
  if config.name == 'random':
    return config.num_classes or RANDOM_NUM_CLASSES
  return 2


def min_length(config: ml_collections.ConfigDict) -> int:
  """The shortest sequence a task can be built on."""
  return {'marker': 2 * config.marker_offset + 1}.get(config.name, 2)


def _first_largest(x_NxL: np.ndarray, valid_NxL: np.ndarray) -> np.ndarray:
  # Padded steps can never be the largest: they are set to -inf here.
  return np.where(valid_NxL, x_NxL, -np.inf).argmax(1)


def _sorted_labels(rng: np.random.Generator, inputs: np.ndarray,
                   valid: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """Sorts feature 0 over the real steps, then swaps two steps in half."""
  n = len(lengths)
  inputs[:, :, 0] = np.sort(np.where(valid, inputs[:, :, 0], np.inf), axis=1)
  labels = rng.random(n) < 0.5
  i = rng.integers(0, lengths)
  j = (i + rng.integers(1, lengths)) % lengths  # Distinct from i.
  rows = np.flatnonzero(~labels)
  x0 = inputs[:, :, 0]
  x0[rows, i[rows]], x0[rows, j[rows]] = x0[rows, j[rows]], x0[rows, i[rows]]
  return labels


def _marker_labels(rng: np.random.Generator, inputs: np.ndarray,
                   lengths: np.ndarray, offset: int) -> np.ndarray:
  rows = np.arange(len(lengths))
  at = rng.integers(offset, lengths - offset)
  inputs[:, :, MARKER_FEATURE] = 0.0
  inputs[rows, at, MARKER_FEATURE] = 1.0
  return inputs[rows, at + offset, 0] > inputs[rows, at - offset, 0]


def generate(config: ml_collections.ConfigDict, rng: np.random.Generator,
             n: int, length: int) -> Batch:
  """n examples of task `config.name` with at most `length` steps."""
  inputs = rng.standard_normal((n, length, config.n_features),
                               dtype=np.float32)
  batch = {}
  lengths = np.full(n, length)
  if config.min_seq_len is not None:
    lengths = rng.integers(min(config.min_seq_len, length), length + 1, size=n)
    batch['mask'] = np.arange(length)[None, :] < lengths[:, None]
  valid = batch.get('mask', np.ones((n, length), bool))
  if config.name == 'random':
    labels = rng.integers(0, num_classes(config), size=n)
  elif config.name == 'argmax':
    labels = _first_largest(inputs[:, :, 0], valid)
  elif config.name == 'before':
    first = _first_largest(inputs[:, :, 0], valid)
    others = valid & (np.arange(length) != first[:, None])
    labels = first < _first_largest(inputs[:, :, 1], others)
  elif config.name == 'sorted':
    labels = _sorted_labels(rng, inputs, valid, lengths)
  elif config.name == 'marker':
    labels = _marker_labels(rng, inputs, lengths, config.marker_offset)
  else:
    raise ValueError(f'data.name={config.name!r} is not a synthetic task; '
                     f'valid names: {", ".join(TASKS)}.')
  inputs = np.where(valid[:, :, None], inputs, np.float32(0))
  return {'inputs': inputs, 'labels': labels.astype(np.int32), **batch}


class Synthetic(base.Source):
  """The position suite, generated in memory on every run (milliseconds)."""

  streams = {'argmax': 0, 'before': 1, 'random': 2, 'sorted': 3, 'marker': 4}

  def check_fields(self, config) -> None:
    checks.positive_int(config, 'data.n_features')
    checks.positive_int(config, 'data.marker_offset')

  def check(self, config) -> None:
    d = config.data
    shortest = min_length(d)
    for field in ('seq_len', 'min_seq_len', 'eval_seq_len'):
      if d[field] is not None and d[field] < shortest:
        raise ValueError(
            f'data.{field}={d[field]} is too short for data.name={d.name!r}; '
            f'valid: at least {shortest}.')
    if d.name in ('before', 'marker') and d.n_features < 2:
      raise ValueError(
          f'data.n_features={d.n_features} is too few for data.name='
          f'{d.name!r}, which uses features 0 and 1; valid: at least 2.')
    if d.name == 'argmax' and self.lengths(config)[1] != d.seq_len:
      raise ValueError(
          f'data.eval_seq_len={d.eval_seq_len} differs from data.seq_len='
          f"{d.seq_len}, but 'argmax' has one class per position; valid: the "
          "same length, or data.name='before' (two classes at any length).")

  def load(self, config, seed) -> base.Dataset:
    train_rng, eval_rng, _ = self.split_rngs(config.name, seed)
    eval_len = base.eval_seq_len(config)
    return base.Dataset(
        train=generate(config, train_rng, config.num_train, config.seq_len),
        eval=generate(config, eval_rng, config.num_eval, eval_len),
        num_classes=num_classes(config))


base.register(Synthetic())
