"""The encoding registry: one `Encoding` entry per `config.model.posemb`.

An entry says how it acts on the model by the hooks it implements, each named
in `acts`:

- 'inputs':   `embed` adds to the embedded inputs, before the first block;
- 'blocks':   `before_block` adds to the residual stream before blocks 1..N-1;
- 'bias':     `pair_bias` returns the bias on the attention logits as a
              function of query and key positions (`PairBias`), shared by
              all blocks: the einsum and fused paths evaluate it once on
              every pair (`attention_bias`), blocked attention one block of
              queries and keys at a time;
- 'rotation': `rotate` rotates queries and keys inside every attention.

The model (`posenc.models.EncoderClassifier`) looks the entry up once and calls
only the hooks named in `acts`. Hooks run inside the model's `@nn.compact`
call, so a hook may create Flax submodules and parameters; `Site.module`
creates one by name once and returns the same module on later calls (a table
shared by several blocks).

Positions are integer arrays `(B, L)`. Hooks that add to the inputs receive
`None` for `0..L-1` (the first L rows of a table) or explicit positions (a
sorted random subset of `0..max_len-1` when `model.posemb_randomized` trains
or evaluates, or positions the caller gave the model); attention hooks always
receive explicit positions, shifted by one when a class token sits at
position 0. With `model.causal`, attention masks keys after the query; bias
hooks may read `site.config.causal` where their formula differs.
"""

import dataclasses
from typing import Any, Callable, ClassVar

import flax.linen as nn
from flax import struct
import jax

from posenc import checks

ACTS = ('inputs', 'blocks', 'bias', 'rotation')


@dataclasses.dataclass
class Site:
  """What an encoding's hooks see of the model being built."""

  config: Any  # posenc.models.ModelConfig: the model's hyper-parameters.
  max_len: int  # Rows of position tables: model.max_len, or the data's L.
  train: bool
  seq_len: int = 0  # Steps of the input (the padded length).
  # For attention hooks: `(B, L)` True at real positions (the class token
  # included, if any), or None where every position is real.
  mask: jax.Array | None = None
  _modules: dict[str, nn.Module] = dataclasses.field(default_factory=dict)

  def module(self, name: str, build: Callable[..., nn.Module]) -> nn.Module:
    """`build(name=name)`, created once per model call and then reused."""
    if name not in self._modules:
      self._modules[name] = build(name=name)
    return self._modules[name]


@struct.dataclass
class PairBias:
  """A bias on attention logits as a pure function of positions:
  `fn(params, context, q_positions_BxQ, k_positions_BxS)` -> `(B, H, Q, S)`
  float32.

  `params`: the arrays gradients flow to (a pytree; the encoding's
  parameters); `context`: arrays it reads but does not differentiate (a
  pytree, e.g. each sequence's span), or None. Blocked attention calls it on
  one block of queries and keys at a time and recomputes it in the backward
  pass, so `fn` must be pure.
  """

  fn: Callable[..., jax.Array] = struct.field(pytree_node=False)
  params: Any = None
  context: Any = None

  def __call__(self, q_positions_BxQ: jax.Array, k_positions_BxS: jax.Array
               ) -> jax.Array:
    return self.fn(self.params, self.context, q_positions_BxQ,
                   k_positions_BxS)


