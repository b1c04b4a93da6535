"""Trains several seeds of one config at once, for the studies.

Each seed is initialised, shuffled and stepped exactly as `python -m
posenc.main` would (the same `create_train_state`, `train_step`, batch order
and keys; tests/experiments_test.py checks that the parameters match), but
the seeds (and tasks of the same shapes) are `vmap`ped into one program and
each epoch is one `lax.scan`, on one device (as `train.parallel='jit'`
steps), with nothing written to disk: a study's many small runs then cost
little more than one.
"""

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from posenc import data
from posenc import evaluation
from posenc import models
from posenc import randomized
from posenc import train as train_lib
from posenc import validate

Batch = data.Batch
EVAL_BATCH = 256


@dataclasses.dataclass
class Run:
  """Members (a data config and a seed each) trained together: parameters
  stacked on a leading member axis."""

  configs: list[ml_collections.ConfigDict]  # One per member.
  seeds: list[int]  # One per member.
  model: models.EncoderClassifier
  params: Any  # Leaves (members, ...).
  datasets: list[data.Dataset]  # One per member.
  epoch_loss: np.ndarray  # (epochs, members) mean train loss of each epoch.
  train_seconds: float

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.configs[0]

  def member_params(self, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], self.params)


def members(configs: dict[str, ml_collections.ConfigDict], seeds):
  """(labels, configs, seeds): every config once per seed."""
  items = [(label, config, seed) for label, config in configs.items()
           for seed in seeds]
  return ([i[0] for i in items], [i[1] for i in items],
          [i[2] for i in items])


def _stack(trees: list[Any], axis: int = 0) -> Any:
  return jax.tree.map(lambda *xs: np.stack(xs, axis), *trees)


@functools.partial(jax.jit, donate_argnums=0)
def _train_epoch(state: train_lib.TrainState, batches: Batch,
                 rngs: jax.Array) -> tuple[train_lib.TrainState, jax.Array]:
  """Scans the (steps, members, batch, ...) batches; returns the mean loss."""
  def body(state, batch):
    state, metrics = jax.vmap(train_lib.train_step)(state, batch, rngs)
    return state, metrics['train_loss']
  state, losses = jax.lax.scan(body, state, batches)
  return state, losses.mean(0)


def _check_members(configs: list[ml_collections.ConfigDict],
                   datasets: list[data.Dataset]) -> None:
  """Members may differ in their data only, and only where the model and
  the batches keep their shapes."""
  first, first_ds = configs[0], datasets[0]
  for config, ds in zip(configs[1:], datasets[1:]):
    for field in ('model', 'train'):
      if config[field].to_dict() != first[field].to_dict():
        raise ValueError(f'members differ in config.{field}; only config.data '
                         'may differ within one run.')
    for fact in ('num_classes', 'vocab_size'):
      if getattr(ds, fact) != getattr(first_ds, fact):
        raise ValueError(f'members differ in {fact} ({getattr(ds, fact)} != '
                         f'{getattr(first_ds, fact)}).')
    for split in ('train', 'eval'):
      shapes = {k: v.shape[1:] for k, v in getattr(ds, split).items()}
      first_shapes = {k: v.shape[1:]
                      for k, v in getattr(first_ds, split).items()}
      if shapes != first_shapes:
        raise ValueError(f'members differ in their {split} arrays '
                         f'({shapes} != {first_shapes}).')


def init_states(config: ml_collections.ConfigDict,
                model: models.EncoderClassifier, inputs: np.ndarray,
                init_rngs: jax.Array) -> train_lib.TrainState:
  """`train.create_train_state` for every key in `init_rngs`, stacked.

  The parameters come from `train.init_params` run op by op under `vmap`
  (not jitted: `jax.jit(model.init)` compiles for seconds per model, while
  the ops run here are compiled once per process and reused); the keys give
  the same parameters as `create_train_state`.
  """
  params = jax.vmap(lambda rng: train_lib.init_params(rng, model, inputs))(
      init_rngs)
  state = jax.vmap(lambda p: train_lib.create_train_state(
      None, config, model, inputs, params=p))(params)
  return state


