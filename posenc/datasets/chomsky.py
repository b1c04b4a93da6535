"""The one-label tasks of the Chomsky-hierarchy suite, as Ruoss et al. train them.

Delétang et al., "Neural Networks and the Chomsky Hierarchy" (ICLR 2023)
defined the tasks; Ruoss et al., "Randomized Positional Encodings Boost
Length Generalization of Transformers" (ACL 2023) train on lengths 1..40 and
test on 41..500. Each generator below follows the code of
google-deepmind/randomized_positional_encodings (`tasks/regular/*.py`,
`tasks/dcf/*.py`, `tasks/cs/missing_duplicate_string.py`, with the arguments
of `experiments/constants.py`); the labels are recomputed by independent
labellers in tests/chomsky_test.py. These are the seven tasks of that code
whose output is one label per sequence; the other eight output a sequence.

- 'even_pairs' (regular): L random bits; the label is 1 if the number of
  unequal neighbours (01 or 10) is odd.
- 'modular_arithmetic' (regular): digit, operator, digit, ... with digits
  0..4 and operators + - * drawn uniformly, L tokens for odd L and L - 1 for
  even L; the label is its value mod 5 with * before + and -. Tokens: digits
  0..4, then + - * and a blank (8) that is never drawn. (Their code sums
  int32 products, which wrap after about 16 factors in a row; the value here
  is exact, mod 5.)
- 'parity_check' (regular): L random bits; the label is the number of 1s
  mod 2.
- 'cycle_navigation' (regular): L moves drawn uniformly from token 0 (one
  step back), 1 (stay) and 2 (one step on) around a cycle of 5 from 0; the
  label is where it ends.
- 'modular_arithmetic_brackets' (deterministic context-free): a bracketed
  expression of exactly L tokens over digits 0..4 and + - * (for L <= 4:
  `d`, `-d`, `(d)`, `(-d)`; longer: `(left op right)`, the left length
  uniform in 1..L-4, the operator uniform); the label is its value mod 5.
  Tokens: digits, + - * ( ) and an `x` (10) that never occurs.
- 'solve_equation' (deterministic context-free): such an expression of
  L - 2 tokens without *, one digit replaced by `x` (a uniform position,
  moved right, cyclically, to the next digit), then `=` and the value; the
  label is the hidden digit. Tokens: digits, + - ( ) x =. For L < 3 the input
  is all 0s and the label 0, as in their code.
- 'missing_duplicate' (context-sensitive): a random bit string w of
  floor(L/2) bits written twice, one of the 2 floor(L/2) bits replaced by
  the token 2, and a 3 at the end for odd L; the label is the replaced bit.
  For L = 1 the input is [1] and the label 1, as in their code.

As in their code (`experiments/utils.py`), one more token, the output token
(id = the task's input vocabulary size), follows the last real token; the
model reads the label there (`model.pooling='last'`). Lengths: `data.seq_len`
is the longest training length N (the paper's L, not counting the output
token) and `data.min_seq_len` (default 1) the shortest; each sequence's
length is drawn uniformly from that band (their code draws one length per
batch). The eval split has the training lengths (for choosing
hyper-parameters); with `data.eval_seq_len` = M > N the test split has
lengths drawn uniformly from N+1..M. Rows are padded with 0 after the output
token and carry a 'mask'. `generate` gives sequences of one length, for
evaluating length by length.

Importing this module registers the tasks (`configs/chomsky.py` does).
"""

from typing import ClassVar

import numpy as np

from posenc.datasets import base

MODULUS = 5  # experiments/constants.py: modulus=5 for all three tasks.


