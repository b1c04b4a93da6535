"""MNIST-1D, shuffled: one fixed permutation of the 40 steps, learned positions.

The permutation is the one the `mnist1d` package draws for its shuffled
variant, applied to every sequence of every split. With patches of 4 steps
(the default here, as in configs/mnist1d.py) a token holds 4 steps that were
not neighbours; `--config.data.patch_size=1 --config.data.seq_len=40` gives
one step per token, where a learned table has no locality prior to lose.

  python -m posenc.main --config=configs/mnist1d_shuffled.py

Expected: test_accuracy 0.689 (seed 0, 2 CPU cores, 2 to 3 min), against
0.941 unshuffled: patches of 4 steps carry a locality prior that the
permutation breaks.
"""

import pathlib

import ml_collections

from posenc import config as posenc_config


def get_config() -> ml_collections.ConfigDict:
  # The sibling file by path: works from any working directory.
  mnist1d = posenc_config.load_file(
      pathlib.Path(__file__).with_name('mnist1d.py'))
  config = mnist1d.get_config()
  config.data.name = 'mnist1d_shuffled'
  return config
