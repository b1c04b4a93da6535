"""Several processes, one program: JAX's multi-controller runtime.

Every process runs the same command; `jax.distributed.initialize` connects
them through the coordinator (process 0), after which `jax.devices()` lists
the devices of all processes and one `Mesh` spans them. One process needs
none of this and stays the default.
"""

import dataclasses
import socket
import time

import jax
from absl import logging


@dataclasses.dataclass(frozen=True)
class Cluster:
  """How to join the other processes (all None and `auto` False: alone)."""

  coordinator_address: str | None = None  # host:port of process 0.
  num_processes: int | None = None
  process_id: int | None = None
  auto: bool = False  # Let JAX detect the cluster (TPU VM, SLURM, ...).
  timeout_s: int = 120  # To reach the coordinator, then an error.

  @property
  def requested(self) -> bool:
    return self.auto or self.coordinator_address is not None


def check(cluster: Cluster) -> None:
  """Raises ValueError naming the flag for an incomplete or invalid set."""
  explicit = {'--coordinator_address': cluster.coordinator_address,
              '--num_processes': cluster.num_processes,
              '--process_id': cluster.process_id}
  given = [k for k, v in explicit.items() if v is not None]
  if cluster.auto and given:
    raise ValueError(f'--distributed_auto detects {", ".join(given)} itself; '
                     'pass either it or the three flags.')
  if not cluster.auto and given and len(given) != 3:
    missing = [k for k in explicit if k not in given]
    raise ValueError(f'{", ".join(given)} given without {", ".join(missing)}; '
                     'several processes need all three (or '
                     '--distributed_auto).')
  if cluster.coordinator_address is not None:
    host, _, port = cluster.coordinator_address.rpartition(':')
    if not host or not port.isdigit():
      raise ValueError(f'--coordinator_address={cluster.coordinator_address!r}'
                       ' is not valid; valid: host:port, e.g. 10.0.0.1:1234.')
  if cluster.num_processes is not None and cluster.num_processes < 1:
    raise ValueError(f'--num_processes={cluster.num_processes} is not valid; '
                     'valid: a positive integer.')
  if cluster.process_id is not None and not (
      0 <= cluster.process_id < (cluster.num_processes or 1)):
    raise ValueError(f'--process_id={cluster.process_id} is not valid; valid: '
                     f'0..{(cluster.num_processes or 1) - 1}.')
  if cluster.timeout_s < 1:
    raise ValueError(f'--distributed_timeout={cluster.timeout_s} is not valid;'
                     ' valid: a positive number of seconds.')


def _wait_for(address: str, timeout_s: float) -> None:
  """Returns once a TCP connection to `address` succeeds; raises
  ConnectionError after `timeout_s`."""
  host, _, port = address.rpartition(':')
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=1.0):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise ConnectionError(
            f'could not join the cluster at {address} within {timeout_s}s '
            f'(--distributed_timeout): {e}. Check that process 0 runs with '
            'the same --coordinator_address and that its port is reachable '
            'from here.') from None
      time.sleep(0.5)


def initialize(cluster: Cluster) -> None:
  """Joins the cluster, before anything else touches a device.

  On CPU the collectives go through gloo. Raises ConnectionError when the
  coordinator cannot be reached within `cluster.timeout_s`.
  """
  check(cluster)
  if not cluster.requested:
    return
  # Cross-process collectives on CPU (GPUs and TPUs bring their own).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  where = cluster.coordinator_address or 'the detected coordinator'
  if cluster.coordinator_address is not None and cluster.process_id != 0:
    # JAX's client aborts the process when the coordinator does not answer
    # in time; knock first, so that the error is a clear one.
    _wait_for(cluster.coordinator_address, cluster.timeout_s)
  logging.info('Joining %s as process %s of %s (waiting up to %ds).', where,
               cluster.process_id, cluster.num_processes, cluster.timeout_s)
  try:
    jax.distributed.initialize(
        cluster.coordinator_address, cluster.num_processes,
        cluster.process_id, initialization_timeout=cluster.timeout_s)
  except Exception as e:  # pylint: disable=broad-except
    raise ConnectionError(
        f'could not join the cluster at {where} within {cluster.timeout_s}s '
        f'(--distributed_timeout): {type(e).__name__}: {str(e)[:300]}. Check '
        'that process 0 runs with the same --coordinator_address and that '
        'its port is reachable from here.') from None
  logging.info('Process %d of %d: %d local devices, %d in all.',
               jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
