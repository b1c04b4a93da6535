"""Positional encodings: a registry with one entry per `config.model.posemb`.

Shape legend: B = batch, L = sequence length, D = model width, H = heads,
K = width per head, M = rows of a table (max_len), N = relative buckets.

The entries (registered in this order):
- added to the inputs (before the first block, or before every block):
  `learned` (`LearnedPosEmbed`), `sinusoidal` (`sinusoidal_table`),
  `learned_every_layer`;
- applied inside attention: `rope` (`apply_rope`, to queries and keys,
  optionally scaled beyond the training length: `rope_frequencies`),
  `alibi` (`alibi_bias`, symmetric or directional), `relative`
  (`RelativePositionBias`), `fire` (`FireBias`) and `kerple`
  (`KerpleBias`), biases on the attention logits;
- on a square grid of patches (`grid.py`): `sincos2d` (big_vision's
  `posemb_sincos_2d`), `learned2d` (a table resampled in 2-D:
  `resample_2d`) and `rope2d` (axial rotary);
- `none` adds nothing.

`base.py` defines `Encoding` (the hooks an entry implements) and the registry;
a new encoding is an `Encoding` subclass and one `register(...)` call, from
any module (see docs/extending.md).
"""

from posenc.encodings.absolute import DEFAULT_POSEMB_INIT_STD
from posenc.encodings.absolute import LearnedPosEmbed
from posenc.encodings.absolute import RESAMPLE_METHODS
from posenc.encodings.absolute import SinusoidalPosEmbed
from posenc.encodings.absolute import default_positions
from posenc.encodings.absolute import random_positions
from posenc.encodings.absolute import resample_pos_embedding
from posenc.encodings.absolute import sinusoidal_table
from posenc.encodings.attention import ALIBI_MODES
from posenc.encodings.attention import ROPE_SCALINGS
from posenc.encodings.attention import RelativePositionBias
from posenc.encodings.attention import alibi_bias
from posenc.encodings.attention import alibi_slopes
from posenc.encodings.attention import apply_rope
from posenc.encodings.attention import relative_position_bucket
from posenc.encodings.attention import rope_frequencies
from posenc.encodings.learned_bias import FireBias
from posenc.encodings.learned_bias import KerpleBias
from posenc.encodings.learned_bias import fire_inputs
from posenc.encodings.learned_bias import kerple_log_bias
from posenc.encodings.grid import RESAMPLE_2D_METHODS
from posenc.encodings.grid import axial_rope_angles
from posenc.encodings.grid import grid_side
from posenc.encodings.grid import resample_2d
from posenc.encodings.grid import sincos2d
from posenc.encodings.base import ACTS
from posenc.encodings.base import Encoding
from posenc.encodings.base import PairBias
from posenc.encodings.base import Site
from posenc.encodings.base import check_config
from posenc.encodings.base import get
from posenc.encodings.base import names
from posenc.encodings.base import register
from posenc.encodings.base import unregister
from posenc.encodings import absolute as _absolute
from posenc.encodings import attention as _attention
from posenc.encodings import grid as _grid
from posenc.encodings import learned_bias as _learned_bias

for _entry in (_absolute.Learned(), _absolute.Sinusoidal(),
               _absolute.NoPosition(), _attention.Rope(), _attention.Alibi(),
               _attention.Relative(), _absolute.LearnedEveryLayer(),
               _learned_bias.Fire(), _learned_bias.Kerple(), _grid.SinCos2d(),
               _grid.Learned2d(), _grid.Rope2d()):
  register(_entry)


def sequence_names() -> tuple[str, ...]:
  """The registered encodings of 1-D sequences: all but the grid ones."""
  return tuple(name for name in names() if not get(name).grid)


def resample_methods() -> tuple[str, ...]:
  """Every registered table's resample methods, without repeats."""
  return tuple(dict.fromkeys(m for name in names()
                             for m in get(name).resample_methods))

