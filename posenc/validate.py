"""Checks a config before anything is generated or compiled.

Every error is a `ValueError` whose message names the field, the value it has
and what would be valid, so a typo on the command line never surfaces as a
traceback from deep inside JAX. Each group's fields are checked by their
owner (`data.check_config` and the dataset entries, `models.check_config`,
`encodings.check_config` and the encoding entries, `optimizers`); this module
holds the generic and cross-group checks, the memory estimate's verdict
(`posenc.memory`), and the comparison of a workdir's config.json with the
config that resumes it (`check_resume`) or evaluates it (`check_eval`).
"""

import json
import pathlib
from typing import Any

import jax
import ml_collections
from absl import logging

from posenc import allocator
from posenc import checks
from posenc import config as posenc_config
from posenc import data
from posenc import encodings
from posenc import memory
from posenc import models
from posenc import optimizers

PARALLEL_MODES = ('jit', 'pmap')


def check_config(config: ml_collections.ConfigDict, num_devices: int, *,
                 evaluating: bool = False, data_given: bool = False) -> None:
  """Raises ValueError for the first invalid field of `config`.

  `evaluating`: the config is for evaluating a trained checkpoint (learned
  tables may then be resampled to a longer eval length). `data_given`: the
  data comes from the caller (`train_and_evaluate(..., dataset=...)`), not
  from the config's data group, which is then not checked; `check_dataset`
  checks the lengths and sizes of the data itself.
  """
  checks.non_negative_int(config, 'seed')
  if not data_given:
    data.check_config(config)
  checks.choice(config, 'model.posemb', encodings.names())
  models.check_config(config)
  encodings.check_config(config)
  _check_train(config, num_devices)
  m = config.model
  if (encodings.get(m.posemb).grid and not data_given
      and data.get(config.data.name).grid is False):
    grids = [n for n in data.names() if data.get(n).grid is not False]
    raise ValueError(
        f'model.posemb={m.posemb!r} places tokens on a 2-D grid, but '
        f'data.name={config.data.name!r} is a sequence; valid: a 1-D '
        f'encoding ({", ".join(encodings.sequence_names())}), or data.name '
        f'one of {", ".join(grids)}.')
  if m.posemb_randomized and not encodings.get(m.posemb).uses_positions:
    raise ValueError('model.posemb_randomized=True needs positions; '
                     f'model.posemb={m.posemb!r} has none.')
  if m.posemb_resample != 'none' and not evaluating:
    raise ValueError(
        f'model.posemb_resample={m.posemb_resample!r} applies when evaluating '
        "a checkpoint (--mode=eval); valid when training: 'none'.")
  known = None if data_given else data.lengths(config)
  if known is not None:
    check_lengths(config, *known, evaluating=evaluating)
    if config.train.batch_size > config.data.num_train:
      raise ValueError(
          f'train.batch_size={config.train.batch_size} is larger than '
          f'data.num_train={config.data.num_train}; valid: batch_size <= '
          'num_train.')
    # Last: the sizes are valid. (Data known only once loaded: in
    # check_dataset.)
    memory.check(config, evaluating=evaluating)


def _check_train(config: ml_collections.ConfigDict, num_devices: int) -> None:
  checks.choice(config, 'train.parallel', PARALLEL_MODES)
  checks.choice(config, 'train.allocator', allocator.ALLOCATORS)
  optimizers.check_config(config)
  for field in ('num_epochs', 'batch_size', 'log_every_steps',
                'checkpoint_every_steps', 'keep_checkpoints'):
    checks.positive_int(config, f'train.{field}')
  t = config.train
  if t.memory_limit_gib is not None:
    checks.real(config, 'train.memory_limit_gib', low=0.0)
  if t.batch_size % num_devices:
    raise ValueError(
        f'train.batch_size={t.batch_size} is not divisible by the device '
        f'count ({num_devices}); valid: a multiple of {num_devices}.')
  if t.parallel == 'pmap' and jax.process_count() > 1:
    raise ValueError(
        "train.parallel='pmap' runs in one process; with "
        f"{jax.process_count()} processes use 'jit' (one Mesh over every "
        "process's devices).")


