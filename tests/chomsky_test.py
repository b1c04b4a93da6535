"""The Chomsky-hierarchy tasks against independent labellers.

The definitions followed are those of google-deepmind/
randomized_positional_encodings (tasks/regular, tasks/dcf,
tasks/cs/missing_duplicate_string.py; modulus 5 from
experiments/constants.py), restated in posenc/datasets/chomsky.py. Each
labeller here recomputes the label another way: by Python's own arithmetic
on the decoded text, by walking the cycle, by solving the equation for every
candidate digit, by reading the other copy of the string.
"""

import pathlib

import numpy as np
import pytest
from scipy import stats as scipy_stats

from posenc import config as default
from posenc import data
from posenc import validate
from posenc.datasets import chomsky

LENGTHS = (1, 2, 3, 4, 5, 6, 9, 16, 41, 64)
# Their token ids and sizes, written out here rather than read from the
# module under test.
BRACKETS = {'+': 5, '-': 6, '*': 7, '(': 8, ')': 9}
EQUATION = {'+': 5, '-': 6, '(': 7, ')': 8, 'x': 9, '=': 10}
SIZES = {  # (input vocabulary, classes)
    'even_pairs': (2, 2), 'modular_arithmetic': (9, 5),
    'parity_check': (2, 2), 'cycle_navigation': (3, 5),
    'modular_arithmetic_brackets': (11, 5), 'solve_equation': (11, 5),
    'missing_duplicate': (4, 2)}


def _text(tokens, alphabet):
  inverse = {v: k for k, v in alphabet.items()}
  return ''.join(str(t) if t < chomsky.MODULUS else inverse[t]
                 for t in tokens)


def _even_pairs(x):
  return int(sum(a != b for a, b in zip(x, x[1:])) % 2)


def _parity(x):
  return int(list(x).count(1) % 2)


def _cycle(x):
  position = 0
  for move in x:
    position = (position + {0: -1, 1: 0, 2: 1}[int(move)]) % 5
  return position


def _arithmetic(x):
  # Python's own precedence and integers, then mod 5.
  return eval(_text(x, {'+': 5, '-': 6, '*': 7}).replace(  # pylint: disable=eval-used
      '-', ' - ')) % 5


def _brackets(x):
  text = _text(x, BRACKETS)
  assert 'x' not in text
  return eval(text) % 5  # pylint: disable=eval-used


def _equation(x):
  text = _text(x, EQUATION)
  if len(x) < 3:  # Their degenerate case: all zeros, label 0.
    assert not x.any()
    return 0
  left, right = text.split('=')
  assert text.count('x') == 1 and '*' not in text and len(right) == 1
  solutions = [d for d in range(5)
               if eval(left.replace('x', str(d))) % 5 == int(right)]  # pylint: disable=eval-used
  assert len(solutions) == 1, text  # +/- only: exactly one digit fits.
  return solutions[0]


def _missing(x):
  if len(x) == 1:
    assert x.tolist() == [1]
    return 1
  half = len(x) // 2
  if len(x) % 2:
    assert x[-1] == 3
  first, second = x[:half], x[half:2 * half]
  at = int(np.flatnonzero(np.concatenate([first, second]) == 2)[0])
  assert (np.concatenate([first, second]) == 2).sum() == 1
  other = second[at] if at < half else first[at - half]
  assert set(first.tolist() + second.tolist()) <= {0, 1, 2}
  return int(other)


LABELLERS = {
    'even_pairs': _even_pairs, 'modular_arithmetic': _arithmetic,
    'parity_check': _parity, 'cycle_navigation': _cycle,
    'modular_arithmetic_brackets': _brackets, 'solve_equation': _equation,
    'missing_duplicate': _missing,
}


def test_every_one_label_task_has_a_labeller():
  assert set(chomsky.TASKS) == set(LABELLERS)


@pytest.mark.parametrize('name', sorted(LABELLERS))
def test_labels_match_the_independent_labeller(name):
  task = chomsky.get(name)
  rng = np.random.default_rng(0)
  for length in LENGTHS:
    x, y = task.sample(rng, 60, length)
    assert x.dtype == y.dtype == np.int32
    assert x.shape == (60, task.tokens(length))
    vocab, classes = SIZES[name]
    assert (task.input_size, task.num_classes) == (vocab, classes)
    assert x.min() >= 0 and x.max() < vocab
    assert y.min() >= 0 and y.max() < classes
    for tokens, label in zip(x, y):
      assert label == LABELLERS[name](tokens), (name, tokens)


def test_lengths_follow_their_code():
  # Modular arithmetic drops a token from even lengths; the others are
  # exactly as long as asked.
  arithmetic = chomsky.get('modular_arithmetic')
  assert [arithmetic.tokens(n) for n in (1, 2, 3, 40, 41)] == [1, 1, 3, 39, 41]
  for name in set(chomsky.TASKS) - {'modular_arithmetic'}:
    assert chomsky.get(name).tokens(40) == 40


@pytest.mark.parametrize('name', sorted(LABELLERS))
def test_labels_are_not_one_class(name):
  # At a length past the degenerate ones, every class occurs in 2,000
  # draws, and none takes more than 60% (each task's label is close to
  # uniform).
  task = chomsky.get(name)
  _, y = task.sample(np.random.default_rng(1), 2000, 24)
  counts = np.bincount(y, minlength=task.num_classes)
  assert (counts > 0).all() and counts.max() < 0.6 * len(y), counts


def _uniform(values, support):
  counts = [int((np.asarray(values) == v).sum()) for v in support]
  assert sum(counts) == np.size(values)
  return scipy_stats.chisquare(counts).pvalue


