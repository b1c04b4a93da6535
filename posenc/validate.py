"""Checks a config before anything is generated or compiled.

Every error is a `ValueError` whose message names the field, the value it has
and what would be valid, so a typo on the command line never surfaces as a
traceback from deep inside JAX.
"""

import json
import math
import numbers
import pathlib

import jax
import ml_collections

from posenc import allocator
from posenc import data
from posenc import encodings
from posenc import models
from posenc.datasets import listops
from posenc.datasets import mnist1d
from posenc.datasets import synthetic

PARALLEL_MODES = ('jit', 'pmap')


def _divisors(n: int) -> list[int]:
  return [k for k in range(1, n + 1) if n % k == 0]


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


def check_config(config: ml_collections.ConfigDict, num_devices: int, *,
                 evaluating: bool = False) -> None:
  """Raises ValueError for the first invalid field of `config`.

  `evaluating`: the config is for evaluating a trained checkpoint (learned
  tables may then be resampled to a longer eval length).
  """
  _choice(config, 'data.name', data.DATASET_NAMES)
  _choice(config, 'model.posemb', encodings.POSEMB_NAMES)
  _choice(config, 'model.posemb_resample',
          ('none',) + encodings.RESAMPLE_METHODS)
  _choice(config, 'model.pooling', models.POOLING_NAMES)
  _choice(config, 'train.parallel', PARALLEL_MODES)
  _choice(config, 'train.allocator', allocator.ALLOCATORS)
  _choice(config, 'model.matmul_dtype', tuple(models.MATMUL_DTYPES))
  _choice(config, 'model.attention', models.ATTENTION_NAMES)
  for field in ('data.seq_len', 'data.n_features', 'data.num_classes',
                'data.num_train', 'data.num_eval', 'model.d_model',
                'model.num_heads', 'model.num_layers', 'model.mlp_dim',
                'model.relative_num_buckets', 'model.relative_max_distance',
                'data.marker_offset', 'data.listops_max_depth',
                'data.listops_max_args', 'data.patch_size',
                'train.num_epochs', 'train.batch_size',
                'train.log_every_steps', 'train.checkpoint_every_steps',
                'train.keep_checkpoints'):
    _positive_int(config, field)
  for field in ('model.max_len', 'data.min_seq_len', 'data.eval_seq_len'):
    if config[field] is not None:
      _positive_int(config, field)
  for field in ('seed', 'data.seed'):
    value = config[field]
    if field == 'data.seed' and value is None:
      continue
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
        or value < 0):
      raise ValueError(f'{field}={value!r} is not valid; it must be a '
                       'non-negative integer.')
  if not isinstance(config.data.cache_dir, str) or not config.data.cache_dir:
    raise ValueError(f'data.cache_dir={config.data.cache_dir!r} is not valid; '
                     'it must be a folder path.')
  _real(config, 'train.learning_rate', low=0.0)
  _real(config, 'model.posemb_init_std', low=0.0)
  _real(config, 'model.rope_base', low=1.0)
  _real(config, 'model.dropout_rate', low=0.0, high=1.0, low_inclusive=True)
  _real(config, 'model.attention_dropout_rate', low=0.0, high=1.0,
        low_inclusive=True)
  _check_model(config, evaluating)
  _check_data(config)
  _check_lengths(config, evaluating)
  t = config.train
  if t.batch_size % num_devices:
    raise ValueError(
        f'train.batch_size={t.batch_size} is not divisible by the device '
        f'count ({num_devices}); valid: a multiple of {num_devices}.')
  if t.parallel == 'pmap' and jax.process_count() > 1:
    raise ValueError(
        "train.parallel='pmap' runs in one process; with "
        f"{jax.process_count()} processes use 'jit' (one Mesh over every "
        "process's devices).")
  if t.batch_size > config.data.num_train:
    raise ValueError(
        f'train.batch_size={t.batch_size} is larger than data.num_train='
        f'{config.data.num_train}; valid: batch_size <= num_train.')


