"""What the studies share: their sizes, configs, tuning and progress.

Every study trains with a class token (`model.pooling='cls'`): a token at
position 0 gives the encodings that only see offsets (ALiBi, relative,
FIRE, Kerple) an anchor, and removes the reversal symmetry that forces
symmetric ALiBi to chance on 'before' and 'marker' under mean pooling
(`posenc.encodings.attention.Alibi`).

Nothing here computes a number: a unit's spec holds the configs built here,
so the records' code digest leaves this file out (experiments/records.py).
"""

import dataclasses
import time
from typing import Any

import ml_collections
import numpy as np

from experiments import fit
from experiments import records as records_lib
from posenc import config as default

Record = dict[str, Any]
Unit = records_lib.Unit
# Encodings with an initial scale to tune.
TABLES = ('learned', 'learned_every_layer', 'learned2d')
# Study variants of the 1-D encodings: name -> config.model overrides.
ENCODINGS = {
    'learned': dict(posemb='learned'),
    'learned_every_layer': dict(posemb='learned_every_layer'),
    'sinusoidal': dict(posemb='sinusoidal'),
    'rope': dict(posemb='rope'),
    'alibi': dict(posemb='alibi'),
    'alibi (directional)': dict(posemb='alibi', alibi_mode='directional'),
    'relative': dict(posemb='relative', relative_num_buckets=64),
    'fire': dict(posemb='fire'),
    'kerple': dict(posemb='kerple'),
    'none': dict(posemb='none'),
    # On a grid of patches (GRID).
    'learned2d': dict(posemb='learned2d'),
    'sincos2d': dict(posemb='sincos2d'),
    'rope2d': dict(posemb='rope2d'),
}
GRID = ('learned2d', 'sincos2d', 'rope2d')


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big each study is."""

  seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # Reported.
  tune_seeds: tuple[int, ...] = (100, 101)  # Tuning only.
  learning_rates: tuple[float, ...] = (1e-3, 2e-3, 4e-3)
  table_init_stds: tuple[float, ...] = (0.02, 0.125, 1.0)
  encodings: tuple[str, ...] = tuple(e for e in ENCODINGS if e not in GRID)
  # On the digits' 4 x 4 grid of 2 x 2 patches.
  grid_encodings: tuple[str, ...] = ('learned2d', 'sincos2d', 'rope2d',
                                     'learned', 'sinusoidal', 'none')
  epochs: int = 5  # Synthetic tasks.
  synthetic_train: int = 8192
  num_eval: int = 2048  # Validation and test sequences (synthetic).
  listops_train: int = 4096
  listops_len: int = 32  # Band [listops_len / 4, listops_len] tokens.
  mnist_train: int = 3600  # Of 4,000; the last 400 are validation.
  mnist_epochs: int = 6
  digits_epochs: int = 30
  vowels_epochs: int = 100
  real_data: bool = True  # MNIST-1D, digits and vowels where they fit.
  # Study 2.
  depth_layers: int = 8
  depth_digits_layers: int = 4
  depth_learned_stds: tuple[float, ...] = (0.02, 0.125, 0.707, 1.0)
  depth_encodings: tuple[str, ...] = ('sinusoidal', 'rope', 'alibi',
                                      'relative', 'none')
  probe_sequences: int = 1024  # Per split (synthetic); digits: all.
  probe_steps: int = 1500  # MLP probe's Adam steps.
  # Study 3.
  length: int = 8  # Trained on L/2..L steps.
  length_train: int = 16384
  length_epochs: int = 10
  length_evals: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64)
  # Ruoss et al.'s table (experiments/study_ruoss.py).
  ruoss_tasks: tuple[str, ...] = (
      'even_pairs', 'modular_arithmetic', 'parity_check', 'cycle_navigation',
      'modular_arithmetic_brackets', 'solve_equation', 'missing_duplicate')
  ruoss_variants: tuple[str, ...] = (
      'none', 'sin/cos', 'relative', 'rope', 'alibi', 'learned',
      'sin/cos (randomized)', 'relative (randomized)', 'rope (randomized)',
      'alibi (randomized)', 'learned (randomized)', 'learned, std 0.02',
      'learned, std 0.02 (randomized)')
  ruoss_seeds: tuple[int, ...] = (0, 1, 2)
  ruoss_layers: int = 2
  ruoss_steps: int = 4000  # Of configs/chomsky.py's 32 sequences.
  ruoss_test_len: int = 500
  ruoss_test_every: int = 20
  ruoss_test_sequences: int = 128


FULL = Scale()
QUICK = Scale(seeds=(0, 1), tune_seeds=(100,), learning_rates=(2e-3,),
              table_init_stds=(1.0,), encodings=('learned', 'alibi'),
              grid_encodings=(),
              epochs=1, synthetic_train=256, num_eval=128, real_data=False,
              depth_layers=2, depth_learned_stds=(1.0,),
              depth_encodings=('none',), probe_sequences=64,
              probe_steps=50, length=8, length_train=256, length_epochs=1,
              length_evals=(8, 16), ruoss_tasks=('even_pairs',),
              ruoss_variants=('learned', 'learned (randomized)'),
              ruoss_seeds=(0, 1), ruoss_steps=10, ruoss_test_len=60,
              ruoss_test_every=10, ruoss_test_sequences=16)


class Progress:
  """One line per unit, with its epochs as they finish."""

  def __init__(self, study: str):
    self.study, self.start = study, time.perf_counter()

  def train(self, label: str, configs: list[ml_collections.ConfigDict],
            seeds: list[int]) -> fit.Run:
    head = f'[{self.study}] {label}'
    epochs = configs[0].train.num_epochs

    def on_epoch(epoch: int, losses: np.ndarray) -> None:
      print(f'\r{head}: epoch {epoch}/{epochs}, train loss '
            f'{losses.mean():.3f}', end='', flush=True)
    run = fit.train(configs, seeds, on_epoch=on_epoch)
    print(f'\r{head}: {len(seeds)} runs in {run.train_seconds:.0f}s '
          f'(study {time.perf_counter() - self.start:.0f}s)', flush=True)
    return run


def base_config(scale: Scale, task: str, encoding: str,
                **model: Any) -> ml_collections.ConfigDict:
  """A synthetic task at `scale`'s sizes, class token, `encoding` (a name
  in ENCODINGS) and further config.model overrides."""
  config = default.get_config()
  config.data.update(name=task, num_train=scale.synthetic_train,
                     num_eval=scale.num_eval)
  config.train.num_epochs = scale.epochs
  config.model.pooling = 'cls'
  config.model.update({**ENCODINGS[encoding], **model})
  return config


def file_config(name: str, encoding: str, **model: Any
                ) -> ml_collections.ConfigDict:
  """configs/<name>.py with a class token and `encoding`."""
  config = default.load_file(records_lib.REPO / 'configs' /
                             f'{name}.py').get_config()
  config.model.pooling = 'cls'
  config.model.update({**ENCODINGS[encoding], **model})
  return config


def listops_config(scale: Scale, encoding: str) -> ml_collections.ConfigDict:
  """ListOps in the short band (its class token, as ever)."""
  config = base_config(scale, 'listops', encoding)
  config.data.update(seq_len=scale.listops_len,
                     min_seq_len=scale.listops_len // 4, listops_max_depth=3,
                     num_train=scale.listops_train)
  return config


def mnist_config(scale: Scale, name: str, encoding: str
                 ) -> ml_collections.ConfigDict:
  """MNIST-1D `name` (plain or shuffled), one step per token, on
  configs/mnist1d.py's fixed data seed."""
  config = base_config(scale, name, encoding)
  config.data.update(seed=file_config('mnist1d', 'none').data.seed,
                     patch_size=1, seq_len=40, num_train=scale.mnist_train,
                     num_eval=400)
  config.train.update(num_epochs=scale.mnist_epochs, batch_size=64)
  return config


def spec(configs: dict[str, ml_collections.ConfigDict],
         seeds: tuple[int, ...], **more: Any) -> dict:
  return {'configs': {k: c.to_dict() for k, c in configs.items()},
          'seeds': list(seeds), **more}
