"""posenc: positional encodings in Transformer encoders, in JAX/Flax."""

from posenc.encodings import LearnedPosEmbed
from posenc.encodings import get_posemb
from posenc.models import EncoderClassifier
from posenc.models import ModelConfig

__all__ = ['EncoderClassifier', 'LearnedPosEmbed', 'ModelConfig', 'get_posemb']