def check_lengths(config: ml_collections.ConfigDict, train_len: int,
                  eval_len: int, *, evaluating: bool = False) -> None:
  """Sequence lengths (the data's, or the config's before loading) against
  the model's position tables."""
  m = config.model
  if m.max_len is not None and train_len > m.max_len:
    raise ValueError(
        f'data.seq_len={train_len} is longer than model.max_len='
        f'{m.max_len}; valid: seq_len <= max_len (or leave max_len unset).')
  if m.posemb_randomized and (m.max_len is None or m.max_len <= train_len):
    raise ValueError(
        f'model.posemb_randomized=True draws positions from 0..max_len-1, '
        f'so model.max_len={m.max_len} must be larger than the training '
        f'length {train_len} (e.g. {4 * train_len}).')
  if (m.posemb_randomized and m.posemb_randomized_eval == 'random'
      and m.max_len is not None and eval_len > m.max_len):
    raise ValueError(
        f"model.posemb_randomized_eval='random' draws the eval length "
        f'{eval_len} of the positions 0..max_len-1, but model.max_len='
        f'{m.max_len}; valid: eval_seq_len <= max_len (train with a larger '
        "max_len), or posemb_randomized_eval='fixed'.")
  if (m.posemb == 'rope' and m.rope_scaling != 'none' and not
      m.posemb_randomized and m.max_len is not None and m.max_len != train_len):
    raise ValueError(
        f'model.rope_scaling={m.rope_scaling!r} scales for lengths beyond '
        f'the trained ones, which it reads from model.max_len={m.max_len}, '
        f'but training sequences have {train_len} steps; valid: leave '
        'model.max_len unset (or equal to the training length).')
  entry = encodings.get(m.posemb)
  entry.check_lengths(config, train_len, eval_len)
  if not entry.has_table:
    return  # No table to outgrow.
  methods = ' or '.join(map(repr, entry.resample_methods))
  if m.posemb_resample not in ('none',) + entry.resample_methods:
    raise ValueError(
        f'model.posemb_resample={m.posemb_resample!r} is not a method of '
        f'the table of model.posemb={m.posemb!r}; valid: none or {methods}.')
  table_rows = train_len if m.max_len is None else m.max_len
  if entry.needs_resample(table_rows, eval_len) and not (
      evaluating and m.posemb_resample != 'none'):
    how = (f'set model.posemb_resample to {methods}' if evaluating
           else 'evaluate the checkpoint with --mode=eval and '
           f'model.posemb_resample={methods}')
    if not evaluating and not entry.needs_resample(eval_len, table_rows):
      how += ', or raise model.max_len'  # A longer table serves training.
    relation = 'is longer than' if eval_len > table_rows else 'does not fit'
    image = config.data.get('eval_image_size')
    what = (f'data.eval_seq_len={eval_len}' if image is None else
            f'data.eval_image_size={image} ({eval_len} tokens)')
    raise ValueError(f'{what} {relation} the learned table (model.max_len='
                     f'{table_rows}); {how}.')


def check_dataset(config: ml_collections.ConfigDict, dataset: data.Dataset, *,
                  evaluating: bool = False) -> None:
  """A loaded (or given) dataset against the config: its arrays, batch size,
  lengths and the memory its sizes need."""
  dataset.check()
  n = data.num_examples(dataset.train)
  if config.train.batch_size > n:
    raise ValueError(
        f'train.batch_size={config.train.batch_size} is larger than the '
        f'{n} training examples; valid: batch_size <= {n}.')
  check_lengths(config, dataset.seq_len, dataset.eval_seq_len,
                evaluating=evaluating)
  memory.check(config, dataset, evaluating=evaluating)


# Fields a resumed run may change. These keep it bit-identical to an
# uninterrupted run: how long it trains, how it logs, saves and caches, and
# the memory limit (checked in tests/reliability_test.py and
# tests/validate_test.py).
BIT_IDENTICAL_CHANGES = ('train.num_epochs', 'train.log_every_steps',
                         'train.checkpoint_every_steps',
                         'train.keep_checkpoints', 'data.cache_dir',
                         'train.memory_limit_gib',
                         # A file may move: its SHA-256 (data_sha256) is
                         # what is compared.
                         'data.path',
                         # Where buffers live; the same arithmetic.
                         'train.allocator', 'model.remat',
                         # An initialisation the checkpoint replaces.
                         'model.cls_init_std')
# Allowed with a warning: the same model and data, computed with other
# rounding, so the resumed run's numbers differ from an uninterrupted run's
# ('fused': eval loss 0.48244004 against 0.48243985; 'blocked' sums its
# softmax block by block).
CHANGES_WITH_WARNING = ('model.attention', 'model.attention_block_size')
RESUMABLE_CHANGES = BIT_IDENTICAL_CHANGES + CHANGES_WITH_WARNING
# (Not train.parallel: pmap folds the device index into the dropout key.)

# Fields in which `--mode=eval` may differ from the run that trained the
# checkpoint: what evaluation is for (the eval length or image size, how
# learned tables are resampled to it, how randomized positions are drawn,
# and rope's scaling where training ran unscaled: `check_eval`), what only
# changes how
# it runs (cache, allocator, memory limit, the batch size it evaluates in,
# the attention kernel, remat), and what only acts in training (the train.*
# fields below, dropout, the class token's init). Not train.optimizer: its
# state is part of the checkpoint restored; not seed or any other data.*
# field: other data; not model.posemb_randomized: it decides how the model
# was trained (posemb_randomized_eval chooses the eval protocol).
EVAL_CHANGES = ('data.eval_seq_len', 'model.posemb_resample',
                'data.eval_image_size',
                'data.cache_dir', 'data.path', 'train.allocator',
                'train.memory_limit_gib', 'train.batch_size',
                'model.attention', 'model.attention_block_size',
                'model.remat', 'train.num_epochs', 'train.learning_rate',
                'train.weight_decay', 'train.parallel',
                'train.log_every_steps', 'train.checkpoint_every_steps',
                'train.keep_checkpoints', 'model.dropout_rate',
                'model.attention_dropout_rate', 'model.cls_init_std',
                'model.posemb_randomized_eval',
                'model.posemb_randomized_eval_draws', 'model.rope_scaling')


