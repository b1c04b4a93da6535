"""How much memory a config needs, estimated before anything is allocated.

A closed form of the config's sizes, so that a config that cannot fit (a
million layers, a sequence of a million steps, a billion examples) is
refused in microseconds with the field to blame, instead of hanging in
tracing or ending in MemoryError or RESOURCE_EXHAUSTED with an empty workdir.

Shape legend: B = batch, L = sequence length (+1 with a class token), D =
model width, H = heads, M = MLP width, N = blocks, P = parameters.

The parts, in bytes (float32 everywhere, an upper bound for bfloat16
products):
- parameters, exactly (`num_params`), with the optimizer's slots (Adam: 2P),
  the gradients and a host copy for checkpoints: 4 * (2 * (1 + slots) + 2) P
  when training; the restore target, the restored state and resampled
  tables when evaluating;
- activations of one train step, per block 4 BHLL (attention logits,
  weights and their gradients) + 4 BLM + 12 BLD, around the blocks 8 BLD and
  twice the inputs, plus the encoding's bias maps (`Encoding.bias_maps`, 2H
  BLL for ALiBi and relative); `model.attention='blocked'` holds one T x T
  block of them at a time (T = `model.attention_block_size`), so each LL
  becomes TT, and 8 BLD more per block (its residuals); and of
  an eval step at the eval length, 3 BHLL + 6 BLM + 9 BLD (+ the bias
  maps); the larger counts;
- the dataset's arrays, twice (generation makes a copy);
- `RUNTIME_BYTES` for Python, JAX and XLA themselves.

Calibrated against XLA's own count on CPU (`jax.jit(train_step).lower(...)
.compile().memory_analysis()`, jax 0.10.2): at 16 configs with L = 10 to
256, D = 64 to 1024, M = 64 to 2048, H = 4 to 16, B = 4 to 128 and 2 to 8
blocks, the train step's activations and 2P (gradients, updates) come to
1.04 to 1.45 times XLA's temporary buffers (per block XLA holds about
3.5 BHLL + 3 BLM + 10 BLD). `model.remat` and `model.attention='fused'` did
not shrink them on XLA:CPU (fused runs XLA's implementation of the same
products), so they count the same.
Activations are counted for the global batch and the state once, whatever
the device count.

Before the data is loaded, its facts are bounded from the generic fields
(classes: the larger of `data.num_classes` (10 if unset) and `data.seq_len`;
features per step: the larger of `data.n_features` and `data.patch_size`
squared, a digits patch),
bounds that hold for every registered dataset; `check_dataset` repeats the
check with the loaded arrays.
"""

import dataclasses
import os
from typing import Any

import ml_collections

from posenc import config as posenc_config
from posenc import data
from posenc import encodings
from posenc import models

GIB = 2**30
# Python, JAX and XLA: a default-config run peaked at 0.44 GiB resident.
RUNTIME_BYTES = GIB // 2
BYTES = 4  # float32 (and int32 tokens and labels).
OPTIMIZER_SLOTS = {'adam': 2, 'adamw': 2, 'sgd': 0}  # Arrays per parameter.
# Parameters of each encoding's own tables, given the model config and the
# rows of a table (max_len); encodings not listed have none (checked for
# every registered encoding by tests/memory_test.py).
# The integer fields the estimate grows with: the candidates for blame.
SIZE_FIELDS = ('data.seq_len', 'data.eval_seq_len', 'data.num_train',
               'data.num_eval', 'data.n_features', 'data.patch_size',
               'data.num_classes', 'model.d_model', 'model.num_layers',
               'model.mlp_dim', 'model.num_heads', 'model.max_len',
               'model.relative_num_buckets', 'train.batch_size')
_DEFAULT_NUM_CLASSES = 10  # Bound on classes where data.num_classes is unset.


def num_params(m: models.ModelConfig, *, num_classes: int, max_len: int,
               in_features: int | None = None,
               vocab_size: int | None = None) -> int:
  """Parameters of `models.EncoderClassifier(m, num_classes, vocab_size)`
  for inputs of `in_features` float features (or `vocab_size` tokens) and
  tables of `max_len` rows, exactly."""
  d, mlp = m.d_model, m.mlp_dim
  if vocab_size is None:
    total = in_features * d + d  # input_proj
  else:
    total = vocab_size * d  # token_embed
  total += encodings.get(m.posemb).num_params(m, max_len)
  if m.pooling == 'cls':
    total += d
  # Per block: two LayerNorms (4D); query and value with biases, key
  # without (3D^2 + 2D); out (D^2 + D); MLP (2DM + M + D).
  block = 4 * d + 4 * d * d + 3 * d + 2 * d * mlp + mlp + d
  total += m.num_layers * block
  return total + 2 * d + d * num_classes + num_classes  # ln_final, head


