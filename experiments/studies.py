"""The studies behind posenc's research questions; each returns JSON records.

1. `tasks`: every encoding on the synthetic suite, ListOps (short band) and
   MNIST-1D (patches of 1 and 4 steps, plain and shuffled).
2. `depth`: linear probes for absolute position on every layer, 2/4/8 blocks.
3. `lengths`: train on lengths <= L, evaluate at L, 2L, 4L.
4. `tables` (experiments/tables.py): what the learned tables of study 1
   look like, and what training changed in them.
5. `cost` (experiments/cost.py): step time and memory against length.

Sizes come from a `Scale` (FULL or QUICK). Every record names its study,
setting and seed; tables and figures are built from records only.
"""

import copy
import dataclasses
import time
from typing import Any

import ml_collections
import numpy as np

from configs import mnist1d as mnist1d_config
from experiments import analysis
from experiments import fit
from posenc import config as default
from posenc import encodings
from posenc.datasets import mnist1d
from posenc.datasets import synthetic

Record = dict[str, Any]
ENCODINGS = encodings.sequence_names()  # The studies' tasks are 1-D.


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big each study is."""

  seeds: tuple[int, ...] = (0, 1, 2)
  encodings: tuple[str, ...] = ENCODINGS
  epochs: int = 5  # Synthetic suite and ListOps (the seed setup's 5).
  synthetic_train: int = 8192  # Study 1's synthetic training sequences.
  num_eval: int = 2048  # Held-out sequences (synthetic, ListOps).
  listops_train: int = 4096
  listops_len: int = 32  # Band [listops_len / 4, listops_len] tokens.
  mnist_train: int = 3600  # Of 4,000; the last 400 are validation.
  mnist_epochs: int = 6
  mnist_patches: tuple[int, ...] = (1, 4)  # Steps per token.
  tuned_mnist: bool = True  # Also configs/mnist1d.py as tuned.
  depths: tuple[int, ...] = (2, 4, 8)
  depth_train: int = 2048
  probe_sequences: int = 1024  # Per split, for the probes.
  length: int = 16  # Study 3's L.
  length_train: int = 4096
  cost_lengths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
  cost_estimate_lengths: tuple[int, ...] = (4096, 8192, 16384)  # Compile only.
  cost_batch: int = 8
  cost_encodings: tuple[str, ...] | None = None  # None: `encodings`.


FULL = Scale()
QUICK = Scale(seeds=(0,), encodings=('learned',),
              epochs=1, synthetic_train=256, num_eval=128, listops_train=256,
              mnist_train=256, mnist_epochs=1, mnist_patches=(1,),
              tuned_mnist=False, depths=(2,), depth_train=256,
              probe_sequences=64, length=10, length_train=256,
              cost_lengths=(32,),
              cost_estimate_lengths=(64,), cost_batch=2,
              cost_encodings=('learned',))


class Progress:
  """One line per training run, with its epochs as they finish."""

  def __init__(self, study: str, total: int):
    self.study, self.total, self.done = study, total, 0
    self.start = time.perf_counter()

  def train(self, label: str, configs: list[ml_collections.ConfigDict],
            seeds: list[int]) -> fit.Run:
    self.done += 1
    head = f'[{self.study} {self.done}/{self.total}] {label}'
    epochs = configs[0].train.num_epochs

    def on_epoch(epoch: int, losses: np.ndarray) -> None:
      print(f'\r{head}: epoch {epoch}/{epochs}, train loss '
            f'{losses.mean():.3f}', end='', flush=True)
    run = fit.train(configs, seeds, on_epoch=on_epoch)
    print(f'\r{head}: {len(seeds)} runs in {run.train_seconds:.0f}s '
          f'(study {time.perf_counter() - self.start:.0f}s)', flush=True)
    return run


def task_config(scale: Scale, task: str, posemb: str,
                **model: Any) -> ml_collections.ConfigDict:
  """The base config for `task` with encoding `posemb` at `scale`'s sizes;
  `model`: further config.model overrides."""
  config = default.get_config()
  config.data.name = task
  config.data.num_train = scale.synthetic_train
  config.data.num_eval = scale.num_eval
  config.train.num_epochs = scale.epochs
  config.model.posemb = posemb
  config.model.update(model)
  return config


def listops_config(scale: Scale, posemb: str) -> ml_collections.ConfigDict:
  """ListOps in the short band, pooled through a class token."""
  config = task_config(scale, 'listops', posemb, pooling='cls')
  config.data.seq_len = scale.listops_len
  config.data.min_seq_len = scale.listops_len // 4
  config.data.listops_max_depth = 3
  config.data.num_train = scale.listops_train
  return config


def mnist_config(scale: Scale, name: str, patch: int,
                 posemb: str) -> ml_collections.ConfigDict:
  """MNIST-1D `name` ('mnist1d' or 'mnist1d_shuffled') in tokens of
  `patch` steps, on configs/mnist1d.py's fixed data seed."""
  config = task_config(scale, name, posemb)
  config.data.update(seed=mnist1d_config.get_config().data.seed,
                     patch_size=patch, seq_len=40 // patch,
                     num_train=scale.mnist_train, num_eval=400)
  config.train.update(num_epochs=scale.mnist_epochs, batch_size=64)
  return config


