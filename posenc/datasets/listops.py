"""ListOps (Nangia & Bowman, 2018), generated here from the published rules.

An example is a nested prefix expression over the digits 0-9, e.g.
`[MAX 2 9 [MIN 4 7 ] 0 ]`, and its label is the expression's value (10
classes). The operators: MIN, MAX, MED (the median, truncated to an integer,
as `int(np.median(...))` in the original generator) and SM (sum modulo 10).

As in the original generator (and the Long Range Arena's copy), a node below
`max_depth` is an operator with probability 0.25 and a digit otherwise, an
operator has 2..`max_args` arguments, and expressions whose length in tokens
falls outside the band are rejected. Here the root is always an operator and
generation stops as soon as an expression outgrows the band.

Tokens: 0 is padding, then the digits, the four operators and `]`.
"""

import statistics
from typing import Iterator

import numpy as np

from posenc import checks
from posenc.datasets import base
from posenc.datasets import cache

PAD = 0
TOKENS = ('<pad>',) + tuple(str(d) for d in range(10)) + (
    '[MIN', '[MAX', '[MED', '[SM', ']')
VOCAB_SIZE = len(TOKENS)
NUM_CLASSES = 10
DIGIT_0 = TOKENS.index('0')
OPERATORS = TOKENS[DIGIT_0 + 10:DIGIT_0 + 14]
FIRST_OP = TOKENS.index('[MIN')
END = TOKENS.index(']')
OPERATOR_PROB = 0.25  # The original generator's branching probability.
SHORTEST = 4  # `[OP a b ]`.
# Give up on a band the sampler all but never reaches (validation refuses
# bands below 1e-3 before generating, so this is a safety net), and on one
# with too few distinct expressions left to draw.
MIN_ATTEMPTS, MIN_ACCEPTANCE = 10_000, 1e-4
MAX_DUPLICATES_IN_A_ROW = 100_000


def max_length(max_depth: int, max_args: int) -> int:
  """The longest expression the generator can make, in tokens."""
  length = 1  # A digit at the deepest level.
  for _ in range(max(max_depth, 1)):
    length = 2 + max_args * length
  return length


def length_distribution(max_len: int, max_depth: int,
                        max_args: int) -> tuple[np.ndarray, np.ndarray]:
  """For n = 0..max_len: how many distinct expressions have n tokens, and the
  probability that one draw of the generator has n tokens.

  Counts are capped at 1e30 (enough to compare with any split size). By
  dynamic programming over depth, from the leaves up: an operator's length
  is 2 plus the sum of its arguments' lengths, a convolution.
  """
  cap = 1e30
  digit = np.zeros(max_len + 1)
  digit[1] = 1.0
  count, prob = 10 * digit, digit.copy()  # Below max_depth: digits only.
  for depth in reversed(range(max(max_depth, 1))):
    count_k, prob_k = count, prob
    op_count, op_prob = np.zeros(max_len + 1), np.zeros(max_len + 1)
    for _ in range(2, max_args + 1):
      count_k = np.minimum(np.convolve(count_k, count)[:max_len + 1], cap)
      prob_k = np.convolve(prob_k, prob)[:max_len + 1]
      op_count[2:] += count_k[:-2]
      op_prob[2:] += prob_k[:-2]
    op_count = np.minimum(len(OPERATORS) * op_count, cap)
    op_prob /= max_args - 1  # 2..max_args arguments, equally likely.
    if depth == 0:  # The root is always an operator.
      count, prob = op_count, op_prob
    else:
      count = np.minimum(10 * digit + op_count, cap)
      prob = (1 - OPERATOR_PROB) * digit + OPERATOR_PROB * op_prob
  return count, prob


def key(tokens: np.ndarray | list[int]) -> bytes:
  """An expression's identity: its tokens without padding."""
  tokens = np.asarray(tokens, np.int32)
  return tokens[tokens != PAD].tobytes()


class _TooLong(Exception):
  pass