@dataclasses.dataclass(frozen=True)
class DataFacts:
  """What the estimate needs to know of the data."""

  num_classes: int
  in_features: int | None  # Float features per step; None for tokens.
  vocab_size: int | None  # Tokens; None for float features.
  seq_len: int
  eval_seq_len: int
  data_bytes: int  # Every split's arrays.


def _facts_from_values(v: dict[str, Any]) -> DataFacts:
  """Bounds that hold for every registered dataset (see the docstring)."""
  seq_len = v['data.seq_len']
  eval_len = v['data.eval_seq_len'] or seq_len
  width = max(v['data.n_features'], v['data.patch_size']**2)
  per_step = width * BYTES + 1  # Features, and a mask.
  examples = (v['data.num_train'] * seq_len +
              2 * v['data.num_eval'] * eval_len)  # Train, eval and test.
  return DataFacts(
      num_classes=max(v['data.num_classes'] or _DEFAULT_NUM_CLASSES, seq_len),
      in_features=width, vocab_size=None, seq_len=seq_len,
      eval_seq_len=eval_len,
      data_bytes=examples * per_step + BYTES * (v['data.num_train'] +
                                                2 * v['data.num_eval']))


def facts_from_dataset(dataset: data.Dataset) -> DataFacts:
  """The facts of a loaded (or given) dataset."""
  splits = [s for s in (dataset.train, dataset.eval, dataset.test) if s]
  x = dataset.train['inputs']
  return DataFacts(
      num_classes=dataset.num_classes,
      in_features=None if dataset.vocab_size else x.shape[-1],
      vocab_size=dataset.vocab_size, seq_len=dataset.seq_len,
      eval_seq_len=dataset.eval_seq_len,
      data_bytes=sum(a.nbytes for s in splits for a in s.values()))