def _members(configs: dict[str, ml_collections.ConfigDict], seeds):
  """(labels, configs, seeds): every config once per seed."""
  items = [(label, config, seed) for label, config in configs.items()
           for seed in seeds]
  return ([i[0] for i in items], [i[1] for i in items],
          [i[2] for i in items])


def _learned_table(run: fit.Run, i: int) -> np.ndarray | None:
  params = run.member_params(i)
  if 'posemb_learned' not in params:
    return None
  return np.asarray(params['posemb_learned']['pos_embedding'][0])


def tasks(scale: Scale) -> tuple[list[Record], dict[str, np.ndarray]]:
  """Study 1. Returns records and the learned tables (for study 4), keyed
  'task/seed'."""
  groups = {  # Tasks trained together share the model's shapes.
      'argmax': lambda e: {'argmax': task_config(scale, 'argmax', e)},
      'before, sorted, marker': lambda e: {
          t: task_config(scale, t, e) for t in analysis.BINARY_TASKS},
      'listops': lambda e: {'listops': listops_config(scale, e)},
  }
  for patch in scale.mnist_patches:
    groups[f'mnist1d, patch {patch}'] = lambda e, p=patch: {
        f'{name} p{p}': mnist_config(scale, name, p, e)
        for name in mnist1d.SOURCE.names}
  progress = Progress('tasks', len(groups) * len(scale.encodings)
                      + scale.tuned_mnist)
  records, tables = [], {}
  runs = [(group, posemb, build(posemb)) for group, build in groups.items()
          for posemb in scale.encodings]
  if scale.tuned_mnist:
    tuned = mnist1d_config.get_config()
    runs.append(('mnist1d tuned', tuned.model.posemb,
                 {'mnist1d p4 tuned': tuned}))
  for group, posemb, configs in runs:
    labels, member_configs, seeds = _members(configs, scale.seeds)
    run = progress.train(f'{posemb} on {group}', member_configs, seeds)
    splits = {'eval': [ds.eval for ds in run.datasets]}
    if run.datasets[0].test is not None:
      splits['test'] = [ds.test for ds in run.datasets]
    results = {split: fit.evaluate(run, batches)
               for split, batches in splits.items()}
    for i, (label, seed) in enumerate(zip(labels, seeds)):
      records.append({
          'study': 'tasks', 'task': label, 'encoding': posemb, 'seed': seed,
          **{f'{split}_accuracy': float(r['accuracy'][i])
             for split, r in results.items()},
          'train_seconds': run.train_seconds / len(seeds)})
      table = _learned_table(run, i)
      if table is not None and posemb == 'learned':
        tables[f'{label}/{seed}'] = table
  return records, tables


def ridge_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                test_y: np.ndarray, num_classes: int,
                l2: float = 1.0) -> float:
  """Accuracy of a closed-form ridge regression onto one-hot labels, fitted
  on (train_x, train_y), on (test_x, test_y). Features are standardised
  with the training statistics."""
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  design = lambda x: np.concatenate(
      [(x - mean) / std, np.ones((len(x), 1), x.dtype)], axis=1)
  a = design(train_x).astype(np.float64)
  targets = np.eye(num_classes)[train_y]
  weights = np.linalg.solve(a.T @ a + l2 * np.eye(a.shape[1]), a.T @ targets)
  predicted = (design(test_x).astype(np.float64) @ weights).argmax(1)
  return float((predicted == test_y).mean())


