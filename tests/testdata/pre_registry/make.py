"""Wrote the two checkpoints beside this file, with the code before the encoding registry (3809ea9).

Run from the repository root at that commit; the runs go to /tmp/fx/<name> and
were copied here. tests/extending_test.py checks that today's code restores
and evaluates them.
"""

import jax

from configs import default
from posenc import train

RUNS = [
    ('learned_every_layer_cls',
     dict(posemb='learned_every_layer', posemb_share=False, pooling='cls')),
    ('relative', dict(posemb='relative')),
]

for name, overrides in RUNS:
  c = default.get_config()
  c.model.d_model = 16
  c.model.num_heads = 2
  c.model.mlp_dim = 32
  c.data.num_train = 256
  c.data.num_eval = 128
  c.data.n_features = 4
  c.train.num_epochs = 2
  c.train.batch_size = 32
  for key, value in overrides.items():
    c.model[key] = value
  summary = train.train_and_evaluate(c, f'/tmp/fx/{name}', devices=jax.devices()[:1])
  print(name, summary)
