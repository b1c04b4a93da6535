"""How the pure steps run over devices: `jax.jit` over a `Mesh`, or `jax.pmap`.

`train_step(state, batch, rng, *, axis_name=None)` and
`eval_step(params, batch)` come from `posenc.train`; here they are placed,
sharded and compiled.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from posenc import data

Metrics = dict[str, jax.Array]
TrainState = train_state.TrainState
DATA_AXIS = 'data'


@dataclasses.dataclass
class Parallel:
  """How the step runs over devices: placement, step, and host copies."""

  place_state: Callable[[TrainState], TrainState]
  place_batch: Callable[[data.Batch], Any]
  step: Callable[..., tuple[TrainState, Metrics]]
  host_state: Callable[[TrainState], TrainState]  # An unreplicated copy.
  host_metrics: Callable[[Metrics], dict[str, float]]
  eval_params: Callable[[TrainState], Any]  # Params as `eval_fn` takes them.
  eval_fn: Callable[..., Metrics]  # `eval_step(params, batch)`, jitted.
  place_eval_batch: Callable[[data.Batch], Any]
  place_rng: Callable[[jax.Array], jax.Array]  # The step's key.


def data_mesh(devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over `devices` (default: all) with the batch axis 'data'.

  Auto axis types: shardings inside the step are XLA's to propagate, as in
  classic data parallelism (make_mesh defaults to Explicit axes).
  """
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def process_shard() -> tuple[int, int]:
  """(this process, processes): which rows of a global batch are ours."""
  return jax.process_index(), jax.process_count()


def put_replicated(tree: Any, sharding: NamedSharding) -> Any:
  """A host tree (the same on every process) as global arrays, replicated
  over `sharding`'s devices, also those of other processes. PRNG keys
  included."""
  def put(x):
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    x = np.asarray(jax.device_get(x))
    return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])
  return jax.tree.map(put, tree)


def _shard_over(mesh: jax.sharding.Mesh):
  """Returns (replicated, batch-sharded) shardings and a batch placer that
  takes this process's rows of a global batch (`process_shard`)."""
  replicated = NamedSharding(mesh, P())
  sharded = NamedSharding(mesh, P(DATA_AXIS))
  processes = len({d.process_index for d in mesh.devices.flat})

  def place_batch(batch):
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharded, x, (len(x) * processes,) + x.shape[1:]), batch)

  return replicated, sharded, place_batch


def make_eval(eval_step: Callable[..., Metrics],
              mesh: jax.sharding.Mesh | None = None
              ) -> tuple[Callable[..., Metrics], Callable[[data.Batch], Any]]:
  """`eval_step(params, batch)` jitted and sharded over `mesh` (default: all
  devices), and the function that places a host batch for it."""
  mesh = data_mesh() if mesh is None else mesh
  replicated, sharded, place_batch = _shard_over(mesh)
  eval_fn = jax.jit(eval_step, in_shardings=(replicated, sharded),
                    out_shardings=sharded)
  return eval_fn, place_batch


def _jit_parallel(mesh: jax.sharding.Mesh, train_step: Callable[..., Any],
                  eval_step: Callable[..., Metrics]) -> Parallel:
  """`jax.jit` with the batch sharded over `mesh` and the state replicated."""
  replicated, sharded, place_batch = _shard_over(mesh)
  eval_fn, place_eval_batch = make_eval(eval_step, mesh)
  step = jax.jit(train_step, in_shardings=(replicated, sharded, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)
  return Parallel(
      place_state=lambda s: put_replicated(s, replicated),
      place_batch=place_batch, step=step, host_state=jax.device_get,
      host_metrics=lambda m: {k: float(v)
                              for k, v in jax.device_get(m).items()},
      eval_params=lambda s: s.params, eval_fn=eval_fn,
      place_eval_batch=place_eval_batch,
      place_rng=lambda k: put_replicated(k, replicated))


def _pmap_parallel(mesh: jax.sharding.Mesh, train_step: Callable[..., Any],
                   eval_step: Callable[..., Metrics]) -> Parallel:
  """`jax.pmap` over the local devices with the state replicated on each."""
  devices = list(mesh.local_devices)
  n = len(devices)
  axis = 'batch'
  eval_fn, place_eval_batch = make_eval(eval_step, mesh)
  step = jax.pmap(functools.partial(train_step, axis_name=axis),
                  axis_name=axis, in_axes=(0, 0, None), donate_argnums=0,
                  devices=devices)
  # pmap takes arrays whose leading axis is split over its devices.
  leading = NamedSharding(jax.sharding.Mesh(np.array(devices), (axis,)),
                          P(axis))
  first = lambda tree: jax.tree.map(lambda x: x[0], tree)

  def place_state(state):
    stacked = jax.tree.map(lambda x: np.broadcast_to(x, (n,) + np.shape(x)),
                           jax.device_get(state))
    return jax.device_put(stacked, leading)

  def place_batch(batch):
    return jax.device_put(
        jax.tree.map(lambda x: x.reshape((n, -1) + x.shape[1:]), batch),
        leading)

  return Parallel(
      place_state=place_state, place_batch=place_batch,
      step=step,
      host_state=lambda s: jax.device_get(first(s)),
      host_metrics=lambda m: {k: float(v) for k, v in
                              jax.device_get(first(m)).items()},
      eval_params=lambda s: jax.device_put(first(s.params),
                                           NamedSharding(mesh, P())),
      eval_fn=eval_fn, place_eval_batch=place_eval_batch,
      place_rng=lambda k: k)


def make_parallel(mode: str, train_step: Callable[..., Any],
                  eval_step: Callable[..., Metrics],
                  devices: list[jax.Device] | None = None) -> Parallel:
  """The train step for `mode` ('jit' or 'pmap') over `devices` (all)."""
  mesh = data_mesh(devices)
  if mode == 'pmap':
    return _pmap_parallel(mesh, train_step, eval_step)
  return _jit_parallel(mesh, train_step, eval_step)


def evaluate(eval_fn: Callable[..., Metrics],
             place_batch: Callable[[data.Batch], Any], params: Any,
             split: data.Batch, batch_size: int,
             prefix: str = 'eval') -> dict[str, float]:
  """Exact loss and accuracy over every example of `split`, as
  `{prefix}_loss` and `{prefix}_accuracy`.

  Each process sums the per-example outputs its devices hold; with several
  processes, the sums are then added across them.
  """
  keys = ('loss', 'correct', 'count')
  totals = np.zeros(len(keys))
  for batch in data.eval_batches(split, batch_size, process_shard()):
    out = eval_fn(params, place_batch(batch))
    totals += [sum(np.sum(np.asarray(shard.data), dtype=np.float64)
                   for shard in out[k].addressable_shards
                   if shard.replica_id == 0) for k in keys]
  if jax.process_count() > 1:
    totals = np.asarray(multihost_utils.process_allgather(totals)).sum(0)
  loss, correct, count = totals
  return {f'{prefix}_loss': float(loss / count),
          f'{prefix}_accuracy': float(correct / count)}
