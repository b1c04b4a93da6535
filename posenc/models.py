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

from posenc import attention
from posenc import checks
from posenc import encodings

POOLING_NAMES = ('mean', 'cls', 'last')
RANDOMIZED_EVAL = ('random', 'fixed')
# Re-exported: the attention module's names, as before it had its own file.
ATTENTION_NAMES = attention.ATTENTION_NAMES
MATMUL_DTYPES = attention.MATMUL_DTYPES
matmul = attention.matmul


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
  # Randomized positions at evaluation: 'random' (Ruoss et al.'s protocol:
  # sorted random positions as in training, metrics averaged over
  # posemb_randomized_eval_draws draws, fixed by the seed) or 'fixed'
  # (0..L-1).
  posemb_randomized_eval: str = 'random'
  posemb_randomized_eval_draws: int = 4  # Draws averaged in 'random'.
  # Eval beyond the table: 'linear'/'nearest' (learned),
  # 'bilinear'/'bicubic' (learned2d, to another grid).
  posemb_resample: str = 'none'
  rope_base: float = 10_000.0  # rope: wavelength base.
  rope2d_base: float = 100.0  # rope2d: base of its axial frequencies.
  # rope beyond its training length: 'none', 'linear' (position
  # interpolation), 'ntk' (NTK-aware base), 'yarn'.
  rope_scaling: str = 'none'
  # The length ratio it scales for; None: eval length / max_len where
  # longer (1 otherwise).
  rope_scaling_factor: float | None = None
  alibi_mode: str = 'symmetric'  # alibi: or 'directional' (per head).
  fire_mlp_width: int = 32  # fire: hidden units of its MLP.
  fire_init_c: float = 0.1  # fire: initial c of log(1 + c * distance).
  # fire: initial length threshold of the normaliser; None: max_len / 4.
  fire_init_threshold: float | None = None
  relative_num_buckets: int = 32  # relative: buckets (both sides).
  relative_max_distance: int = 128  # relative: last bucket's offset.
  max_len: int | None = None  # Rows of position tables; None: the data's L.
  d_model: int = 64  # Width of the residual stream.
  num_heads: int = 4  # Attention heads; must divide d_model.
  num_layers: int = 2  # Encoder blocks.
  mlp_dim: int = 256  # Hidden width of each block's MLP.
  dropout_rate: float = 0.0  # Dropout on embeddings and residuals.
  attention_dropout_rate: float = 0.0  # Dropout on attention weights.
  causal: bool = False  # Queries attend only to keys at or before them.
  # 'mean' over valid positions, 'cls' (a class token), or 'last' (the last
  # valid position: the one that sees every other when causal).
  pooling: str = 'mean'
  # Class token's normal init (0: zeros, as ViT). From zeros, runs that
  # differ only in summation order ended further apart than from 0.02, as
  # far as mean pooling's (experiments/results/reproducibility.md).
  cls_init_std: float = 0.02
  # Speed options (measured in docs/performance.md):
  matmul_dtype: str = 'float32'  # 'bfloat16': products, float32 sums.
  # 'fused': jax.nn.dot_product_attention (XLA's implementation);
  # 'blocked': posenc.blocked, memory linear in L (docs/performance.md says
  # which to pick).
  attention: str = 'einsum'
  attention_block_size: int = 512  # 'blocked': queries and keys per block.
  remat: bool = False  # Recompute each block's activations in backward.


def check_config(config: ml_collections.ConfigDict) -> None:
  """The model group's own fields and combinations (not the encoding's)."""
  checks.choice(config, 'model.pooling', POOLING_NAMES)
  checks.choice(config, 'model.posemb_resample',
                ('none',) + encodings.resample_methods())
  checks.choice(config, 'model.matmul_dtype', tuple(MATMUL_DTYPES))
  checks.choice(config, 'model.attention', ATTENTION_NAMES)
  for field in ('d_model', 'num_heads', 'num_layers', 'mlp_dim',
                'attention_block_size'):
    checks.positive_int(config, f'model.{field}')
  checks.positive_int(config, 'model.max_len', optional=True)
  for field in ('dropout_rate', 'attention_dropout_rate'):
    checks.real(config, f'model.{field}', low=0.0, high=1.0,
                low_inclusive=True)
  checks.choice(config, 'model.posemb_randomized_eval', RANDOMIZED_EVAL)
  checks.positive_int(config, 'model.posemb_randomized_eval_draws')
  checks.real(config, 'model.cls_init_std', low=0.0, low_inclusive=True)
  for field in ('posemb_randomized', 'remat', 'causal'):
    checks.boolean(config, f'model.{field}')
  m = config.model
  if m.causal and m.pooling == 'cls':
    raise ValueError(
        "model.causal=True lets the class token (position 0) see only "
        "itself, so model.pooling='cls' would classify nothing; valid with "
        "causal: pooling='last' or 'mean'.")
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
  if m.attention == 'blocked' and m.attention_dropout_rate:
    raise ValueError(
        "model.attention='blocked' never holds the attention weights, so it "
        'has no dropout on them, but model.attention_dropout_rate='
        f"{m.attention_dropout_rate}; valid: 0.0, or attention='einsum'.")
  entry = encodings.get(m.posemb) if m.posemb in encodings.names() else None
  if m.attention == 'blocked' and entry is not None and not entry.blockable:
    raise ValueError(
        f"model.attention='blocked' computes the bias one block at a time, "
        f'but model.posemb={m.posemb!r} gives it only for every pair '
        "(attention_bias, no pair_bias); valid: attention='einsum' or "
        "'fused', or an encoding with pair_bias.")


