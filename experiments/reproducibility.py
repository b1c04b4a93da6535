"""How far apart two runs end that differ only in float summation order.

Each configuration is trained twice from the same seed, data and batches:
once with the einsum attention path and once with the fused one
(`jax.nn.dot_product_attention`), the same arithmetic summed in another
order. After `--steps` steps the two models' eval logits are compared: the
largest absolute difference, and the share of eval examples whose predicted
class differs. A model whose training amplifies rounding noise ends far
apart; one that does not stays within float noise.

  python -m experiments.reproducibility            # about 2 minutes

It compares mean pooling with the class token at several initial scales
(`model.cls_init_std`; 0 is zeros, as in ViT), on the 'before' task.
"""

import functools

import jax
import ml_collections
import numpy as np
from absl import app
from absl import flags

from posenc import config as posenc_config
from posenc import data
from posenc import train

_STEPS = flags.DEFINE_integer('steps', 300, 'Training steps per run.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds per configuration.')
_POSEMBS = flags.DEFINE_list('posembs', ['learned', 'rope'],
                             'Encodings to compare.')

VARIANTS = (('mean pooling', dict(pooling='mean')),
            ('cls, zeros', dict(pooling='cls', cls_init_std=0.0)),
            ('cls, N(0, 0.02)', dict(pooling='cls', cls_init_std=0.02)),
            ('cls, N(0, 1)', dict(pooling='cls', cls_init_std=1.0)))


def task_config(posemb: str, seed: int, **model) -> ml_collections.ConfigDict:
  config = posenc_config.get_config()
  config.seed = seed
  config.data.name = 'before'
  config.model.posemb = posemb
  config.model.update(model)
  return config


def eval_logits(config: ml_collections.ConfigDict, dataset: data.Dataset,
                steps: int) -> np.ndarray:
  """Trains `steps` steps (one device) and returns the eval logits."""
  model = train.make_model(config, dataset)
  init_rng, step_rng = jax.random.split(jax.random.key(config.seed))
  state = train.create_train_state(init_rng, config, model,
                                   dataset.example_inputs())
  step = jax.jit(train.train_step)
  batch_size = config.train.batch_size
  epoch = 0
  while int(state.step) < steps:
    for batch in data.train_batches(dataset.train, batch_size,
                                    np.random.default_rng([config.seed,
                                                           epoch])):
      state, _ = step(state, batch, step_rng)
      if int(state.step) == steps:
        break
    epoch += 1
  apply = jax.jit(functools.partial(model.apply, train=False))
  return np.asarray(apply({'params': state.params}, dataset.eval['inputs'],
                          mask=dataset.eval.get('mask'))[0])


def main(argv):
  del argv
  print(f'| encoding | variant | max abs eval-logit difference '
        f'(seeds {_SEEDS.value}) | predictions that differ |')
  print('|---|---|---|---|')
  for posemb in _POSEMBS.value:
    for name, model in VARIANTS:
      diffs, flips = [], []
      for seed in range(_SEEDS.value):
        config = task_config(posemb, seed, **model)
        dataset = data.load(config.data, seed)
        a, b = (eval_logits(task_config(posemb, seed, attention=kind,
                                        **model), dataset, _STEPS.value)
                for kind in ('einsum', 'fused'))
        diffs.append(float(np.abs(a - b).max()))
        flips.append(float((a.argmax(-1) != b.argmax(-1)).mean()))
      print(f'| {posemb} | {name} | '
            f'{" / ".join(f"{d:.2g}" for d in diffs)} | '
            f'{" / ".join(f"{f:.1%}" for f in flips)} |', flush=True)


if __name__ == '__main__':
  app.run(main)
