"""Synthetic suite, task 'sorted', with learned positions.

Label 1 if feature 0 ascends along the sequence; a negative is a sorted
sequence with two random steps swapped, so the values alone say nothing.

  python -m posenc.main --config=configs/sorted.py

Expected: eval_accuracy 0.940 (seed 0, 2 CPU cores, about 20 s); with
--config.model.posemb=none 0.505 (chance 0.5).
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'sorted'
  config.model.posemb = 'learned'
  return config
