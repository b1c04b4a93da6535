"""FIRE (Li et al., 2023): a learned MLP of the log distance, normalised by a
length, on the attention logits.

  python -m posenc.main --config=configs/fire.py

Bidirectional: the signed distance, normalised by the span of the sequence
(see posenc.encodings.learned_bias.fire_inputs). Relative only, like ALiBi:
the class token at position 0 is the anchor for the 'argmax' task.
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.posemb = 'fire'
  # Distances only; a class token at position 0 is the anchor from which
  # absolute positions can be read.
  config.model.pooling = 'cls'
  # Positions read through attention weights alone are learned more slowly,
  # as for alibi and relative.
  config.train.num_epochs = 10
  return config
