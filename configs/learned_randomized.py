"""Learned positions with randomized positions (Ruoss et al., 2023).

Each training sequence of 10 steps uses a sorted random subset of the table's
40 rows; evaluation uses rows 0..L-1. So a model trained on length 10 can be
evaluated up to length 40 with trained rows:

  python -m posenc.main --config=configs/learned_randomized.py
  python -m posenc.main --config=configs/learned_randomized.py --mode=eval \\
      --config.data.eval_seq_len=40

Task 'before': is the step where feature 0 is largest before the one where
feature 1 is largest (two classes at any length).
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'before'
  config.model.posemb = 'learned'
  config.model.posemb_randomized = True
  config.model.max_len = 40  # Positions are drawn from 0..39.
  return config
