"""Checks a config before anything is generated or compiled.

Every error is a `ValueError` whose message names the field, the value it has
and what would be valid, so a typo on the command line never surfaces as a
traceback from deep inside JAX. Each group's fields are checked by their
owner (`data.check_config` and the dataset entries, `models.check_config`,
`encodings.check_config` and the encoding entries, `allocator`); this module
holds the generic and cross-group checks, and the resume check.
"""

import json
import pathlib
from typing import Any

import jax
import ml_collections

from posenc import allocator
from posenc import checks
from posenc import config as posenc_config
from posenc import data
from posenc import encodings
from posenc import models

PARALLEL_MODES = ('jit', 'pmap')
OPTIMIZERS = ('adam', 'adamw', 'sgd')


def check_config(config: ml_collections.ConfigDict, num_devices: int, *,
                 evaluating: bool = False) -> None:
  """Raises ValueError for the first invalid field of `config`.

  `evaluating`: the config is for evaluating a trained checkpoint (learned
  tables may then be resampled to a longer eval length).
  """
  checks.non_negative_int(config, 'seed')
  data.check_config(config)
  checks.choice(config, 'model.posemb', encodings.names())
  checks.choice(config, 'model.posemb_resample',
                ('none',) + encodings.RESAMPLE_METHODS)
  models.check_config(config)
  encodings.check_config(config)
  _check_train(config, num_devices)
  m = config.model
  if m.posemb_randomized:
    if not encodings.get(m.posemb).uses_positions:
      raise ValueError('model.posemb_randomized=True needs positions; '
                       f'model.posemb={m.posemb!r} has none.')
    if m.max_len is None or m.max_len <= config.data.seq_len:
      raise ValueError(
          f'model.posemb_randomized=True draws positions from 0..max_len-1, '
          f'so model.max_len={m.max_len} must be larger than data.seq_len='
          f'{config.data.seq_len} (e.g. {4 * config.data.seq_len}).')
  if m.posemb_resample != 'none' and not evaluating:
    raise ValueError(
        f'model.posemb_resample={m.posemb_resample!r} applies when evaluating '
        "a checkpoint (--mode=eval); valid when training: 'none'.")
  known = data.lengths(config)
  if known is not None:
    check_lengths(config, *known, evaluating=evaluating)


def _check_train(config: ml_collections.ConfigDict, num_devices: int) -> None:
  checks.choice(config, 'train.parallel', PARALLEL_MODES)
  checks.choice(config, 'train.allocator', allocator.ALLOCATORS)
  checks.choice(config, 'train.optimizer', OPTIMIZERS)
  for field in ('num_epochs', 'batch_size', 'log_every_steps',
                'checkpoint_every_steps', 'keep_checkpoints'):
    checks.positive_int(config, f'train.{field}')
  checks.real(config, 'train.learning_rate', low=0.0)
  checks.real(config, 'train.weight_decay', low=0.0, low_inclusive=True)
  t = config.train
  if t.weight_decay and t.optimizer != 'adamw':
    raise ValueError(
        f'train.weight_decay={t.weight_decay} applies to '
        f"train.optimizer='adamw' only; valid with {t.optimizer!r}: 0.0.")
  if t.batch_size % num_devices:
    raise ValueError(
        f'train.batch_size={t.batch_size} is not divisible by the device '
        f'count ({num_devices}); valid: a multiple of {num_devices}.')
  if t.parallel == 'pmap' and jax.process_count() > 1:
    raise ValueError(
        "train.parallel='pmap' runs in one process; with "
        f"{jax.process_count()} processes use 'jit' (one Mesh over every "
        "process's devices).")
  if data.lengths(config) is not None and t.batch_size > config.data.num_train:
    raise ValueError(
        f'train.batch_size={t.batch_size} is larger than data.num_train='
        f'{config.data.num_train}; valid: batch_size <= num_train.')


def check_lengths(config: ml_collections.ConfigDict, train_len: int,
                  eval_len: int, *, evaluating: bool = False) -> None:
  """Sequence lengths against the model's position tables."""
  m = config.model
  if m.max_len is not None and train_len > m.max_len:
    raise ValueError(
        f'data.seq_len={train_len} is longer than model.max_len='
        f'{m.max_len}; valid: seq_len <= max_len (or leave max_len unset).')
  if not encodings.get(m.posemb).has_table:
    return  # No table to outgrow.
  table_rows = train_len if m.max_len is None else m.max_len
  if eval_len > table_rows and not (evaluating and
                                    m.posemb_resample != 'none'):
    how = ("set model.posemb_resample to 'linear' or 'nearest'" if evaluating
           else 'evaluate the checkpoint with --mode=eval and '
           "model.posemb_resample='linear' or 'nearest', or raise "
           'model.max_len')
    raise ValueError(
        f'data.eval_seq_len={eval_len} is longer than the learned table '
        f'(model.max_len={table_rows}); {how}.')


def check_dataset(config: ml_collections.ConfigDict, dataset: data.Dataset, *,
                  evaluating: bool = False) -> None:
  """A loaded (or given) dataset against the config: its arrays, batch size
  and lengths."""
  dataset.check()
  n = data.num_examples(dataset.train)
  if config.train.batch_size > n:
    raise ValueError(
        f'train.batch_size={config.train.batch_size} is larger than the '
        f'{n} training examples; valid: batch_size <= {n}.')
  check_lengths(config, dataset.seq_len, dataset.eval_seq_len,
                evaluating=evaluating)


# Fields a resumed run may change: how long and how it trains, logs and saves,
# not what it trains.
# (Not train.parallel: pmap folds the device index into the dropout key.)
RESUMABLE_CHANGES = ('train.num_epochs', 'train.log_every_steps',
                     'train.checkpoint_every_steps', 'train.keep_checkpoints',
                     'data.cache_dir',
                     # Speed options with the same arithmetic.
                     'train.allocator', 'model.remat', 'model.attention')
DATA_FINGERPRINT = 'data_sha256'  # Key in config.json beside the config.


def _flat(tree: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def run_record(config: ml_collections.ConfigDict,
               data_sha256: str | None = None) -> dict[str, Any]:
  """What `config.json` holds: the config, and the data's fingerprint where
  the config does not determine the data."""
  record = json.loads(config.to_json_best_effort())
  if data_sha256 is not None:
    record[DATA_FINGERPRINT] = data_sha256
  return record


def check_resume(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                 data_sha256: str | None = None) -> None:
  """Raises ValueError if `workdir` holds checkpoints of another config.

  Compares with the `config.json` the run wrote; every differing field
  outside RESUMABLE_CHANGES is named (the data's fingerprint too). Reads
  only.
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
  now = _flat(run_record(config, data_sha256))
  # Fields added to posenc after the run was written count as their
  # defaults, which is what that run used.
  defaults = _flat(run_record(posenc_config.get_config()))
  saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
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
