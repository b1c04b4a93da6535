"""Blocked attention: memory linear in the sequence length.

Queries and keys are taken a block of T at a time; an online softmax keeps,
per query, the running maximum and sum of its exponentiated logits, and the
backward pass recomputes each block's weights from the saved log-sum-exp
(FlashAttention, Dao et al., 2022, in the loop order of FlashAttention-2,
Dao, 2023: the forward pass loops over key blocks for each query block, the
backward pass over query blocks for each key block). No `L x L` array
exists: neither logits nor weights nor a positional bias, which
`PairBias` computes for one block of queries and keys from their positions
(and recomputes in the backward pass, where its parameters get their
gradient block by block).

Shape legend: B = batch, L = sequence length (padded to a multiple of T),
H = heads, K = width per head, T = block size, N = L / T blocks.

What is skipped: with `causal`, the key blocks after a query block's last
query (about half of them); with a padding mask, the key blocks after the
last real key of the batch. Masked keys get weight exactly 0, so results
agree with the einsum path to rounding, except in a row whose keys are all
masked (a sequence with no real step): its output and gradients are 0,
where the einsum path averages the values of all keys.
"""

import functools

import jax
import jax.numpy as jnp

from posenc.encodings import PairBias

BIG_NEG = float(jnp.finfo(jnp.float32).min)  # The einsum path's mask value.


