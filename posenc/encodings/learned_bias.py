"""Learned functions of the distance added to attention logits: FIRE and
Kerple. Each is one module shared by all blocks, as T5's relative bias here.

Shape legend: B = batch, L = sequence length, H = heads, W = FIRE's MLP
width.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from posenc import checks
from posenc.encodings.base import Encoding
from posenc.encodings.base import PairBias

FIRE_EPS = 1e-6  # Added to FIRE's normaliser, as in the paper's listing.
KERPLE_EPS = 1e-2  # Kerple's parameters are used clamped to at least this.


def fire_inputs(positions_BxL: jax.Array, mask_BxL: jax.Array | None,
                c: jax.Array, threshold: jax.Array, *, causal: bool
                ) -> jax.Array:
  """FIRE's normalised distances, the MLP's input: `(B, L, L)` for query i,
  key j (`fire_pair_inputs` of every pair).

  With psi(x) = log(|c x| + 1) (Li et al., 2023, eq. 3 and their appendix
  listing):
  - causal (the paper): psi(i - j) / psi(max(threshold, i)), i and j the
    query's and key's positions: the query's position is the length of the
    context it sees, so distances are normalised into [0, 1];
  - bidirectional (our choice; the paper defines FIRE for decoders only):
    sign(i - j) psi(|i - j|) / psi(max(threshold, S)), with S the span of
    the sequence's real positions (its real length - 1 at positions
    0..L-1). The span is the longest distance any query of the sequence
    can see, as i is in the causal case, so distances again fall in
    [-1, 1] and a longer sequence is interpolated into the same range;
    the sign keeps left and right apart (|i - j| alone would make the
    model invariant to reversing the sequence, as symmetric ALiBi is).
  """
  span_B = None if causal else fire_span(positions_BxL, mask_BxL)
  return fire_pair_inputs(positions_BxL, positions_BxL, c, threshold, span_B)


def fire_span(positions_BxL: jax.Array, mask_BxL: jax.Array | None
              ) -> jax.Array:
  """`(B,)`: the span of each sequence's real positions (max - min)."""
  pos_BxL = positions_BxL.astype(jnp.float32)
  real_BxL = (jnp.ones_like(positions_BxL, bool) if mask_BxL is None
              else mask_BxL)
  big = jnp.finfo(jnp.float32).max
  return (jnp.where(real_BxL, pos_BxL, -big).max(axis=1) -
          jnp.where(real_BxL, pos_BxL, big).min(axis=1))


def fire_pair_inputs(q_positions_BxQ: jax.Array, k_positions_BxS: jax.Array,
                     c: jax.Array, threshold: jax.Array,
                     span_B: jax.Array | None) -> jax.Array:
  """`fire_inputs` of queries at `q_positions` and keys at `k_positions`,
  `(B, Q, S)`: causal where `span_B` is None, else bidirectional with each
  sequence's span."""
  q_BxQ = q_positions_BxQ.astype(jnp.float32)
  psi = lambda x: jnp.log(jnp.abs(c * x) + 1.0)
  distance_BxQxS = (q_BxQ[:, :, None] -
                    k_positions_BxS[:, None, :].astype(jnp.float32))  # i - j
  if span_B is None:
    norm_BxQx1 = jnp.maximum(threshold, q_BxQ)[:, :, None]
  else:
    norm_BxQx1 = jnp.maximum(threshold, span_B)[:, None, None]
  return (jnp.sign(distance_BxQxS) * psi(distance_BxQxS) /
          (psi(norm_BxQx1) + FIRE_EPS))


def fire_pair_bias(init_threshold: float, params: dict, span_B,
                   q_positions_BxQ: jax.Array, k_positions_BxS: jax.Array
                   ) -> jax.Array:
  """FIRE's bias, `(B, H, Q, S)`: the MLP (1 -> W, ReLU, W -> H) of
  `fire_pair_inputs`, the threshold |threshold_scale| * `init_threshold`."""
  threshold = jnp.abs(params['threshold_scale'] * init_threshold)
  x_BxQxS = fire_pair_inputs(q_positions_BxQ, k_positions_BxS, params['c'],
                             threshold, span_B)
  mlp_in, mlp_out = params['mlp_in'], params['mlp_out']
  h_BxQxSxW = nn.relu(x_BxQxS[..., None] @ mlp_in['kernel'] + mlp_in['bias'])
  bias_BxQxSxH = h_BxQxSxW @ mlp_out['kernel'] + mlp_out['bias']
  return jnp.transpose(bias_BxQxSxH, (0, 3, 1, 2))