class Task(base.Source):
  """One task: `sample` draws n sequences of one length L."""

  input_size: ClassVar[int]  # Token ids 0..input_size-1; the output token.
  num_classes: ClassVar[int]

  @property
  def name(self) -> str:
    return self.names[0]

  @property
  def output_token(self) -> int:
    return self.input_size

  def tokens(self, length: int) -> int:
    """Tokens of a sequence of length `length`, before the output token."""
    return length

  def sample(self, rng: np.random.Generator, n: int, length: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, tokens(length)) int32, labels (n,) int32)."""
    raise NotImplementedError

  def check(self, config) -> None:
    d = config.data
    if d.eval_seq_len is not None and d.eval_seq_len < d.seq_len:
      raise ValueError(
          f'data.eval_seq_len={d.eval_seq_len} is shorter than data.seq_len='
          f'{d.seq_len}; valid for data.name={d.name!r}: the longest test '
          'length, above seq_len (the test split holds seq_len+1 to it), or '
          'unset (no test split).')
    m = config.model
    if m.pooling != 'last':
      raise ValueError(
          f'model.pooling={m.pooling!r}, but data.name={d.name!r} puts the '
          "label on the output token after the sequence; valid: 'last'.")

  def lengths(self, config):
    d = config.data
    return d.seq_len + 1, max(base.eval_seq_len(d), d.seq_len) + 1

  def generate(self, rng: np.random.Generator, n: int, low: int, high: int
               ) -> base.Batch:
    """n sequences, each of a length drawn uniformly from low..high, with
    the output token and, if lengths differ, a mask."""
    lengths = rng.integers(low, high + 1, size=n)
    width = self.tokens(high) + 1
    inputs = np.zeros((n, width), np.int32)
    labels = np.zeros(n, np.int32)
    real = np.zeros(n, np.int64)
    for length in np.unique(lengths):
      rows = np.flatnonzero(lengths == length)
      x, y = self.sample(rng, len(rows), int(length))
      inputs[rows, :x.shape[1]] = x
      inputs[rows, x.shape[1]] = self.output_token
      labels[rows] = y
      real[rows] = x.shape[1] + 1
    batch = {'inputs': inputs, 'labels': labels}
    if (real != width).any():
      batch['mask'] = np.arange(width)[None, :] < real[:, None]
    return batch

  def load(self, config, seed) -> base.Dataset:
    d = config  # The data group.
    train_rng, eval_rng, test_rng = self.split_rngs(self.name, seed)
    low = 1 if d.min_seq_len is None else d.min_seq_len
    longest = base.eval_seq_len(d)
    test = None
    if longest > d.seq_len:
      test = self.generate(test_rng, d.num_eval, d.seq_len + 1, longest)
    return base.Dataset(
        train=self.generate(train_rng, d.num_train, low, d.seq_len),
        eval=self.generate(eval_rng, d.num_eval, low, d.seq_len),
        test=test, num_classes=self.num_classes,
        vocab_size=self.input_size + 1)


def _bits(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
  return rng.integers(0, 2, size=(n, length)).astype(np.int32)


class EvenPairs(Task):
  """Odd number of unequal neighbours (01 or 10): 1."""

  streams = {'even_pairs': 10}
  input_size, num_classes = 2, 2

  def sample(self, rng, n, length):
    x = _bits(rng, n, length)
    return x, ((x[:, 1:] != x[:, :-1]).sum(axis=1) % 2).astype(np.int32)


class ParityCheck(Task):
  """The number of 1s, mod 2."""

  streams = {'parity_check': 11}
  input_size, num_classes = 2, 2

  def sample(self, rng, n, length):
    x = _bits(rng, n, length)
    return x, (x.sum(axis=1) % 2).astype(np.int32)


class CycleNavigation(Task):
  """Moves -1, 0, +1 (tokens 0, 1, 2) around a cycle of 5 from 0."""

  streams = {'cycle_navigation': 12}
  input_size, num_classes = 3, 5

  def sample(self, rng, n, length):
    x = rng.integers(0, 3, size=(n, length)).astype(np.int32)
    return x, ((x - 1).sum(axis=1) % 5).astype(np.int32)


PLUS, MINUS, TIMES = MODULUS, MODULUS + 1, MODULUS + 2


class ModularArithmetic(Task):
  """d op d op ... d, * before + and -, mod 5."""

  streams = {'modular_arithmetic': 13}
  input_size, num_classes = MODULUS + 4, MODULUS  # + - * and a blank.

  def tokens(self, length):
    return length if length % 2 else length - 1

  def sample(self, rng, n, length):
    tokens = self.tokens(length)
    digits = rng.integers(0, MODULUS, size=(n, tokens // 2 + 1))
    ops = rng.choice(np.array([PLUS, TIMES, MINUS]), size=(n, tokens // 2))
    x = np.zeros((n, tokens), np.int32)
    x[:, ::2], x[:, 1::2] = digits, ops
    # Left to right: `total` of the finished terms, `term` the running
    # product (its sign included).
    total, term = np.zeros(n, np.int64), digits[:, 0].astype(np.int64)
    for k in range(tokens // 2):
      op, d = ops[:, k], digits[:, k + 1]
      times = op == TIMES
      total = np.where(times, total, total + term)
      term = np.where(times, term * d, np.where(op == PLUS, d, -d)) % MODULUS
    return x, ((total + term) % MODULUS).astype(np.int32)


BRACKETS_ALPHABET = {'+': 5, '-': 6, '*': 7, '(': 8, ')': 9, 'x': 10}
EQUATION_ALPHABET = {'+': 5, '-': 6, '(': 7, ')': 8, 'x': 9, '=': 10}


def bracket_expression(rng: np.random.Generator, length: int, mult: bool
                       ) -> tuple[str, int]:
  """An expression of exactly `length` characters and its value mod 5
  (`generate_one_expression_and_result` in their
  tasks/dcf/modular_arithmetic_brackets.py)."""
  if length < 1:
    raise ValueError(f'an expression has at least 1 character; got {length}.')
  if length <= 4:
    d = int(rng.integers(0, MODULUS))
    return (('', '-', '(', '(-')[length - 1] + str(d) +
            ('', '', ')', ')')[length - 1],
            (-d if length in (2, 4) else d) % MODULUS)
  left_length = int(rng.integers(1, length - 3))
  left, a = bracket_expression(rng, left_length, mult)
  right, b = bracket_expression(rng, length - left_length - 3, mult)
  op = int(rng.integers(0, 3 if mult else 2))
  value = (a + b, a - b, a * b)[op] % MODULUS
  return f'({left}{"+-*"[op]}{right})', value


def _encode(text: str, alphabet: dict[str, int]) -> list[int]:
  return [int(c) if c.isdigit() else alphabet[c] for c in text]


class ModularArithmeticBrackets(Task):
  """A bracketed expression over + - *, mod 5."""

  streams = {'modular_arithmetic_brackets': 14}
  input_size, num_classes = MODULUS + 6, MODULUS

  def sample(self, rng, n, length):
    rows = [bracket_expression(rng, length, mult=True) for _ in range(n)]
    return (np.array([_encode(e, BRACKETS_ALPHABET) for e, _ in rows],
                     np.int32).reshape(n, length),
            np.array([v for _, v in rows], np.int32))


class SolveEquation(Task):
  """The digit hidden behind `x` in `expression=value` (+ and - only)."""

  streams = {'solve_equation': 15}
  input_size, num_classes = MODULUS + 6, MODULUS

  def sample(self, rng, n, length):
    if length < 3:
      return np.zeros((n, length), np.int32), np.zeros(n, np.int32)
    inputs, labels = [], []
    for _ in range(n):
      expression, value = bracket_expression(rng, length - 2, mult=False)
      i = int(rng.integers(0, len(expression)))
      while not expression[i].isdigit():
        i = (i + 1) % (length - 2)
      labels.append(int(expression[i]))
      inputs.append(_encode(f'{expression[:i]}x{expression[i + 1:]}='
                            f'{value}', EQUATION_ALPHABET))
    return np.array(inputs, np.int32), np.array(labels, np.int32)


class MissingDuplicate(Task):
  """w w with one bit replaced by 2 (and a 3 for odd lengths): that bit."""

  streams = {'missing_duplicate': 16}
  input_size, num_classes = 4, 2
  MASKED, PAD = 2, 3

  def sample(self, rng, n, length):
    if length == 1:
      return np.ones((n, 1), np.int32), np.ones(n, np.int32)
    half = length // 2
    w = _bits(rng, n, half)
    x = np.concatenate([w, w, np.full((n, length % 2), self.PAD, np.int32)],
                       axis=1)
    at = rng.integers(0, 2 * half, size=n)
    rows = np.arange(n)
    labels = x[rows, at].copy()
    x[rows, at] = self.MASKED
    return x, labels


# Registered in this order (the paper's: regular, then DCF, then CS).
TASKS = tuple(base.register(task).names[0] for task in (
    EvenPairs(), ModularArithmetic(), ParityCheck(), CycleNavigation(),
    ModularArithmeticBrackets(), SolveEquation(), MissingDuplicate()))


def get(name: str) -> Task:
  task = base.get(name)
  if not isinstance(task, Task):
    raise ValueError(f'data.name={name!r} is not a Chomsky-hierarchy task; '
                     f'valid: {", ".join(TASKS)}.')
  return task