def legacy_values(saved: dict[str, Any]) -> dict[str, Any]:
  """For a flat config.json written before a field existed: the value its
  run used where that differs from today's default (absent fields
  otherwise count as their defaults). Randomized runs were evaluated at
  0..L-1; class tokens started at zero."""
  legacy = {}
  if saved.get('model.posemb_randomized'):
    legacy['model.posemb_randomized_eval'] = 'fixed'
  if saved.get('model.pooling') == 'cls':
    legacy['model.cls_init_std'] = 0.0
  return legacy


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


def differences(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                data_sha256: str | None = None
                ) -> dict[str, tuple[Any, Any]]:
  """`{field: (in the workdir, now)}` for every field of `config` (and the
  data's fingerprint) that differs from the run in `workdir`'s config.json;
  empty where `workdir` holds no checkpoint. Reads only.

  Raises ValueError if there are checkpoints but no readable config.json.
  """
  ckpt_dir = pathlib.Path(workdir) / 'checkpoints'
  if not ckpt_dir.is_dir() or not any(
      p.name.isdigit() for p in ckpt_dir.iterdir()):
    return {}
  saved_path = pathlib.Path(workdir) / 'config.json'
  try:
    saved = _flat(json.loads(saved_path.read_text()))
  except (OSError, ValueError) as e:
    raise ValueError(
        f'{workdir} has checkpoints but no readable config.json ({e}), so '
        'the config they were trained with is unknown; restore it from a '
        'copy, or use a new --workdir.') from None
  now = _flat(run_record(config, data_sha256))
  # Fields added to posenc after the run was written count as their
  # defaults, which is what that run used.
  defaults = {**_flat(run_record(posenc_config.get_config())),
              **legacy_values(saved)}
  saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
  return {k: (saved.get(k, '<absent>'), now.get(k, '<absent>'))
          for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}


def _describe(changed: dict[str, tuple[Any, Any]]) -> str:
  return '; '.join(f'{k}: {was!r} in the workdir, {now!r} now'
                   for k, (was, now) in changed.items())


def check_resume(config: ml_collections.ConfigDict, workdir: pathlib.Path,
                 data_sha256: str | None = None
                 ) -> dict[str, tuple[Any, Any]]:
  """Raises ValueError if `workdir` holds checkpoints of another config.

  Compares with the `config.json` the run wrote; every differing field
  outside RESUMABLE_CHANGES is named (the data's fingerprint too). Logs a
  warning for each change in CHANGES_WITH_WARNING. Reads only. Returns the
  changes it accepts, `{field: (in the workdir, now)}`.
  """
  changed = differences(config, workdir, data_sha256)
  refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES}
  if refused:
    raise ValueError(
        f'{workdir} holds a run with another config, which cannot be resumed '
        f'with this one: {_describe(refused)}. Use a new --workdir, or the '
        'saved config (only these may change on resume: '
        f'{", ".join(RESUMABLE_CHANGES)}).')
  differ = {k: v for k, v in changed.items() if k in CHANGES_WITH_WARNING}
  if differ:
    logging.warning(
        'Resuming %s with %s: the same model, computed with other rounding, '
        'so results will differ from an uninterrupted run (not '
        'bit-identical; only %s keep it).', workdir, _describe(differ),
        ', '.join(BIT_IDENTICAL_CHANGES))
  return changed


def check_eval(config: ml_collections.ConfigDict, workdir: pathlib.Path,
               data_sha256: str | None = None) -> None:
  """Raises ValueError if `config` evaluates something other than what
  `workdir`'s checkpoints were trained on: every field that differs from
  its config.json outside EVAL_CHANGES is named (the data's fingerprint
  too). Reads only; nothing to check without checkpoints."""
  changed = differences(config, workdir, data_sha256)
  refused = {k: v for k, v in changed.items() if k not in EVAL_CHANGES}
  if 'model.rope_scaling' in changed and (
      config.model.rope_scaling_factor is not None):
    # A set factor scales at the training length too: another model.
    refused['model.rope_scaling'] = changed['model.rope_scaling']
  if refused:
    raise ValueError(
        f'{workdir} holds a run trained with another config, so this one '
        f'would evaluate something else: {_describe(refused)}. Evaluate '
        'with the saved config (its config.json), changing only: '
        f'{", ".join(EVAL_CHANGES)}.')
