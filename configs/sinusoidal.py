"""The seed setup with the fixed sin/cos table of Vaswani et al. (2017).

  python -m posenc.main --config=configs/sinusoidal.py

Not trained: the same table for every run, added to the projected inputs.
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.posemb = 'sinusoidal'
  return config
