"""Means with 95% intervals over seeds, and paired differences.

Seeds are the unit of replication: each seed draws the initialisation, the
batch order and (for generated tasks) the data. An interval is Student's t
over the per-seed values; a difference between two settings is taken seed
by seed over the seeds both have (`paired`), which removes what the seed
shares between them. Several differences read together are marked with
Holm's correction (`holm`).
"""

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Interval:
  """A mean and its 95% confidence interval over n values."""

  mean: float
  low: float
  high: float
  n: int
  p: float = math.nan  # Two-sided t test of mean 0.

  @property
  def half_width(self) -> float:
    return (self.high - self.low) / 2

  def excludes_zero(self) -> bool:
    return self.n > 1 and (self.low > 0 or self.high < 0)

  def format(self, scale: float = 100.0, digits: int = 1) -> str:
    """'m ± h' (h: the interval's half-width), or 'm' for one value."""
    if self.n == 1 or math.isnan(self.half_width):
      return f'{self.mean * scale:.{digits}f}'
    return (f'{self.mean * scale:.{digits}f} ± '
            f'{self.half_width * scale:.{digits}f}')


def interval(values, level: float = 0.95) -> Interval:
  """Mean and t interval of `values` (one per seed)."""
  x = np.asarray(list(values), dtype=np.float64)
  if x.size == 0:
    raise ValueError('interval of no values.')
  mean = float(x.mean())
  if x.size == 1:
    return Interval(mean, math.nan, math.nan, 1)
  sem = float(x.std(ddof=1) / math.sqrt(x.size))
  half = float(stats.t.ppf(0.5 + level / 2, x.size - 1)) * sem
  p = (float(2 * stats.t.sf(abs(mean) / sem, x.size - 1)) if sem > 0
       else float(mean == 0))
  return Interval(mean, mean - half, mean + half, int(x.size), p)


def holm(p_values: list[float], alpha: float = 0.05) -> list[bool]:
  """Which of several tests reject at family-wise level `alpha` (Holm's
  step-down: the k-th smallest p against alpha / (m - k)); NaN never."""
  order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
  reject = [False] * len(p_values)
  for k, (p, i) in enumerate(order):
    if p > alpha / (len(order) - k):
      break
    reject[i] = True
  return reject


def kappa(accuracy: float, chance: float) -> float:
  """Accuracy above chance, as a share of what lies above it (Cohen)."""
  return (accuracy - chance) / (1 - chance)


def paired(a: dict, b: dict, level: float = 0.95) -> Interval:
  """The interval of a[seed] - b[seed] over the seeds both have."""
  shared = sorted(set(a) & set(b))
  if not shared:
    raise ValueError(f'no shared seeds: {sorted(a)} and {sorted(b)}.')
  return interval([a[s] - b[s] for s in shared], level)


def by_seed(records, value: str, **where) -> dict:
  """{seed: record[value]} over the records matching every `where` field."""
  out = {}
  for r in records:
    if all(r.get(k) == v for k, v in where.items()):
      if r['seed'] in out:
        raise ValueError(f'two records for seed {r["seed"]} where {where}.')
      out[r['seed']] = r[value]
  return out