def _check_model(config: ml_collections.ConfigDict, evaluating: bool) -> None:
  """Combinations of model fields that cannot work."""
  m = config.model
  if m.d_model % m.num_heads:
    raise ValueError(
        f'model.d_model={m.d_model} is not divisible by model.num_heads='
        f'{m.num_heads}; valid num_heads divide d_model, e.g. '
        f'{_divisors(m.d_model)[:8]}.')
  head_dim = m.d_model // m.num_heads
  if m.posemb == 'rope' and head_dim % 2:
    raise ValueError(
        f"model.posemb='rope' rotates pairs of features, but the head "
        f'dimension d_model / num_heads = {m.d_model} / {m.num_heads} = '
        f'{head_dim} is odd; valid: an even head dimension.')
  if m.posemb == 'relative':
    if m.relative_num_buckets < 4 or m.relative_num_buckets % 2:
      raise ValueError(
          f'model.relative_num_buckets={m.relative_num_buckets} is not '
          'valid; valid: an even number >= 4 (half for each direction).')
    if m.relative_max_distance <= m.relative_num_buckets // 4:
      raise ValueError(
          f'model.relative_max_distance={m.relative_max_distance} is not '
          'valid; valid: larger than relative_num_buckets // 4 = '
          f'{m.relative_num_buckets // 4}, the last exact offset.')
  if m.posemb_randomized:
    if m.posemb == 'none':
      raise ValueError("model.posemb_randomized=True needs positions; "
                       "model.posemb='none' has none.")
    if m.max_len is None or m.max_len <= config.data.seq_len:
      raise ValueError(
          f'model.posemb_randomized=True draws positions from 0..max_len-1, '
          f'so model.max_len={m.max_len} must be larger than data.seq_len='
          f'{config.data.seq_len} (e.g. {4 * config.data.seq_len}).')
  if m.attention == 'fused' and m.attention_dropout_rate:
    raise ValueError(
        "model.attention='fused' (jax.nn.dot_product_attention) has no "
        f'dropout on the weights, but model.attention_dropout_rate='
        f"{m.attention_dropout_rate}; valid: 0.0, or attention='einsum'.")
  if m.posemb_resample != 'none' and not evaluating:
    raise ValueError(
        f'model.posemb_resample={m.posemb_resample!r} applies when evaluating '
        "a checkpoint (--mode=eval); valid when training: 'none'.")


def _check_data(config: ml_collections.ConfigDict) -> None:
  """Fields that each dataset needs, or does not allow."""
  d = config.data
  if d.name in data.SYNTHETIC:
    shortest = synthetic.min_length(d)
    for field in ('seq_len', 'min_seq_len', 'eval_seq_len'):
      if d[field] is not None and d[field] < shortest:
        raise ValueError(
            f'data.{field}={d[field]} is too short for data.name={d.name!r}; '
            f'valid: at least {shortest}.')
    if d.name in ('before', 'marker') and d.n_features < 2:
      raise ValueError(
          f'data.n_features={d.n_features} is too few for data.name='
          f'{d.name!r}, which uses features 0 and 1; valid: at least 2.')
  if d.name == 'listops':
    if d.listops_max_args < 2:
      raise ValueError(
          f'data.listops_max_args={d.listops_max_args} is not valid; every '
          'operator takes at least 2 arguments; valid: >= 2.')
    _check_listops_bands(d)
  if d.name in data.MNIST1D:
    seed = data.data_seed(d, config.seed)
    if seed >= 2**32:  # mnist1d seeds numpy's legacy global generator.
      field = 'seed' if d.seed is None else 'data.seed'
      raise ValueError(f'{field}={seed} is too large for MNIST-1D; valid: '
                       f'0 to {2**32 - 1}.')
    if mnist1d.NUM_STEPS % d.patch_size:
      raise ValueError(
          f'data.patch_size={d.patch_size} does not divide the '
          f'{mnist1d.NUM_STEPS} steps of MNIST-1D; valid: '
          f'{_divisors(mnist1d.NUM_STEPS)}.')
    tokens = mnist1d.NUM_STEPS // d.patch_size
    if d.seq_len != tokens:
      raise ValueError(
          f'data.seq_len={d.seq_len} does not match MNIST-1D with '
          f'data.patch_size={d.patch_size}: {mnist1d.NUM_STEPS} steps make '
          f'{tokens} tokens; valid: data.seq_len={tokens}.')
    if d.min_seq_len is not None or data.eval_seq_len(d) != tokens:
      raise ValueError(
          'MNIST-1D sequences all have the same length; valid: '
          'data.min_seq_len and data.eval_seq_len unset.')
    if d.num_train + d.num_eval > mnist1d.NUM_TRAIN:
      raise ValueError(
          f'data.num_train={d.num_train} + data.num_eval={d.num_eval} is more '
          f'than the {mnist1d.NUM_TRAIN} MNIST-1D training sequences (eval is '
          f'carved from them); valid: num_train + num_eval <= '
          f'{mnist1d.NUM_TRAIN}.')
  elif d.patch_size != 1:
    raise ValueError(
        f'data.patch_size={d.patch_size} applies to MNIST-1D only; valid for '
        f'data.name={d.name!r}: 1.')


