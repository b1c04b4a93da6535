"""Learned positions with randomized positions (Ruoss et al., 2023).

Each training sequence of 10 steps uses a sorted random subset of the table's
40 rows, and evaluation does the same (the paper's protocol, the default
model.posemb_randomized_eval='random': accuracy averaged over 4 draws fixed by
the seed; 'fixed' evaluates at rows 0..L-1). So a model trained on length 10
can be evaluated up to length 40 with trained rows:

  python -m posenc.main --config=configs/learned_randomized.py
  python -m posenc.main --config=configs/learned_randomized.py --mode=eval \\
      --config.data.eval_seq_len=40

Task 'before': is the step where feature 0 is largest before the one where
feature 1 is largest (two classes at any length).

Expected (seed 0, 2 CPU cores): eval_accuracy 0.913 at length 10 (0.812 with
--config.model.posemb_randomized_eval=fixed) and 0.883 at length 40.
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
