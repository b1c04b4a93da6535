"""Transformer encoder classifier.

Shape legend: B = batch, L = sequence length, F = input features, D = model
width, H = heads, K = width per head (D // H), C = classes.

inputs -> Dense (float features) or Embed (int tokens) -> positional encoding
-> num_layers pre-LayerNorm blocks -> final LayerNorm -> pooling -> Dense head.
"""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from posenc import checks
from posenc import encodings

POOLING_NAMES = ('mean', 'cls')
ATTENTION_NAMES = ('einsum', 'fused')
MATMUL_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def matmul(dtype: str):
  """A `lax.dot_general` whose inputs are cast to `dtype`, accumulating and
  returning float32: parameters, activations and gradients stay float32,
  only the products run in `dtype` (on CPUs with AVX512-BF16, GPUs, TPUs)."""
  if dtype == 'float32':
    return jax.lax.dot_general
  low = MATMUL_DTYPES[dtype]

  def dot_general(lhs, rhs, dimension_numbers, precision=None,
                  preferred_element_type=None, **kwargs):
    del preferred_element_type  # Always float32.
    return jax.lax.dot_general(lhs.astype(low), rhs.astype(low),
                               dimension_numbers, precision=precision,
                               preferred_element_type=jnp.float32, **kwargs)

  return dot_general


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The model's hyper-parameters; `config.model` mirrors it one-to-one.

  These defaults are the only ones: `posenc.config.get_config()` builds the
  config's model group from them.
  """

  # Positional encoding: a name registered in posenc.encodings.
  posemb: str = 'learned'
  posemb_init_std: float = encodings.DEFAULT_POSEMB_INIT_STD  # Tables' init.
  posemb_share: bool = True  # learned_every_layer: one table for all blocks.
  posemb_randomized: bool = False  # Random sorted positions in training.
  posemb_resample: str = 'none'  # Eval beyond max_len: linear/nearest.
  rope_base: float = 10_000.0  # rope: wavelength base.
  relative_num_buckets: int = 32  # relative: buckets (both sides).
  relative_max_distance: int = 128  # relative: last bucket's offset.
  max_len: int | None = None  # Rows of position tables; None: the data's L.
  d_model: int = 64  # Width of the residual stream.
  num_heads: int = 4  # Attention heads; must divide d_model.
  num_layers: int = 2  # Encoder blocks.
  mlp_dim: int = 256  # Hidden width of each block's MLP.
  dropout_rate: float = 0.0  # Dropout on embeddings and residuals.
  attention_dropout_rate: float = 0.0  # Dropout on attention weights.
  pooling: str = 'mean'  # 'mean' over valid positions, or 'cls'.
  # Speed options (measured in docs/performance.md):
  matmul_dtype: str = 'float32'  # 'bfloat16': products, float32 sums.
  attention: str = 'einsum'  # 'fused': jax.nn.dot_product_attention.
  remat: bool = False  # Recompute each block's activations in backward.


def check_config(config: ml_collections.ConfigDict) -> None:
  """The model group's own fields and combinations (not the encoding's)."""
  checks.choice(config, 'model.pooling', POOLING_NAMES)
  checks.choice(config, 'model.posemb_resample',
                ('none',) + encodings.RESAMPLE_METHODS)
  checks.choice(config, 'model.matmul_dtype', tuple(MATMUL_DTYPES))
  checks.choice(config, 'model.attention', ATTENTION_NAMES)
  for field in ('d_model', 'num_heads', 'num_layers', 'mlp_dim'):
    checks.positive_int(config, f'model.{field}')
  checks.positive_int(config, 'model.max_len', optional=True)
  for field in ('dropout_rate', 'attention_dropout_rate'):
    checks.real(config, f'model.{field}', low=0.0, high=1.0,
                low_inclusive=True)
  for field in ('posemb_randomized', 'remat'):
    checks.boolean(config, f'model.{field}')
  m = config.model
  if m.d_model % m.num_heads:
    raise ValueError(
        f'model.d_model={m.d_model} is not divisible by model.num_heads='
        f'{m.num_heads}; valid num_heads divide d_model, e.g. '
        f'{checks.divisors(m.d_model)[:8]}.')
  if m.attention == 'fused' and m.attention_dropout_rate:
    raise ValueError(
        "model.attention='fused' (jax.nn.dot_product_attention) has no "
        f'dropout on the weights, but model.attention_dropout_rate='
        f"{m.attention_dropout_rate}; valid: 0.0, or attention='einsum'.")


class SelfAttention(nn.Module):
  """Multi-head self-attention with an optional key padding mask.

  Positions enter through the encoding's `rotate` of queries and keys (when
  it acts by 'rotation', at `positions_BxL`) and/or `bias` (added to the
  logits: ALiBi, relative).
  """

  num_heads: int
  encoding: encodings.Encoding
  config: ModelConfig
  dropout_rate: float = 0.0
  matmul_dtype: str = 'float32'
  attention: str = 'einsum'

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array | None, *,
               bias_BxHxLxL: jax.Array | None = None,
               positions_BxL: jax.Array | None = None,
               train: bool) -> jax.Array:
    d_model = x_BxLxD.shape[-1]
    head_dim = d_model // self.num_heads
    dot_general = matmul(self.matmul_dtype)
    low = MATMUL_DTYPES[self.matmul_dtype]
    dense = lambda name, bias=True: nn.DenseGeneral(
        (self.num_heads, head_dim), use_bias=bias, dot_general=dot_general,
        name=name)
    q_BxLxHxK = dense('query')(x_BxLxD)
    # No key bias: it adds the same q.b to every logit of a query, which the
    # softmax cancels, so its gradient is zero up to rounding noise that Adam
    # would amplify into random updates.
    k_BxLxHxK = dense('key', bias=False)(x_BxLxD)
    v_BxLxHxK = dense('value')(x_BxLxD)
    if 'rotation' in self.encoding.acts:
      q_BxLxHxK = self.encoding.rotate(self.config, q_BxLxHxK, positions_BxL)
      k_BxLxHxK = self.encoding.rotate(self.config, k_BxLxHxK, positions_BxL)
    if self.attention == 'fused':  # cuDNN flash attention on GPU.
      if mask_BxL is not None:
        mask_BxL = mask_BxL[:, None, None, :]
      out_BxLxHxK = jax.nn.dot_product_attention(
          q_BxLxHxK.astype(low), k_BxLxHxK.astype(low), v_BxLxHxK.astype(low),
          bias=None if bias_BxHxLxL is None else bias_BxHxLxL.astype(low),
          mask=mask_BxL).astype(jnp.float32)
    else:
      out_BxLxHxK = self._einsum_attention(
          q_BxLxHxK.astype(low), k_BxLxHxK.astype(low), v_BxLxHxK.astype(low),
          mask_BxL, bias_BxHxLxL, train=train)
    return nn.DenseGeneral(d_model, axis=(-2, -1), dot_general=dot_general,
                           name='out')(out_BxLxHxK)

  def _einsum_attention(self, q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, mask_BxL,
                        bias_BxHxLxL, *, train: bool) -> jax.Array:
    """Softmax attention with the L x L weights materialised (and dropped
    out in training); products in the inputs' dtype, summed in float32."""
    logits_BxHxLxL = jnp.einsum('bqhk,bshk->bhqs', q_BxLxHxK, k_BxLxHxK,
                                preferred_element_type=jnp.float32)
    logits_BxHxLxL /= jnp.sqrt(q_BxLxHxK.shape[-1]).astype(jnp.float32)
    if bias_BxHxLxL is not None:
      logits_BxHxLxL += bias_BxHxLxL.astype(jnp.float32)
    if mask_BxL is not None:
      big_neg = jnp.finfo(logits_BxHxLxL.dtype).min
      logits_BxHxLxL = jnp.where(mask_BxL[:, None, None, :], logits_BxHxLxL,
                                 big_neg)
    weights_BxHxLxL = jax.nn.softmax(logits_BxHxLxL)
    weights_BxHxLxL = nn.Dropout(self.dropout_rate)(
        weights_BxHxLxL, deterministic=not train)
    weights_BxHxLxL = weights_BxHxLxL.astype(v_BxLxHxK.dtype)
    return jnp.einsum('bhqs,bshk->bqhk', weights_BxHxLxL, v_BxLxHxK,
                      preferred_element_type=jnp.float32)


