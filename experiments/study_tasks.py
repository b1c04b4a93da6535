"""Study 1: which encoding, on which task.

Every encoding (`studies.ENCODINGS`, ALiBi in both modes) on the synthetic
suite ('argmax'; 'before', 'sorted', 'marker'), short ListOps and, with
real data, MNIST-1D at one step per token, the digits read pixel by pixel
(64 tokens) and in 2 x 2 patches on a 4 x 4 grid (the 2-D encodings
beside learned, sinusoidal and none on the flattened grid; their test split
is also read at 16 x 16 pixels, for study 3), and the
JapaneseVowels utterances; MNIST-1D and the digits read pixel by pixel
also with one fixed permutation of their steps. Tasks trained
together (a group) share a model's shapes and their tuning point.

Each encoding is tuned on each group (`experiments.tuning`: the same grid
for all, the tuning seeds, the validation split); the reported seeds then
train with the chosen point and are scored on the validation and the test
split. Without positions the model cannot tell a sequence from its
permutation, so for 'none' the plain and shuffled scores differ by float
rounding only: their paired difference is the measured noise floor.

Study 4 rides along: for 'learned', each record says how far training
moved the table and summarises the trained table and the change
(`table_records`); the first seed's tables are kept for the figure.
"""

import ml_collections
import numpy as np

from experiments import analysis
from experiments import fit
from experiments import records as records_lib
from experiments import studies
from experiments import tuning
from posenc import data
from posenc.datasets import base as data_base
from posenc.datasets import digits
from posenc.datasets import mnist1d
from posenc.datasets import synthetic

STUDY = 'tasks'
# Beside records.LIBRARY:
CODE = ('experiments/study_tasks.py', 'experiments/analysis.py')


def groups(scale: studies.Scale) -> dict:
  """Group name -> (its encodings, encoding -> {task: config})."""
  one_d = scale.encodings
  out = {
      'argmax': (one_d, lambda e: {
          'argmax': studies.base_config(scale, 'argmax', e)}),
      'before, sorted, marker': (one_d, lambda e: {
          t: studies.base_config(scale, t, e)
          for t in ('before', 'sorted', 'marker')}),
      'listops': (one_d, lambda e: {
          'listops': studies.listops_config(scale, e)}),
  }
  if not scale.real_data:
    return out
  out['mnist1d'] = (one_d, lambda e: {
      name: studies.mnist_config(scale, name, e)
      for name in ('mnist1d', 'mnist1d_shuffled')})

  def digits(e):
    plain = studies.file_config('digits', e)
    plain.train.num_epochs = scale.digits_epochs
    shuffled = plain.copy_and_resolve_references()
    shuffled.data.name = 'digits_shuffled'
    return {'digits': plain, 'digits_shuffled': shuffled}
  out['digits'] = (one_d, digits)

  def digits2d(e):
    config = studies.file_config('digits2d', e)
    config.train.num_epochs = scale.digits_epochs
    return {'digits2d': config}
  if scale.grid_encodings:
    out['digits2d'] = (scale.grid_encodings, digits2d)

  def vowels(e):
    config = studies.file_config('vowels', e)
    config.train.num_epochs = scale.vowels_epochs
    return {'vowels': config}
  out['vowels'] = (one_d, vowels)
  return out


def tune(scale: studies.Scale, progress: studies.Progress, group: str,
         encoding: str) -> list[records_lib.Unit]:
  configs = groups(scale)[group][1](encoding)
  return tuning.tune_units(f'{encoding} on {group}', configs, encoding,
                           scale, progress)


def _table(params) -> np.ndarray:
  return np.asarray(params['posemb_learned']['pos_embedding'][0], np.float64)


def signal_order(config) -> np.ndarray | None:
  """For a shuffled dataset, its rows in the signal's order (token j holds
  step permutation[j], so step k is row argsort(permutation)[k])."""
  if config.data.name == 'mnist1d_shuffled':
    return np.argsort(mnist1d.permutation(config.data, config.data.seed))
  if config.data.name == 'digits_shuffled':
    return np.argsort(digits.raw()['permutation'])
  return None


