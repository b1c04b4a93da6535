"""The base config: every field posenc reads, with its default.

`configs/default.py` is this config; variants (`configs/learned.py`, ...)
call `get_config()` and override a few fields. The model group is built from
`posenc.models.ModelConfig`, whose defaults are the only ones (see its field
comments). Config files import only `posenc`, so they load from any working
directory: `python -m posenc.main --config=/abs/path/to/configs/learned.py`.
"""

import dataclasses
import importlib.util
import os
import pathlib
import types
import typing

import ml_collections
from ml_collections import config_dict

from posenc import models


def _model_group() -> ml_collections.ConfigDict:
  """`ModelConfig`'s fields and defaults; None defaults become typed
  placeholders (settable from the command line)."""
  group = ml_collections.ConfigDict()
  hints = typing.get_type_hints(models.ModelConfig)
  for field in dataclasses.fields(models.ModelConfig):
    value = field.default
    if value is None:
      hint = hints[field.name]
      args = [a for a in typing.get_args(hint) if a is not type(None)]
      if not isinstance(hint, types.UnionType) or len(args) != 1:
        raise TypeError(f'ModelConfig.{field.name}: a None default needs a '
                        'type `T | None`.')
      value = config_dict.placeholder(args[0])
    group[field.name] = value
  return group


def get_config() -> ml_collections.ConfigDict:
  """Returns the base config."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds data generation, initialisation, shuffling, dropout.

  # Data
  config.data = ml_collections.ConfigDict()
  # A name registered in posenc.data: the synthetic suite 'argmax', 'before',
  # 'sorted', 'marker', 'random'; 'listops'; 'mnist1d', 'mnist1d_shuffled';
  # 'digits', 'digits_shuffled'; 'vowels' (JapaneseVowels); 'npz' (your
  # own arrays, from data.path); the Chomsky-hierarchy tasks once
  # posenc.datasets.chomsky is imported (configs/chomsky.py).
  config.data.name = 'argmax'
  config.data.seed = config_dict.placeholder(int)  # None: the run's seed.
  config.data.seq_len = 10  # Tokens per training sequence (the longest).
  config.data.min_seq_len = config_dict.placeholder(int)  # Set: vary, pad.
  config.data.eval_seq_len = config_dict.placeholder(int)  # None: seq_len.
  config.data.n_features = 16  # Float features per step (synthetic suite).
  # Classes: 'random' (None: 10) and 'npz' (None: read from the labels).
  config.data.num_classes = config_dict.placeholder(int)
  config.data.num_train = 16384  # Training examples.
  config.data.num_eval = 2048  # Held-out examples, disjoint from training.
  config.data.marker_offset = 2  # 'marker': steps from marker to compare.
  config.data.listops_max_depth = 10  # 'listops': deepest nesting.
  config.data.listops_max_args = 5  # 'listops': most arguments per operator.
  # MNIST-1D: steps per token (seq_len=40/this); digits: pixels per side
  # of a square patch (seq_len=(image_size/this)**2).
  config.data.patch_size = 1
  config.data.image_size = 8  # Digits: pixels per side (resampled from 8).
  # Digits' eval and test splits at another size; None: image_size.
  config.data.eval_image_size = config_dict.placeholder(int)
  config.data.path = ''  # 'npz': the .npz file with your arrays.
  config.data.cache_dir = '~/.cache/posenc'  # ListOps, MNIST-1D, vowels.

  # Model: see posenc.models.ModelConfig for each field.
  config.model = _model_group()

  # Optimizer
  config.train = ml_collections.ConfigDict()
  config.train.optimizer = 'adam'  # 'adam', 'adamw' or 'sgd' (optax).
  config.train.learning_rate = 2e-3  # Step size.
  config.train.weight_decay = 0.0  # 'adamw' only: decoupled weight decay.

  # Training
  config.train.num_epochs = 5  # Passes over the training split.
  config.train.batch_size = 32  # Global batch, split over all devices.
  config.train.parallel = 'jit'  # 'jit' (sharded over a Mesh) or 'pmap'.
  config.train.allocator = 'system'  # 'tcmalloc': faster for larger models.
  # Refuse configs estimated to need more (posenc.memory); None: physical RAM.
  config.train.memory_limit_gib = config_dict.placeholder(float)
  config.train.log_every_steps = 50  # Fetch, log and write train metrics.
  config.train.checkpoint_every_steps = 500  # Save (and at the end).
  config.train.keep_checkpoints = 3  # Newest checkpoints kept.
  return config


def load_file(path: str | os.PathLike) -> types.ModuleType:
  """Imports a config file by path, for variants of a sibling config:
  `load_file(pathlib.Path(__file__).with_name('mnist1d.py')).get_config()`
  works from any working directory, unlike `from configs import mnist1d`."""
  path = pathlib.Path(path)
  spec = importlib.util.spec_from_file_location(
      f'posenc_config_{path.stem}', path)
  if spec is None or spec.loader is None:
    raise ValueError(f'{path} is not a Python config file.')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
