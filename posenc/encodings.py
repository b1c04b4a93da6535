"""Positional encodings.

Shape legend: B = batch, L = sequence length, D = model width.

Each encoding is selected by the string `ModelConfig.posemb`; `get_posemb` turns
the name into a module (or `None` for no positional information) and raises a
`ValueError` that lists the valid names for anything else.
"""

from typing import Callable

import chex
import flax.linen as nn
import jax

# Default stddev of the learned table's normal initialiser: the seed's N(0, 1).
# ViT and BERT use 0.02, big_vision 1/sqrt(D). On configs/learned.py (D=64),
# 0.02 stayed at chance after 5 epochs (eval accuracy 0.094), 0.125 reached
# 0.955 and 1.0 reached 0.962: a small table is drowned by the projected inputs.
DEFAULT_POSEMB_INIT_STD = 1.0

POSEMB_NAMES = ('learned', 'none')


class LearnedPosEmbed(nn.Module):
  """Adds a learned `(1, max_len, D)` table, sliced to the input length.

  Attributes:
    max_len: rows in the table; inputs may be shorter, never longer.
    init_std: stddev of the normal initialiser of the table.
  """

  max_len: int
  init_std: float = DEFAULT_POSEMB_INIT_STD

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
    chex.assert_rank(x_BxLxD, 3)
    _, seq_len, d_model = x_BxLxD.shape
    if seq_len > self.max_len:
      raise ValueError(
          f'LearnedPosEmbed: input seq_len={seq_len} is longer than the table '
          f'(max_len={self.max_len}); raise model.max_len or resample the table.')
    table_1xMxD = self.param(
        'pos_embedding', nn.initializers.normal(stddev=self.init_std),
        (1, self.max_len, d_model))
    chex.assert_shape(table_1xMxD, (1, self.max_len, d_model),
                      custom_message='pos_embedding does not match d_model')
    pos_1xLxD = table_1xMxD[:, :seq_len]
    chex.assert_shape(pos_1xLxD, (1, seq_len, d_model))
    return x_BxLxD + pos_1xLxD.astype(x_BxLxD.dtype)


def get_posemb(name: str, *, max_len: int,
               init_std: float) -> Callable[[jax.Array], jax.Array] | None:
  """Returns the module that adds positions to the input, or None for 'none'."""
  if name == 'learned':
    return LearnedPosEmbed(max_len=max_len, init_std=init_std,
                           name='posemb_learned')
  if name == 'none':
    return None
  raise ValueError(
      f'model.posemb={name!r} is not a known positional encoding; valid names: '
      f'{", ".join(POSEMB_NAMES)}.')
