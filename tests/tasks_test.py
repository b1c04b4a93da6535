"""The synthetic suite needs positions: without them a model stays at chance.

Short runs (about ten seconds each) of the same small model with and without a
learned table on each task. The model without positions is exactly
permutation-invariant (mean pooling), and each task's labels are balanced
over the permutations of a sequence, so its expected eval accuracy is chance;
the learned model, trained the same way, must clear chance by a wide margin,
which shows the task is learnable in the budget and the test can fail.
"""

import math

import jax
import pytest
from absl import logging

from posenc import config as default
from posenc import train

# task: (chance, the learned model's floor after the short run)
TASKS = {'argmax': (0.1, 0.5), 'before': (0.5, 0.7), 'sorted': (0.5, 0.7),
         'marker': (0.5, 0.7)}
NUM_EVAL = 2048


def _short_run(workdir, task, posemb, num_train=None):
  config = default.get_config()
  config.data.name = task
  if num_train is not None:
    config.data.num_train = num_train
  config.data.num_eval = NUM_EVAL
  config.model.posemb = posemb
  config.model.mlp_dim = 128
  config.train.num_epochs = 2
  config.train.log_every_steps = 1000
  logging.set_verbosity(logging.WARNING)
  # One device: dozens of runs in one process, each with its own all-reduce
  # program, now and then stalled XLA:CPU's rendezvous with 8 simulated
  # devices on 2 cores (see train.eval_step); sharding is tested elsewhere.
  return train.train_and_evaluate(config, workdir,
                                  devices=jax.devices()[:1])['eval_accuracy']


@pytest.mark.parametrize('task', TASKS)
def test_no_positions_stays_at_chance_and_learned_does_not(task, tmp_path):
  chance, learned_floor = TASKS[task]
  # Four standard deviations of an accuracy at chance on NUM_EVAL examples.
  margin = 4 * math.sqrt(chance * (1 - chance) / NUM_EVAL)
  # A quarter of the data for the model without positions: its invariance,
  # not its training, is what keeps it at chance.
  nope = _short_run(tmp_path / 'none', task, 'none', num_train=4096)
  learned = _short_run(tmp_path / 'learned', task, 'learned')
  assert abs(nope - chance) <= margin, (nope, chance, margin)
  assert learned >= learned_floor, learned
