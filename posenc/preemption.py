"""Stopping a training loop cleanly on SIGTERM or SIGINT, in one process or
in all processes of a multi-process run at the same step.

One process: the first signal sets `requested`; the loop finishes its step,
saves and returns. A second signal stops the process at once (exit status
128 + signal number, with one log line): every checkpoint already finished
is intact, and the one being written, if any, is never adopted.

Several processes (`jax.distributed`): JAX's preemption sync manager (the
coordination service's, started by `jax.distributed.initialize`) owns
SIGTERM. A SIGTERM to any one process makes all of them agree on the next
safe step (`multihost_utils.reached_preemption_sync_point`, called after
every step), where every process stops and saves the same checkpoint. A
SIGINT (Ctrl-C) is passed on to the manager as a SIGTERM to this process.
"""

import os
import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils


class Preemption:
  """While active, SIGTERM and SIGINT ask the loop to stop after a step;
  `should_stop(step)`, called after every step, says when."""

  def __init__(self):
    self.requested: str | None = None
    self._previous = {}
    self._synchronised = jax.process_count() > 1

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested is not None:  # The second signal: stop now.
      logging.error('Received %s again: stopping at once, without saving. '
                    'Finished checkpoints are intact; run the same command '
                    'to resume from the newest.', name)
      logging.flush()
      os._exit(128 + signum)  # pylint: disable=protected-access
    self.requested = name
    if self._synchronised:
      logging.warning('Received %s: asking every process to stop at the same '
                      'step and save. Send it again to stop at once.', name)
      os.kill(os.getpid(), signal.SIGTERM)  # To JAX's preemption notifier.
    else:
      logging.warning('Received %s: stopping after this step, then saving. '
                      'Send it again to stop at once.', name)

  def should_stop(self, step: int) -> bool:
    """Whether to save and stop after `step` (all processes agree)."""
    if not self._synchronised:
      return self.requested is not None
    if multihost_utils.reached_preemption_sync_point(step):
      self.requested = self.requested or 'SIGTERM'
      logging.warning('Every process stops at step %d (preemption sync '
                      'point).', step)
      return True
    return False

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      # With several processes SIGTERM stays with JAX's preemption notifier.
      signals = ((signal.SIGINT,) if self._synchronised
                 else (signal.SIGTERM, signal.SIGINT))
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
