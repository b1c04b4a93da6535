"""Tests of MNIST-1D loading: splits, patches and the shuffled variant."""

import random

import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc.datasets import mnist1d


def _config(cache_dir, name='mnist1d', **overrides):
  config = default.get_config().data
  config.update(dict(name=name, seed=42, seq_len=40, patch_size=1,
                     num_train=3600, num_eval=400, cache_dir=str(cache_dir)))
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  return tmp_path_factory.mktemp('cache')


def test_shapes_splits_and_classes(cache_dir):
  ds = data.load(_config(cache_dir), seed=0)
  assert ds.train['inputs'].shape == (3600, 40, 1)
  assert ds.eval['inputs'].shape == (400, 40, 1)
  assert ds.test['inputs'].shape == (1000, 40, 1)
  assert ds.num_classes == 10 and ds.vocab_size is None
  for split in (ds.train, ds.eval, ds.test):
    assert split['inputs'].dtype == np.float32
    assert split['labels'].dtype == np.int32
    assert set(np.unique(split['labels'])) == set(range(10))
    assert 'mask' not in split
  # Near-balanced classes, as generated (the package makes 500 per class).
  counts = np.bincount(ds.train['labels'])
  assert counts.min() > 300 and counts.max() < 420


def test_patches_group_consecutive_steps(cache_dir):
  steps = data.load(_config(cache_dir), seed=0)
  patches = data.load(_config(cache_dir, seq_len=10, patch_size=4), seed=0)
  assert patches.train['inputs'].shape == (3600, 10, 4)
  np.testing.assert_array_equal(
      patches.train['inputs'].reshape(3600, 40), steps.train['inputs'][..., 0])
  np.testing.assert_array_equal(patches.test['labels'], steps.test['labels'])


def test_shuffled_is_one_fixed_permutation_of_the_plain_data(cache_dir):
  plain = data.load(_config(cache_dir), seed=0)
  shuffled = data.load(_config(cache_dir, name='mnist1d_shuffled'), seed=0)
  for split in ('train', 'eval', 'test'):
    x = getattr(plain, split)['inputs'][..., 0]
    y = getattr(shuffled, split)['inputs'][..., 0]
    np.testing.assert_array_equal(getattr(plain, split)['labels'],
                                  getattr(shuffled, split)['labels'])
    # Same multiset of values in every sequence...
    np.testing.assert_array_equal(np.sort(x, axis=1), np.sort(y, axis=1))
    # ...moved by the same permutation in every example and split: recover
    # it from the first example (values are distinct) and check the rest.
    if split == 'train':
      permutation = np.array([np.flatnonzero(x[0] == v)[0] for v in y[0]])
      assert sorted(permutation) == list(range(40))
      assert not np.array_equal(permutation, np.arange(40))
    np.testing.assert_array_equal(y, x[:, permutation])


def test_shuffled_matches_the_packages_own_shuffled_dataset():
  from mnist1d import data as mnist1d_data  # pylint: disable=g-import-not-at-top
  args = mnist1d_data.get_dataset_args()
  args.shuffle_seq = True
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    reference = mnist1d_data.make_dataset(args)
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
  ours = mnist1d.generate(args.seed)
  np.testing.assert_allclose(ours['x'][:, ours['permutation']],
                             reference['x'], atol=1e-5)
  np.testing.assert_array_equal(ours['y_test'], reference['y_test'])


def test_generation_leaves_global_random_state_alone():
  np.random.seed(123)
  np.random.random(3)  # Move off the start of the stream.
  random.seed(456)
  np_state, py_state = np.random.get_state(), random.getstate()
  mnist1d.generate(1)
  after = np.random.get_state()
  assert after[0] == np_state[0] and after[2:] == np_state[2:]
  np.testing.assert_array_equal(after[1], np_state[1])
  assert random.getstate() == py_state
