"""Trains a posenc config, or evaluates its checkpoint.

  python -m posenc.main --config=configs/learned.py [--workdir=runs/learned]
      [--config.model.posemb=none] [--config.model.d_model=32] ...

  # Two processes (hosts), each with its own devices, one global batch:
  python -m posenc.main --config=configs/learned.py \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0

  # The trained checkpoint on longer sequences, its table resampled:
  python -m posenc.main --config=configs/learned.py --mode=eval \
      --config.data.name=before --config.data.eval_seq_len=20 \
      --config.model.posemb_resample=linear
"""

import pathlib
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from posenc import allocator
from posenc import distributed
from posenc import evaluation
from posenc import train

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Path to a config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None,
    'Where config.json, metrics, TensorBoard events and checkpoints go. '
    'Default: runs/<config file stem>.')
_MODE = flags.DEFINE_enum(
    'mode', 'train', ['train', 'eval'],
    'train: train and evaluate; eval: evaluate the newest checkpoint in the '
    'workdir on the eval split (data.eval_seq_len steps).')
# Several processes (hosts): see docs/running.md, "Several hosts".
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0, the same for every process. Unset (and no '
    '--distributed_auto): one process.')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'How many processes take part.')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process: 0..num_processes-1 (0 logs and '
    'writes the metrics and summary).')
_AUTO = flags.DEFINE_bool(
    'distributed_auto', False,
    'Let JAX detect the cluster (TPU VM slices, SLURM, ...) instead of the '
    'three flags above.')
_TIMEOUT = flags.DEFINE_integer(
    'distributed_timeout', 120,
    'Seconds to wait for the other processes before failing.')
flags.mark_flags_as_required(['config'])


def default_workdir(config_path: str) -> str:
  return str(pathlib.Path('runs') / pathlib.Path(config_path).stem)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  try:  # First: it may restart this process.
    allocator.use(config.train.allocator)
  except ValueError as e:
    raise app.UsageError(f'Invalid config: {e}') from None
  cluster = distributed.Cluster(_COORDINATOR.value, _NUM_PROCESSES.value,
                                _PROCESS_ID.value, _AUTO.value, _TIMEOUT.value)
  try:
    distributed.check(cluster)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  try:
    distributed.initialize(cluster)
  except ConnectionError as e:
    logging.error('%s', e)
    sys.exit(1)
  if jax.process_index() != 0:  # Process 0 speaks for all.
    logging.set_verbosity(logging.WARNING)
  workdir = _WORKDIR.value or default_workdir(
      config_flags.get_config_filename(flags.FLAGS['config']))
  logging.info('Workdir: %s', workdir)
  try:
    if _MODE.value == 'eval':
      evaluation.evaluate_checkpoint(config, workdir)
    else:
      train.train_and_evaluate(config, workdir)
  except ValueError as e:
    raise app.UsageError(f'Invalid config: {e}') from None
  except FloatingPointError as e:
    logging.error('Training diverged: %s', e)
    sys.exit(1)
  except FileNotFoundError as e:
    logging.error('%s', e)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