def _values(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields the estimate reads, as a flat dict (fast to vary)."""
  v = {f'model.{k}': x for k, x in config.model.items()}
  for field in SIZE_FIELDS + ('train.optimizer', 'train.memory_limit_gib'):
    v[field] = config[field]
  known = data.lengths(config)
  if (v['data.eval_seq_len'] is None and known is not None
      and known[1] != v['data.seq_len']):
    v['data.eval_seq_len'] = known[1]  # Digits: from data.eval_image_size.
  return v


def _parts(v: dict[str, Any], facts: DataFacts | None, *,
           evaluating: bool) -> dict[str, int]:
  """Bytes by part for the values `v` (see the module docstring)."""
  facts = facts or _facts_from_values(v)
  m = models.ModelConfig(**{k[6:]: x for k, x in v.items()
                            if k.startswith('model.')})
  rows = m.max_len or facts.seq_len
  params = num_params(m, num_classes=facts.num_classes, max_len=rows,
                      in_features=facts.in_features,
                      vocab_size=facts.vocab_size)
  state = params * (1 + OPTIMIZER_SLOTS.get(v['train.optimizer'], 2))
  b, h, d = v['train.batch_size'], m.num_heads, m.d_model
  extra = 1 if m.pooling == 'cls' else 0
  # (B, L, L) maps of the encoding's bias (and gradients) in one step.
  maps = encodings.get(m.posemb).bias_maps(m)

  # Logits (or bias entries) per head that one attention holds: every
  # pair, or for blocked attention one T x T block, plus its O(L) residuals
  # (output, log-sum-exp, the gradients of q, k and v: 8 D per step).
  blocked = m.attention == 'blocked'
  pairs = lambda n: min(m.attention_block_size, n)**2 if blocked else n**2
  residuals = 8 * d if blocked else 0

  def eval_step(length):
    length += extra
    return b * ((3 * h + maps) * pairs(length) +
                length * (6 * m.mlp_dim + 9 * d + residuals))

  if evaluating:  # Target, restored, and resampled to the eval length.
    memory = 2 * state + num_params(
        m, num_classes=facts.num_classes,
        max_len=max(rows, facts.eval_seq_len), in_features=facts.in_features,
        vocab_size=facts.vocab_size)
    activations = eval_step(facts.eval_seq_len)
  else:
    memory = 2 * state + 2 * params  # Device, host copy; grads, updates.
    length = facts.seq_len + extra
    per_block = 4 * h * pairs(length) + length * (4 * m.mlp_dim + 12 * d +
                                                  residuals)
    train_step = b * (m.num_layers * per_block + maps * pairs(length) +
                      length * (8 * d + 2 * (facts.in_features or 1)))
    activations = max(train_step, eval_step(facts.eval_seq_len))
  return {'parameters and optimizer state': BYTES * memory,
          'activations of one step': BYTES * activations,
          'data arrays': 2 * facts.data_bytes, 'runtime': RUNTIME_BYTES}


def estimate(config: ml_collections.ConfigDict,
             dataset: data.Dataset | None = None, *,
             evaluating: bool = False) -> dict[str, int]:
  """Bytes by part that `config` needs (training, or evaluating a
  checkpoint); with `dataset`, its real sizes instead of the bounds."""
  facts = None if dataset is None else facts_from_dataset(dataset)
  return _parts(_values(config), facts, evaluating=evaluating)


def limit_bytes(config: ml_collections.ConfigDict) -> tuple[int, str]:
  """(bytes, what they are): `train.memory_limit_gib`, or physical memory."""
  gib = config.train.memory_limit_gib
  if gib is not None:
    return int(gib * GIB), f'train.memory_limit_gib={gib}'
  physical = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  return physical, ("this machine's physical memory (set "
                    'train.memory_limit_gib to change the limit)')


def _gib(n: float) -> str:
  x = n / GIB
  return (f'{x:,.0f} GiB' if x >= 10 else f'{x:.2f} GiB' if x >= 0.01
          else 'under 0.01 GiB')


def check(config: ml_collections.ConfigDict,
          dataset: data.Dataset | None = None, *,
          evaluating: bool = False) -> None:
  """Raises ValueError if `config` (with `dataset`, if given) needs more
  memory than `limit_bytes`, naming the fields that make most of it and
  values that would fit."""
  v = _values(config)
  facts = None if dataset is None else facts_from_dataset(dataset)
  total = lambda values: sum(_parts(values, facts,
                                    evaluating=evaluating).values())
  limit, limit_what = limit_bytes(config)
  need = total(v)
  if need <= limit:
    return
  parts = _parts(v, facts, evaluating=evaluating)
  what = ', '.join(f'{k} {_gib(n)}' for k, n in parts.items())
  message = (f'the run needs about {_gib(need)} of memory ({what}), more '
             f'than the {_gib(limit)} of {limit_what}')
  defaults = _values(posenc_config.get_config())
  fields = [f for f in SIZE_FIELDS if (dataset is None or
                                       not f.startswith('data.'))
            and v[f] is not None and v[f] != defaults[f]]
  saving = {f: need - total({**v, f: defaults[f]}) for f in fields}
  blamed, trial = [], dict(v)
  for field in sorted(fields, key=lambda f: -saving[f]):
    if saving[field] <= 0:
      break
    blamed.append(field)
    trial[field] = defaults[field]
    if total(trial) <= limit:
      break
  if not blamed or total(trial) > limit:
    least = _gib(total(trial))
    if facts is None:
      raise ValueError(f'{message}; even with default sizes it needs {least};'
                       f' valid: train.memory_limit_gib of at least {least}, '
                       'on a machine with that much memory.')
    raise ValueError(
        f'{message}; the given data (sequences of {facts.seq_len} steps, '
        f'{facts.eval_seq_len} in eval, {_gib(facts.data_bytes)} of arrays) '
        f'needs {least} even with the default sizes of model.* and train.*; '
        'valid: shorter sequences, fewer examples or train.memory_limit_gib '
        f'of at least {least}, on a machine with that much memory.')
  *reset, last = blamed
  trial[last] = v[last]
  low, high = 0, v[last]  # The largest value of `last` that fits.
  while high - low > 1:
    mid = (low + high) // 2
    if total({**trial, last: mid}) <= limit:
      low = mid
    else:
      high = mid
  if last == 'model.d_model':  # It must split into the heads.
    low -= low % max(1, config.model.num_heads)
  named = ' and '.join(f'{f}={v[f]}' for f in blamed)
  valid = [f'{f}={defaults[f]} (its default)' for f in reset]
  valid.append(f'{last} <= {low}' if low >= 1 else
               f'{last}={defaults[last]} (its default)')
  raise ValueError(f'{message}; most of it comes from {named}; valid: '
                   f'e.g. {" and ".join(valid)}.')

