"""Evaluates a trained checkpoint, also at lengths it was not trained on."""

import dataclasses
import json
import pathlib
from typing import Any

import flax
import jax
import ml_collections
from absl import logging

from posenc import checkpoints
from posenc import checks
from posenc import data
from posenc import encodings
from posenc import metrics as metrics_lib
from posenc import models
from posenc import parallel
from posenc import randomized
from posenc import train
from posenc import validate
from posenc import workdir as workdir_lib


def resample_tables(params: Any, new_len: int, method: str,
                    posemb: str) -> Any:
  """Resamples every learned position table ('pos_embedding') in `params`
  as the encoding `posemb` resamples its tables (1-D or on a grid)."""
  entry = encodings.get(posemb)
  flat = flax.traverse_util.flatten_dict(params)
  flat = {path: (entry.resample(value, new_len, method)
                 if path[-1] == 'pos_embedding' else value)
          for path, value in flat.items()}
  return flax.traverse_util.unflatten_dict(flat)


def for_length(model: models.EncoderClassifier, params: Any, length: int,
               method: str, *, stacked: bool = False
               ) -> tuple[models.EncoderClassifier, Any, bool]:
  """The model and parameters for inputs of `length` steps:
  `(model, params, resampled)`.

  Where the encoding has a learned table (`Encoding.has_table`) that does
  not serve `length` steps (fewer rows; for a grid, another grid), the
  tables are resampled with `method` (one of the encoding's
  `resample_methods`; 'none' is then an error) and the model's `max_len`
  follows.
  `stacked`: `params` carry a leading axis (several members), resampled
  each.
  """
  rows = model.config.max_len
  entry = encodings.get(model.config.posemb)
  if not entry.has_table or not entry.needs_resample(rows, length):
    return model, params, False
  if method not in entry.resample_methods:
    raise ValueError(
        f'evaluating at length {length} needs the {rows}-row table of '
        f'{entry.name} resampled; valid: model.posemb_resample='
        f'{" or ".join(map(repr, entry.resample_methods))}.')
  resample = lambda p: resample_tables(p, length, method, entry.name)
  params = jax.vmap(resample)(params) if stacked else resample(params)
  model = model.clone(config=dataclasses.replace(model.config, max_len=length))
  return model, params, True


@workdir_lib.releasing
def evaluate_checkpoint(config: ml_collections.ConfigDict,
                        workdir: str | pathlib.Path) -> dict[str, Any]:
  """Evaluates the newest intact checkpoint in `workdir` on `config`'s eval
  split.

  The eval split has `data.eval_seq_len` steps. Where that is longer than a
  learned table, the table is resampled with `model.posemb_resample`.
  Appends the result to `workdir/eval.jsonl` (logged first, so a failed
  write loses nothing) and returns it. Locks `workdir` (`workdir.Busy`).
  """
  workdir = pathlib.Path(workdir)
  with checks.config_errors():
    validate.check_config(config, jax.device_count(), evaluating=True)
    # The trained run's config: refuses other models and data by name.
    validate.check_eval(config, workdir, data.fingerprint(config))
    dataset = data.load(config.data, config.seed)
    validate.check_dataset(config, dataset, evaluating=True)
  model = train.make_model(config, dataset)
  target = train.create_train_state(jax.random.key(config.seed), config, model,
                                    dataset.example_inputs())
  workdir_lib.acquire(workdir, read_only_ok=True)  # Until this returns.
  restored = checkpoints.restore_latest(workdir, target, read_only=True)
  if restored is None:
    raise FileNotFoundError(
        f'no intact checkpoint in {checkpoints.directory(workdir)}; train '
        'with the same --workdir first.')
  state, _ = restored
  eval_len = dataset.eval_seq_len
  model, params, resampled = for_length(model, state.params, eval_len,
                                        config.model.posemb_resample)
  eval_fn, place_batch = train.make_eval(model.apply)
  splits = randomized.eval_splits(model.config, dataset.eval, config.seed,
                                  'eval')
  metrics = randomized.evaluate(
      lambda split: parallel.evaluate(eval_fn, place_batch, params, split,
                                      config.train.batch_size), splits)
  record = {'step': int(state.step), 'eval_seq_len': eval_len,
            'train_seq_len': dataset.seq_len,
            'posemb_resample': config.model.posemb_resample if resampled
                               else 'none', **metrics}
  if model.config.posemb_randomized:
    record['posemb_randomized_eval'] = model.config.posemb_randomized_eval
    record['randomized_eval_draws'] = len(splits)
  logging.info('Evaluated step %d at length %d (trained at %d, resample %s): '
               'eval_accuracy=%.4f eval_loss=%.4f; as a line of eval.jsonl: '
               '%s', record['step'], eval_len, dataset.seq_len,
               record['posemb_resample'], metrics['eval_accuracy'],
               metrics['eval_loss'], json.dumps(record))
  if jax.process_index() == 0:
    metrics_lib.append(workdir / 'eval.jsonl', record)
  return record