def depth(scale: Scale) -> list[Record]:
  """Study 2: probes for each token's absolute position, every layer."""
  progress = Progress('depth', len(scale.depths) * len(scale.encodings))
  records = []
  n = scale.probe_sequences
  for num_layers in scale.depths:
    for posemb in scale.encodings:
      config = task_config(scale, 'argmax', posemb, num_layers=num_layers)
      config.data.num_train = scale.depth_train
      seeds = list(scale.seeds)
      run = progress.train(f'{posemb}, {num_layers} blocks', [config] *
                           len(seeds), seeds)
      accuracy = fit.evaluate(run, [ds.eval for ds in run.datasets])
      hidden = {split: fit.hidden_states(run, np.stack(
          [getattr(ds, split)['inputs'][:n] for ds in run.datasets]))
                for split in ('train', 'eval')}
      seq_len = config.data.seq_len
      positions = np.tile(np.arange(seq_len), n)
      for i, seed in enumerate(seeds):
        for layer in range(num_layers + 1):
          flat = {s: h[i, layer].reshape(n * seq_len, -1)
                  for s, h in hidden.items()}
          records.append({
              'study': 'depth', 'encoding': posemb, 'depth': num_layers,
              'layer': layer, 'seed': seed,
              'probe_accuracy': ridge_probe(flat['train'], positions,
                                            flat['eval'], positions, seq_len),
              'task_accuracy': float(accuracy['accuracy'][i])})
  return records


def length_variants(scale: Scale) -> dict[str, tuple[dict[str, Any], str]]:
  """Study 3's variants: name -> (model overrides, resample method)."""
  longest = 4 * scale.length
  variants = {
      'learned (slice)': (dict(posemb='learned', max_len=longest), 'none'),
      'learned (resample)': (dict(posemb='learned'), 'linear'),
      'learned (randomized)': (dict(posemb='learned', max_len=longest,
                                    posemb_randomized=True), 'none'),
      'sinusoidal': (dict(posemb='sinusoidal'), 'none'),
      'sinusoidal (randomized)': (dict(posemb='sinusoidal', max_len=longest,
                                       posemb_randomized=True), 'none'),
  }
  for posemb in ('rope', 'alibi', 'relative', 'none'):
    variants[posemb] = (dict(posemb=posemb), 'none')
  if scale.encodings != ENCODINGS:  # Quick: the variants of its encodings.
    variants = {k: v for k, v in variants.items()
                if v[0]['posemb'] in scale.encodings}
  return variants


def lengths(scale: Scale) -> list[Record]:
  """Study 3: trained on lengths L/2..L, evaluated at L, 2L and 4L."""
  variants = length_variants(scale)
  progress = Progress('lengths', len(variants))
  records = []
  length = scale.length
  for name, (model, resample) in variants.items():
    configs = {}
    for task in analysis.BINARY_TASKS:
      config = task_config(scale, task, **model)
      config.data.update(seq_len=length, min_seq_len=length // 2,
                         num_train=scale.length_train)
      configs[task] = config
    labels, member_configs, seeds = _members(configs, scale.seeds)
    run = progress.train(name, member_configs, seeds)
    for eval_len in (length, 2 * length, 4 * length):
      splits = []
      for config, seed in zip(member_configs, seeds):
        eval_data = copy.deepcopy(config.data)
        eval_data.update(seq_len=eval_len, min_seq_len=None)
        rng = np.random.default_rng([seed, 1000 + eval_len])
        splits.append(synthetic.generate(eval_data, rng, scale.num_eval,
                                         eval_len))
      accuracy = fit.evaluate(run, splits, resample=resample)['accuracy']
      for i, (task, seed) in enumerate(zip(labels, seeds)):
        records.append({'study': 'lengths', 'variant': name, 'task': task,
                        'seed': seed, 'train_len': length,
                        'eval_len': eval_len,
                        'accuracy': float(accuracy[i])})
  return records