def blocked_attention(q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array,
                      v_BxLxHxK: jax.Array, *,
                      mask_BxL: jax.Array | None = None,
                      causal: bool = False, bias: PairBias | None = None,
                      positions_BxL: jax.Array | None = None,
                      block_size: int = 512) -> jax.Array:
  """Softmax attention, `(B, L, H, K)` float32, computed block by block.

  The same function as the einsum path: softmax(q k^T / sqrt(K) + bias),
  keys masked where `mask_BxL` is False (padding) and, with `causal`, after
  the query. `bias(q_positions, k_positions)` gives one block's bias from
  `positions_BxL`. Products run in the inputs' dtype, sums in float32.
  """
  batch, length, _, _ = q_BxLxHxK.shape
  if bias is not None and positions_BxL is None:
    raise ValueError('blocked_attention: a bias needs positions_BxL.')
  size = min(block_size, length)
  padded = -(-length // size) * size
  if mask_BxL is None:
    mask_BxL = jnp.ones((batch, length), bool)
  if positions_BxL is None:
    positions_BxL = jnp.zeros((batch, length), jnp.int32)
  if padded != length:
    pad = lambda x: jnp.pad(x, [(0, 0), (0, padded - length)] +
                            [(0, 0)] * (x.ndim - 2))
    q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = map(pad, (q_BxLxHxK, k_BxLxHxK,
                                                v_BxLxHxK))
    mask_BxL, positions_BxL = pad(mask_BxL), pad(positions_BxL)
  # Key blocks up to the last real key of the batch; later ones are skipped.
  last_real = jnp.max(jnp.where(mask_BxL, jnp.arange(padded) + 1, 0))
  num_key_blocks = (last_real + size - 1) // size
  fn = None if bias is None else bias.fn
  params = None if bias is None else bias.params
  context = None if bias is None else bias.context
  # Heads first, once, so that every block's products are plain batched
  # matrix products. The 1 / sqrt(K) scale is folded into float32 queries
  # (one multiply per query instead of one per logit); lower-precision
  # queries would round again, so their logits are scaled instead.
  heads_first = lambda x: jnp.transpose(x, (0, 2, 1, 3))
  scale = 1.0 / float(q_BxLxHxK.shape[-1]) ** 0.5
  logit_scale = scale
  if q_BxLxHxK.dtype == jnp.float32:
    q_BxLxHxK, logit_scale = q_BxLxHxK * jnp.float32(scale), 1.0
  out_BxHxLxK = _attend(fn, causal, size, logit_scale,
                        heads_first(q_BxLxHxK), heads_first(k_BxLxHxK),
                        heads_first(v_BxLxHxK), params, context, mask_BxL,
                        positions_BxL.astype(jnp.int32), num_key_blocks)
  return heads_first(out_BxHxLxK)[:, :length]


def _block(x, index, size, axis=2):
  """Block `index` of `x` along `axis` (the length of `(B, H, L, K)`)."""
  return jax.lax.dynamic_slice_in_dim(x, index * size, size, axis=axis)


def _logits(fn, causal, size, logit_scale, params, context, q_BxHxTxK,
            k_BxHxTxK, q_pos_BxT, k_pos_BxT, k_mask_BxT, i, j):
  """One block's scaled, biased and masked logits, `(B, H, T, T)`."""
  s_BxHxTxT = jnp.einsum('bhqk,bhsk->bhqs', q_BxHxTxK, k_BxHxTxK,
                         preferred_element_type=jnp.float32)
  if logit_scale != 1.0:
    s_BxHxTxT *= jnp.float32(logit_scale)
  if fn is not None:
    s_BxHxTxT += fn(params, context, q_pos_BxT, k_pos_BxT).astype(jnp.float32)
  allowed = k_mask_BxT[:, None, None, :]
  if causal:
    rows = i * size + jnp.arange(size)
    cols = j * size + jnp.arange(size)
    allowed = allowed & (rows[:, None] >= cols[None, :])
  return jnp.where(allowed, s_BxHxTxT, BIG_NEG)


def _visible_key_blocks(causal, i, num_key_blocks):
  """Key blocks query block `i` computes: all real ones, or with `causal`
  those up to its own."""
  return jnp.minimum(num_key_blocks, i + 1) if causal else num_key_blocks


def _forward(fn, causal, size, logit_scale, q, k, v, params, context, mask,
             positions, num_key_blocks):
  """`(out_BxHxLxK, lse_BxHxL)`: outputs and each query's log-sum-exp."""
  batch, heads, length, head_dim = q.shape
  pos_block = lambda x, index: _block(x, index, size, axis=1)

  def query_block(i):
    q_i, q_pos = _block(q, i, size), pos_block(positions, i)

    def key_block(j, carry):
      max_BxHxT, sum_BxHxT, acc_BxHxTxK = carry
      k_j, v_j = _block(k, j, size), _block(v, j, size)
      s = _logits(fn, causal, size, logit_scale, params, context, q_i, k_j,
                  q_pos, pos_block(positions, j), pos_block(mask, j), i, j)
      max_new = jnp.maximum(max_BxHxT, s.max(axis=-1))
      p_BxHxTxT = jnp.exp(s - max_new[..., None])
      correction = jnp.exp(max_BxHxT - max_new)
      sum_new = sum_BxHxT * correction + p_BxHxTxT.sum(axis=-1)
      acc = acc_BxHxTxK * correction[..., None] + jnp.einsum(
          'bhqs,bhsk->bhqk', p_BxHxTxT.astype(v.dtype), v_j,
          preferred_element_type=jnp.float32)
      return max_new, sum_new, acc

    init = (jnp.full((batch, heads, size), -jnp.inf, jnp.float32),
            jnp.zeros((batch, heads, size), jnp.float32),
            jnp.zeros((batch, heads, size, head_dim), jnp.float32))
    max_BxHxT, sum_BxHxT, acc = jax.lax.fori_loop(
        0, _visible_key_blocks(causal, i, num_key_blocks), key_block, init)
    # A masked logit is the float32 minimum, so its weight is exactly 0
    # unless every key of the row is masked: then the row's output is 0 and
    # its log-sum-exp +inf, which gives its keys weight 0 in the backward
    # pass too.
    empty = max_BxHxT == BIG_NEG
    return (jnp.where(empty[..., None], 0.0, acc / sum_BxHxT[..., None]),
            jnp.where(empty, jnp.inf, max_BxHxT + jnp.log(sum_BxHxT)))

  out_NxBxHxTxK, lse_NxBxHxT = jax.lax.map(query_block,
                                           jnp.arange(length // size))
  out = jnp.moveaxis(out_NxBxHxTxK, 0, 2).reshape(batch, heads, length,
                                                  head_dim)
  lse = jnp.moveaxis(lse_NxBxHxT, 0, 2).reshape(batch, heads, length)
  return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _attend(fn, causal, size, logit_scale, q, k, v, params, context, mask,
            positions, num_key_blocks):
  """`(B, H, L, K)` outputs; differentiable in q, k, v and `params`."""
  return _forward(fn, causal, size, logit_scale, q, k, v, params, context,
                  mask, positions, num_key_blocks)[0]


def _attend_fwd(fn, causal, size, logit_scale, q, k, v, params, context,
                mask, positions, num_key_blocks):
  """The forward pass, saving the inputs, outputs and log-sum-exp."""
  out, lse = _forward(fn, causal, size, logit_scale, q, k, v, params,
                      context, mask, positions, num_key_blocks)
  return out, (q, k, v, params, context, mask, positions, num_key_blocks,
               out, lse)


def _attend_bwd(fn, causal, size, logit_scale, residuals, d_out):
  """The gradients of q, k, v and the bias's parameters, recomputing each
  block's weights from the log-sum-exp (FlashAttention-2's backward)."""
  (q, k, v, params, context, mask, positions, num_key_blocks, out,
   lse) = residuals
  num_blocks = q.shape[2] // size
  pos_block = lambda x, index: _block(x, index, size, axis=1)
  # D_i = sum_k dO_ik O_ik: the softmax's Jacobian term of each query.
  delta_BxHxL = jnp.einsum('bhlk,bhlk->bhl', d_out.astype(jnp.float32),
                           out.astype(jnp.float32))
  d_out = d_out.astype(v.dtype)

  def key_block(carry, j):
    dq_BxHxLxK, d_params = carry
    k_j, v_j = _block(k, j, size), _block(v, j, size)
    k_pos, k_mask = pos_block(positions, j), pos_block(mask, j)

    def query_block(i, inner):
      dk_j, dv_j, dq, dp_acc = inner
      q_i, q_pos = _block(q, i, size), pos_block(positions, i)
      do_i = _block(d_out, i, size)
      lse_i = jax.lax.dynamic_slice_in_dim(lse, i * size, size, axis=2)
      delta_i = jax.lax.dynamic_slice_in_dim(delta_BxHxL, i * size, size,
                                             axis=2)
      s = _logits(fn, causal, size, logit_scale, params, context, q_i, k_j,
                  q_pos, k_pos, k_mask, i, j)
      p_BxHxTxT = jnp.exp(s - lse_i[..., None])  # 0 where masked.
      dv_j += jnp.einsum('bhqs,bhqk->bhsk', p_BxHxTxT.astype(v.dtype), do_i,
                         preferred_element_type=jnp.float32)
      dp_BxHxTxT = jnp.einsum('bhqk,bhsk->bhqs', do_i, v_j,
                              preferred_element_type=jnp.float32)
      # The gradient of the biased logits (0 where masked: p is 0 there).
      ds_BxHxTxT = p_BxHxTxT * (dp_BxHxTxT - delta_i[..., None])
      ds_low = (ds_BxHxTxT if logit_scale == 1.0 else
                ds_BxHxTxT * jnp.float32(logit_scale)).astype(q.dtype)
      dq_i = jnp.einsum('bhqs,bhsk->bhqk', ds_low, k_j,
                        preferred_element_type=jnp.float32)
      dq = jax.lax.dynamic_update_slice_in_dim(
          dq, _block(dq, i, size) + dq_i, i * size, axis=2)
      dk_j += jnp.einsum('bhqs,bhqk->bhsk', ds_low, q_i,
                         preferred_element_type=jnp.float32)
      if fn is not None:
        _, pull = jax.vjp(lambda p: fn(p, context, q_pos, k_pos), params)
        dp_acc = jax.tree.map(jnp.add, dp_acc, pull(ds_BxHxTxT)[0])
      return dk_j, dv_j, dq, dp_acc

    zeros = jnp.zeros(k_j.shape, jnp.float32)

    def compute(carry):
      dq, d_params = carry
      # Query blocks that see key block j: all, or with `causal` from j on.
      first = j if causal else 0
      dk_j, dv_j, dq, d_params = jax.lax.fori_loop(
          first, num_blocks, query_block, (zeros, zeros, dq, d_params))
      return (dq, d_params), (dk_j, dv_j)

    def skip(carry):
      return carry, (zeros, zeros)

    return jax.lax.cond(j < num_key_blocks, compute, skip,
                        (dq_BxHxLxK, d_params))

  zero_params = jax.tree.map(jnp.zeros_like, params)
  (dq, d_params), (dk_NxBxHxTxK, dv_NxBxHxTxK) = jax.lax.scan(
      key_block, (jnp.zeros(q.shape, jnp.float32), zero_params),
      jnp.arange(num_blocks))
  unblock = lambda x: jnp.moveaxis(x, 0, 2).reshape(k.shape)
  return (dq.astype(q.dtype), unblock(dk_NxBxHxTxK).astype(k.dtype),
          unblock(dv_NxBxHxTxK).astype(v.dtype), d_params, None, None, None,
          None)


_attend.defvjp(_attend_fwd, _attend_bwd)
