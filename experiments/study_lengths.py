"""Study 3: do the encodings cope with lengths they were not trained on?

Trained on 'before' and 'sorted' with L/2..L steps (L = 8; 16,384
sequences, 10 epochs: in a calibration run the learned table scored 94%
and 97% at L, where L = 16 gave 93% and 86% even with 20 epochs), evaluated
on fresh sequences of exactly 1x to 8x L steps. Variants:

- learned, sliced (a table of 8L rows, rows past L never trained),
  resampled (L rows, interpolated linearly) and randomized (8L rows, sorted
  random positions in training; evaluated as the paper does: random sorted
  positions, averaged over draws);
- sinusoidal, plain and randomized;
- rope, evaluated without scaling and with each scaling method (one trained
  model, several evaluations);
- ALiBi symmetric and directional, relative (T5), FIRE, Kerple, none;
- the causal variants (pooling the last step) of learned (resampled),
  sinusoidal, rope, ALiBi, FIRE, Kerple and none.

Bidirectional models pool a class token. Each variant is tuned on its own
training config (`experiments.tuning`: the same grid for every encoding,
scored on the validation split, whose lengths are the training lengths),
then trains the reported seeds with the chosen point. With real data:
the vowels trained on utterances of at most 15 frames and tested on those
of 16 to 29 (learned sliced: `model.max_len=29`; each encoding with study
1's point on all the vowels, since this config's validation split holds
the long utterances it is tested on), and the digits on a grid
of patches read at 16 x 16 pixels (study 1's digits2d runs, whose records
carry it).
"""

import copy
import dataclasses

import numpy as np

from experiments import fit
from experiments import records as records_lib
from experiments import studies
from experiments import study_tasks
from experiments import tuning
from posenc import encodings as encodings_lib
from posenc.datasets import synthetic

STUDY = 'lengths'
# Beside records.LIBRARY:
CODE = ('experiments/study_lengths.py',)
TASKS = ('before', 'sorted')
VOWELS = ('learned', 'sinusoidal', 'rope', 'alibi', 'relative', 'none')


def variants(scale: studies.Scale) -> dict[str, tuple[str, dict, str]]:
  """Name -> (encoding, config.model overrides, resample method)."""
  longest = max(scale.length_evals)
  out = {
      'learned (slice)': ('learned', dict(max_len=longest), 'none'),
      'learned (resample)': ('learned', {}, 'linear'),
      'learned (randomized)': ('learned', dict(max_len=longest,
                                               posemb_randomized=True), 'none'),
      'sinusoidal': ('sinusoidal', {}, 'none'),
      'sinusoidal (randomized)': ('sinusoidal', dict(
          max_len=longest, posemb_randomized=True), 'none'),
  }
  for name in ('rope', 'alibi', 'alibi (directional)', 'relative', 'fire',
               'kerple', 'none'):
    out[name] = (name, {}, 'none')
  causal = dict(causal=True, pooling='last')
  for name in ('learned (resample)', 'sinusoidal', 'rope', 'alibi', 'fire',
               'kerple', 'none'):
    encoding, model, resample = out[name]
    out[f'{name}, causal'] = (encoding, {**model, **causal}, resample)
  return {k: v for k, v in out.items() if v[0] in scale.encodings}


def train_configs(scale: studies.Scale, encoding: str, model: dict) -> dict:
  configs = {}
  for task in TASKS:
    config = studies.base_config(scale, task, encoding, **model)
    config.data.update(seq_len=scale.length, min_seq_len=scale.length // 2,
                       num_train=scale.length_train)
    config.train.num_epochs = scale.length_epochs
    configs[task] = config
  return configs


def eval_split(config, seed: int, length: int, n: int):
  """n fresh sequences of exactly `length` steps (their own stream)."""
  data = copy.deepcopy(config.data)
  data.update(seq_len=length, min_seq_len=None)
  return synthetic.generate(data, np.random.default_rng([seed, 1000 + length]),
                            n, length)


