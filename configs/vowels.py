"""JapaneseVowels: real multivariate sequences of 7 to 29 frames.

640 utterances of /ae/ by nine speakers (the class), 12 LPC cepstrum
coefficients per frame, from the copy shipped in sktime; the archive's 270
train / 370 test split, 54 training utterances held out for 'eval'
(stratified, fixed). Padded to 29 frames and masked.

  python -m posenc.main --config=configs/vowels.py

Expected: test_accuracy 0.981 (seed 0, 2 CPU cores, about 15 s), beside
logistic regression on the mean and deviation of the frames (0.984, no
order) and the published 1-NN DTW 0.949 and T-Loss 0.989 (Franceschi,
Dieuleveut and Jaggi, NeurIPS 2019), all logged by the run. `none` scores
0.981 too: the task needs little order.

The lengths question: train on utterances of at most 15 frames, evaluate
and test on those of 16 to 29 (a learned table then needs --mode=eval with
a resample method, or model.max_len=29 with rows it never trained):

  python -m posenc.main --config=configs/vowels.py \\
      --config.data.seq_len=15 --config.data.eval_seq_len=29 \\
      --config.model.posemb=sinusoidal --workdir=/tmp/vowels_long

Expected: test_accuracy 0.828 on the 163 long test utterances (seed 0).
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'vowels'
  config.data.seq_len = 29  # The longest utterance: every one is kept.
  config.data.num_train = 216  # 270 minus the held-out 54.
  config.data.num_eval = 54
  config.model.posemb = 'learned'
  config.train.num_epochs = 100
  config.train.log_every_steps = 100
  return config
