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
  """Mirrors `config.model` one-to-one (see configs/default.py)."""

  posemb: str = 'learned'
  posemb_init_std: float = encodings.DEFAULT_POSEMB_INIT_STD
  posemb_share: bool = True  # learned_every_layer: one table for all blocks.
  posemb_randomized: bool = False  # Random sorted positions in training.
  posemb_resample: str = 'none'  # Used when evaluating beyond max_len.
  rope_base: float = 10_000.0
  relative_num_buckets: int = 32
  relative_max_distance: int = 128
  max_len: int | None = None  # Rows of learned tables; None: data.seq_len.
  d_model: int = 64
  num_heads: int = 4
  num_layers: int = 2
  mlp_dim: int = 256
  dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.0
  pooling: str = 'mean'
  matmul_dtype: str = 'float32'  # Or 'bfloat16' (float32 accumulation).
  attention: str = 'einsum'  # Or 'fused': jax.nn.dot_product_attention.
  remat: bool = False  # Recompute each block's activations in backward.


class SelfAttention(nn.Module):
  """Multi-head self-attention with an optional key padding mask.

  Positions enter through `rope_positions` (rotary queries and keys) and/or
  `bias` (added to the logits: ALiBi, relative).
  """

  num_heads: int
  dropout_rate: float = 0.0
  rope_base: float = 10_000.0
  matmul_dtype: str = 'float32'
  attention: str = 'einsum'

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array | None, *,
               bias_BxHxLxL: jax.Array | None = None,
               rope_positions_BxL: jax.Array | None = None,
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
    if rope_positions_BxL is not None:
      q_BxLxHxK = encodings.apply_rope(q_BxLxHxK, rope_positions_BxL,
                                       self.rope_base)
      k_BxLxHxK = encodings.apply_rope(k_BxLxHxK, rope_positions_BxL,
                                       self.rope_base)
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

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array | None,
               train: bool, *, bias_BxHxLxL: jax.Array | None = None,
               rope_positions_BxL: jax.Array | None = None) -> jax.Array:
    cfg = self.config
    y = nn.LayerNorm(name='ln_attn')(x_BxLxD)
    y = SelfAttention(cfg.num_heads, cfg.attention_dropout_rate, cfg.rope_base,
                      cfg.matmul_dtype, cfg.attention, name='attn')(
                          y, mask_BxL, bias_BxHxLxL=bias_BxHxLxL,
                          rope_positions_BxL=rope_positions_BxL, train=train)
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
    encodings.check_posemb(cfg.posemb)
    max_len = seq_len if cfg.max_len is None else cfg.max_len
    randomized = cfg.posemb_randomized and train
    if randomized:  # Ruoss et al. (2023): sorted random subset of 0..M-1.
      positions_BxL = encodings.random_positions(
          self.make_rng('positions'), batch, seq_len, max_len)
    else:
      positions_BxL = encodings.default_positions(batch, seq_len)
    # Tables take explicit positions only when randomized; else the first L.
    table_positions_BxL = positions_BxL if randomized else None

    add_posemb = None  # Added before the first block.
    if cfg.posemb == 'sinusoidal':
      add_posemb = encodings.SinusoidalPosEmbed(name='posemb_sinusoidal')
    elif cfg.posemb in encodings.LEARNED_TABLES:
      add_posemb = encodings.LearnedPosEmbed(
          max_len, cfg.posemb_init_std, name='posemb_learned')
    if add_posemb is not None:
      x_BxLxD = add_posemb(x_BxLxD, table_positions_BxL)

    if cfg.pooling == 'cls':
      # As in big_vision's ViT: the class token is prepended after positions
      # are added, so it carries none and the table stays `max_len` long.
      # Inside attention it sits at position 0, the sequence at 1, 2, ...
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
    if cfg.posemb == 'alibi':
      bias_BxHxLxL = encodings.alibi_bias(cfg.num_heads, attn_positions_BxL)
    elif cfg.posemb == 'relative':  # One table shared by all blocks, as in T5.
      bias_BxHxLxL = encodings.RelativePositionBias(
          cfg.num_heads, cfg.relative_num_buckets, cfg.relative_max_distance,
          name='posemb_relative')(attn_positions_BxL)
    rope_positions_BxL = (attn_positions_BxL if cfg.posemb == 'rope' else None)

    x_BxLxD = nn.Dropout(cfg.dropout_rate)(x_BxLxD, deterministic=not train)
    hidden = [x_BxLxD]
    # remat: keep only each block's input for the backward pass and
    # recompute the rest. On XLA:CPU (jax 0.10.2) it measured slower with no
    # smaller temporary buffers; see the README's Performance.
    block = (nn.remat(EncoderBlock, static_argnums=(3,))
             if cfg.remat else EncoderBlock)
    for i in range(cfg.num_layers):
      if cfg.posemb == 'learned_every_layer' and i > 0:
        # Shared: the table added before block 0, again; else one per block.
        # A class token, if any, gets nothing.
        table = add_posemb if cfg.posemb_share else encodings.LearnedPosEmbed(
            max_len, cfg.posemb_init_std, name=f'posemb_learned_{i}')
        start = 1 if cfg.pooling == 'cls' else 0
        x_BxLxD = jnp.concatenate(
            [x_BxLxD[:, :start], table(x_BxLxD[:, start:],
                                       table_positions_BxL)], 1)
      x_BxLxD = block(cfg, name=f'block_{i}')(
          x_BxLxD, mask, train, bias_BxHxLxL=bias_BxHxLxL,
          rope_positions_BxL=rope_positions_BxL)
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
