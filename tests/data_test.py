"""Tests of posenc.data."""

import ml_collections
import numpy as np
import pytest

from posenc import data


def _config(name='argmax', **overrides):
  config = ml_collections.ConfigDict(dict(
      name=name, seq_len=10, n_features=16, num_classes=10, num_train=500,
      num_eval=200, min_seq_len=None, eval_seq_len=None))
  config.update(overrides)
  return config


@pytest.mark.parametrize('name', data.DATASET_NAMES)
def test_shapes_and_dtypes(name):
  ds = data.load(_config(name), seed=0)
  assert ds.train['inputs'].shape == (500, 10, 16)
  assert ds.eval['inputs'].shape == (200, 10, 16)
  assert ds.train['inputs'].dtype == np.float32
  assert ds.train['labels'].dtype == np.int32
  assert 'mask' not in ds.train
  assert ds.num_classes == {'before': 2}.get(name, 10)
  assert ds.train['labels'].min() >= 0
  assert ds.train['labels'].max() < ds.num_classes


@pytest.mark.parametrize('name', data.DATASET_NAMES)
def test_deterministic_given_seed(name):
  a, b, c = (data.load(_config(name), seed=s) for s in (3, 3, 4))
  for split in ('train', 'eval'):
    for key in ('inputs', 'labels'):
      np.testing.assert_array_equal(getattr(a, split)[key],
                                    getattr(b, split)[key])
  assert not np.array_equal(a.train['inputs'], c.train['inputs'])


@pytest.mark.parametrize('name', data.DATASET_NAMES)
def test_train_and_eval_are_disjoint(name):
  ds = data.load(_config(name), seed=0)
  train = {x.tobytes() for x in ds.train['inputs']}
  assert not any(x.tobytes() in train for x in ds.eval['inputs'])


def test_argmax_label_is_position_of_largest_feature_zero():
  ds = data.load(_config('argmax'), seed=0)
  for x, y in zip(ds.train['inputs'][:50], ds.train['labels'][:50]):
    column = list(x[:, 0])
    assert column.index(max(column)) == y
  # Roughly uniform over positions: every class is present.
  assert set(np.unique(ds.train['labels'])) == set(range(10))


def test_argmax_has_one_class_per_position():
  ds = data.load(_config('argmax', seq_len=7, num_classes=3), seed=0)
  assert ds.num_classes == 7


def test_random_labels_use_num_classes():
  ds = data.load(_config('random', num_classes=3), seed=0)
  assert ds.num_classes == 3
  assert set(np.unique(ds.train['labels'])) == {0, 1, 2}


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match=r"data.name='mnist'.*argmax, before, random"):
    data.load(_config('mnist'), seed=0)


def test_train_batches_cover_each_example_at_most_once():
  split = {'inputs': np.arange(10)[:, None], 'labels': np.arange(10)}
  batches = list(data.train_batches(split, 3, np.random.default_rng(0)))
  assert [len(b['labels']) for b in batches] == [3, 3, 3]
  seen = np.concatenate([b['labels'] for b in batches])
  assert len(set(seen)) == 9
  np.testing.assert_array_equal(seen, np.concatenate(
      [b['inputs'][:, 0] for b in batches]))


def test_eval_batches_pad_the_last_batch_with_zero_weight():
  split = {'inputs': np.arange(7)[:, None], 'labels': np.arange(7)}
  batches = list(data.eval_batches(split, 4))
  assert [len(b['labels']) for b in batches] == [4, 4]
  np.testing.assert_array_equal(batches[1]['weights'], [1, 1, 1, 0])
  np.testing.assert_array_equal(
      np.concatenate([b['labels'] for b in batches])[:7], np.arange(7))
  # An eval split smaller than one batch.
  (only,) = data.eval_batches({'labels': np.arange(2)}, 5)
  np.testing.assert_array_equal(only['weights'], [1, 1, 0, 0, 0])


def _first_largest(x, mask, feature):
  column = [v for v, m in zip(x[:, feature], mask) if m]
  return column.index(max(column))


def test_before_label_compares_positions_of_two_maxima():
  ds = data.load(_config('before', seq_len=7), seed=1)
  for x, y in zip(ds.train['inputs'][:100], ds.train['labels'][:100]):
    ones = np.ones(7, bool)
    assert y == int(_first_largest(x, ones, 0) < _first_largest(x, ones, 1))
  assert 0.3 < ds.train['labels'].mean() < 0.7


@pytest.mark.parametrize('name', ['argmax', 'before'])
def test_variable_lengths_are_padded_and_masked(name):
  ds = data.load(_config(name, min_seq_len=3), seed=2)
  mask = ds.train['mask']
  lengths = mask.sum(axis=1)
  assert mask.dtype == bool and mask.shape == (500, 10)
  assert lengths.min() == 3 and lengths.max() == 10
  # Masks are prefixes; padded steps are zero; labels see real steps only.
  np.testing.assert_array_equal(mask, np.arange(10) < lengths[:, None])
  assert not ds.train['inputs'][~mask].any()
  for x, m, y in zip(ds.train['inputs'][:100], mask[:100],
                     ds.train['labels'][:100]):
    if name == 'argmax':
      assert y == _first_largest(x, m, 0)
    else:
      assert y == int(_first_largest(x, m, 0) < _first_largest(x, m, 1))


def test_eval_split_can_be_longer():
  ds = data.load(_config('before', eval_seq_len=25), seed=0)
  assert ds.train['inputs'].shape[1] == 10
  assert ds.eval['inputs'].shape[1] == 25
