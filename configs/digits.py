"""Handwritten digits read pixel by pixel, with a learned table.

scikit-learn's 8x8 digits (1,797 images shipped in its wheel) as 64 tokens
of one pixel each, in raster order; a fixed stratified split of 1,257 train
/ 180 eval / 360 test, the test split read once after training. The run
logs logistic regression on the same test split beside it (and writes both
to references.json).

  python -m posenc.main --config=configs/digits.py

Expected: test_accuracy 0.942 (seed 0, 2 CPU cores, about 45 s); seeds 0-2
0.942-0.956. The log line beside it: logistic regression on the 64 pixels
0.967, on the intensity histogram 0.267.

Without positions the model sees only the intensity histogram (0.233):

  python -m posenc.main --config=configs/digits.py --config.model.posemb=none

One fixed permutation of the pixels (0.958: a learned table has no
locality prior to lose):

  python -m posenc.main --config=configs/digits.py \\
      --config.data.name=digits_shuffled
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'digits'
  config.data.patch_size = 1  # One pixel per token.
  config.data.seq_len = 64  # 8 x 8 pixels.
  config.data.num_train = 1257  # The whole fixed training split.
  config.data.num_eval = 180
  config.model.posemb = 'learned'
  config.train.num_epochs = 30
  config.train.log_every_steps = 200
  return config
