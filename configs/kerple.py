"""Kerple, logarithmic variant (Chi et al., 2022): -p_h log(1 + a_h |i - j|)
on the attention logits, p_h and a_h learned and positive.

  python -m posenc.main --config=configs/kerple.py

Symmetric in i - j, like ALiBi: the class token at position 0 is the anchor
for the 'argmax' task (and, bidirectional with mean pooling, the model could
not tell a sequence from its reverse).
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.model.posemb = 'kerple'
  # Distances only; a class token at position 0 is the anchor from which
  # absolute positions can be read.
  config.model.pooling = 'cls'
  # Positions read through attention weights alone are learned more slowly,
  # as for alibi and relative.
  config.train.num_epochs = 10
  return config
