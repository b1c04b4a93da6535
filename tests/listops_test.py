"""Tests of the ListOps generator against a reference evaluator."""

import numpy as np
import pytest

from posenc import config as default
from posenc import data
from posenc.datasets import listops


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
  config = default.get_config().data
  config.update(dict(name='listops', seq_len=128, min_seq_len=32,
                     eval_seq_len=160, num_train=2000, num_eval=300,
                     cache_dir=str(tmp_path_factory.mktemp('cache'))))
  return data.load(config, seed=0)


def test_every_label_is_the_reference_value(dataset):
  for split in (dataset.train, dataset.eval, dataset.test):
    for tokens, label in zip(split['inputs'], split['labels']):
      assert label == listops.evaluate(listops.decode(tokens))


def test_lengths_fall_in_the_band_and_padding_is_masked(dataset):
  assert dataset.vocab_size == listops.VOCAB_SIZE
  assert dataset.num_classes == 10
  for split, longest in ((dataset.train, 128), (dataset.eval, 160),
                         (dataset.test, 160)):
    lengths = split['mask'].sum(1)
    assert split['inputs'].shape[1] == longest
    assert lengths.min() >= 32 and lengths.max() <= longest
    np.testing.assert_array_equal(
        split['mask'], np.arange(longest) < lengths[:, None])
    assert split['inputs'].dtype == np.int32
  # The eval band reaches past the training band.
  assert dataset.eval['mask'].sum(1).max() > 128
  assert len(dataset.test['labels']) == len(dataset.eval['labels']) == 300


def test_class_histogram_is_not_degenerate(dataset):
  counts = np.bincount(dataset.train['labels'], minlength=10)
  fractions = counts / counts.sum()
  assert fractions.min() > 0.03 and fractions.max() < 0.3, fractions


def test_every_operator_occurs_at_depth(dataset):
  text = ' '.join(listops.decode(t) for t in dataset.train['inputs'][:200])
  for op in listops.OPERATORS:
    assert op in text
  depth = max(_depth(listops.decode(t)) for t in dataset.train['inputs'])
  assert depth >= 4


def _depth(expression):
  depth = deepest = 0
  for token in expression.split():
    depth += token.startswith('[')
    depth -= token == ']'
    deepest = max(deepest, depth)
  return deepest


@pytest.mark.parametrize('expression,value', [
    ('[MAX 2 9 [MIN 4 7 ] 0 ]', 9),
    ('[MIN 3 [MAX 5 6 ] 4 ]', 3),
    ('[SM 7 8 9 ]', 4),
    ('[MED 1 2 8 9 ]', 5),  # Median 5.0.
    ('[MED 1 2 3 4 ]', 2),  # Median 2.5, truncated as in the original.
    ('[SM [MED 0 9 ] 6 ]', 0),  # Median 4.5 -> 4; (4 + 6) % 10.
])
def test_reference_evaluator_on_hand_checked_expressions(expression, value):
  assert listops.evaluate(expression) == value


@pytest.mark.parametrize('expression', [
    '[MAX 2 ]', '[MAX 2 3', '2 3', '[MAX 2 3 ] ]', '[FOO 1 2 ]'])
def test_reference_evaluator_rejects_malformed_expressions(expression):
  with pytest.raises((ValueError, IndexError)):
    listops.evaluate(expression)


def test_max_length_is_reachable_and_not_exceeded():
  assert listops.max_length(1, 3) == 5  # [OP a b c ]
  assert listops.max_length(2, 2) == 10  # [OP [OP a b ] [OP a b ] ]
  rng = np.random.default_rng(0)
  stream = listops.expressions(rng, 4, 10, 2, 2)
  lengths = {len(next(stream)[0]) for _ in range(300)}
  assert min(lengths) >= 4 and max(lengths) == 10


def test_a_band_out_of_reach_fails_fast_with_the_fields_named():
  # Reachable in principle (max_length is huge) but almost never drawn.
  stream = listops.expressions(np.random.default_rng(0), 3000, 4000, 10, 5)
  with pytest.raises(ValueError, match=r'in the band \[3000, 4000\] tokens.*'
                     r'listops_max_depth=10.*widen the band'):
    next(stream)


@pytest.mark.parametrize('max_depth,max_args,max_len', [(1, 3, 8), (2, 2, 12),
                                                        (2, 3, 14)])
def test_length_distribution_matches_enumeration_and_sampling(
    max_depth, max_args, max_len):
  count, prob = listops.length_distribution(max_len, max_depth, max_args)
  # Counts: every distinct expression, enumerated by brute force over shapes.
  shapes = _shapes(0, max_depth, max_args, max_len)
  expected = np.zeros(max_len + 1)
  for length, n_ops, n_digits in shapes:
    expected[length] += 4**n_ops * 10**n_digits
  np.testing.assert_array_equal(count, expected)
  # Probabilities: against the sampler's own lengths.
  rng = np.random.default_rng(0)
  lengths = []
  for _ in range(20_000):
    tokens = []
    try:
      listops._tree(rng, 0, max_depth, max_args, tokens, max_len)  # pylint: disable=protected-access
    except listops._TooLong:  # pylint: disable=protected-access
      continue
    lengths.append(len(tokens))
  empirical = np.bincount(lengths, minlength=max_len + 1) / 20_000
  np.testing.assert_allclose(empirical, prob, atol=0.01)


def _shapes(depth, max_depth, max_args, max_len):
  """(length, operators, digits) of every tree shape of at most max_len."""
  shapes = [] if depth == 0 else [(1, 0, 1)]
  if depth > 0 and depth >= max_depth:
    return shapes
  child = _shapes(depth + 1, max_depth, max_args, max_len)
  partial = [(2, 1, 0)]  # The operator and its `]`.
  for k in range(1, max_args + 1):
    partial = [(a + b, o + p, d + e) for a, o, d in partial
               for b, p, e in child if a + b <= max_len]
    if k >= 2:
      shapes += partial
  return shapes


def test_an_exhausted_band_fails_instead_of_looping():
  with pytest.raises(ValueError, match=r'draws in a row repeated.*widen the'):
    listops.generate(np.random.default_rng(0), 500, 4, 4, 1, 2)  # 400 exist.
