"""FIRE, Kerple and directional ALiBi against their papers' formulas.

FIRE: Li et al. (2023), arXiv 2310.04418, eq. 3 and the PyTorch listing of
their appendix: b(i, j) = f(psi(i - j) / psi(max(L, i))), psi(x) =
log(|c x| + 1), f an MLP 1 -> 32 -> H with ReLU, eps 1e-6 on the normaliser.
Kerple: Chi et al. (2022), arXiv 2205.09921, the logarithmic kernel
-r1 log(1 + r2 |m - n|), r1, r2 > 0 (chijames/KERPLE, ParallelKerpleLog:
p ~ U[0, 2), a ~ U[0, 1), clamped to >= 1e-2).
ALiBi: Press et al. (2021), slopes 2^(-8h/H); directional heads as in
`posenc.encodings.alibi_bias`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from posenc import encodings
from posenc.encodings import attention
from posenc.encodings import learned_bias


def _listing_inputs(length, c, threshold):
  """The paper's listing, in NumPy: the MLP's input for query i, key j."""
  positions = np.arange(length, dtype=np.float64)
  rel = positions[:, None] - positions[None, :]
  norm = np.maximum(positions, abs(threshold))[:, None]
  rel = np.log(np.abs(c * rel) + 1)
  norm = np.log(np.abs(c * norm) + 1) + 1e-6
  return rel / norm


def test_fire_causal_inputs_are_the_papers():
  got = encodings.fire_inputs(encodings.default_positions(1, 6), None,
                              jnp.float32(0.1), jnp.float32(2.0), causal=True)
  want = _listing_inputs(6, 0.1, 2.0)
  lower = np.tril(np.ones((6, 6), bool))  # Keys the causal mask keeps.
  np.testing.assert_allclose(np.asarray(got[0])[lower], want[lower],
                             rtol=1e-6)
  # By hand: query 1, key 0: log(1.1) / log(1 + 0.1 * max(2, 1));
  # query 3, key 0: log(1.3) / log(1.3) (the normaliser is the position).
  assert float(got[0, 1, 0]) == pytest.approx(
      math.log(1.1) / (math.log(1.2) + 1e-6), rel=1e-6)
  assert float(got[0, 1, 0]) == pytest.approx(0.5227558, rel=1e-6)
  assert float(got[0, 3, 0]) == pytest.approx(
      math.log(1.3) / (math.log(1.3) + 1e-6), rel=1e-6)


def test_fire_bidirectional_inputs_are_signed_and_normalised_by_the_span():
  positions = encodings.default_positions(2, 6)
  mask = jnp.array([[True] * 6, [True] * 4 + [False] * 2])
  got = np.asarray(encodings.fire_inputs(positions, mask, jnp.float32(0.1),
                                         jnp.float32(2.0), causal=False))
  psi = lambda x: np.log(np.abs(0.1 * x) + 1)
  offset = np.arange(6)[:, None] - np.arange(6)[None, :]
  for b, span in ((0, 5), (1, 3)):  # Real lengths 6 and 4.
    want = np.sign(offset) * psi(offset) / (psi(max(2.0, span)) + 1e-6)
    np.testing.assert_allclose(got[b], want, rtol=1e-6)
  np.testing.assert_allclose(got[0], -got[0].T, atol=1e-7)  # Signed.
  assert np.abs(got[0]).max() <= 1.0  # The span normalises into [-1, 1].


def test_fire_module_is_the_mlp_of_the_inputs():
  module = encodings.FireBias(num_heads=3, width=32, init_c=0.1,
                              init_threshold=4.0, causal=True)
  positions = encodings.default_positions(1, 7)
  params = module.init(jax.random.key(0), positions, None)['params']
  assert float(params['c']) == pytest.approx(0.1)
  assert float(params['threshold_scale']) == 1.0
  assert params['mlp_in']['kernel'].shape == (1, 32)
  bias = module.apply({'params': params}, positions, None)
  assert bias.shape == (1, 3, 7, 7)
  x = np.asarray(encodings.fire_inputs(positions, None, 0.1, 4.0,
                                       causal=True))[0, :, :, None]
  hidden = np.maximum(x @ params['mlp_in']['kernel'] +
                      params['mlp_in']['bias'], 0)
  want = hidden @ params['mlp_out']['kernel'] + params['mlp_out']['bias']
  np.testing.assert_allclose(bias[0], np.transpose(want, (2, 0, 1)),
                             rtol=1e-5, atol=1e-6)


def test_fire_interpolates_a_longer_sequence_into_the_trained_range():
  """Bidirectional: at twice the training length the largest normalised
  distance stays 1, as at the training length (threshold = that length)."""
  inputs = lambda n: encodings.fire_inputs(
      encodings.default_positions(1, n), None, 0.1, 10.0, causal=False)
  assert float(inputs(11).max()) == pytest.approx(1.0, abs=1e-5)
  assert float(inputs(21).max()) == pytest.approx(1.0, abs=1e-5)


def test_kerple_log_formula_by_hand():
  p, a = jnp.array([1.5, 0.2]), jnp.array([0.5, 2.0])
  bias = encodings.kerple_log_bias(p, a, encodings.default_positions(1, 4))
  assert bias.shape == (1, 2, 4, 4)
  # Distance 2: -1.5 log(1 + 0.5 * 2) = -1.5 log 2; -0.2 log(1 + 2 * 3).
  assert float(bias[0, 0, 0, 2]) == pytest.approx(-1.0397208, rel=1e-6)
  assert float(bias[0, 1, 3, 0]) == pytest.approx(-0.2 * math.log(7),
                                                  rel=1e-6)
  np.testing.assert_array_equal(np.diagonal(bias[0], axis1=1, axis2=2), 0)


def test_kerple_parameters_stay_positive_and_recover():
  """However far an optimizer pushes the stored values, p and a stay >=
  1e-2 and their gradient never vanishes: pushed down for 1,000 Adam steps,
  then up for 100, p grows again (a clamp with a zero gradient below it
  would leave it stuck at 1e-2)."""
  raw = jnp.array([learned_bias.positive_init(2.0)(jax.random.key(0), ())])
  value = lambda r: float(learned_bias.positive(r)[0])
  tx = optax.adam(2e-3)
  state = tx.init(raw)
  trace = []
  for sign, steps in ((1.0, 1000), (-1.0, 100)):
    for _ in range(steps):
      grad = sign * jax.grad(lambda r: learned_bias.positive(r).sum())(raw)
      assert float(jnp.abs(grad).min()) > 0
      updates, state = tx.update(grad, state)
      raw = optax.apply_updates(raw, updates)
      assert value(raw) >= learned_bias.KERPLE_EPS
      trace.append(value(raw))
  bottom, up = trace[999], trace[1000:]
  assert bottom < trace[0] and up[-1] > bottom + 0.05


def test_kerple_init_is_the_reference_distribution():
  module = encodings.KerpleBias(num_heads=4096)
  params = module.init(jax.random.key(0),
                       encodings.default_positions(1, 2))['params']
  p = np.asarray(learned_bias.positive(params['p_raw']))
  a = np.asarray(learned_bias.positive(params['a_raw']))
  assert 0.01 <= p.min() and p.max() < 2 and abs(p.mean() - 1.0) < 0.05
  assert 0.01 <= a.min() and a.max() < 1 and abs(a.mean() - 0.5) < 0.03
  # The value is the reference's draw, clamped to >= 1e-2.
  key = jax.random.key(3)
  draw = jax.random.uniform(key, (1000,), maxval=2.0)
  np.testing.assert_allclose(
      learned_bias.positive(learned_bias.positive_init(2.0)(key, (1000,))),
      np.maximum(draw, 0.01), rtol=1e-5, atol=2e-6)


def test_directional_alibi_heads_see_one_side_each():
  bias = np.asarray(encodings.alibi_bias(
      4, encodings.default_positions(1, 5), 'directional'))[0]
  slopes = [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8]
  for h in range(4):
    for i in range(5):
      for j in range(5):
        sees = j <= i if h % 2 == 0 else j >= i
        want = -slopes[h] * abs(i - j) if sees else attention.HIDDEN
        assert bias[h, i, j] == pytest.approx(want, rel=1e-6), (h, i, j)


def test_directional_alibi_hides_exactly_after_softmax():
  logits = jnp.zeros((1, 2, 3, 3)) + encodings.alibi_bias(
      2, encodings.default_positions(1, 3), 'directional')
  weights = np.asarray(jax.nn.softmax(logits))
  np.testing.assert_array_equal(np.triu(weights[0, 0], 1), 0)
  np.testing.assert_array_equal(np.tril(weights[0, 1], -1), 0)


def test_unknown_alibi_mode():
  with pytest.raises(ValueError, match='valid: symmetric, directional'):
    encodings.alibi_bias(2, encodings.default_positions(1, 3), 'both')


def test_random_positions_for_real_lengths():
  """Each row's first lengths[b] positions are a sorted subset of
  0..max_len-1 drawn uniformly for that length (not the first entries of
  a longer draw, which would favour small positions)."""
  lengths = jnp.array([10, 3] * 2000)
  positions = np.asarray(encodings.random_positions(
      jax.random.key(0), len(lengths), 10, 40, lengths))
  assert positions.shape == (4000, 10) and positions.max() < 40
  assert (np.diff(positions[:, :10][::2], axis=1) > 0).all()
  short = positions[1::2, :3]
  assert (np.diff(short, axis=1) > 0).all()
  # The largest of a uniform 3-subset of 0..39 has mean 3 * 41 / 4 - 1 =
  # 29.75 (standard error here 0.17); the first 3 of a 10-subset, 10.2.
  assert abs(short[:, 2].mean() - 29.75) < 0.6
