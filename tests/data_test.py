"""Tests of posenc.data."""

import os

import numpy as np
import pytest

from posenc import config as default
from posenc import data

SYNTHETIC = ('argmax', 'before', 'random', 'sorted', 'marker')
MNIST1D = ('mnist1d', 'mnist1d_shuffled')
GENERATED = SYNTHETIC + ('listops',) + MNIST1D


@pytest.fixture(scope='module', autouse=True)
def _cache_in_tmp(tmp_path_factory):
  """One cache per test module (and xdist worker): MNIST-1D generated once."""
  os.environ['POSENC_TEST_CACHE'] = str(tmp_path_factory.mktemp('cache'))


def _config(name='argmax', **overrides):
  config = default.get_config().data
  config.update(dict(name=name, num_train=500, num_eval=200,
                     cache_dir=os.environ['POSENC_TEST_CACHE']))
  if name in MNIST1D:
    config.update(dict(seq_len=10, patch_size=4))
  if name == 'listops':
    config.update(dict(seq_len=64, min_seq_len=16, num_train=300))
  config.update(overrides)
  return config


@pytest.mark.parametrize('name', SYNTHETIC)
def test_shapes_and_dtypes(name):
  ds = data.load(_config(name), seed=0)
  assert ds.train['inputs'].shape == (500, 10, 16)
  assert ds.eval['inputs'].shape == (200, 10, 16)
  assert ds.train['inputs'].dtype == np.float32
  assert ds.train['labels'].dtype == np.int32
  assert 'mask' not in ds.train
  assert ds.num_classes == {'argmax': 10, 'random': 10}.get(name, 2)
  assert ds.test is None
  assert ds.train['labels'].min() >= 0
  assert ds.train['labels'].max() < ds.num_classes


@pytest.mark.parametrize('name', GENERATED)
def test_deterministic_given_seed(name, tmp_path):
  a = data.load(_config(name), seed=3)
  # Same seed, fresh cache: generated again, identical.
  b = data.load(_config(name, cache_dir=str(tmp_path / 'other')), seed=3)
  c = data.load(_config(name), seed=4)
  splits = ('train', 'eval') + (('test',) if a.test is not None else ())
  for split in splits:
    for key in ('inputs', 'labels'):
      np.testing.assert_array_equal(getattr(a, split)[key],
                                    getattr(b, split)[key])
  assert not np.array_equal(a.train['inputs'], c.train['inputs'])
  # data.seed fixes the data whatever the run's seed.
  d, e = (data.load(_config(name, seed=7), seed=s) for s in (3, 4))
  np.testing.assert_array_equal(d.train['inputs'], e.train['inputs'])


def _unpadded(x, mask):
  return x[mask].tobytes() if mask is not None else x.tobytes()


@pytest.mark.parametrize('name,overrides', [(n, {}) for n in SYNTHETIC] + [
    ('mnist1d', {}), ('mnist1d_shuffled', {}),
    # A band so narrow that repeats are common: only distinctness stops them.
    ('listops', dict(seq_len=7, min_seq_len=None, eval_seq_len=8,
                     num_train=2000, num_eval=200, listops_max_depth=2,
                     listops_max_args=3))])
def test_splits_are_disjoint(name, overrides):
  ds = data.load(_config(name, **overrides), seed=0)
  splits = [ds.train, ds.eval] + ([ds.test] if ds.test is not None else [])
  seen = set()
  for split in splits:
    masks = split.get('mask', [None] * data.num_examples(split))
    keys = {_unpadded(x, m) for x, m in zip(split['inputs'], masks)}
    assert len(keys) == data.num_examples(split)
    assert not keys & seen
    seen |= keys


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
  with pytest.raises(ValueError,
                     match=r"data.name='mnist'.*argmax, before, random"):
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


def _before(x, mask):
  """Reference: is argmax(feature 0) before argmax(feature 1) elsewhere?"""
  steps = [i for i, m in enumerate(mask) if m]
  a = max(steps, key=lambda i: x[i, 0])
  b = max((i for i in steps if i != a), key=lambda i: x[i, 1])
  return int(a < b)


def test_before_label_compares_positions_of_two_maxima():
  ds = data.load(_config('before', seq_len=7, num_train=2000), seed=1)
  for x, y in zip(ds.train['inputs'], ds.train['labels']):
    assert y == _before(x, np.ones(7, bool))
  # Balanced: the step where both features peak is not a giveaway.
  assert 0.46 < ds.train['labels'].mean() < 0.54


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
      assert y == _before(x, m)


def test_eval_split_can_be_longer():
  ds = data.load(_config('before', eval_seq_len=25), seed=0)
  assert ds.train['inputs'].shape[1] == 10
  assert ds.eval['inputs'].shape[1] == 25


def _is_sorted(x, mask):
  column = x[mask, 0]
  return bool(np.all(column[1:] > column[:-1]))


@pytest.mark.parametrize('min_seq_len', [None, 3])
def test_sorted_label_says_whether_feature_zero_ascends(min_seq_len):
  ds = data.load(_config('sorted', min_seq_len=min_seq_len), seed=0)
  mask = ds.train.get('mask', np.ones((500, 10), bool))
  for x, m, y in zip(ds.train['inputs'], mask, ds.train['labels']):
    assert y == _is_sorted(x, m)
    # A negative is a sorted sequence with exactly two steps swapped.
    column = x[m, 0]
    assert np.sum(column != np.sort(column)) == (0 if y else 2)
  assert 0.4 < ds.train['labels'].mean() < 0.6


@pytest.mark.parametrize('offset,min_seq_len', [(2, None), (1, 3), (3, 7)])
def test_marker_label_compares_the_steps_around_the_marker(offset,
                                                           min_seq_len):
  ds = data.load(_config('marker', marker_offset=offset,
                         min_seq_len=min_seq_len), seed=0)
  mask = ds.train.get('mask', np.ones((500, 10), bool))
  for x, m, y in zip(ds.train['inputs'], mask, ds.train['labels']):
    real = x[m]
    (at,) = np.flatnonzero(real[:, 1] == 1.0)  # Exactly one marker.
    assert np.count_nonzero(real[:, 1]) == 1
    assert y == int(real[at + offset, 0] > real[at - offset, 0])
  assert 0.4 < ds.train['labels'].mean() < 0.6


@pytest.mark.parametrize('name', ['before', 'sorted', 'marker'])
def test_two_class_tasks_can_be_evaluated_longer(name):
  ds = data.load(_config(name, eval_seq_len=40, min_seq_len=5), seed=0)
  assert ds.eval['inputs'].shape == (200, 40, 16)
  assert ds.eval['mask'].sum(1).max() == 40
