"""MNIST-1D (Greydanus, 2020), generated locally with the `mnist1d` package.

`mnist1d.data.make_dataset` builds 5,000 sequences of 40 scalars (ten digit
templates, padded, translated, scaled, sheared and noised), shuffles them and
splits them 4,000 train / 1,000 test. The shuffled variant applies one fixed
permutation of the 40 positions to every sequence of both splits: the package
draws it from its seeded stream right after the examples, so it is drawn here
the same way and applied to the plain arrays (exactly the package's
`shuffle_seq=True` output, up to float rounding in the normalisation).
"""

import random

import numpy as np

from posenc import checks
from posenc.datasets import base
from posenc.datasets import cache

NUM_STEPS = 40
NUM_TRAIN = 4000
NUM_TEST = 1000
NUM_CLASSES = 10
PUBLISHED_SEED = 42  # The package's default: the published dataset's recipe.


def generate(seed: int) -> dict[str, np.ndarray]:
  """The plain dataset and the shuffled variant's permutation.

  Returns 'x' (4000, 40) float32, 'y' (4000,) int32, 'x_test', 'y_test' and
  'permutation' (40,). The package seeds numpy's and Python's global random
  streams; their states are restored afterwards.
  """
  from mnist1d import data as mnist1d_data  # pylint: disable=g-import-not-at-top

  args = mnist1d_data.get_dataset_args()
  args.seed = seed
  args.shuffle_seq = False
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    ds = mnist1d_data.make_dataset(args)
    # The package's make_dataset(shuffle_seq=True) draws this next.
    permutation = np.random.permutation(args.final_seq_length)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  out = {'x': ds['x'], 'y': ds['y'], 'x_test': ds['x_test'],
         'y_test': ds['y_test']}
  out = {k: v.astype(np.int32 if k.startswith('y') else np.float32)
         for k, v in out.items()}
  expected = {'x': (NUM_TRAIN, NUM_STEPS), 'x_test': (NUM_TEST, NUM_STEPS)}
  for k, shape in expected.items():
    if out[k].shape != shape:
      raise RuntimeError(f'mnist1d produced {k} of shape {out[k].shape}; '
                         f'expected {shape}.')
  return {**out, 'permutation': permutation.astype(np.int32)}


class Mnist1d(base.Source):
  """'mnist1d' and 'mnist1d_shuffled', grouped into tokens of
  `data.patch_size` steps; cached in `data.cache_dir`. The eval split is
  the last `num_eval` training sequences (disjoint from the `num_train` used
  to train); the package's test split is 'test'."""

  streams = {'mnist1d': None, 'mnist1d_shuffled': None}
  uses_patch_size = True

  def check(self, config) -> None:
    d = config.data
    seed = config.seed if d.seed is None else d.seed
    if seed >= 2**32:  # mnist1d seeds numpy's legacy global generator.
      field = 'seed' if d.seed is None else 'data.seed'
      raise ValueError(f'{field}={seed} is too large for MNIST-1D; valid: '
                       f'0 to {2**32 - 1}.')
    if NUM_STEPS % d.patch_size:
      raise ValueError(
          f'data.patch_size={d.patch_size} does not divide the {NUM_STEPS} '
          f'steps of MNIST-1D; valid: {checks.divisors(NUM_STEPS)}.')
    tokens = NUM_STEPS // d.patch_size
    if d.seq_len != tokens:
      raise ValueError(
          f'data.seq_len={d.seq_len} does not match MNIST-1D with '
          f'data.patch_size={d.patch_size}: {NUM_STEPS} steps make {tokens} '
          f'tokens; valid: data.seq_len={tokens}.')
    if d.min_seq_len is not None or self.lengths(config)[1] != tokens:
      raise ValueError(
          'MNIST-1D sequences all have the same length; valid: '
          'data.min_seq_len and data.eval_seq_len unset.')
    if d.num_train + d.num_eval > NUM_TRAIN:
      raise ValueError(
          f'data.num_train={d.num_train} + data.num_eval={d.num_eval} is more '
          f'than the {NUM_TRAIN} MNIST-1D training sequences (eval is carved '
          f'from them); valid: num_train + num_eval <= {NUM_TRAIN}.')

  def arrays(self, config, seed: int) -> dict[str, np.ndarray]:
    """The cached plain arrays and permutation (see `generate`)."""
    return cache.load_or_generate(config.cache_dir, 'mnist1d', {'seed': seed},
                                  lambda: generate(seed))

  def load(self, config, seed) -> base.Dataset:
    arrays = self.arrays(config, seed)
    x, x_test = arrays['x'], arrays['x_test']
    if config.name == 'mnist1d_shuffled':
      x, x_test = x[:, arrays['permutation']], x_test[:, arrays['permutation']]
    # (N, 40) steps -> (N, 40 / patch_size, patch_size) tokens.
    tokens = lambda a: a.reshape(len(a), -1, config.patch_size)
    n_eval = config.num_eval
    return base.Dataset(
        train={'inputs': tokens(x[:config.num_train]),
               'labels': arrays['y'][:config.num_train]},
        eval={'inputs': tokens(x[len(x) - n_eval:]),
              'labels': arrays['y'][len(x) - n_eval:]},
        test={'inputs': tokens(x_test), 'labels': arrays['y_test']},
        num_classes=NUM_CLASSES)


SOURCE = base.register(Mnist1d())


def permutation(config, seed: int) -> np.ndarray:
  """'mnist1d_shuffled' holds step `permutation[j]` of the signal at step j
  (`config`: the data group; `seed`: the run's, unless data.seed is set)."""
  seed = seed if config.seed is None else config.seed
  return SOURCE.arrays(config, seed)['permutation']
