"""Handwritten digits as sequences: scikit-learn's `load_digits`.

1,797 grey-level 8x8 images of the digits 0-9 (the UCI "Optical Recognition
of Handwritten Digits" test set, shipped inside the scikit-learn wheel),
pixels 0..16, read here as floats in [0, 1].

- 'digits': the pixels in raster order, grouped into square patches of
  `data.patch_size` pixels per side; the patches are tokens, in raster order
  over the grid, each holding its pixels in raster order (`patch_size**2`
  features). With `patch_size=1` a token is one pixel and the order is the
  only place the image's layout lives.
- 'digits_shuffled': one fixed permutation of the 64 pixels applied to every
  image before anything else.

The split is fixed, whatever the run's seed: a stratified 1,257 train /
180 validation ('eval') / 360 test (sklearn's `train_test_split`, seed
`SPLIT_SEED`); the test split is read once, after training. `data.num_train`
and `data.num_eval` take the first examples of their split.

`data.image_size` (8) resamples every image to that many pixels per side
with bilinear interpolation (`jax.image.resize`) before patching, and
`data.eval_image_size` does so for the eval and test splits only: trained on
8x8 and evaluated on 16x16 with the same patch size, the model sees twice as
many patches per side, ViT's change of resolution.

References on the same test split (`references`): logistic regression on
the 64 pixels, and on the 17-bin intensity histogram, which is all that a
model without positions can see (with mean pooling it is invariant to the
order of the tokens, and with one pixel per token the multiset of pixels is
the histogram).
"""

import numpy as np

from posenc import checks
from posenc.datasets import base

SIDE = 8  # Pixels per side of the shipped images.
LEVELS = 17  # Grey levels 0..16.
NUM_CLASSES = 10
NUM_TEST = 360
NUM_EVAL = 180
NUM_TRAIN = 1797 - NUM_TEST - NUM_EVAL  # 1257
SPLIT_SEED = 0  # The fixed split (not the run's seed).
PERMUTATION_SEED = 1  # digits_shuffled's fixed permutation.
IMAGE_SIZES = tuple(SIDE * k for k in range(1, 9))  # 8, 16, ..., 64.
# Logistic regression for the references: scikit-learn's defaults (L2,
# C=1, lbfgs), iterations enough to converge on both feature sets.
LOGREG_MAX_ITER = 5000


def raw() -> dict[str, np.ndarray]:
  """Images (1797, 8, 8) in 0..16 and labels, with the fixed split's indices
  ('train', 'eval', 'test') and the shuffled variant's 'permutation'."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  images = digits.images.astype(np.float32)
  labels = digits.target.astype(np.int32)
  index = np.arange(len(labels))
  rest, test = model_selection.train_test_split(
      index, test_size=NUM_TEST, stratify=labels, random_state=SPLIT_SEED)
  train, eval_ = model_selection.train_test_split(
      rest, test_size=NUM_EVAL, stratify=labels[rest],
      random_state=SPLIT_SEED)
  permutation = np.random.default_rng(PERMUTATION_SEED).permutation(
      SIDE * SIDE)
  return {'images': images, 'labels': labels, 'train': train, 'eval': eval_,
          'test': test, 'permutation': permutation.astype(np.int32)}


def resize(images: np.ndarray, size: int) -> np.ndarray:
  """`(N, S, S)` images resampled to `(N, size, size)` bilinearly
  (`jax.image.resize`, pixel centres aligned as in TF2 and PIL)."""
  if images.shape[1] == size:
    return images
  import jax  # pylint: disable=g-import-not-at-top
  return np.asarray(jax.image.resize(images, (len(images), size, size),
                                     'linear'), np.float32)


def patches(images: np.ndarray, patch_size: int) -> np.ndarray:
  """`(N, S, S)` -> `(N, (S/p)**2, p*p)`: patches in raster order over the
  grid, each patch's pixels in raster order."""
  n, side, _ = images.shape
  grid = side // patch_size
  x = images.reshape(n, grid, patch_size, grid, patch_size)
  return x.transpose(0, 1, 3, 2, 4).reshape(n, grid * grid,
                                            patch_size * patch_size)


def histogram(images: np.ndarray) -> np.ndarray:
  """`(N, 17)` counts of each grey level 0..16."""
  levels = images.reshape(len(images), -1).astype(np.int64)
  return np.stack([np.bincount(row, minlength=LEVELS) for row in levels])


