"""Randomized positions at evaluation: the protocol of Ruoss et al. (2023).

A model trained with `model.posemb_randomized` sees a sorted random subset of
`0..max_len-1` for each training sequence. Their code samples positions the
same way at test time, so with `model.posemb_randomized_eval='random'` (the
default) an eval split is evaluated `model.posemb_randomized_eval_draws`
times, each with its own positions, and the metrics are averaged over the
draws; `'fixed'` evaluates once at `0..L-1`.

The draws depend only on the run's seed, the split's name and the example's
index (in chunks of `CHUNK` examples), not on the batch size or the devices,
so a rerun, a resumed run and `--mode=eval` report the same numbers.
"""

import zlib
from typing import Any, Callable

import numpy as np

CHUNK = 256  # Examples drawn from one key.
_STREAM = 0x5EED  # Folded into the run's key: the eval draws' own stream.


def is_random(model_config: Any) -> bool:
  """Whether evaluation draws positions (`model_config`: `ModelConfig` or
  the `config.model` group)."""
  return (model_config.posemb_randomized and
          model_config.posemb_randomized_eval == 'random')


def positions_for_lengths(noise_NxM: np.ndarray, lengths_N: np.ndarray,
                          seq_len: int) -> np.ndarray:
  """The first `lengths_N[n]` entries of row n: the positions of the
  `lengths_N[n]` smallest noise values, sorted (a uniformly drawn sorted
  subset of `0..M-1`); padded steps get other positions below M. NumPy's
  twin of `posenc.encodings.random_positions`."""
  rank_NxM = np.argsort(np.argsort(noise_NxM, axis=-1), axis=-1)
  chosen_NxM = rank_NxM < np.asarray(lengths_N)[:, None]
  return np.argsort(~chosen_NxM, axis=-1, kind='stable')[:, :seq_len].astype(
      np.int32)


def draw(seed: int, name: str, index: int, lengths_N: np.ndarray,
         seq_len: int, max_len: int) -> np.ndarray:
  """Draw `index` of the positions for a split named `name` whose
  sequences have real lengths `lengths_N` (padded to `seq_len`): `(N, L)`
  int32, each row a sorted random subset of `0..max_len-1` of its length.
  Drawn on the host from NumPy's Philox generator, seeded by (seed, name,
  index, chunk): the same numbers for any batch size, device count, process
  count or JAX version."""
  if seq_len > max_len:
    raise ValueError(
        f'randomized positions at evaluation draw {seq_len} of the '
        f'positions 0..{max_len - 1}; valid: an eval length <= model.max_len '
        f"({max_len}), or model.posemb_randomized_eval='fixed'.")
  name_id = zlib.crc32(name.encode())
  chunks = []
  for c, start in enumerate(range(0, len(lengths_N), CHUNK)):
    lengths = np.asarray(lengths_N[start:start + CHUNK], np.int64)
    rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(
        [seed, _STREAM, name_id, index, c])))
    chunks.append(positions_for_lengths(
        rng.random((len(lengths), max_len)), lengths, seq_len))
  return np.concatenate(chunks) if chunks else np.zeros((0, seq_len),
                                                         np.int32)


def eval_splits(model_config: Any, split: dict[str, np.ndarray], seed: int,
                name: str) -> list[dict[str, np.ndarray]]:
  """The splits evaluation averages over: `[split]`, or under the random
  protocol one copy per draw with its 'positions' `(N, L)` added.
  `model_config.max_len` must be set (the table's rows)."""
  if not is_random(model_config):
    return [split]
  n, seq_len = split['labels'].shape[0], split['inputs'].shape[1]
  mask = split.get('mask')
  lengths = (np.full(n, seq_len, np.int32) if mask is None
             else mask.sum(axis=1).astype(np.int32))
  if (lengths == model_config.max_len).all():
    return [split]  # Every draw is 0..max_len-1.
  return [{**split, 'positions': draw(seed, name, k, lengths, seq_len,
                                      model_config.max_len)}
          for k in range(model_config.posemb_randomized_eval_draws)]


def evaluate(evaluate_split: Callable[[dict[str, np.ndarray]], dict[str, Any]],
             splits: list[dict[str, np.ndarray]]) -> dict[str, Any]:
  """`evaluate_split` on each of `eval_splits`' splits, averaged."""
  return mean([evaluate_split(split) for split in splits])


def mean(results: list[dict[str, Any]]) -> dict[str, Any]:
  """Metrics averaged over draws (dicts of floats, or of arrays)."""
  averaged = {k: np.mean([r[k] for r in results], axis=0) for k in results[0]}
  return {k: float(v) if isinstance(results[0][k], float) else v
          for k, v in averaged.items()}