def test_inputs_are_drawn_as_their_code_draws_them():
  # Chi-square against the uniform draws their code makes (fixed seed:
  # deterministic; a wrong distribution gives p far below 1e-3).
  rng = np.random.default_rng(5)
  x, _ = chomsky.get('modular_arithmetic').sample(rng, 4000, 9)
  assert _uniform(x[:, ::2], range(5)) > 1e-3
  assert _uniform(x[:, 1::2], (5, 6, 7)) > 1e-3  # Never the blank, 8.
  x, _ = chomsky.get('cycle_navigation').sample(rng, 4000, 9)
  assert _uniform(x, range(3)) > 1e-3
  for name in ('even_pairs', 'parity_check'):
    x, _ = chomsky.get(name).sample(rng, 4000, 9)
    assert _uniform(x, range(2)) > 1e-3
  # Missing duplicate: the masked bit is anywhere in either copy.
  x, _ = chomsky.get('missing_duplicate').sample(rng, 6000, 9)
  assert _uniform(np.argmax(x == 2, axis=1), range(8)) > 1e-3
  assert (x[:, -1] == 3).all()
  # Solve equation: the digits of the expression are uniform.
  x, _ = chomsky.get('solve_equation').sample(rng, 3000, 12)
  digits = x[:, :-2][x[:, :-2] < 5]
  assert _uniform(digits, range(5)) > 1e-3


def test_expressions_split_and_choose_operators_uniformly():
  # Their grammar: the left part's length is uniform in 1..L-4 and the
  # operator uniform over + - * (brackets) or + - (equations).
  rng = np.random.default_rng(2)
  split = [_top_split(chomsky.bracket_expression(rng, 9, mult=True)[0])
           for _ in range(3000)]
  lefts = [left for left, _ in split]
  ops = [op for _, op in split]
  for n in range(1, 6):
    assert abs(lefts.count(n) / len(lefts) - 1 / 5) < 0.03
  assert set(lefts) == set(range(1, 6))
  for op in '+-*':
    assert abs(ops.count(op) / len(ops) - 1 / 3) < 0.03
  plain = [_top_split(chomsky.bracket_expression(rng, 9, mult=False)[0])[1]
           for _ in range(1000)]
  assert set(plain) == {'+', '-'}


def _top_split(text):
  """(left operand's length, operator) of `(left op right)`."""
  if text[1] == '(':
    depth, end = 0, 1
    for end in range(1, len(text)):
      depth += (text[end] == '(') - (text[end] == ')')
      if depth == 0:
        break
    left = end
  else:
    left = 2 if text[1] == '-' else 1
  return left, text[1 + left]


def _config(name, **data_fields):
  config = default.get_config()
  config.data.update({**dict(name=name, seq_len=12, min_seq_len=1,
                             eval_seq_len=30, num_train=300, num_eval=200),
                      **data_fields})
  config.model.pooling = 'last'
  config.model.max_len = 64
  return config


def test_splits_put_the_output_token_after_each_sequence():
  config = _config('solve_equation')
  validate.check_config(config, 1)
  ds = data.load(config.data, seed=3)
  task = chomsky.get('solve_equation')
  assert ds.vocab_size == 12 and ds.num_classes == 5
  assert task.output_token == 11
  assert (ds.seq_len, ds.test['inputs'].shape[1]) == (13, 31)
  assert data.lengths(config) == (13, 31)
  for split, low, high in ((ds.train, 1, 12), (ds.eval, 1, 12),
                           (ds.test, 13, 30)):
    real = split['mask'].sum(1)
    assert real.min() - 1 >= low and real.max() - 1 <= high
    rows = np.arange(len(real))
    assert (split['inputs'][rows, real - 1] == task.output_token).all()
    assert (split['inputs'][~split['mask']] == 0).all()
    for tokens, n, label in zip(split['inputs'], real, split['labels']):
      assert label == _equation(tokens[:n - 1])
  # The test lengths cover the band.
  assert len(np.unique(ds.test['mask'].sum(1))) > 12


def test_generation_is_deterministic_given_the_seed():
  config = _config('modular_arithmetic_brackets')
  a, b = data.load(config.data, 4), data.load(config.data, 4)
  assert a.sha256() == b.sha256()
  assert data.load(config.data, 5).sha256() != a.sha256()
  # The three splits are drawn from independent streams.
  assert not np.array_equal(a.train['inputs'][:50], a.eval['inputs'][:50])


def test_no_test_split_without_longer_lengths():
  config = _config('parity_check', eval_seq_len=None)
  assert data.load(config.data, 0).test is None


@pytest.mark.parametrize('change, message', [
    (dict(pooling='cls'), "model.pooling='cls'.*valid: 'last'"),
    (dict(pooling='mean'), "model.pooling='mean'.*valid: 'last'"),
])
def test_a_config_that_would_read_the_wrong_token_is_refused(change, message):
  config = _config('even_pairs')
  config.model.update(change)
  with pytest.raises(ValueError, match=message):
    validate.check_config(config, 1)


def test_a_test_length_below_the_training_length_is_refused():
  config = _config('even_pairs', eval_seq_len=8)
  with pytest.raises(ValueError, match='data.eval_seq_len=8 is shorter'):
    validate.check_config(config, 1)


@pytest.mark.parametrize('name', sorted(LABELLERS))
def test_the_config_file_serves_every_task(name):
  config = default.load_file(
      pathlib.Path(__file__).parents[1] / 'configs' / 'chomsky.py'
  ).get_config(name)
  validate.check_config(config, 1)
  assert config.data.name == name
  assert data.lengths(config) == (41, 501)
  # Randomized positions reach every test position.
  assert config.model.max_len >= 501 and config.model.posemb_randomized