def tokens(config, size: int) -> int:
  """Tokens of an image of `size` pixels per side (`config`: the data
  group)."""
  return (size // config.patch_size) ** 2


def eval_image_size(config) -> int:
  return (config.image_size if config.eval_image_size is None
          else config.eval_image_size)


class Digits(base.Source):
  """'digits' and 'digits_shuffled' (see the module docstring)."""

  streams = {'digits': None, 'digits_shuffled': None}
  uses_patch_size = True
  grid = True

  def check_fields(self, config) -> None:
    d = config.data
    for field, optional in (('image_size', False), ('eval_image_size', True)):
      value = d[field]
      if optional and value is None:
        continue
      if isinstance(value, bool) or value not in IMAGE_SIZES:
        raise ValueError(f'data.{field}={value!r} is not valid; valid: a '
                         f'multiple of {SIDE} up to {IMAGE_SIZES[-1]}'
                         f'{" or None" if optional else ""}.')
    if d.name not in self.names and (d.image_size != SIDE or
                                     d.eval_image_size is not None):
      raise ValueError(
          'data.image_size and data.eval_image_size apply to the digits '
          f'datasets; valid for data.name={d.name!r}: {SIDE} and None.')

  def check(self, config) -> None:
    d = config.data
    sizes = {'data.image_size': d.image_size,
             'data.eval_image_size': eval_image_size(d)}
    for field, size in sizes.items():
      if size % d.patch_size:
        raise ValueError(
            f'data.patch_size={d.patch_size} does not divide {field}={size}; '
            f'valid: {checks.divisors(size)}.')
    train_len, eval_len = self.lengths(config)
    if d.seq_len != train_len:
      raise ValueError(
          f'data.seq_len={d.seq_len} does not match {d.image_size}x'
          f'{d.image_size} digits in patches of {d.patch_size}: '
          f'{train_len} tokens; valid: data.seq_len={train_len}.')
    if d.eval_seq_len is not None and d.eval_seq_len != eval_len:
      raise ValueError(
          f'data.eval_seq_len={d.eval_seq_len} does not match '
          f'data.eval_image_size={eval_image_size(d)} in patches of '
          f'{d.patch_size}: {eval_len} tokens; valid: unset, or {eval_len}.')
    if d.min_seq_len is not None:
      raise ValueError('digits all have the same length; valid: '
                       'data.min_seq_len unset.')
    for field, most in (('num_train', NUM_TRAIN), ('num_eval', NUM_EVAL)):
      if d[field] > most:
        raise ValueError(
            f'data.{field}={d[field]} is more than the {most} examples of '
            f"the digits' fixed {field[4:]} split; valid: at most {most}.")

  def lengths(self, config):
    d = config.data
    return tokens(d, d.image_size), tokens(d, eval_image_size(d))

  def images(self, config, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The 8x8 images in [0, 1], shuffled for 'digits_shuffled'."""
    images = arrays['images'] / (LEVELS - 1)
    if config.name == 'digits_shuffled':
      flat = images.reshape(len(images), -1)[:, arrays['permutation']]
      images = flat.reshape(images.shape)
    return images

  def load(self, config, seed) -> base.Dataset:
    del seed  # The split is fixed.
    arrays = raw()
    images = self.images(config, arrays)
    take = {'train': config.num_train, 'eval': config.num_eval,
            'test': NUM_TEST}
    splits = {}
    for split, n in take.items():
      size = config.image_size if split == 'train' else eval_image_size(
          config)
      index = arrays[split][:n]
      splits[split] = {
          'inputs': patches(resize(images[index], size), config.patch_size),
          'labels': arrays['labels'][index]}
    return base.Dataset(**splits, num_classes=NUM_CLASSES)

  def references(self, config, seed) -> dict[str, float]:
    del seed  # The split is fixed.
    from sklearn import linear_model  # pylint: disable=g-import-not-at-top

    arrays = raw()
    images = self.images(config, arrays)
    train, test = arrays['train'][:config.num_train], arrays['test']
    y = arrays['labels']
    features = {
        'logistic regression on the 64 pixels':
            images.reshape(len(images), -1),
        'logistic regression on the intensity histogram':
            histogram(arrays['images']) / (SIDE * SIDE)}
    out = {}
    for name, x in features.items():
      model = linear_model.LogisticRegression(max_iter=LOGREG_MAX_ITER)
      model.fit(x[train], y[train])
      out[name] = float(model.score(x[test], y[test]))
    return out


base.register(Digits())
