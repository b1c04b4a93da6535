"""Orbax checkpoints in `workdir/checkpoints`, checked before they are used.

Each checkpoint `checkpoints/<step>/` holds the train state (parameters,
optimizer state, step) and a JSON `progress` item (the step, the data
position, the dropout key and the train metrics not yet logged). Orbax
writes a checkpoint under a temporary name and renames it when complete, so
a crash mid-save leaves nothing that looks like a checkpoint. After the save,
`posenc_sha256.json` records the SHA-256 of every file in it; a checkpoint
whose files do not match (truncated, garbled, missing) is reported, moved to
`checkpoints/damaged/` (never deleted) and the previous one is used.
"""

import contextlib
import hashlib
import json
import pathlib
import time
from typing import Any, Iterator

import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from absl import logging

DIGEST_FILE = 'posenc_sha256.json'
DAMAGED_DIR = 'damaged'


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Orbax logs every stage of a save at INFO; keep only its warnings."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def directory(workdir: pathlib.Path) -> pathlib.Path:
  return (pathlib.Path(workdir) / 'checkpoints').absolute()


def manager(workdir: pathlib.Path) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints`; `save` deletes old checkpoints."""
  return ocp.CheckpointManager(
      directory(workdir), options=ocp.CheckpointManagerOptions(create=True))


def _digests(step_dir: pathlib.Path) -> dict[str, str]:
  return {str(p.relative_to(step_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(step_dir.rglob('*'))
          if p.is_file() and not p.name.endswith((DIGEST_FILE,
                                                  f'{DIGEST_FILE}.tmp'))}


def save(workdir: pathlib.Path, step: int, state: Any,
         progress: dict[str, Any], keep: int | None = None) -> None:
  """Saves `state` (unreplicated) and `progress` at `step`, waits, records
  the files' digests, then deletes all but the newest `keep` checkpoints.

  Old checkpoints go only once the new one's digest is written, so a crash
  at any point leaves at least one checkpoint that verifies.
  """
  with _quiet(), manager(workdir) as mngr:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        progress=ocp.args.JsonSave(progress)), force=True)
    mngr.wait_until_finished()
    if jax.process_index() == 0:
      step_dir = directory(workdir) / str(step)
      tmp = step_dir / f'.{DIGEST_FILE}.tmp'
      tmp.write_text(json.dumps(_digests(step_dir)))
      tmp.replace(step_dir / DIGEST_FILE)
      if keep is not None:
        for old in sorted(mngr.all_steps())[:-keep]:
          mngr.delete(old)
    if jax.process_count() > 1:  # No process runs ahead of the digest.
      multihost_utils.sync_global_devices(f'posenc checkpoint {step}')
  logging.info('Saved checkpoint of step %d in %s', step, directory(workdir))


def damage(step_dir: pathlib.Path) -> str | None:
  """What is wrong with a checkpoint's files, or None if they are intact."""
  try:
    expected = json.loads((step_dir / DIGEST_FILE).read_text())
  except (OSError, ValueError) as e:
    return f'no readable {DIGEST_FILE} ({e})'
  actual = _digests(step_dir)
  missing = sorted(set(expected) - set(actual))
  changed = sorted(k for k in expected if k in actual and
                   actual[k] != expected[k])
  if missing or changed:
    return f'files missing: {missing[:3]}, files changed: {changed[:3]}'
  return None


def _set_aside(step_dir: pathlib.Path) -> pathlib.Path:
  target = step_dir.parent / DAMAGED_DIR / f'{step_dir.name}-{time.time_ns()}'
  target.parent.mkdir(exist_ok=True)
  step_dir.rename(target)
  return target


def steps(workdir: pathlib.Path) -> list[int]:
  if not directory(workdir).exists():
    return []
  with _quiet(), manager(workdir) as mngr:
    return list(mngr.all_steps())


def restore_latest(workdir: pathlib.Path,
                   target: Any) -> tuple[Any, dict[str, Any]] | None:
  """The newest intact checkpoint as (state, progress), or None if none.

  Damaged checkpoints are logged, moved aside and skipped. A checkpoint
  whose files are intact but do not fit `target` raises.
  """
  for step in sorted(steps(workdir), reverse=True):
    step_dir = directory(workdir) / str(step)
    problem = damage(step_dir)
    if problem is not None:
      if jax.process_index() == 0:
        moved = _set_aside(step_dir)
        logging.warning('Checkpoint of step %d is damaged (%s); moved it to '
                        '%s and trying the previous one.', step, problem, moved)
      continue
    return restore(workdir, target, step)
  return None


def restore(workdir: pathlib.Path, target: Any,
            step: int | None = None) -> tuple[Any, dict[str, Any]]:
  """(state, progress) of the checkpoint at `step` (default: the newest)."""
  with _quiet(), manager(workdir) as mngr:
    step = mngr.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory(workdir)}')
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        progress=ocp.args.JsonRestore()))
  return restored['state'], restored['progress']
