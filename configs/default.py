"""Base config: every field posenc reads, with its default.

The fields and their defaults live in `posenc.config` (the model group in
`posenc.models.ModelConfig`); variants call `posenc.config.get_config()` and
override a few fields.

  python -m posenc.main --config=configs/default.py
"""

from posenc.config import get_config  # pylint: disable=unused-import
