"""ListOps (Nangia & Bowman, 2018) with learned positions, in a short band.

Expressions of 32 to 128 tokens (the Long Range Arena used 500 to 2,000),
nested up to depth 10 with up to 5 arguments per operator; the label is the
expression's value (10 classes). A class token carries the answer.

  python -m posenc.main --config=configs/listops.py

Expected: eval_accuracy 0.299, test_accuracy 0.287 (seed 0, 2 CPU cores,
10 to 15 min; still rising at the last epoch). The most frequent class
covers about 12% of the examples; the Long Range Arena's Transformers reach
about 36% on its far longer band.
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'listops'
  config.data.seq_len = 128
  config.data.min_seq_len = 32
  config.data.num_train = 16384
  config.data.num_eval = 2000
  config.model.posemb = 'learned'
  config.model.pooling = 'cls'
  config.train.batch_size = 64
  config.train.num_epochs = 10
  config.train.log_every_steps = 100
  return config