def evaluations(run: fit.Run, encoding: str) -> dict[str, fit.Run]:
  """The run as evaluated: rope once per scaling method."""
  if encoding != 'rope':
    return {'': run}
  return {'' if method == 'none' else f' ({method})': dataclasses.replace(
      run, model=run.model.clone(config=dataclasses.replace(
          run.model.config, rope_scaling=method)))
          for method in encodings_lib.ROPE_SCALINGS}


def synthetic_unit(scale, progress, name, encoding, model, resample, point):
  configs = tuning.with_point(train_configs(scale, encoding, model), point)
  seeds = scale.seeds

  def compute():
    labels, member_configs, member_seeds = fit.members(configs, seeds)
    run = progress.train(name, member_configs, member_seeds)
    records = []
    for length in scale.length_evals:
      splits = [eval_split(c, s, length, scale.num_eval)
                for c, s in zip(member_configs, member_seeds)]
      for suffix, evaluated in evaluations(run, encoding).items():
        accuracy = fit.evaluate(evaluated, splits, resample=resample)
        for task, seed, a in zip(labels, member_seeds, accuracy['accuracy']):
          records.append({
              'kind': 'length', 'data': 'synthetic', 'variant': name + suffix,
              'encoding': encoding, 'causal': bool(model.get('causal')),
              'task': task, 'seed': seed, 'point': point,
              'train_len': scale.length, 'eval_len': length,
              'accuracy': float(a)})
    return records
  return records_lib.Unit(STUDY, name, studies.spec(
      configs, seeds, kind='length', resample=resample,
      evals=list(scale.length_evals)), compute)


def vowels_unit(scale, progress, encoding, point):
  """Vowels: trained on at most 15 frames, tested on 16 to 29."""
  model = dict(max_len=29) if encoding == 'learned' else {}
  config = studies.file_config('vowels', encoding, **model)
  config.data.update(seq_len=15, eval_seq_len=29)
  config.train.num_epochs = scale.vowels_epochs
  config = tuning.with_point({'vowels': config}, point)['vowels']
  label = f'{encoding} on vowels, 16-29 frames'

  def compute():
    run = progress.train(label, [config] * len(scale.seeds),
                         list(scale.seeds))
    records = []
    for split in ('eval', 'test'):
      batches = [getattr(ds, split) for ds in run.datasets]
      accuracy = fit.evaluate(run, batches)['accuracy']
      for seed, a in zip(scale.seeds, accuracy):
        records.append({'kind': 'length', 'data': 'vowels',
                        'variant': encoding, 'encoding': encoding,
                        'causal': False, 'task': 'vowels', 'seed': seed,
                        'point': point, 'split': split, 'train_len': 15,
                        'eval_len': '16-29', 'accuracy': float(a)})
    return records
  return records_lib.Unit(STUDY, label, studies.spec(
      {'vowels': config}, scale.seeds, kind='length'), compute)


def plan(scale: studies.Scale, store: records_lib.Store):
  """Each variant's tuning units, then its final unit; the vowels with
  study 1's tuning of them."""
  progress = studies.Progress(STUDY)
  for name, (encoding, model, resample) in variants(scale).items():
    units = tuning.tune_units(name, train_configs(scale, encoding, model),
                              encoding, scale, progress)
    yield from units
    point = tuning.choose(store, units)
    yield (tuning.waiting(STUDY, name) if point is None else synthetic_unit(
        scale, progress, name, encoding, model, resample, point))
  if not scale.real_data:
    return
  for encoding in VOWELS:
    if encoding not in scale.encodings:
      continue
    units = study_tasks.tune(scale, progress, 'vowels', encoding)
    yield from units
    point = tuning.choose(store, units)
    name = f'{encoding} on vowels'
    yield (tuning.waiting(STUDY, name) if point is None
           else vowels_unit(scale, progress, encoding, point))
