"""JapaneseVowels (Kudo, Toyama and Shimbo, 1999): real sequences of varied
length, from the copy that ships inside the `sktime` wheel.

Nine male speakers each uttered the vowels /ae/; every utterance is a
sequence of 7 to 29 frames of 12 LPC cepstrum coefficients, and the class is
the speaker. The archive's split: 270 training utterances (30 per speaker)
and 370 test utterances (24 to 88 per speaker, recorded on other
occasions), loaded with sktime's `load_japanese_vowels` and cached in
`data.cache_dir` (loading takes about a second).

Why sktime: of the two well-kept packages that ship it, sktime installs in
79 MB with its dependencies and aeon in 135 MB (aeon needs numba and
llvmlite); both hold the same `.ts` files.

Splits ('vowels'): 'eval' is `data.num_eval` training utterances held out,
stratified by speaker with a fixed seed (`SPLIT_SEED`, not the run's); the
rest is 'train' (the first `data.num_train`); the archive's test set is
'test', read once after training. Frames are standardised per coefficient
with the mean and standard deviation of the training frames, zero-padded to
the split's length and masked.

Lengths: every split keeps the utterances of at most `data.seq_len` frames
(below 29 the test split is no longer the archive's whole test set). With
`data.eval_seq_len` longer than `data.seq_len`,
the eval and test splits hold only the longer utterances, of
`seq_len + 1 .. eval_seq_len` frames: trained on the short, evaluated on
the long. (Utterance length varies by speaker, so the classes of a length
split are less balanced than the archive's.)

Reference on the same test split (`references`): logistic regression on
each utterance's mean and standard deviation of every coefficient, a bag of
frames that knows nothing of their order; it scores 0.984, so the task
needs little order. Published on the archive's split: 1-NN DTW 0.949 and
T-Loss 0.989 (Franceschi, Dieuleveut and Jaggi, NeurIPS 2019, UEA results
table).
"""

import numpy as np

from posenc.datasets import base
from posenc.datasets import cache

NUM_FEATURES = 12
NUM_CLASSES = 9
NUM_TRAIN = 270
LONGEST = 29  # Frames of the longest utterance (in the test set).
SHORTEST = 7
SPLIT_SEED = 0  # The fixed held-out split (not the run's seed).
LOGREG_MAX_ITER = 5000


def load_archive() -> dict[str, np.ndarray]:
  """The archive's splits, zero-padded to 29 frames: 'x' (270, 29, 12)
  float32, 'length' (270,), 'y' (270,) int32 (speaker - 1), and the same
  with the suffix '_test' (370)."""
  from sktime import datasets  # pylint: disable=g-import-not-at-top

  out = {}
  for split, suffix in (('train', ''), ('test', '_test')):
    frames, labels = datasets.load_japanese_vowels(split=split,
                                                   return_X_y=True)
    n = len(frames)
    x = np.zeros((n, LONGEST, NUM_FEATURES), np.float32)
    length = np.zeros(n, np.int32)
    for i in range(n):
      columns = [np.asarray(frames.iloc[i, j], np.float32)
                 for j in range(NUM_FEATURES)]
      length[i] = len(columns[0])
      x[i, :length[i]] = np.stack(columns, axis=1)
    out[f'x{suffix}'] = x
    out[f'length{suffix}'] = length
    out[f'y{suffix}'] = np.asarray(labels).astype(np.int32) - 1
  if len(out['x']) != NUM_TRAIN or out['length_test'].max() != LONGEST:
    raise RuntimeError(
        f'sktime JapaneseVowels has {len(out["x"])} training utterances of '
        f'at most {out["length_test"].max()} frames; expected {NUM_TRAIN} '
        f'and {LONGEST}.')
  return out


def eval_band(config) -> tuple[int, int]:
  """Frames `(fewest, most)` of eval and test utterances (`config`: the
  data group)."""
  eval_len = base.eval_seq_len(config)
  if eval_len > config.seq_len:
    return config.seq_len + 1, eval_len
  return SHORTEST, eval_len


