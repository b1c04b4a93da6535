"""Tests of JapaneseVowels: the archive as shipped, splits, masks, the
length split and the cache."""

import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc import validate
from posenc.datasets import vowels


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('cache'))


def _config(cache_dir, **overrides):
  config = default.get_config()
  config.data.update(dict(name='vowels', seq_len=29, num_train=216,
                          num_eval=54, cache_dir=cache_dir))
  config.data.update(overrides)
  return config


def _load(cache_dir, **overrides):
  return data.load(_config(cache_dir, **overrides).data, seed=0)


def test_the_archive_as_published(cache_dir):
  arrays = vowels.SOURCE.archive(_config(cache_dir).data)
  assert arrays['x'].shape == (270, 29, 12)
  assert arrays['x_test'].shape == (370, 29, 12)
  # UCI: 30 training utterances per speaker; 24 to 88 test utterances each;
  # 7 to 29 frames.
  np.testing.assert_array_equal(np.bincount(arrays['y']), [30] * 9)
  test_counts = np.bincount(arrays['y_test'])
  assert test_counts.min() == 24 and test_counts.max() == 88
  lengths = np.concatenate([arrays['length'], arrays['length_test']])
  assert lengths.min() == 7 and lengths.max() == 29
  for x, length in ((arrays['x'], arrays['length']),
                    (arrays['x_test'], arrays['length_test'])):
    real = np.arange(29)[None] < length[:, None]
    assert (x[~real] == 0).all() and (np.abs(x[real]).sum(axis=-1) > 0).all()


def test_splits_masks_and_standardised_frames(cache_dir):
  ds = _load(cache_dir)
  assert ds.train['inputs'].shape == (216, 29, 12)
  assert ds.eval['inputs'].shape == (54, 29, 12)
  assert ds.test['inputs'].shape == (370, 29, 12)
  assert ds.num_classes == 9
  np.testing.assert_array_equal(np.bincount(ds.eval['labels']), [6] * 9)
  frames = ds.train['inputs'][ds.train['mask']]
  np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-4)
  np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-3)
  for split in (ds.train, ds.eval, ds.test):
    assert (split['inputs'][~split['mask']] == 0).all()
    lengths = split['mask'].sum(axis=1)
    # Real frames first, then padding.
    np.testing.assert_array_equal(
        split['mask'], np.arange(29)[None] < lengths[:, None])
  # Held out from the training utterances, disjoint from training.
  train_rows = {x.tobytes() for x in ds.train['inputs']}
  assert not any(x.tobytes() in train_rows for x in ds.eval['inputs'])


def test_deterministic_and_cached(cache_dir, tmp_path):
  a = _load(cache_dir)
  b = data.load(_config(str(tmp_path)).data, seed=5)  # Fresh cache, seed.
  for split in ('train', 'eval', 'test'):
    for key in ('inputs', 'labels', 'mask'):
      np.testing.assert_array_equal(getattr(a, split)[key],
                                    getattr(b, split)[key])
  assert len(list(tmp_path.glob('japanese_vowels-*.npz'))) == 1


def test_length_split_trains_short_and_evaluates_long(cache_dir):
  ds = _load(cache_dir, seq_len=15, eval_seq_len=29)
  assert ds.train['inputs'].shape[1] == 15 and ds.eval_seq_len == 29
  assert ds.train['mask'].sum(axis=1).max() <= 15
  for split in (ds.eval, ds.test):
    lengths = split['mask'].sum(axis=1)
    assert lengths.min() >= 16 and lengths.max() <= 29
  # 163 of the 370 test utterances have 16 frames or more.
  assert len(ds.test['labels']) == 163


def test_references_computed_and_published(cache_dir):
  both = data.references(_config(cache_dir).data, seed=0)
  refs = both['computed']
  accuracy = refs['logistic regression on the mean and std of the frames']
  # Measured: 0.984. The bag of frames is almost enough for this task.
  assert accuracy > 0.95, refs
  assert sorted(v for v in both['published'].values()) == [0.949, 0.989]
  assert all('Franceschi' in k for k in both['published'])
  # Published numbers are for the archive's whole test set only.
  long = data.references(_config(cache_dir, seq_len=15,
                                 eval_seq_len=29).data, seed=0)
  assert long['published'] == {} and long['computed']


@pytest.mark.parametrize('overrides,message', [
    (dict(seq_len=30), r'data.seq_len=30 is not valid for JapaneseVowels.*'
     r'valid: 7..29'),
    (dict(seq_len=15, eval_seq_len=12), r'data.eval_seq_len=12 is not valid;'
     r' valid: unset, or data.seq_len=15..29'),
    (dict(num_train=250), r'data.num_train=250 \+ data.num_eval=54 is more '
     r'than the 270'),
    (dict(num_eval=200), r'data.num_eval=200 is not valid; valid: 9..134'),
    (dict(num_eval=5), r'data.num_eval=5 is not valid; valid: 9..134'),
    (dict(min_seq_len=10), r'data.min_seq_len does not apply'),
])
def test_bad_fields_are_named(cache_dir, overrides, message):
  config = _config(cache_dir, **overrides)
  with pytest.raises(ValueError, match=message):
    validate.check_config(config, num_devices=1)
