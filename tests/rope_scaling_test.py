"""RoPE beyond its training length: posenc's `rope_frequencies` against
Hugging Face's `modeling_rope_utils`.

The reference numbers below were printed by
`tests/testdata/hf_rope_reference.py` with transformers 5.24.0 (torch
2.14.1): Hugging Face's 'linear' (`_compute_linear_scaling_rope_parameters`)
and 'yarn' (`_compute_yarn_parameters`, original_max_position_embeddings =
the training length) as they are, and posenc's 'ntk' against Hugging Face's
'dynamic' (`_compute_dynamic_ntk_parameters`) at factor * the training length
with its own factor 1, where both give base * factor^(K / (K - 2)).
Hugging Face computes in float32, hence the tolerance.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posenc import encodings
from posenc import models

# (scaling, head_dim, base, training length, factor, attention factor,
#  inv_freq), from transformers 5.24.0.
HF_REFERENCE = (
    ('linear', 16, 10000.0, 10, 2.0, 1.0,
     [0.5, 0.158113882, 0.0500000007, 0.0158113893, 0.00499999989,
      0.00158113893, 0.000500000024, 0.000158113893]),
    ('ntk', 16, 10000.0, 10, 2.0, 1.0,
     [1.0, 0.286414951, 0.0820335299, 0.0234956332, 0.0067295013,
      0.00192742981, 0.000552044716, 0.000158113879]),
    ('yarn', 16, 10000.0, 10, 2.0, 1.0693147180559945,
     [1.0, 0.158113882, 0.0500000007, 0.0158113893, 0.00499999989,
      0.00158113893, 0.000500000024, 0.000158113893]),
    ('linear', 16, 10000.0, 2048, 4.0, 1.0,
     [0.25, 0.079056941, 0.0250000004, 0.00790569466, 0.00249999994,
      0.000790569466, 0.000250000012, 7.90569466e-05]),
    ('ntk', 16, 10000.0, 2048, 4.0, 1.0,
     [1.0, 0.259412825, 0.0672950074, 0.017457189, 0.00452861842,
      0.00117478159, 0.000304753397, 7.90569466e-05]),
    ('yarn', 16, 10000.0, 2048, 4.0, 1.138629436111989,
     [1.0, 0.316227764, 0.100000001, 0.025693506, 0.00624999963,
      0.00138349656, 0.000250000012, 7.90569466e-05]),
    ('linear', 32, 500000.0, 64, 3.0, 1.0,
     [0.333333343, 0.14678888, 0.0646409169, 0.0284657013, 0.0125353439,
      0.00552014681, 0.00243088836, 0.00107048207, 0.000471404492,
      0.000207590812, 9.14160628e-05, 4.0256582e-05, 1.77276524e-05,
      7.80666596e-06, 3.43779516e-06, 1.5138902e-06]),
    ('ntk', 32, 500000.0, 64, 3.0, 1.0,
     [1.0, 0.409266591, 0.16749914, 0.0685518011, 0.0280559622,
      0.0114823682, 0.0046993494, 0.00192328682, 0.000787137018,
      0.000322148873, 0.000131844776, 5.39596585e-05, 2.20838865e-05,
      9.03819637e-06, 3.69903205e-06, 1.5138902e-06]),
    ('yarn', 32, 500000.0, 64, 3.0, 1.109861228866811,
     [1.0, 0.342507362, 0.107734859, 0.0284657013, 0.0125353429,
      0.00552014681, 0.00243088836, 0.00107048207, 0.000471404521,
      0.000207590812, 9.14160555e-05, 4.02565784e-05, 1.77276524e-05,
      7.80666596e-06, 3.43779493e-06, 1.5138902e-06]),
)


@pytest.mark.parametrize('case', HF_REFERENCE, ids=lambda c: f'{c[0]}-{c[3]}')
def test_frequencies_match_hugging_face(case):
  scaling, head_dim, base, length, factor, attention_factor, inv_freq = case
  ours, ours_factor = encodings.rope_frequencies(head_dim, base, scaling,
                                                 factor, length)
  np.testing.assert_allclose(ours, inv_freq, rtol=2e-6)
  assert ours_factor == pytest.approx(attention_factor, rel=1e-12)


def test_yarn_keeps_fast_pairs_and_interpolates_slow_ones():
  """At 2048 steps and factor 4 (K=16) the ramp runs from pair 2 to 6:
  pairs below keep base^(-2i/K), pairs above are divided by 4."""
  plain, _ = encodings.rope_frequencies(16, 10_000.0)
  yarn, _ = encodings.rope_frequencies(16, 10_000.0, 'yarn', 4.0, 2048)
  np.testing.assert_allclose(yarn[:3], plain[:3], rtol=1e-12)
  np.testing.assert_allclose(yarn[6:], plain[6:] / 4, rtol=1e-12)
  assert np.all((yarn[3:6] < plain[3:6]) & (yarn[3:6] > plain[3:6] / 4))


@pytest.mark.parametrize('scaling', ['none', 'linear', 'ntk', 'yarn'])
def test_factor_one_is_plain_rope(scaling):
  plain = encodings.rope_frequencies(16, 10_000.0)
  scaled = encodings.rope_frequencies(16, 10_000.0, scaling, 1.0, 10)
  np.testing.assert_array_equal(plain[0], scaled[0])
  assert scaled[1] == 1.0


def test_linear_scaling_is_position_interpolation():
  """Linear scaling by s at position s * p is plain RoPE at p."""
  x = jax.random.normal(jax.random.key(0), (1, 4, 2, 8))
  p = jnp.arange(4)[None]
  np.testing.assert_allclose(
      encodings.apply_rope(x, 3 * p, scaling='linear', factor=3.0,
                           original_len=4),
      encodings.apply_rope(x, p), atol=1e-5)


def test_yarn_scales_scores_by_the_square_of_its_attention_factor():
  q = jax.random.normal(jax.random.key(1), (1, 6, 1, 16))
  k = jax.random.normal(jax.random.key(2), (1, 6, 1, 16))
  p = jnp.arange(6)[None]
  inv_freq, factor = encodings.rope_frequencies(16, 10_000.0, 'yarn', 3.0, 2)
  score = lambda f: jnp.einsum('blhk,bshk->ls', f(q), f(k))
  yarn = score(lambda x: encodings.apply_rope(x, p, scaling='yarn',
                                              factor=3.0, original_len=2))
  # The same frequencies without the factor: angles p * inv_freq by hand.
  angles = p[0, :, None] * inv_freq[None]

  def rotate(x):
    even, odd = x[0, :, 0, 0::2], x[0, :, 0, 1::2]
    cos, sin = np.cos(angles), np.sin(angles)
    out = np.stack([even * cos - odd * sin, even * sin + odd * cos], -1)
    return out.reshape(6, 16)

  by_hand = rotate(np.asarray(q)) @ rotate(np.asarray(k)).T
  np.testing.assert_allclose(yarn, factor**2 * by_hand, rtol=1e-4, atol=1e-4)


def test_factor_comes_from_the_length_unless_set():
  rope = encodings.get('rope')
  cfg = models.ModelConfig(posemb='rope', rope_scaling='yarn', max_len=10)
  assert rope.scaling_factor(cfg, 10) == 1.0
  assert rope.scaling_factor(cfg, 25) == 2.5
  assert rope.scaling_factor(cfg, 5) == 1.0
  assert rope.scaling_factor(dataclasses.replace(cfg, rope_scaling_factor=4.0),
                             25) == 4.0
  assert rope.scaling_factor(dataclasses.replace(cfg, rope_scaling='none'),
                             25) == 1.0


@pytest.mark.parametrize('scaling', ['linear', 'ntk', 'yarn'])
def test_model_at_training_length_is_unscaled(scaling):
  """With the factor derived from the length, training (at max_len) is
  plain RoPE, with a class token too."""
  x = jax.random.normal(jax.random.key(3), (2, 6, 3))
  for pooling in ('mean', 'cls'):
    plain = models.ModelConfig(posemb='rope', max_len=6, d_model=16,
                               num_heads=2, num_layers=1, mlp_dim=8,
                               pooling=pooling)
    model = models.EncoderClassifier(plain, 3)
    params = model.init(jax.random.key(0), x, train=False)
    scaled = models.EncoderClassifier(
        dataclasses.replace(plain, rope_scaling=scaling), 3)
    np.testing.assert_array_equal(model.apply(params, x, train=False)[0],
                                  scaled.apply(params, x, train=False)[0])
    longer = jnp.concatenate([x, x], axis=1)
    assert not np.allclose(model.apply(params, longer, train=False)[0],
                           scaled.apply(params, longer, train=False)[0])
