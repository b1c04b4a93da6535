"""Digits as a 4 x 4 grid of 2 x 2 patches, with 2-D positions.

The 8x8 digits of configs/digits.py in patches of 2 x 2 pixels (16 tokens
of 4 features, raster order over the grid). `model.posemb` is one of the
2-D encodings, 'learned2d' (a `(1, 16, D)` table), 'sincos2d' (big_vision's
posemb_sincos_2d) or 'rope2d' (axial rotary, Heo et al., 2024); the 1-D
encodings run on the flattened grid.

  python -m posenc.main --config=configs/digits2d.py --workdir=/tmp/d2d
  python -m posenc.main --config=configs/digits2d.py \\
      --config.model.posemb=sincos2d --workdir=/tmp/d2d_sincos

A change of resolution without fine-tuning: the same digits upsampled to
16x16 (bilinear), the same patch size, so 8 x 8 patches; learned2d's table
is resampled to the new grid, the others compute it:

  python -m posenc.main --mode=eval --config=configs/digits2d.py \\
      --workdir=/tmp/d2d --config.data.eval_image_size=16 \\
      --config.model.posemb_resample=bilinear

Expected (seed 0, 2 CPU cores, about 15 s each): test_accuracy 0.958
(learned2d), 0.944 (sincos2d), 0.933 (rope2d); at 16x16, on the eval split,
0.633 (learned2d, bilinear), 0.644 (bicubic), 0.100 (sincos2d), 0.133
(rope2d): most of that loss is the patches' own change, since on the same
eval split `none` falls from 0.672 at 8x8 to 0.106 (docs/results.md, "Real
data").
"""

import pathlib

import ml_collections

from posenc import config as posenc_config


def get_config() -> ml_collections.ConfigDict:
  # The sibling file by path: works from any working directory.
  digits = posenc_config.load_file(
      pathlib.Path(__file__).with_name('digits.py'))
  config = digits.get_config()
  config.data.patch_size = 2  # 2 x 2 pixels per token.
  config.data.seq_len = 16  # A 4 x 4 grid of patches.
  config.model.posemb = 'learned2d'
  return config