class EncoderBlock(nn.Module):
  """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)).

  `train` is positional (unlike the other modules' keyword-only flag) so that
  `nn.remat` can hold it static: remat traces keyword arguments.
  """

  config: ModelConfig
  encoding: encodings.Encoding

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array | None,
               train: bool, *, bias_BxHxLxL: jax.Array | None = None,
               positions_BxL: jax.Array | None = None) -> jax.Array:
    cfg = self.config
    y = nn.LayerNorm(name='ln_attn')(x_BxLxD)
    y = SelfAttention(cfg.num_heads, self.encoding, cfg,
                      cfg.attention_dropout_rate, cfg.matmul_dtype,
                      cfg.attention, name='attn')(
                          y, mask_BxL, bias_BxHxLxL=bias_BxHxLxL,
                          positions_BxL=positions_BxL, train=train)
    x_BxLxD = x_BxLxD + nn.Dropout(cfg.dropout_rate)(y, deterministic=not train)
    y = nn.LayerNorm(name='ln_mlp')(x_BxLxD)
    dot_general = matmul(cfg.matmul_dtype)
    y = nn.Dense(cfg.mlp_dim, dot_general=dot_general, name='mlp_in')(y)
    y = nn.gelu(y)
    y = nn.Dropout(cfg.dropout_rate)(y, deterministic=not train)
    y = nn.Dense(x_BxLxD.shape[-1], dot_general=dot_general,
                 name='mlp_out')(y)
    return x_BxLxD + nn.Dropout(cfg.dropout_rate)(y, deterministic=not train)


