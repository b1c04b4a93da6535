"""Synthetic suite, task 'before', with learned positions.

Label 1 if the step where feature 0 is largest comes before the step where
feature 1 is largest among the other steps: relative order, two classes at
any length, so it can be evaluated on longer sequences.

  python -m posenc.main --config=configs/before.py

Expected: eval_accuracy 0.942 (seed 0, 2 CPU cores, about 20 s); with
--config.model.posemb=none 0.511 (chance 0.5).
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'before'
  config.model.posemb = 'learned'
  return config
