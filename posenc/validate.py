"""Checks a config before anything is generated or compiled.

Every error is a `ValueError` whose message names the field, the value it has
and what would be valid, so a typo on the command line never surfaces as a
traceback from deep inside JAX.
"""

import math
import numbers

import ml_collections

from posenc import data
from posenc import encodings
from posenc import models

PARALLEL_MODES = ('jit', 'pmap')


def _choice(config: ml_collections.ConfigDict, field: str,
            valid: tuple[str, ...]) -> None:
  value = config[field]
  if value not in valid:
    raise ValueError(f'{field}={value!r} is not valid; valid values: '
                     f'{", ".join(valid)}.')


def _positive_int(config: ml_collections.ConfigDict, field: str) -> None:
  value = config[field]
  if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
      or value <= 0):
    raise ValueError(f'{field}={value!r} is not valid; it must be a positive '
                     'integer.')


def _real(config: ml_collections.ConfigDict, field: str, *, low: float,
          high: float = math.inf, low_inclusive: bool = False) -> None:
  value = config[field]
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and value < high
        and (value >= low if low_inclusive else value > low))
  if not ok:
    low_bracket = '[' if low_inclusive else '('
    raise ValueError(f'{field}={value!r} is not valid; it must be a finite '
                     f'number in {low_bracket}{low}, {high}).')


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError for the first invalid field of `config`."""
  _choice(config, 'data.name', data.DATASET_NAMES)
  _choice(config, 'model.posemb', encodings.POSEMB_NAMES)
  _choice(config, 'model.pooling', models.POOLING_NAMES)
  _choice(config, 'train.parallel', PARALLEL_MODES)
  for field in ('data.seq_len', 'data.n_features', 'data.num_classes',
                'data.num_train', 'data.num_eval', 'model.d_model',
                'model.num_heads', 'model.num_layers', 'model.mlp_dim',
                'train.num_epochs', 'train.batch_size',
                'train.log_every_steps'):
    _positive_int(config, field)
  if config.model.max_len is not None:
    _positive_int(config, 'model.max_len')
  if not isinstance(config.seed, numbers.Integral) or config.seed < 0:
    raise ValueError(f'seed={config.seed!r} is not valid; it must be a '
                     'non-negative integer.')
  _real(config, 'train.learning_rate', low=0.0)
  _real(config, 'model.posemb_init_std', low=0.0)
  _real(config, 'model.dropout_rate', low=0.0, high=1.0, low_inclusive=True)
  _real(config, 'model.attention_dropout_rate', low=0.0, high=1.0,
        low_inclusive=True)

  m = config.model
  if m.d_model % m.num_heads:
    raise ValueError(
        f'model.d_model={m.d_model} is not divisible by model.num_heads='
        f'{m.num_heads}; valid num_heads divide d_model, e.g. '
        f'{[h for h in range(1, m.d_model + 1) if m.d_model % h == 0][:8]}.')
  if m.max_len is not None and config.data.seq_len > m.max_len:
    raise ValueError(
        f'data.seq_len={config.data.seq_len} is longer than model.max_len='
        f'{m.max_len}; valid: seq_len <= max_len (or leave max_len unset).')
  t = config.train
  if t.batch_size % num_devices:
    raise ValueError(
        f'train.batch_size={t.batch_size} is not divisible by the device '
        f'count ({num_devices}); valid: a multiple of {num_devices}.')
  if t.batch_size > config.data.num_train:
    raise ValueError(
        f'train.batch_size={t.batch_size} is larger than data.num_train='
        f'{config.data.num_train}; valid: batch_size <= num_train.')
