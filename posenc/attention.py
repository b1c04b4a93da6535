"""Multi-head self-attention: the einsum path, the fused one and the
blocked one (posenc.blocked, memory linear in L).

Shape legend: B = batch, L = sequence length, D = model width, H = heads,
K = width per head (D // H).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from posenc import blocked
from posenc import encodings

ATTENTION_NAMES = ('einsum', 'fused', 'blocked')
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


def visible(mask_BxL: jax.Array | None, seq_len: int, causal: bool
            ) -> jax.Array | None:
  """Which keys each query may attend to, `(B or 1, 1, L, L)` boolean, or
  None where every key is visible: the key padding mask, and with `causal`
  only keys at or before the query."""
  allowed = None
  if mask_BxL is not None:
    allowed = mask_BxL[:, None, None, :]
  if causal:
    lower_1x1xLxL = jnp.tril(jnp.ones((seq_len, seq_len), bool))[None, None]
    allowed = lower_1x1xLxL if allowed is None else allowed & lower_1x1xLxL
  return allowed


class SelfAttention(nn.Module):
  """Multi-head self-attention with an optional key padding mask and an
  optional causal mask (`config.causal`).

  Positions enter through the encoding's `rotate` of queries and keys (when
  it acts by 'rotation', at `positions_BxL`) and/or `bias` (added to the
  logits: ALiBi, relative, FIRE, Kerple): a `(B, H, L, L)` array for the
  einsum and fused paths, a `PairBias` of `positions_BxL` for 'blocked'.
  """

  num_heads: int
  encoding: encodings.Encoding
  config: Any  # posenc.models.ModelConfig (which imports this module).
  dropout_rate: float = 0.0
  matmul_dtype: str = 'float32'
  attention: str = 'einsum'
  block_size: int = 512  # 'blocked': queries and keys per block.

  @nn.compact
  def __call__(self, x_BxLxD: jax.Array, mask_BxL: jax.Array | None, *,
               bias: jax.Array | encodings.PairBias | None = None,
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
    q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (
        x.astype(low) for x in (q_BxLxHxK, k_BxLxHxK, v_BxLxHxK))
    if self.attention == 'blocked':
      out_BxLxHxK = blocked.blocked_attention(
          q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, mask_BxL=mask_BxL,
          causal=self.config.causal, bias=bias, positions_BxL=positions_BxL,
          block_size=self.block_size)
    elif self.attention == 'fused':  # Its default implementation: XLA's.
      out_BxLxHxK = jax.nn.dot_product_attention(
          q_BxLxHxK, k_BxLxHxK, v_BxLxHxK,
          bias=None if bias is None else bias.astype(low),
          mask=visible(mask_BxL, x_BxLxD.shape[1], self.config.causal)
          ).astype(jnp.float32)
    else:
      out_BxLxHxK = self._einsum_attention(
          q_BxLxHxK, k_BxLxHxK, v_BxLxHxK,
          visible(mask_BxL, x_BxLxD.shape[1], self.config.causal), bias,
          train=train)
    return nn.DenseGeneral(d_model, axis=(-2, -1), dot_general=dot_general,
                           name='out')(out_BxLxHxK)

  def _einsum_attention(self, q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, allowed,
                        bias_BxHxLxL, *, train: bool) -> jax.Array:
    """Softmax attention with the L x L weights materialised (and dropped
    out in training); products in the inputs' dtype, summed in float32."""
    logits_BxHxLxL = jnp.einsum('bqhk,bshk->bhqs', q_BxLxHxK, k_BxLxHxK,
                                preferred_element_type=jnp.float32)
    logits_BxHxLxL /= jnp.sqrt(q_BxLxHxK.shape[-1]).astype(jnp.float32)
    if bias_BxHxLxL is not None:
      logits_BxHxLxL += bias_BxHxLxL.astype(jnp.float32)
    if allowed is not None:
      big_neg = jnp.finfo(logits_BxHxLxL.dtype).min
      logits_BxHxLxL = jnp.where(allowed, logits_BxHxLxL, big_neg)
    weights_BxHxLxL = jax.nn.softmax(logits_BxHxLxL)
    weights_BxHxLxL = nn.Dropout(self.dropout_rate)(
        weights_BxHxLxL, deterministic=not train)
    weights_BxHxLxL = weights_BxHxLxL.astype(v_BxLxHxK.dtype)
    return jnp.einsum('bhqs,bshk->bqhk', weights_BxHxLxL, v_BxLxHxK,
                      preferred_element_type=jnp.float32)