def table_records(run: fit.Run, start: fit.Run, i: int, config,
                  keep: bool) -> dict:
  """Study 4, for member i: how far training moved the learned table
  ('moved': relative to its initial norm) and summaries of the trained
  table and of the change (`analysis.summarise`), in token order and, for
  shuffled data, in the signal's order; the tables themselves if `keep`."""
  trained, initial = _table(run.member_params(i)), _table(
      start.member_params(i))
  out = {'moved': float(np.linalg.norm(trained - initial)
                        / np.linalg.norm(initial))}
  orders = {'': None, 'signal_': signal_order(config)}
  for prefix, rows in orders.items():
    if prefix and rows is None:
      continue
    pick = (lambda t: t) if rows is None else (lambda t, r=rows: t[r])
    out[prefix + 'table'] = analysis.summarise(pick(trained))
    out[prefix + 'change'] = analysis.summarise(pick(trained - initial))
  if keep:
    out['tables'] = {'trained': np.round(trained, 4).tolist(),
                     'initial': np.round(initial, 4).tolist()}
  return out


def test_split(config: ml_collections.ConfigDict, seed: int,
               dataset: data.Dataset) -> data.Batch:
  """The dataset's test split; a synthetic task (which has none) gets one
  from its own test stream, as long as its validation split."""
  if dataset.test is not None:
    return dataset.test
  rng = data_base.get(config.data.name).split_rngs(
      config.data.name, seed if config.data.seed is None
      else config.data.seed)[2]
  return synthetic.generate(config.data, rng, config.data.num_eval,
                            dataset.eval['inputs'].shape[1])


# digits2d's test split at 16 x 16 pixels (an 8 x 8 grid of patches): how
# each encoding's tables are resampled ('none': it needs no table).
RESAMPLE_16 = {'learned2d': ('bilinear', 'bicubic'), 'learned': ('linear',)}


def larger_images(run: fit.Run, configs, seeds, encoding: str) -> dict:
  """Test accuracy (members,) at 16 x 16 pixels, by resample method."""
  splits = []
  for config, seed in zip(configs, seeds):
    bigger = config.copy_and_resolve_references()
    bigger.data.eval_image_size = 16
    splits.append(data.load(bigger.data, seed).test)
  return {method: fit.evaluate(run, splits, resample=method)['accuracy']
          for method in RESAMPLE_16.get(encoding, ('none',))}


def final_unit(scale, progress, group, encoding, point) -> records_lib.Unit:
  configs = tuning.with_point(groups(scale)[group][1](encoding), point)
  label = f'{encoding} on {group}'

  def compute():
    names, member_configs, seeds = fit.members(configs, scale.seeds)
    run = progress.train(label, member_configs, seeds)
    validation = fit.evaluate(run, [ds.eval for ds in run.datasets])
    test = fit.evaluate(run, [test_split(c, s, ds) for c, s, ds in
                              zip(member_configs, seeds, run.datasets)])
    start = fit.untrained(run) if encoding == 'learned' else None
    bigger = (larger_images(run, member_configs, seeds, encoding)
              if group == 'digits2d' else {})
    return [{'kind': 'task', 'group': group, 'task': name,
             'encoding': encoding, 'seed': seed, 'point': point,
             'validation_accuracy': float(validation['accuracy'][i]),
             'test_accuracy': float(test['accuracy'][i]),
             'train_loss': float(run.epoch_loss[-1, i]),
             **({'test_accuracy_16x16': {m: float(a[i])
                                         for m, a in bigger.items()}}
                if bigger else {}),
             **(table_records(run, start, i, member_configs[i],
                              keep=seed == seeds[0]) if start else {})}
            for i, (name, seed) in enumerate(zip(names, seeds))]
  return records_lib.Unit(STUDY, label, studies.spec(
      configs, scale.seeds, kind='task'), compute)


def plan(scale: studies.Scale, store: records_lib.Store):
  progress = studies.Progress(STUDY)
  for group, (encodings, _) in groups(scale).items():
    for encoding in encodings:
      units = tune(scale, progress, group, encoding)
      yield from units
      point = tuning.choose(store, units)
      yield (tuning.waiting(STUDY, f'{encoding} on {group}') if point is None
             else final_unit(scale, progress, group, encoding, point))
