"""The seed setup with no positional information (NoPE).

  python -m posenc.main --config=configs/none.py

With mean pooling the encoder is permutation-invariant, so on the 'argmax'
task (whose label is a function of the order) it stays at chance, 0.1.
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.posemb = 'none'
  return config
