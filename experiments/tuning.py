"""Tuning, the same for every encoding: its own study, 'tuning'.

Every encoding gets the same grid of learning rates; the tables
('learned', 'learned_every_layer', 'learned2d') also the grid of initial
scales. Each point trains on the tuning seeds (not the reported ones) and is
scored on the validation split ('eval'); the point with the best mean
validation accuracy is kept and recorded in the final units' specs. The
reported seeds then train once with it, and the test split is read once,
after training. A point whose training diverges is recorded as such and
never chosen.
"""

import copy

import ml_collections
import numpy as np

from experiments import fit
from experiments import records as records_lib
from experiments import studies

STUDY = 'tuning'
CODE = ('experiments/tuning.py',)  # Beside records.LIBRARY.
Unit = records_lib.Unit


def grid(scale: studies.Scale, encoding: str) -> list[dict]:
  """The tuning points of `encoding`: learning rates, and for tables
  initial scales too."""
  stds = scale.table_init_stds if encoding in studies.TABLES else (None,)
  return [{'learning_rate': lr, **({'posemb_init_std': s} if s else {})}
          for lr in scale.learning_rates for s in stds]


def with_point(configs: dict[str, ml_collections.ConfigDict], point: dict
               ) -> dict[str, ml_collections.ConfigDict]:
  out = {}
  for name, config in configs.items():
    config = copy.deepcopy(config)
    config.train.learning_rate = point['learning_rate']
    if 'posemb_init_std' in point:
      config.model.posemb_init_std = point['posemb_init_std']
    out[name] = config
  return out


def tune_units(label: str, configs, encoding: str, scale: studies.Scale,
               progress: studies.Progress) -> list[Unit]:
  """One unit per grid point: the tuning seeds trained and scored on the
  validation split (or recorded as diverged)."""
  units = []
  for point in grid(scale, encoding):
    point_configs = with_point(configs, point)

    def compute(point=point, point_configs=point_configs):
      names, member_configs, seeds = fit.members(point_configs,
                                                 scale.tune_seeds)
      try:
        run = progress.train(f'{label}, tuning {point}', member_configs,
                             seeds)
      except FloatingPointError as e:
        print(f'\n{label}, tuning {point}: diverged ({e})', flush=True)
        return [{'kind': 'tune', 'label': label, 'task': name, 'seed': seed,
                 'point': point, 'diverged': True,
                 'validation_accuracy': None}
                for name, seed in zip(names, seeds)]
      accuracy = fit.evaluate(run, [ds.eval for ds in run.datasets])
      return [{'kind': 'tune', 'label': label, 'task': name, 'seed': seed,
               'point': point, 'validation_accuracy': float(a)}
              for name, seed, a in zip(names, seeds, accuracy['accuracy'])]
    units.append(Unit(STUDY, f'{label}, tuning {point}',
                      studies.spec(point_configs, scale.tune_seeds,
                                   kind='tune'), compute))
  return units


def choose(store: records_lib.Store, units: list[Unit]) -> dict | None:
  """The point of the best mean validation accuracy over the tuning
  units' records (the first in grid order on a tie; diverged points never);
  None until every unit is recorded."""
  best, best_score = None, -np.inf
  for unit in units:
    found = store.records(unit)
    if not found:
      return None
    if any(r.get('diverged') for r in found):
      continue
    score = float(np.mean([r['validation_accuracy'] for r in found]))
    if score > best_score:
      best, best_score = found[0]['point'], score
  return best


def waiting(study: str, label: str) -> Unit:
  """A placeholder for a unit whose tuning is not recorded yet."""
  def compute():
    raise RuntimeError(f'{label}: its tuning is not recorded yet.')
  return Unit(study, f'{label} (after its tuning)', {'waiting': label},
              compute, ready=False)
