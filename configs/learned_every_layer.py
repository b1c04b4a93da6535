"""A learned table added before every block (the ViT paper's ablation).

  python -m posenc.main --config=configs/learned_every_layer.py
  python -m posenc.main --config=configs/learned_every_layer.py \\
      --config.model.posemb_share=False  # One table per block.

The direct test of whether position information fades with depth.
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.posemb = 'learned_every_layer'
  config.model.posemb_share = True  # False: one table per block.
  return config