class DenseParams(nn.Module):
  """The parameters of an `nn.Dense` (same names, shapes and initial values),
  returned rather than applied, for a pure bias function."""

  in_features: int
  features: int

  @nn.compact
  def __call__(self) -> dict[str, jax.Array]:
    return {'kernel': self.param('kernel', nn.initializers.lecun_normal(),
                                 (self.in_features, self.features)),
            'bias': self.param('bias', nn.initializers.zeros,
                               (self.features,))}


class FireBias(nn.Module):
  """FIRE (Li et al., 2023): an MLP (1 -> W, ReLU, W -> H) of the
  normalised log distance (`fire_inputs`). c starts at `init_c`; the
  threshold is |scale| * `init_threshold` with a learned scale starting at
  1, as in the paper's listing (whose fixed init_L is 512)."""

  num_heads: int
  width: int = 32
  init_c: float = 0.1
  init_threshold: float = 512.0
  causal: bool = False

  @nn.compact
  def pair_bias(self, positions_BxL: jax.Array, mask_BxL: jax.Array | None
                ) -> PairBias:
    """The bias as a function of query and key positions; `positions_BxL`
    and `mask_BxL` give each sequence's span (bidirectional)."""
    params = {
        'c': self.param('c', nn.initializers.constant(self.init_c), ()),
        'threshold_scale': self.param('threshold_scale',
                                      nn.initializers.ones, ()),
        'mlp_in': DenseParams(1, self.width, name='mlp_in')(),
        'mlp_out': DenseParams(self.width, self.num_heads, name='mlp_out')()}
    span_B = None if self.causal else fire_span(positions_BxL, mask_BxL)
    return PairBias(functools.partial(fire_pair_bias, self.init_threshold),
                    params, span_B)

  def __call__(self, positions_BxL: jax.Array,
               mask_BxL: jax.Array | None) -> jax.Array:
    """Returns the bias to add to attention logits: `(B, H, L, L)`."""
    return self.pair_bias(positions_BxL, mask_BxL)(positions_BxL,
                                                   positions_BxL)


def positive(raw: jax.Array) -> jax.Array:
  """A Kerple parameter from its stored value: KERPLE_EPS + softplus(raw),
  always >= KERPLE_EPS and with a gradient everywhere."""
  return KERPLE_EPS + jax.nn.softplus(raw)


def positive_init(high: float):
  """Stored values whose `positive` is U[0, high) clamped to >= KERPLE_EPS,
  the reference's draw and clamp."""
  def init(key, shape, dtype=jnp.float32):
    value = jax.random.uniform(key, shape, dtype, 0.0, high)
    excess = jnp.maximum(value - KERPLE_EPS, 1e-6)
    return excess + jnp.log(-jnp.expm1(-excess))  # softplus^-1(excess).
  return init


def kerple_log_bias(p_H: jax.Array, a_H: jax.Array,
                    positions_BxL: jax.Array) -> jax.Array:
  """Kerple's logarithmic bias -p_h log(1 + a_h |i - j|) (Chi et al., 2022,
  the 'log' kernel), `(B, H, L, L)`, for positive p_h and a_h."""
  return kerple_pair_bias({'p_raw': p_H, 'a_raw': a_H}, None, positions_BxL,
                          positions_BxL, raw=False)


def kerple_pair_bias(params: dict, context, q_positions_BxQ: jax.Array,
                     k_positions_BxS: jax.Array, *, raw: bool = True
                     ) -> jax.Array:
  """Kerple-log's bias of queries at `q_positions` and keys at
  `k_positions`, `(B, H, Q, S)`; with `raw`, p and a are `positive` of the
  stored values."""
  del context
  p_H, a_H = params['p_raw'], params['a_raw']
  if raw:
    p_H, a_H = positive(p_H), positive(a_H)
  distance_BxQxS = jnp.abs(q_positions_BxQ[:, :, None] -
                           k_positions_BxS[:, None, :]).astype(jnp.float32)
  p, a = p_H[None, :, None, None], a_H[None, :, None, None]
  return -p * jnp.log1p(a * distance_BxQxS[:, None])


