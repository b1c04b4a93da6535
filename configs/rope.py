"""Rotary position embeddings (Su et al., 2021) on queries and keys.

  python -m posenc.main --config=configs/rope.py

Relative only: with mean pooling, nothing anchors absolute positions, so the
'argmax' task stays near chance; the class token at position 0 is the anchor.
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.posemb = 'rope'
  # Rotary angles carry only offsets between tokens; a class token at
  # position 0 is the anchor from which absolute positions can be read.
  config.model.pooling = 'cls'
  return config
