import json, sys
from configs import default
from posenc import train
for name, over in [('learned_every_layer_cls', dict(posemb='learned_every_layer', posemb_share=False, pooling='cls')),
                   ('relative', dict(posemb='relative'))]:
  c = default.get_config()
  c.model.d_model = 16; c.model.num_heads = 2; c.model.mlp_dim = 32
  c.data.num_train = 256; c.data.num_eval = 128; c.data.n_features = 4
  c.train.num_epochs = 2; c.train.batch_size = 32
  for k, v in over.items(): c.model[k] = v
  s = train.train_and_evaluate(c, f'/tmp/fx/{name}', devices=__import__('jax').devices()[:1])
  print(name, s)
