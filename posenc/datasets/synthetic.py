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
MARKER_FEATURE = 1  # The feature that marks the marker step.
RANDOM_NUM_CLASSES = 10  # 'random' when data.num_classes is unset.


def _first_largest(x_NxL: np.ndarray, valid_NxL: np.ndarray) -> np.ndarray:
  # Padded steps can never be the largest: they are set to -inf here.
  return np.where(valid_NxL, x_NxL, -np.inf).argmax(1)


class Task(base.Source):
  """One task of the suite: float inputs generated in memory on every run
  (milliseconds), its labels from `labels`. Subclasses set `streams` (one
  name) and implement `labels`; the shared fields are `data.n_features` and,
  for 'marker', `data.marker_offset`."""

  min_features = 1  # Features the label reads.

  def num_classes(self, config: ml_collections.ConfigDict) -> int:
    """Classes, from the `config.data` group."""
    del config
    return 2

  def min_length(self, config: ml_collections.ConfigDict) -> int:
    """The shortest sequence the task can be built on."""
    del config
    return 2

  def labels(self, config: ml_collections.ConfigDict, rng: np.random.Generator,
             inputs: np.ndarray, valid: np.ndarray,
             lengths: np.ndarray) -> np.ndarray:
    """Labels of `inputs` (N, L, F), which it may rewrite in place; `valid`
    (N, L) marks real steps, `lengths` (N,) counts them."""
    raise NotImplementedError

  def check_fields(self, config) -> None:
    checks.positive_int(config, 'data.n_features')

  def check(self, config) -> None:
    d = config.data
    shortest = self.min_length(d)
    for field in ('seq_len', 'min_seq_len', 'eval_seq_len'):
      if d[field] is not None and d[field] < shortest:
        raise ValueError(
            f'data.{field}={d[field]} is too short for data.name={d.name!r}; '
            f'valid: at least {shortest}.')
    if d.n_features < self.min_features:
      raise ValueError(
          f'data.n_features={d.n_features} is too few for data.name='
          f'{d.name!r}, which uses features 0 to {self.min_features - 1}; '
          f'valid: at least {self.min_features}.')

  def generate(self, config: ml_collections.ConfigDict,
               rng: np.random.Generator, n: int, length: int) -> Batch:
    """n examples with at most `length` steps (`config`: the data group)."""
    inputs = rng.standard_normal((n, length, config.n_features),
                                 dtype=np.float32)
    batch = {}
    lengths = np.full(n, length)
    if config.min_seq_len is not None:
      lengths = rng.integers(min(config.min_seq_len, length), length + 1,
                             size=n)
      batch['mask'] = np.arange(length)[None, :] < lengths[:, None]
    valid = batch.get('mask', np.ones((n, length), bool))
    labels = self.labels(config, rng, inputs, valid, lengths)
    inputs = np.where(valid[:, :, None], inputs, np.float32(0))
    return {'inputs': inputs, 'labels': labels.astype(np.int32), **batch}

  def load(self, config, seed) -> base.Dataset:
    train_rng, eval_rng, _ = self.split_rngs(config.name, seed)
    eval_len = base.eval_seq_len(config)
    return base.Dataset(
        train=self.generate(config, train_rng, config.num_train,
                            config.seq_len),
        eval=self.generate(config, eval_rng, config.num_eval, eval_len),
        num_classes=self.num_classes(config))


class Argmax(Task):
  """The position at which feature 0 is largest: absolute position."""

  streams = {'argmax': 0}

  def num_classes(self, config):
    return config.seq_len

  def check(self, config) -> None:
    super().check(config)
    d = config.data
    if base.eval_seq_len(d) != d.seq_len:
      raise ValueError(
          f'data.eval_seq_len={d.eval_seq_len} differs from data.seq_len='
          f"{d.seq_len}, but 'argmax' has one class per position; valid: the "
          "same length, or data.name='before' (two classes at any length).")

  def labels(self, config, rng, inputs, valid, lengths):
    return _first_largest(inputs[:, :, 0], valid)


class Before(Task):
  """1 if feature 0 peaks before feature 1 does among the other steps:
  relative order."""

  streams = {'before': 1}
  min_features = 2

  def labels(self, config, rng, inputs, valid, lengths):
    first = _first_largest(inputs[:, :, 0], valid)
    others = valid & (np.arange(inputs.shape[1]) != first[:, None])
    return first < _first_largest(inputs[:, :, 1], others)


class Random(Task):
  """Uniformly random labels: nothing to learn (a sanity baseline)."""

  streams = {'random': 2}

  def num_classes(self, config):
    return config.num_classes or RANDOM_NUM_CLASSES

  def labels(self, config, rng, inputs, valid, lengths):
    return rng.integers(0, self.num_classes(config), size=len(lengths))


class Sorted(Task):
  """1 if feature 0 ascends; a negative is a sorted sequence with two random
  steps swapped: order of all neighbours."""

  streams = {'sorted': 3}

  def labels(self, config, rng, inputs, valid, lengths):
    n = len(lengths)
    inputs[:, :, 0] = np.sort(np.where(valid, inputs[:, :, 0], np.inf),
                              axis=1)
    labels = rng.random(n) < 0.5
    i = rng.integers(0, lengths)
    j = (i + rng.integers(1, lengths)) % lengths  # Distinct from i.
    rows = np.flatnonzero(~labels)
    x0 = inputs[:, :, 0]
    x0[rows, i[rows]], x0[rows, j[rows]] = x0[rows, j[rows]], x0[rows, i[rows]]
    return labels


class Marker(Task):
  """1 if feature 0 `data.marker_offset` steps after the marker (feature 1)
  is larger than as many steps before it: a relative-offset lookup."""

  streams = {'marker': 4}
  min_features = 2

  def check_fields(self, config) -> None:
    super().check_fields(config)
    checks.positive_int(config, 'data.marker_offset')

  def min_length(self, config):
    return 2 * config.marker_offset + 1

  def labels(self, config, rng, inputs, valid, lengths):
    offset = config.marker_offset
    rows = np.arange(len(lengths))
    at = rng.integers(offset, lengths - offset)
    inputs[:, :, MARKER_FEATURE] = 0.0
    inputs[rows, at, MARKER_FEATURE] = 1.0
    return inputs[rows, at + offset, 0] > inputs[rows, at - offset, 0]


# Registered in this order, the order of data.names() (and of TASKS).
TASKS = tuple(base.register(task).names[0] for task in (
    Argmax(), Before(), Random(), Sorted(), Marker()))


def generate(config: ml_collections.ConfigDict, rng: np.random.Generator,
             n: int, length: int) -> Batch:
  """n examples of task `config.name` (the data group) with at most
  `length` steps."""
  return base.get(config.name).generate(config, rng, n, length)


def num_classes(config: ml_collections.ConfigDict) -> int:
  return base.get(config.name).num_classes(config)


def min_length(config: ml_collections.ConfigDict) -> int:
  """The shortest sequence task `config.name` can be built on."""
  return base.get(config.name).min_length(config)