class Encoding:
  """Base entry: acts nowhere. Subclasses set `name` and `acts`, implement
  the hooks `acts` names, and may check their config fields."""

  name: ClassVar[str] = ''
  acts: ClassVar[frozenset[str]] = frozenset()
  # A learned `(1, M, D)` parameter named 'pos_embedding' that evaluation may
  # resample to a longer length (`model.posemb_resample`, one of
  # `resample_methods`, by `resample`).
  has_table: ClassVar[bool] = False
  resample_methods: ClassVar[tuple[str, ...]] = ()
  # False for an encoding that ignores positions ('none'): randomized
  # positions are then refused.
  uses_positions: ClassVar[bool] = True
  # True for an encoding of patches on a square grid (posenc.encodings.grid):
  # the input's length must be a square; sequence tasks use the others.
  grid: ClassVar[bool] = False

  def num_params(self, model: Any, rows: int) -> int:
    """Parameters the entry adds to a model (`model`: the `config.model`
    group; `rows`: its tables' rows), for the memory estimate before
    anything is built (posenc.memory; tests/memory_test.py compares it with
    the real count)."""
    del model, rows
    return 0

  def bias_maps(self, model: Any) -> int:
    """How many `(B, L, L)` float arrays the entry's attention bias keeps
    in one training step, its gradient included, for the memory estimate:
    2H (the `(B, H, L, L)` bias and its gradient) for an entry acting by
    'bias'."""
    return 2 * model.num_heads if 'bias' in self.acts else 0

  def check_fields(self, config: Any) -> None:
    """Checks the values of the config fields this entry owns. Runs for
    every registered entry, whichever is selected: the fields are in every
    config."""

  def check(self, config: Any) -> None:
    """Checks what must hold when this encoding is selected (combinations
    with other fields); raises ValueError naming the fields."""

  def check_lengths(self, config: Any, train_len: int, eval_len: int
                    ) -> None:
    """Checks the training and eval lengths (the config's before loading,
    the data's after) for this encoding."""

  def needs_resample(self, rows: int, length: int) -> bool:
    """Whether a table of `rows` must be resampled for inputs of
    `length` steps (a 1-D table serves any shorter input)."""
    return length > rows

  def resample(self, table: jax.Array, new_len: int, method: str
               ) -> jax.Array:
    """A `(1, M, D)` table resized to `new_len` rows by `method`."""
    raise NotImplementedError(f'{self.name} has no table to resample.')

  def embed(self, site: Site, x_BxLxD: jax.Array,
            positions_BxL: jax.Array | None) -> jax.Array:
    """'inputs': returns the embedded inputs with positions added."""
    del site, positions_BxL
    return x_BxLxD

  def before_block(self, site: Site, index: int, x_BxLxD: jax.Array,
                   positions_BxL: jax.Array | None) -> jax.Array:
    """'blocks': returns the residual stream entering block `index` >= 1
    (the class token, if any, is not passed)."""
    del site, index, positions_BxL
    return x_BxLxD

  def pair_bias(self, site: Site, positions_BxL: jax.Array) -> PairBias:
    """'bias': the bias added to every block's logits, as a function of the
    query's and key's positions (`positions_BxL` are the sequence's, for
    what the bias reads of the whole sequence)."""
    raise NotImplementedError(
        f"{self.name} acts by 'bias' but implements neither pair_bias nor "
        'attention_bias.')

  def attention_bias(self, site: Site, positions_BxL: jax.Array
                     ) -> jax.Array:
    """'bias': the `(B, H, L, L)` bias of every query and key, for the
    einsum and fused paths. An entry that overrides only this (and not
    `pair_bias`) cannot run blocked attention."""
    return self.pair_bias(site, positions_BxL)(positions_BxL, positions_BxL)

  @property
  def blockable(self) -> bool:
    """Whether blocked attention can run this entry: it acts without a
    bias, or its `pair_bias` is as specific as its `attention_bias` (a
    subclass that overrides only `attention_bias` changed the bias that
    its inherited `pair_bias` would give)."""
    definer = lambda name: next(c for c in type(self).__mro__
                                if name in vars(c))
    pair = definer('pair_bias')
    return 'bias' not in self.acts or (
        pair is not Encoding and issubclass(pair, definer('attention_bias')))

  def rotate(self, config: Any, x_BxLxHxK: jax.Array,
             positions_BxL: jax.Array) -> jax.Array:
    """'rotation': rotated queries or keys, `(B, L, H, K)`."""
    del config, positions_BxL
    return x_BxLxHxK

  def __repr__(self) -> str:
    return f'{type(self).__name__}(name={self.name!r})'


_REGISTRY: dict[str, Encoding] = {}


def register(entry: Encoding) -> Encoding:
  """Adds `entry` under `entry.name`; returns it. A name is registered once."""
  if not isinstance(entry, Encoding):
    raise TypeError(f'register takes an Encoding instance, got {entry!r}.')
  if not entry.name or not isinstance(entry.name, str):
    raise ValueError(f'{type(entry).__name__} has no name; set the class '
                     "attribute name = '...'.")
  if entry.has_table and (not entry.resample_methods or
                          type(entry).resample is Encoding.resample):
    raise ValueError(
        f'{entry.name}: has_table=True needs resample_methods and a '
        'resample(table, new_len, method) for --mode=eval (e.g. those of '
        "posenc.encodings.absolute.Learned: 'linear', 'nearest').")
  unknown = set(entry.acts) - set(ACTS)
  if unknown:
    raise ValueError(f'{entry.name}: acts {sorted(unknown)} are not known; '
                     f'valid: {", ".join(ACTS)}.')
  old = _REGISTRY.get(entry.name)
  if old is not None and not checks.same_class(old, entry):
    raise ValueError(f'an encoding named {entry.name!r} is registered already '
                     f'({old!r}); unregister it first.')
  _REGISTRY[entry.name] = entry
  return entry


def unregister(name: str) -> None:
  """Removes the entry `name` (for tests and notebooks)."""
  get(name)  # A clear error for an unknown name.
  del _REGISTRY[name]


def names() -> tuple[str, ...]:
  """Registered names, in the order they were registered."""
  return tuple(_REGISTRY)


def get(name: str) -> Encoding:
  """The entry for `name`; ValueError listing the valid names otherwise."""
  if name not in _REGISTRY:
    raise ValueError(
        f'model.posemb={name!r} is not a known positional encoding; valid '
        f'names: {", ".join(_REGISTRY)}.')
  return _REGISTRY[name]


def check_config(config: Any) -> None:
  """Every entry's own fields, then the selected entry's combinations."""
  for entry in _REGISTRY.values():
    entry.check_fields(config)
  get(config.model.posemb).check(config)