def _check_listops_bands(d: ml_collections.ConfigDict) -> None:
  """The training and eval bands must be reachable and hold enough distinct
  expressions, or rejection sampling would all but hang."""
  low = listops.SHORTEST if d.min_seq_len is None else d.min_seq_len
  if low < listops.SHORTEST:
    raise ValueError(
        f'data.min_seq_len={low} is shorter than any ListOps expression; '
        f'valid: >= {listops.SHORTEST}.')
  eval_len = data.eval_seq_len(d)
  bands = (('data.seq_len', d.seq_len, d.num_train, 'data.num_train'),
           ('data.eval_seq_len', eval_len, d.num_train + 2 * d.num_eval,
            'data.num_train + 2 * data.num_eval (eval, test)'))
  count, prob = listops.length_distribution(
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
          f'ListOps band [{low}, {high}] tokens (data.min_seq_len, {field}): '
          f'only a fraction {reached:.2g} of generated expressions falls in '
          f'it {shape}; valid: a band holding at least 1e-3, e.g. a lower '
          'data.min_seq_len or more data.listops_max_args.')
    distinct = count[low:high + 1].sum()
    if distinct < needed:
      raise ValueError(
          f'ListOps band [{low}, {high}] tokens (data.min_seq_len, {field}) '
          f'holds {distinct:.0f} distinct expressions {shape}, fewer than '
          f'{what} = {needed}; valid: a wider band or fewer examples.')


def _check_lengths(config: ml_collections.ConfigDict,
                   evaluating: bool) -> None:
  """Sequence lengths against each other and the learned tables."""
  d, m = config.data, config.model
  if d.min_seq_len is not None and d.min_seq_len > d.seq_len:
    raise ValueError(
        f'data.min_seq_len={d.min_seq_len} is longer than data.seq_len='
        f'{d.seq_len}; valid: min_seq_len <= seq_len.')
  eval_len = data.eval_seq_len(d)
  if d.name == 'argmax' and eval_len != d.seq_len:
    raise ValueError(
        f"data.eval_seq_len={eval_len} differs from data.seq_len={d.seq_len}, "
        "but 'argmax' has one class per position; valid: the same length, "
        "or data.name='before' (two classes at any length).")
  if m.max_len is not None and d.seq_len > m.max_len:
    raise ValueError(
        f'data.seq_len={d.seq_len} is longer than model.max_len='
        f'{m.max_len}; valid: seq_len <= max_len (or leave max_len unset).')
  table_rows = learned_table_rows(config)
  if table_rows is None:
    return  # No table to outgrow.
  if eval_len > table_rows and not (evaluating and
                                    m.posemb_resample != 'none'):
    how = ("set model.posemb_resample to 'linear' or 'nearest'" if evaluating
           else 'evaluate the checkpoint with --mode=eval and '
           "model.posemb_resample='linear' or 'nearest', or raise "
           'model.max_len')
    raise ValueError(
        f'data.eval_seq_len={eval_len} is longer than the learned table '
        f'(model.max_len={table_rows}); {how}.')


# Fields a resumed run may change: how long and how it trains, logs and saves,
# not what it trains.
# (Not train.parallel: pmap folds the device index into the dropout key.)
RESUMABLE_CHANGES = ('train.num_epochs', 'train.log_every_steps',
                     'train.checkpoint_every_steps', 'train.keep_checkpoints',
                     'data.cache_dir',
                     # Speed options with the same arithmetic.
                     'train.allocator', 'model.remat', 'model.attention')


def _flat(tree: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def check_resume(config: ml_collections.ConfigDict,
                 workdir: pathlib.Path) -> None:
  """Raises ValueError if `workdir` holds checkpoints of another config.

  Compares with the `config.json` the run wrote; every differing field
  outside RESUMABLE_CHANGES is named. Reads only.
  """
  ckpt_dir = pathlib.Path(workdir) / 'checkpoints'
  if not ckpt_dir.is_dir() or not any(
      p.name.isdigit() for p in ckpt_dir.iterdir()):
    return
  saved_path = pathlib.Path(workdir) / 'config.json'
  try:
    saved = _flat(json.loads(saved_path.read_text()))
  except (OSError, ValueError) as e:
    raise ValueError(
        f'{workdir} has checkpoints but no readable config.json ({e}), so '
        'resuming cannot be checked; use a new --workdir.') from None
  now = _flat(json.loads(config.to_json_best_effort()))
  differ = [f'{k}: {saved.get(k, "<absent>")!r} in the workdir, '
            f'{now.get(k, "<absent>")!r} now'
            for k in sorted(set(saved) | set(now))
            if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)]
  if differ:
    raise ValueError(
        f'{workdir} holds a run with another config, which cannot be resumed '
        f'with this one: {"; ".join(differ)}. Use a new --workdir, or the '
        'saved config (only these may change on resume: '
        f'{", ".join(RESUMABLE_CHANGES)}).')


def learned_table_rows(config: ml_collections.ConfigDict) -> int | None:
  """Rows of the model's learned position tables; None if it has none."""
  if config.model.posemb not in encodings.LEARNED_TABLES:
    return None
  max_len = config.model.max_len
  return config.data.seq_len if max_len is None else max_len
