"""Orbax checkpoints of the train state in `workdir/checkpoints`."""

import contextlib
import pathlib
from typing import Any, Iterator

import orbax.checkpoint as ocp
from absl import logging


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Orbax logs every stage of a save at INFO; keep only its warnings."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def manager(workdir: pathlib.Path) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints` (created on first save)."""
  return ocp.CheckpointManager(
      (workdir / 'checkpoints').absolute(),
      options=ocp.CheckpointManagerOptions(create=True))


def save(workdir: pathlib.Path, step: int, state: Any) -> None:
  """Saves `state` (host-independent, unreplicated) at `step` and waits."""
  with _quiet(), manager(workdir) as mngr:
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()
  logging.info('Saved checkpoint of step %d in %s', step,
               workdir / 'checkpoints')


def restore(workdir: pathlib.Path, target: Any, step: int | None = None) -> Any:
  """Restores the checkpoint at `step` (default: the newest) into `target`."""
  with _quiet(), manager(workdir) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {workdir / "checkpoints"}')
    return mngr.restore(step, args=ocp.args.StandardRestore(target))
