"""posenc: positional encodings in Transformer encoders, in JAX/Flax."""

from posenc.encodings import LearnedPosEmbed
from posenc.encodings import resample_pos_embedding
from posenc.models import EncoderClassifier
from posenc.models import ModelConfig

__all__ = ['EncoderClassifier', 'LearnedPosEmbed', 'ModelConfig', 'resample_pos_embedding']