class Vowels(base.Source):
  """'vowels' (see the module docstring)."""

  streams = {'vowels': None}

  def check(self, config) -> None:
    d = config.data
    if d.seq_len < SHORTEST or d.seq_len > LONGEST:
      raise ValueError(
          f'data.seq_len={d.seq_len} is not valid for JapaneseVowels, whose '
          f'utterances have {SHORTEST} to {LONGEST} frames; valid: '
          f'{SHORTEST}..{LONGEST} (the longest training utterance kept).')
    eval_len = base.eval_seq_len(d)
    if eval_len > LONGEST or eval_len < d.seq_len:
      raise ValueError(
          f'data.eval_seq_len={d.eval_seq_len} is not valid; valid: unset, '
          f'or data.seq_len={d.seq_len}..{LONGEST} (longer: evaluate on the '
          'longer utterances only).')
    if d.min_seq_len is not None:
      raise ValueError('data.min_seq_len does not apply to JapaneseVowels '
                       '(its lengths are its own); valid: unset.')
    if not NUM_CLASSES <= d.num_eval < NUM_TRAIN // 2:
      raise ValueError(
          f'data.num_eval={d.num_eval} is not valid; valid: {NUM_CLASSES}..'
          f'{NUM_TRAIN // 2 - 1} of the {NUM_TRAIN} training utterances '
          '(held out stratified: at least one per speaker).')
    if d.num_train + d.num_eval > NUM_TRAIN:
      raise ValueError(
          f'data.num_train={d.num_train} + data.num_eval={d.num_eval} is more '
          f'than the {NUM_TRAIN} training utterances (eval is held out from '
          f'them); valid: num_train <= {NUM_TRAIN - d.num_eval}.')

  def archive(self, config) -> dict[str, np.ndarray]:
    return cache.load_or_generate(config.cache_dir, 'japanese_vowels', {},
                                  load_archive)

  def indices(self, config, arrays) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out rows of the archive's training set, before the
    length filter."""
    from sklearn import model_selection  # pylint: disable=g-import-not-at-top
    train, held = model_selection.train_test_split(
        np.arange(NUM_TRAIN), test_size=config.num_eval,
        stratify=arrays['y'], random_state=SPLIT_SEED)
    return train[:config.num_train], held

  def load(self, config, seed) -> base.Dataset:
    del seed  # The archive's split and a fixed held-out set.
    arrays = self.archive(config)
    train, held = self.indices(config, arrays)
    train = train[arrays['length'][train] <= config.seq_len]
    low, high = eval_band(config)
    keep = lambda rows, lengths: rows[(lengths[rows] >= low) &
                                      (lengths[rows] <= high)]
    held = keep(held, arrays['length'])
    test = keep(np.arange(len(arrays['y_test'])), arrays['length_test'])
    bands = {'train': (SHORTEST, config.seq_len), 'eval': (low, high),
             'test': (low, high)}
    for name, rows in (('train', train), ('eval', held), ('test', test)):
      if not len(rows):
        raise ValueError(
            f'JapaneseVowels has no {name} utterance of {bands[name][0]}..'
            f'{bands[name][1]} frames; valid: a wider band (data.seq_len, '
            'data.eval_seq_len).')
    mask = np.arange(LONGEST)[None, :] < arrays['length'][train][:, None]
    frames = arrays['x'][train][mask]
    mean, std = frames.mean(axis=0), frames.std(axis=0) + 1e-6

    def split(x, lengths, labels, rows, steps):
      m = np.arange(steps)[None, :] < lengths[rows][:, None]
      inputs = np.where(m[..., None], (x[rows, :steps] - mean) / std, 0.0)
      return {'inputs': inputs.astype(np.float32), 'labels': labels[rows],
              'mask': m}

    return base.Dataset(
        train=split(arrays['x'], arrays['length'], arrays['y'], train,
                    config.seq_len),
        eval=split(arrays['x'], arrays['length'], arrays['y'], held, high),
        test=split(arrays['x_test'], arrays['length_test'],
                   arrays['y_test'], test, high),
        num_classes=NUM_CLASSES)

  def published(self, config) -> dict[str, float]:
    if eval_band(config) != (SHORTEST, LONGEST):
      return {}  # Not the archive's whole test set.
    source = ('trained on all 270; Franceschi, Dieuleveut and Jaggi, '
              'NeurIPS 2019, UEA results')
    return {f'1-NN DTW ({source})': 0.949,
            f'T-Loss + SVM ({source})': 0.989}

  def references(self, config, seed) -> dict[str, float]:
    from sklearn import linear_model  # pylint: disable=g-import-not-at-top

    dataset = self.load(config, seed)

    def bag(batch):
      m = batch['mask'][..., None]
      n = m.sum(axis=1)
      mean = (batch['inputs'] * m).sum(axis=1) / n
      var = (((batch['inputs'] - mean[:, None]) * m) ** 2).sum(axis=1) / n
      return np.concatenate([mean, np.sqrt(var)], axis=1)

    model = linear_model.LogisticRegression(max_iter=LOGREG_MAX_ITER)
    model.fit(bag(dataset.train), dataset.train['labels'])
    return {'logistic regression on the mean and std of the frames':
                float(model.score(bag(dataset.test),
                                  dataset.test['labels']))}


SOURCE = base.register(Vowels())
