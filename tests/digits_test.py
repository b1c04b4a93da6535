"""Tests of the digits datasets: the fixed split, patches, resolution, the
shuffled variant and the references."""

import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc import validate
from posenc.datasets import digits


def _config(**overrides):
  config = default.get_config()
  config.data.update(dict(name='digits', seq_len=64, num_train=1257,
                          num_eval=180))
  config.data.update(overrides)
  return config


def _load(**overrides):
  return data.load(_config(**overrides).data, seed=0)


def test_shapes_and_a_fixed_stratified_split():
  ds = _load()
  assert ds.train['inputs'].shape == (1257, 64, 1)
  assert ds.eval['inputs'].shape == (180, 64, 1)
  assert ds.test['inputs'].shape == (360, 64, 1)
  assert ds.num_classes == 10 and ds.vocab_size is None
  arrays = digits.raw()
  splits = [set(arrays[s].tolist()) for s in ('train', 'eval', 'test')]
  assert sum(map(len, splits)) == 1797 == len(set.union(*splits))
  # Stratified: every split holds each class in the proportion of the
  # whole set (174 to 183 images per class), to within one image.
  share = np.bincount(arrays['labels']) / 1797
  for split, n in (('train', 1257), ('eval', 180), ('test', 360)):
    counts = np.bincount(getattr(ds, split)['labels'], minlength=10)
    assert counts.sum() == n
    assert np.abs(counts - n * share).max() <= 1, (split, counts)
  for split in (ds.train, ds.eval, ds.test):
    assert split['inputs'].dtype == np.float32
    assert split['inputs'].min() == 0.0 and split['inputs'].max() == 1.0


def test_the_split_does_not_depend_on_the_seed():
  a = data.load(_config().data, seed=0)
  b = data.load(_config(seed=7).data, seed=3)
  for split in ('train', 'eval', 'test'):
    for key in ('inputs', 'labels'):
      np.testing.assert_array_equal(getattr(a, split)[key],
                                    getattr(b, split)[key])


def test_raster_order_and_patches():
  arrays = digits.raw()
  image = arrays['images'][arrays['train'][0]] / 16
  pixels = _load().train['inputs'][0, :, 0]
  np.testing.assert_array_equal(pixels, image.reshape(64))
  patches = _load(patch_size=2, seq_len=16).train['inputs'][0]
  assert patches.shape == (16, 4)
  # Token 5 is the patch at grid row 1, column 1: pixels (2..3, 2..3).
  np.testing.assert_array_equal(patches[5], image[2:4, 2:4].reshape(4))
  np.testing.assert_array_equal(
      patches.reshape(4, 4, 2, 2).transpose(0, 2, 1, 3).reshape(8, 8), image)


def test_shuffled_applies_one_permutation_to_every_image():
  plain, shuffled = _load(), _load(name='digits_shuffled')
  permutation = digits.raw()['permutation']
  assert sorted(permutation.tolist()) == list(range(64))
  assert (permutation != np.arange(64)).mean() > 0.9
  for split in ('train', 'eval', 'test'):
    x = getattr(plain, split)['inputs'][..., 0]
    np.testing.assert_array_equal(getattr(shuffled, split)['inputs'][..., 0],
                                  x[:, permutation])


def test_a_larger_eval_image_has_twice_the_patches_per_side():
  ds = _load(patch_size=2, seq_len=16, eval_image_size=16)
  assert ds.train['inputs'].shape == (1257, 16, 4)
  assert ds.eval['inputs'].shape == (180, 64, 4)
  assert ds.test['inputs'].shape == (360, 64, 4)
  # Bilinear with pixel centres aligned (half-pixel): along each axis,
  # out[2i] = x[i] / 4 * 3 + x[i-1] / 4 and out[2i+1] = x[i] / 4 * 3 +
  # x[i+1] / 4, the edge pixel repeated beyond the border.
  image = (digits.raw()['images'][:3] / 16).astype(np.float32)

  def upsample_rows(x):
    before = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
    after = np.concatenate([x[:, 1:], x[:, -1:]], axis=1)
    out = np.empty((len(x), 2 * x.shape[1]) + x.shape[2:], x.dtype)
    out[:, 0::2] = 0.75 * x + 0.25 * before
    out[:, 1::2] = 0.75 * x + 0.25 * after
    return out

  expected = upsample_rows(upsample_rows(image).transpose(0, 2, 1))
  np.testing.assert_allclose(digits.resize(image, 16),
                             expected.transpose(0, 2, 1), atol=1e-6)


def test_references_bracket_the_task():
  both = data.references(_config().data, seed=0)
  assert both['published'] == {}
  refs = both['computed']
  pixels = refs['logistic regression on the 64 pixels']
  histogram = refs['logistic regression on the intensity histogram']
  # Measured: 0.967 and 0.267 (chance 0.1); the histogram is what a model
  # without positions sees.
  assert pixels > 0.93 and 0.15 < histogram < 0.35, refs
  counts = digits.histogram(np.array([[[0, 16], [16, 3]]]))
  np.testing.assert_array_equal(counts[0, [0, 3, 16]], [1, 1, 2])
  assert counts.sum() == 4


@pytest.mark.parametrize('overrides,message', [
    (dict(seq_len=16), r'data.seq_len=16 does not match 8x8 digits in patches '
     r'of 1: 64 tokens; valid: data.seq_len=64'),
    (dict(patch_size=3, seq_len=9), r'data.patch_size=3 does not divide '
     r'data.image_size=8; valid: \[1, 2, 4, 8\]'),
    (dict(image_size=12), r'data.image_size=12 is not valid; valid: a '
     r'multiple of 8'),
    (dict(eval_image_size=16, eval_seq_len=100), r'data.eval_seq_len=100 '
     r'does not match data.eval_image_size=16 .*valid: unset, or 256'),
    (dict(num_train=1300), r'data.num_train=1300 is more than the 1257'),
    (dict(min_seq_len=10), r'data.min_seq_len unset'),
    (dict(name='argmax', seq_len=10, image_size=16),
     r'data.image_size and data.eval_image_size apply to the digits'),
])
def test_bad_fields_are_named(overrides, message):
  config = _config(**overrides)
  config.train.batch_size = 8
  with pytest.raises(ValueError, match=message):
    validate.check_config(config, num_devices=1)
