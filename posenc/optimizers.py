"""The optimizer behind `config.train.optimizer`: one entry per name."""

from typing import Callable

import ml_collections
import optax

from posenc import checks

# name -> optax transformation from the `config.train` group.
OPTIMIZERS: dict[str, Callable[[ml_collections.ConfigDict],
                               optax.GradientTransformation]] = {
    'adam': lambda t: optax.adam(t.learning_rate),
    'adamw': lambda t: optax.adamw(t.learning_rate,
                                   weight_decay=t.weight_decay),
    'sgd': lambda t: optax.sgd(t.learning_rate),
}
# Optimizers that read train.weight_decay.
DECAYING = ('adamw',)


def check_config(config: ml_collections.ConfigDict) -> None:
  """The optimizer's fields in the train group."""
  checks.choice(config, 'train.optimizer', tuple(OPTIMIZERS))
  checks.real(config, 'train.learning_rate', low=0.0)
  checks.real(config, 'train.weight_decay', low=0.0, low_inclusive=True)
  t = config.train
  if t.weight_decay and t.optimizer not in DECAYING:
    raise ValueError(
        f'train.weight_decay={t.weight_decay} applies to train.optimizer='
        f"{' or '.join(map(repr, DECAYING))} only; valid with "
        f'{t.optimizer!r}: 0.0.')


def make(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`config.train.optimizer` at `config.train.learning_rate`."""
  checks.choice(config, 'train.optimizer', tuple(OPTIMIZERS))
  return OPTIMIZERS[config.train.optimizer](config.train)