class EncoderBlock(nn.Module):
  """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)).

  `train` is positional (unlike the other modules' keyword-only flag) so that
  `nn.remat` can hold it static: remat traces keyword arguments.
  """

  config: ModelConfig
  encoding: encodings.Encoding

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array | None,
               train: bool, *,
               bias: jax.Array | encodings.PairBias | None = None,
               positions_BxL: jax.Array | None = None) -> jax.Array:
    cfg = self.config
    y = nn.LayerNorm(name='ln_attn')(x_BxLxD)
    y = attention.SelfAttention(cfg.num_heads, self.encoding, cfg,
                                cfg.attention_dropout_rate, cfg.matmul_dtype,
                                cfg.attention, cfg.attention_block_size,
                                name='attn')(
                                    y, mask_BxL, bias=bias,
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
               positions: jax.Array | None = None,
               train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns `(logits_BxC, intermediates)`.

    `mask` is a `(B, L)` boolean array, True at real positions, which come
    first in each row; padded keys are ignored by attention and padded
    positions by pooling. `positions`: `(B, L)` int positions of the steps
    (below `max_len` for a table); None: `0..L-1`, or in training with
    `posemb_randomized` a sorted random subset of `0..max_len-1` for each
    sequence's real length (Ruoss et al., 2023).
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
    if positions is None and cfg.posemb_randomized and train:
      positions = encodings.random_positions(
          self.make_rng('positions'), batch, seq_len, max_len,
          None if mask is None else mask.sum(axis=1))
    if positions is not None:
      chex.assert_shape(positions, (batch, seq_len))
      positions_BxL = positions.astype(jnp.int32)
    else:
      positions_BxL = encodings.default_positions(batch, seq_len)
    site = encodings.Site(cfg, max_len, train, seq_len=seq_len)
    # Added encodings take explicit positions only when given or drawn
    # (`positions`); else None, the first L rows.
    if 'inputs' in encoding.acts:
      x_BxLxD = encoding.embed(site, x_BxLxD, positions)

    start = 0  # Where the sequence starts: after the class token, if any.
    if cfg.pooling == 'cls':
      # As in big_vision's ViT: the class token is prepended after positions
      # are added, so it carries none and the table stays `max_len` long.
      # Inside attention it sits at position 0, the sequence at 1, 2, ...
      start = 1
      cls_init = (nn.initializers.normal(cfg.cls_init_std)
                  if cfg.cls_init_std else nn.initializers.zeros)
      cls_1x1xD = self.param('cls', cls_init, (1, 1, cfg.d_model))
      x_BxLxD = jnp.concatenate(
          [jnp.broadcast_to(cls_1x1xD, (batch, 1, cfg.d_model)), x_BxLxD], 1)
      if mask is not None:
        mask = jnp.concatenate([jnp.ones((batch, 1), bool), mask], axis=1)
      attn_positions_BxL = jnp.concatenate(
          [jnp.zeros((batch, 1), jnp.int32), positions_BxL + 1], axis=1)
    else:
      attn_positions_BxL = positions_BxL
    site = dataclasses.replace(site, mask=mask)  # Attention's, class token in.

    # The encoding's bias, shared by all blocks: every pair's `(B, H, L, L)`
    # array, or for blocked attention the function of positions.
    bias = None
    if 'bias' in encoding.acts and cfg.attention == 'blocked':
      bias = encoding.pair_bias(site, attn_positions_BxL)
    elif 'bias' in encoding.acts:
      bias = encoding.attention_bias(site, attn_positions_BxL)

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
                                   positions)], 1)
      x_BxLxD = block(cfg, encoding, name=f'block_{i}')(
          x_BxLxD, mask, train, bias=bias,
          positions_BxL=attn_positions_BxL)
      hidden.append(x_BxLxD)
    x_BxLxD = nn.LayerNorm(name='ln_final')(x_BxLxD)
    logits_BxC = nn.Dense(self.num_classes, name='head')(
        pool(x_BxLxD, mask, cfg.pooling))
    return logits_BxC, {'hidden': jnp.stack(hidden)}


def pool(x_BxLxD: jax.Array, mask_BxL: jax.Array | None, pooling: str
         ) -> jax.Array:
  """`(B, D)`: the class token (at 0), the last valid position, or the mean
  over valid positions."""
  if pooling == 'cls':
    return x_BxLxD[:, 0]
  if pooling == 'last':
    if mask_BxL is None:
      return x_BxLxD[:, -1]
    last_B = jnp.maximum(mask_BxL.sum(axis=1) - 1, 0)
    return jnp.take_along_axis(x_BxLxD, last_B[:, None, None], axis=1)[:, 0]
  if pooling == 'mean':
    if mask_BxL is None:
      return x_BxLxD.mean(axis=1)
    weights_BxL = mask_BxL.astype(x_BxLxD.dtype)
    pooled_BxD = jnp.einsum('bld,bl->bd', x_BxLxD, weights_BxL)
    return pooled_BxD / jnp.maximum(weights_BxL.sum(axis=1, keepdims=True), 1.0)
  raise ValueError(f'model.pooling={pooling!r} is not valid; valid: '
                   f'{", ".join(POOLING_NAMES)}.')
