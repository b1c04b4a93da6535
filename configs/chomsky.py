"""A one-label task of the Chomsky-hierarchy suite, as Ruoss et al. (2023) run it.

The argument picks the task (default 'even_pairs'; the others:
modular_arithmetic, parity_check, cycle_navigation,
modular_arithmetic_brackets, solve_equation, missing_duplicate; see
posenc/datasets/chomsky.py):

  python -m posenc.main --config=configs/chomsky.py:parity_check

Trained on lengths 1 to 40, tested on 41 to 500, as in the paper, with
sinusoidal positions randomized over 2,048 positions (their L). The model
has their sizes (width 64, 8 heads, MLP 256, dropout 0.1, the label read
at an output token after the sequence) but 2 blocks instead of 5 and
posenc's blocks (experiments/study_ruoss.py lists every difference), and
the budget is far smaller: 4,000 steps of 32 sequences (1,000,000 of 128
in their predecessor suite). Other encodings: --config.model.posemb=learned (their
learned table: std 1.0, posenc's default), and
--config.model.posemb_randomized=False for the plain version (then
--config.model.max_len=501 for learned, a row for every test position).

Expected (even_pairs, seed 0, about 7 min on 2 CPU cores): eval_accuracy
0.914 at the training lengths, test_accuracy 0.636 at 41 to 500.
"""

import ml_collections

from posenc import config as default
from posenc.datasets import chomsky  # Importing it registers the tasks.


def get_config(task: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.name = task or chomsky.TASKS[0]  # even_pairs
  config.data.seq_len = 40  # Longest training length (N).
  config.data.min_seq_len = 1
  config.data.eval_seq_len = 500  # Test lengths N+1..500.
  config.data.num_train = 128_000  # 4,000 steps of 32.
  config.data.num_eval = 512
  # One int token per step: the memory estimate made before loading
  # (posenc.memory) bounds the data by n_features floats per step.
  config.data.n_features = 1
  config.model.posemb = 'sinusoidal'
  config.model.posemb_randomized = True
  config.model.max_len = 2048
  config.model.num_layers = 2
  config.model.d_model = 64
  config.model.num_heads = 8
  config.model.mlp_dim = 256
  config.model.dropout_rate = 0.1
  config.model.pooling = 'last'
  config.train.learning_rate = 1e-3
  config.train.batch_size = 32
  config.train.num_epochs = 1
  config.train.log_every_steps = 100
  return config
