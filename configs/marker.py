"""Synthetic suite, task 'marker', with learned positions.

Feature 1 is 0 except at one marker step; label 1 if feature 0 at
`data.marker_offset` (2) steps after the marker is larger than at as many
steps before it: a lookup at a relative offset.

  python -m posenc.main --config=configs/marker.py

Expected: eval_accuracy 0.938 (seed 0, 2 CPU cores, about 20 s); with
--config.model.posemb=none 0.499 (chance 0.5).
"""

import ml_collections

from posenc import config as default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = 'marker'
  config.model.posemb = 'learned'
  return config