class KerpleBias(nn.Module):
  """Kerple-log's per-head p and a, drawn as its reference code draws them
  (chijames/KERPLE, ParallelKerpleLog: p ~ U[0, 2), a ~ U[0, 1), kept >=
  1e-2). The reference clamps the stored values before every step (a
  projected gradient); here they are stored as softplus^-1(value - 1e-2),
  so they stay positive under any optimizer without a clamp whose gradient
  would vanish, the same function at initialisation and a smooth
  reparametrisation during training."""

  num_heads: int

  @nn.compact
  def pair_bias(self) -> PairBias:
    """The bias as a function of query and key positions."""
    return PairBias(kerple_pair_bias, {
        'p_raw': self.param('p_raw', positive_init(2.0), (self.num_heads,)),
        'a_raw': self.param('a_raw', positive_init(1.0), (self.num_heads,))})

  def __call__(self, positions_BxL: jax.Array) -> jax.Array:
    """Returns the bias to add to attention logits: `(B, H, L, L)`."""
    return self.pair_bias()(positions_BxL, positions_BxL)


class Fire(Encoding):
  """FIRE, a learned MLP of the log distance normalised by a length (Li et
  al., 2023, "Functional Interpolation for Relative Positions Improves
  Long Context Transformers"); 'posemb_fire'. Causal: the paper's
  normaliser (the query's position); bidirectional: the sequence's span
  (see `fire_inputs` for why). The threshold starts at
  `model.fire_init_threshold`, by default a quarter of the training length
  (`max_len`): as in the paper, whose listing fixes 512 for far longer
  training sequences, most training queries are then normalised by their
  own position (causal) or their sequence's span, and longer sequences are
  interpolated into the range seen in training. One FIRE module serves all
  blocks (the paper's layer-shared variant; its default is one per layer),
  as T5's relative bias does here."""

  name = 'fire'
  acts = frozenset({'bias'})

  def check_fields(self, config) -> None:
    checks.positive_int(config, 'model.fire_mlp_width')
    checks.real(config, 'model.fire_init_c', low=0.0)
    if config.model.fire_init_threshold is not None:
      checks.real(config, 'model.fire_init_threshold', low=0.0)

  def num_params(self, model, rows) -> int:
    width = model.fire_mlp_width
    return 2 * width + width * model.num_heads + model.num_heads + 2

  def bias_maps(self, model) -> int:
    # The bias, the MLP's input and its hidden layer, and their gradients
    # (XLA fuses the rest: at L=64, d=64, batch 32 the estimate's share of
    # the step is 1.5x XLA's buffers, tests/memory_test.py).
    return 2 * model.num_heads + 2 + 2 * model.fire_mlp_width

  def pair_bias(self, site, positions_BxL):
    cfg = site.config
    threshold = (site.max_len / 4 if cfg.fire_init_threshold is None
                 else cfg.fire_init_threshold)
    bias = site.module('posemb_fire', lambda name: FireBias(
        cfg.num_heads, cfg.fire_mlp_width, cfg.fire_init_c, threshold,
        cfg.causal, name=name))
    return bias.pair_bias(positions_BxL, site.mask)


class Kerple(Encoding):
  """Kerple's logarithmic variant, -p_h log(1 + a_h |i - j|) with learned
  positive p_h, a_h per head (Chi et al., 2022); 'posemb_kerple'. Like
  symmetric ALiBi it depends on |i - j| only, so without a causal mask and
  with mean pooling the classifier cannot tell a sequence from its
  reverse (see `posenc.encodings.attention.Alibi`)."""

  name = 'kerple'
  acts = frozenset({'bias'})

  def num_params(self, model, rows) -> int:
    return 2 * model.num_heads

  def pair_bias(self, site, positions_BxL):
    del positions_BxL
    bias = site.module('posemb_kerple', lambda name: KerpleBias(
        site.config.num_heads, name=name))
    return bias.pair_bias()