def _combine(op: int, values: list[int]) -> int:
  """The generator's arithmetic (the tests check it against `evaluate`)."""
  if op == 0:
    return min(values)
  if op == 1:
    return max(values)
  if op == 2:
    s = sorted(values)
    return (s[(len(s) - 1) // 2] + s[len(s) // 2]) // 2
  return sum(values) % 10


def _tree(rng: np.random.Generator, depth: int, max_depth: int,
          max_args: int, out: list[int], budget: int) -> int:
  """Appends one subtree's tokens to `out` and returns its value."""
  if depth > 0 and (depth >= max_depth or rng.random() >= OPERATOR_PROB):
    value = int(rng.integers(10))
    out.append(DIGIT_0 + value)
    return value
  op = int(rng.integers(4))
  out.append(FIRST_OP + op)
  values = [_tree(rng, depth + 1, max_depth, max_args, out, budget)
            for _ in range(int(rng.integers(2, max_args + 1)))]
  out.append(END)
  if len(out) > budget:
    raise _TooLong
  return _combine(op, values)


def expressions(rng: np.random.Generator, min_len: int, max_len: int,
                max_depth: int, max_args: int) -> Iterator[tuple[list[int],
                                                                 int]]:
  """Endless (tokens, value) pairs with min_len <= len(tokens) <= max_len.

  Raises ValueError if fewer than 1 in 1,000 of the first 10,000 draws fall
  in the band: the band is out of the generator's reach, and rejection
  sampling would all but hang.
  """
  attempts = accepted = 0
  while True:
    attempts += 1
    if attempts == MIN_ATTEMPTS and accepted < MIN_ATTEMPTS * MIN_ACCEPTANCE:
      raise ValueError(
          f'ListOps: {accepted} of {attempts} expressions fell in the band '
          f'[{min_len}, {max_len}] tokens (data.min_seq_len, data.seq_len or '
          f'eval_seq_len) with listops_max_depth={max_depth} and '
          f'listops_max_args={max_args}; widen the band or change those.')
    tokens = []
    try:
      value = _tree(rng, 0, max_depth, max_args, tokens, max_len)
    except _TooLong:
      continue
    if len(tokens) >= min_len:
      accepted += 1
      yield tokens, value


def generate(rng: np.random.Generator, n: int, min_len: int, max_len: int,
             max_depth: int, max_args: int,
             exclude: set[bytes] = frozenset()) -> dict[str, np.ndarray]:
  """n distinct examples, none in `exclude` (a set of `key`s), padded to
  `max_len` tokens.

  Returns 'inputs' (int32 tokens), 'labels' and 'mask' (True at tokens).
  """
  inputs = np.full((n, max_len), PAD, np.int32)
  labels = np.zeros(n, np.int32)
  seen = set(exclude)
  stream = expressions(rng, min_len, max_len, max_depth, max_args)
  i = duplicates = 0
  while i < n:
    tokens, value = next(stream)
    k = key(tokens)
    if k in seen:
      duplicates += 1
      if duplicates == MAX_DUPLICATES_IN_A_ROW:
        raise ValueError(
            f'ListOps: {duplicates} draws in a row repeated an expression '
            f'already drawn ({i} of {n} found) in the band [{min_len}, '
            f'{max_len}] tokens; widen the band (data.min_seq_len, '
            'data.seq_len) or lower data.num_train / data.num_eval.')
      continue
    seen.add(k)
    duplicates = 0
    inputs[i, :len(tokens)] = tokens
    labels[i] = value
    i += 1
  return {'inputs': inputs, 'labels': labels, 'mask': inputs != PAD}


def decode(tokens: np.ndarray) -> str:
  """The expression as text, padding dropped."""
  return ' '.join(TOKENS[t] for t in tokens if t != PAD)


def evaluate(expression: str) -> int:
  """Reference value of an expression in text form, with a stack.

  Written independently of the generator so that tests can check every
  label: plain Python, `statistics.median`, no shared helpers.
  """
  functions = {
      '[MIN': min, '[MAX': max, '[SM': lambda v: sum(v) % 10,
      '[MED': lambda v: int(statistics.median(v))}
  stack: list[list] = []
  result = None
  for token in expression.split():
    if token in functions:
      stack.append([token])
    elif token == ']':
      op, *args = stack.pop()
      if len(args) < 2:
        raise ValueError(f'{op} needs at least two arguments: {expression}')
      value = functions[op](args)
      if stack:
        stack[-1].append(value)
      else:
        result = value
    elif token.isdigit() and stack:
      stack[-1].append(int(token))
    else:
      raise ValueError(f'unexpected token {token!r} in {expression!r}')
  if stack or result is None:
    raise ValueError(f'unbalanced expression: {expression!r}')
  return result


class ListOps(base.Source):
  """Token inputs padded and masked; cached in `data.cache_dir`."""

  streams = {'listops': 5}

  def check_fields(self, config) -> None:
    checks.positive_int(config, 'data.listops_max_depth')
    checks.positive_int(config, 'data.listops_max_args')

  def check(self, config) -> None:
    d = config.data
    if d.listops_max_args < 2:
      raise ValueError(
          f'data.listops_max_args={d.listops_max_args} is not valid; every '
          'operator takes at least 2 arguments; valid: >= 2.')
    self._check_bands(config)

  def _check_bands(self, config) -> None:
    """The training and eval bands must be reachable and hold enough
    distinct expressions, or rejection sampling would all but hang."""
    d = config.data
    low = SHORTEST if d.min_seq_len is None else d.min_seq_len
    if low < SHORTEST:
      raise ValueError(
          f'data.min_seq_len={low} is shorter than any ListOps expression; '
          f'valid: >= {SHORTEST}.')
    _, eval_len = self.lengths(config)
    bands = (('data.seq_len', d.seq_len, d.num_train, 'data.num_train'),
             ('data.eval_seq_len', eval_len, d.num_train + 2 * d.num_eval,
              'data.num_train + 2 * data.num_eval (eval, test)'))
    count, prob = length_distribution(
        max(d.seq_len, eval_len), d.listops_max_depth, d.listops_max_args)
    shape = (f'with data.listops_max_depth={d.listops_max_depth} and '
             f'data.listops_max_args={d.listops_max_args}')
    for field, high, needed, what in bands:
      if high < low:
        raise ValueError(
            f"{field}={high} is shorter than the band's lower end "
            f'(data.min_seq_len={low}); valid: >= {low}.')
      reached = prob[low:high + 1].sum()
      if reached < 1e-3:
        raise ValueError(
            f'ListOps band [{low}, {high}] tokens (data.min_seq_len, {field}):'
            f' only a fraction {reached:.2g} of generated expressions falls in'
            f' it {shape}; valid: a band holding at least 1e-3, e.g. a lower '
            'data.min_seq_len or more data.listops_max_args.')
      distinct = count[low:high + 1].sum()
      if distinct < needed:
        raise ValueError(
            f'ListOps band [{low}, {high}] tokens (data.min_seq_len, {field}) '
            f'holds {distinct:.0f} distinct expressions {shape}, fewer than '
            f'{what} = {needed}; valid: a wider band or fewer examples.')

  def load(self, config, seed) -> base.Dataset:
    low = SHORTEST if config.min_seq_len is None else config.min_seq_len
    eval_len = base.eval_seq_len(config)
    params = dict(seed=seed, min_len=low, max_len=config.seq_len,
                  eval_max_len=eval_len, num_train=config.num_train,
                  num_eval=config.num_eval, max_depth=config.listops_max_depth,
                  max_args=config.listops_max_args)

    def make():
      rngs = self.split_rngs(config.name, seed)
      kwargs = dict(max_depth=config.listops_max_depth,
                    max_args=config.listops_max_args, min_len=low)
      train = generate(rngs[0], config.num_train, max_len=config.seq_len,
                       **kwargs)
      seen = {key(x) for x in train['inputs']}
      held_out = generate(rngs[1], 2 * config.num_eval, max_len=eval_len,
                          exclude=seen, **kwargs)
      return {**{f'train_{k}': v for k, v in train.items()},
              **{f'held_{k}': v for k, v in held_out.items()}}

    arrays = cache.load_or_generate(config.cache_dir, 'listops', params, make)
    train = {k[6:]: v for k, v in arrays.items() if k.startswith('train_')}
    held = {k[5:]: v for k, v in arrays.items() if k.startswith('held_')}
    n = config.num_eval
    return base.Dataset(train=train,
                        eval={k: v[:n] for k, v in held.items()},
                        test={k: v[n:] for k, v in held.items()},
                        num_classes=NUM_CLASSES, vocab_size=VOCAB_SIZE)


base.register(ListOps())
