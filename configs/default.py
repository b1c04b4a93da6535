"""Base config: every field posenc reads, with its default.

Variants (configs/learned.py, ...) import this and override a few fields.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  """Returns the base config."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds data generation, initialisation, shuffling, dropout.

  # Data
  config.data = ml_collections.ConfigDict()
  # Synthetic suite: 'argmax', 'before', 'sorted', 'marker', 'random';
  # 'listops'; 'mnist1d', 'mnist1d_shuffled' (see posenc/data.py).
  config.data.name = 'argmax'
  config.data.seed = config_dict.placeholder(int)  # None: the run's seed.
  config.data.seq_len = 10  # Tokens per training sequence (the longest).
  config.data.min_seq_len = config_dict.placeholder(int)  # Set: vary, pad.
  config.data.eval_seq_len = config_dict.placeholder(int)  # None: seq_len.
  config.data.n_features = 16  # Float features per step (synthetic suite).
  config.data.num_classes = 10  # Classes of 'random' (others: fixed).
  config.data.num_train = 16384  # Training examples.
  config.data.num_eval = 2048  # Held-out examples, disjoint from training.
  config.data.marker_offset = 2  # 'marker': steps from marker to compare.
  config.data.listops_max_depth = 10  # 'listops': deepest nesting.
  config.data.listops_max_args = 5  # 'listops': most arguments per operator.
  config.data.patch_size = 1  # MNIST-1D: steps per token (seq_len=40/this).
  config.data.cache_dir = '~/.cache/posenc'  # Generated ListOps, MNIST-1D.

  # Model (one-to-one with posenc.models.ModelConfig)
  config.model = ml_collections.ConfigDict()
  # Positional encoding: learned, sinusoidal, none, rope, alibi, relative,
  # learned_every_layer.
  config.model.posemb = 'learned'
  config.model.posemb_init_std = 1.0  # Stddev of learned tables' init.
  config.model.posemb_share = True  # learned_every_layer: one shared table.
  config.model.posemb_randomized = False  # Train on random sorted positions.
  config.model.posemb_resample = 'none'  # Eval beyond max_len: linear/nearest.
  config.model.rope_base = 10_000.0  # rope: wavelength base.
  config.model.relative_num_buckets = 32  # relative: buckets (both sides).
  config.model.relative_max_distance = 128  # relative: last bucket's offset.
  config.model.max_len = config_dict.placeholder(int)  # None: data.seq_len.
  config.model.d_model = 64  # Width of the residual stream.
  config.model.num_heads = 4  # Attention heads; must divide d_model.
  config.model.num_layers = 2  # Encoder blocks.
  config.model.mlp_dim = 256  # Hidden width of each block's MLP.
  config.model.dropout_rate = 0.0  # Dropout on embeddings and residuals.
  config.model.attention_dropout_rate = 0.0  # Dropout on attention weights.
  config.model.pooling = 'mean'  # 'mean' over valid positions, or 'cls'.
  # Speed options (measured in the README's Performance):
  config.model.matmul_dtype = 'float32'  # 'bfloat16': products, f32 sums.
  config.model.attention = 'einsum'  # 'fused': jax.nn.dot_product_attention.
  config.model.remat = False  # Recompute block activations in backward.

  # Optimizer
  config.train = ml_collections.ConfigDict()
  config.train.learning_rate = 2e-3  # Adam step size.

  # Training
  config.train.num_epochs = 5  # Passes over the training split.
  config.train.batch_size = 32  # Global batch, split over all devices.
  config.train.parallel = 'jit'  # 'jit' (sharded over a Mesh) or 'pmap'.
  config.train.allocator = 'system'  # 'tcmalloc': faster for larger models.
  config.train.log_every_steps = 50  # Fetch, log and write train metrics.
  config.train.checkpoint_every_steps = 500  # Save (and at the end).
  config.train.keep_checkpoints = 3  # Newest checkpoints kept.
  return config