class EncoderClassifier(nn.Module):
  """Classifies a sequence of float features or int tokens.

  Attributes:
    config: the model hyper-parameters.
    num_classes: width of the output head.
    vocab_size: None for float inputs `(B, L, F)` (Dense projection); the
      vocabulary size for int token inputs `(B, L)` (embedding lookup).
  """

  config: ModelConfig
  num_classes: int
  vocab_size: int | None = None

  @nn.compact
  def __call__(self, inputs: jax.Array, *, mask: jax.Array | None = None,
               train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns `(logits_BxC, intermediates)`.

    `mask` is a `(B, L)` boolean array, True at real positions; padded keys are
    ignored by attention and padded positions by mean pooling.
    `intermediates['hidden']` stacks the residual stream after the input
    embedding (positions included) and after every block:
    `(num_layers + 1, B, L, D)` (L + 1 with a class token), for probing.
    """
    cfg = self.config
    if self.vocab_size is None:
      chex.assert_rank(inputs, 3)
      x_BxLxD = nn.Dense(cfg.d_model, name='input_proj')(inputs)
    else:
      chex.assert_rank(inputs, 2)
      x_BxLxD = nn.Embed(self.vocab_size, cfg.d_model, name='token_embed')(
          inputs)
    batch, seq_len, _ = x_BxLxD.shape
    if mask is not None:
      chex.assert_shape(mask, (batch, seq_len))
    encoding = encodings.get(cfg.posemb)
    max_len = seq_len if cfg.max_len is None else cfg.max_len
    site = encodings.Site(cfg, max_len, train)
    randomized = cfg.posemb_randomized and train
    if randomized:  # Ruoss et al. (2023): sorted random subset of 0..M-1.
      positions_BxL = encodings.random_positions(
          self.make_rng('positions'), batch, seq_len, max_len)
    else:
      positions_BxL = encodings.default_positions(batch, seq_len)
    # Added encodings take explicit positions only when randomized; else
    # None, the first L rows.
    table_positions_BxL = positions_BxL if randomized else None
    if 'inputs' in encoding.acts:
      x_BxLxD = encoding.embed(site, x_BxLxD, table_positions_BxL)

    start = 0  # Where the sequence starts: after the class token, if any.
    if cfg.pooling == 'cls':
      # As in big_vision's ViT: the class token is prepended after positions
      # are added, so it carries none and the table stays `max_len` long.
      # Inside attention it sits at position 0, the sequence at 1, 2, ...
      start = 1
      cls_1x1xD = self.param('cls', nn.initializers.zeros, (1, 1, cfg.d_model))
      x_BxLxD = jnp.concatenate(
          [jnp.broadcast_to(cls_1x1xD, (batch, 1, cfg.d_model)), x_BxLxD], 1)
      if mask is not None:
        mask = jnp.concatenate([jnp.ones((batch, 1), bool), mask], axis=1)
      attn_positions_BxL = jnp.concatenate(
          [jnp.zeros((batch, 1), jnp.int32), positions_BxL + 1], axis=1)
    else:
      attn_positions_BxL = positions_BxL

    bias_BxHxLxL = None
    if 'bias' in encoding.acts:
      bias_BxHxLxL = encoding.attention_bias(site, attn_positions_BxL)

    x_BxLxD = nn.Dropout(cfg.dropout_rate)(x_BxLxD, deterministic=not train)
    hidden = [x_BxLxD]
    # remat: keep only each block's input for the backward pass and
    # recompute the rest. On XLA:CPU (jax 0.10.2) it measured slower with no
    # smaller temporary buffers; see docs/performance.md.
    block = (nn.remat(EncoderBlock, static_argnums=(3,))
             if cfg.remat else EncoderBlock)
    for i in range(cfg.num_layers):
      if 'blocks' in encoding.acts and i > 0:  # The class token gets nothing.
        x_BxLxD = jnp.concatenate(
            [x_BxLxD[:, :start],
             encoding.before_block(site, i, x_BxLxD[:, start:],
                                   table_positions_BxL)], 1)
      x_BxLxD = block(cfg, encoding, name=f'block_{i}')(
          x_BxLxD, mask, train, bias_BxHxLxL=bias_BxHxLxL,
          positions_BxL=attn_positions_BxL)
      hidden.append(x_BxLxD)
    x_BxLxD = nn.LayerNorm(name='ln_final')(x_BxLxD)

    if cfg.pooling == 'cls':
      pooled_BxD = x_BxLxD[:, 0]
    elif cfg.pooling == 'mean':
      if mask is None:
        pooled_BxD = x_BxLxD.mean(axis=1)
      else:
        weights_BxL = mask.astype(x_BxLxD.dtype)
        pooled_BxD = jnp.einsum('bld,bl->bd', x_BxLxD, weights_BxL)
        pooled_BxD /= jnp.maximum(weights_BxL.sum(axis=1, keepdims=True), 1.0)
    else:
      raise ValueError(f'model.pooling={cfg.pooling!r} is not valid; valid: '
                       f'{", ".join(POOLING_NAMES)}.')
    logits_BxC = nn.Dense(self.num_classes, name='head')(pooled_BxD)
    return logits_BxC, {'hidden': jnp.stack(hidden)}
