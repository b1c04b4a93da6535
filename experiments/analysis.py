"""The studies' numpy-only pieces: what figures and tables share, without
JAX (`experiments.figures` draws from records and tables alone)."""

from typing import Any

import numpy as np

BINARY_TASKS = ('before', 'sorted', 'marker')  # Two classes at any length.


def cosine_similarity(table: np.ndarray) -> np.ndarray:
  """Rows' pairwise cosines (0 where a row is all zeros)."""
  norm = np.linalg.norm(table, axis=1, keepdims=True)
  unit = table / np.where(norm > 0, norm, 1)
  return unit @ unit.T


def principal_components(table: np.ndarray, k: int = 3
                         ) -> tuple[np.ndarray, np.ndarray]:
  """The rows' coordinates on the first k components, and the fraction of
  variance each explains."""
  centred = table - table.mean(0)
  u, s, _ = np.linalg.svd(centred, full_matrices=False)
  total = (s**2).sum()
  return u[:, :k] * s[:k], (s**2 / (total if total > 0 else 1))[:k]


def summarise(table: np.ndarray) -> dict[str, Any]:
  """Mean cosine similarity of neighbouring rows and of rows at least half
  the table apart; variance explained by the first 3 components."""
  sim = cosine_similarity(table)
  n = len(table)
  offsets = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
  _, explained = principal_components(table)
  return {'neighbour_cosine': float(sim[offsets == 1].mean()),
          'far_cosine': float(sim[offsets >= n // 2].mean()),
          'explained_variance_3': [float(x) for x in explained]}
