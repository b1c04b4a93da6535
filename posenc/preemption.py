"""Stopping a training loop cleanly on SIGTERM or SIGINT."""

import signal
import threading

from absl import logging


class Preemption:
  """While active, SIGTERM and SIGINT set `requested` instead of killing the
  process, so the loop can finish its step and save. A second signal gets
  the default behaviour."""

  def __init__(self):
    self.requested: str | None = None
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    self.requested = signal.Signals(signum).name
    logging.warning('Received %s: stopping after this step, then saving. '
                    'Send it again to stop at once.', self.requested)
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