def train(configs: list[ml_collections.ConfigDict], seeds: list[int], *,
          on_epoch: Callable[[int, np.ndarray], None] | None = None) -> Run:
  """Trains member i on `configs[i]` with seed `seeds[i]` (its
  config.seed is ignored); the configs may differ in `data` only.

  `on_epoch(epoch, losses)` is called after every epoch (progress).
  """
  if len(configs) != len(seeds) or not configs:
    raise ValueError(f'{len(configs)} configs for {len(seeds)} seeds.')
  for config in configs:
    validate.check_config(config, 1)
  datasets = [data.load(c.data, seed) for c, seed in zip(configs, seeds)]
  for config, ds in zip(configs, datasets):
    validate.check_dataset(config, ds)
  _check_members(configs, datasets)
  config = configs[0]
  model = train_lib.make_model(config, datasets[0])
  # As train.train_and_evaluate splits them, per member.
  keys = [jax.random.split(jax.random.key(seed)) for seed in seeds]
  state = init_states(config, model, datasets[0].example_inputs(),
                      jnp.stack([k[0] for k in keys]))
  rngs = jnp.stack([k[1] for k in keys])
  batch_size = config.train.batch_size
  start = time.perf_counter()
  losses = []
  for epoch in range(config.train.num_epochs):
    batches = _stack([
        _stack(list(data.train_batches(
            ds.train, batch_size, np.random.default_rng([seed, epoch]))))
        for seed, ds in zip(seeds, datasets)], axis=1)
    state, loss = _train_epoch(state, batches, rngs)
    losses.append(np.asarray(loss))
    if not np.isfinite(losses[-1]).all():
      raise FloatingPointError(
          f'non-finite train loss in epoch {epoch + 1} (seeds {seeds}): '
          f'{losses[-1]}; lower train.learning_rate.')
    if on_epoch is not None:
      on_epoch(epoch + 1, losses[-1])
  return Run(configs=list(configs), seeds=list(seeds), model=model,
             params=jax.device_get(state.params), datasets=datasets,
             epoch_loss=np.stack(losses),
             train_seconds=time.perf_counter() - start)


def untrained(run: Run) -> Run:
  """The run's twin before its first step: the same initial parameters
  (`train`'s keys), no training."""
  keys = jnp.stack([jax.random.split(jax.random.key(seed))[0]
                    for seed in run.seeds])
  state = init_states(run.config, run.model,
                      run.datasets[0].example_inputs(), keys)
  return dataclasses.replace(
      run, params=jax.device_get(state.params),
      epoch_loss=np.zeros((0, len(run.seeds))), train_seconds=0.0)


@functools.partial(jax.jit, static_argnums=0)
def _eval_batch(model: models.EncoderClassifier, params: Any,
                batch: Batch) -> dict[str, jax.Array]:
  step = functools.partial(train_lib.eval_step, apply_fn=model.apply)
  return jax.tree.map(lambda x: x.sum(1), jax.vmap(step)(params, batch))


def evaluate(run: Run, splits: list[Batch], *, resample: str = 'none'
             ) -> dict[str, np.ndarray]:
  """Accuracy and loss per member on `splits` (one per member).

  Splits longer than a learned table are evaluated with the table resampled
  (`resample`='linear' or 'nearest'), as `posenc.main --mode=eval` does
  (`evaluation.for_length`); the sums are `train.eval_step`'s, exact.
  """
  sizes = {data.num_examples(split) for split in splits}
  if len(sizes) != 1 or len(splits) != len(run.seeds):
    raise ValueError(f'evaluate takes one split per member ({len(run.seeds)}),'
                     f' all of one size; got {len(splits)} of sizes {sizes}.')
  length = splits[0]['inputs'].shape[1]
  model, params, _ = evaluation.for_length(run.model, run.params, length,
                                           resample, stacked=True)
  # Under the randomized protocol, member i's draw k of positions is the
  # one `posenc.main` draws for seed i; metrics are averaged over draws.
  drawn = [randomized.eval_splits(model.config, split, seed, 'eval')
           for split, seed in zip(splits, run.seeds)]
  results = []
  for draw in zip(*drawn):
    # One compiled program per batch shape, whatever the split's size.
    batches = zip(*[data.eval_batches(split, EVAL_BATCH) for split in draw])
    sums = jax.device_get(functools.reduce(
        lambda a, b: jax.tree.map(jnp.add, a, b),
        (_eval_batch(model, params, _stack(list(b))) for b in batches)))
    results.append({'accuracy': sums['correct'] / sums['count'],
                    'loss': sums['loss'] / sums['count']})
  return randomized.mean(results)


@functools.partial(jax.jit, static_argnums=0)
def _hidden(model: models.EncoderClassifier, params: Any,
            inputs: jax.Array) -> jax.Array:
  apply = lambda p, x: model.apply({'params': p}, x, train=False)[1]['hidden']
  return jax.vmap(apply)(params, inputs)


def hidden_states(run: Run, inputs: np.ndarray) -> np.ndarray:
  """Every layer's residual stream: (members, layers + 1, N, L, D) for
  inputs (members, N, ...), computed in chunks."""
  chunks = [np.asarray(_hidden(run.model, run.params,
                               inputs[:, i:i + EVAL_BATCH]))
            for i in range(0, inputs.shape[1], EVAL_BATCH)]
  return np.concatenate(chunks, axis=2)
