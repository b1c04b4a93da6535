"""Prints the reference numbers of tests/rope_scaling_test.py from Hugging
Face transformers' own RoPE functions (`modeling_rope_utils`).

Not part of the test suite (it needs torch and transformers, which posenc
does not): run it in an environment with both, e.g.

  python -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers
  /tmp/hf/bin/python tests/testdata/hf_rope_reference.py

The numbers in the test were printed by transformers 5.24.0 (torch 2.14.1).
posenc's 'ntk' is compared with Hugging Face's 'dynamic' rule at a length of
factor * original length with Hugging Face's own factor 1, where the two
formulas coincide (base * (L / L0)^(K / (K - 2))).
"""

import numpy as np
import torch
import transformers
from transformers import LlamaConfig
from transformers import modeling_rope_utils

CASES = (  # (head_dim, base, training length, factor)
    (16, 10_000.0, 10, 2.0),
    (16, 10_000.0, 2048, 4.0),
    (32, 500_000.0, 64, 3.0),
)


def rope(kind: str, head_dim: int, base: float, length: int, factor: float):
  params = {'rope_type': kind, 'rope_theta': base}
  seq_len = None
  if kind == 'dynamic':
    params['factor'] = 1.0
    seq_len = int(round(factor * length))
  else:
    params['factor'] = factor
  if kind == 'yarn':
    params['original_max_position_embeddings'] = length
  config = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4,
                       max_position_embeddings=length,
                       rope_parameters=params)
  fn = modeling_rope_utils.ROPE_INIT_FUNCTIONS[kind]
  inv_freq, attention_factor = fn(config, 'cpu', seq_len=seq_len)
  return inv_freq.double().numpy(), float(attention_factor)


def main():
  np.set_printoptions(precision=10, floatmode='maxprec')
  print(f'# transformers {transformers.__version__}, torch '
        f'{torch.__version__}')
  for head_dim, base, length, factor in CASES:
    for ours, kind in (('linear', 'linear'), ('ntk', 'dynamic'),
                       ('yarn', 'yarn')):
      inv_freq, attention_factor = rope(kind, head_dim, base, length, factor)
      print(f'    ({ours!r}, {head_dim}, {base}, {length}, {factor}, '
            f'{attention_factor!r},\n     {[float(f"{x:.9g}") for x in inv_freq]}),')


if __name__ == '__main__':
  main()
