"""Orbax checkpoints in `workdir/checkpoints`, checked before they are used.

Each checkpoint `checkpoints/<step>/` holds the train state (parameters,
optimizer state, step) and a JSON `progress` item (the step, the data
position, the dropout key and the train metrics not yet logged). Orbax
writes a checkpoint under a temporary name and renames it when complete, so
a crash mid-save leaves nothing that looks like a checkpoint. After the save,
`posenc_sha256.json` records the SHA-256 of every file in it; a checkpoint
whose files do not match (truncated, garbled, missing) is reported, moved to
`checkpoints/damaged/` (which keeps the newest DAMAGED_KEEP) and the
previous one is used. A checkpoint Orbax committed (its `commit_success.txt`
is there) but without digests is unfinished, not damaged: the run stopped
between Orbax's rename and posenc's digests. It is restored and checked; if
that works, its digests are recorded and it is used, else it is set aside.
If every checkpoint is damaged, `restore_latest` raises `AllDamaged` rather
than restart from step 0, unless told to.
"""

import contextlib
import hashlib
import json
import pathlib
import shutil
import time
from typing import Any, Iterator

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from absl import logging

from posenc import diskspace

DIGEST_FILE = 'posenc_sha256.json'
COMMIT_FILE = 'commit_success.txt'  # Orbax writes it just before its rename.
DAMAGED_DIR = 'damaged'
DAMAGED_KEEP = 3  # Checkpoints set aside that are kept, the newest.


class AllDamaged(RuntimeError):
  """Every checkpoint of a workdir is damaged: resuming would restart it."""


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


def _record_digests(step_dir: pathlib.Path) -> None:
  tmp = step_dir / f'.{DIGEST_FILE}.tmp'
  tmp.write_text(json.dumps(_digests(step_dir)))
  tmp.replace(step_dir / DIGEST_FILE)


def non_finite(tree: Any) -> list[str]:
  """The paths of the floating-point leaves of `tree` with a NaN or inf."""
  return [jax.tree_util.keystr(path) for path, x in
          jax.tree_util.tree_leaves_with_path(tree)
          if np.issubdtype(np.asarray(x).dtype, np.floating)
          and not np.isfinite(x).all()]


def save(workdir: pathlib.Path, step: int, state: Any,
         progress: dict[str, Any], keep: int | None = None) -> None:
  """Saves `state` (unreplicated) and `progress` at `step`, waits, records
  the files' digests, then deletes all but the newest `keep` checkpoints.

  Old checkpoints go only once the new one's digest is written, so a crash
  at any point leaves at least one checkpoint that verifies. Refuses a state
  with a non-finite value (FloatingPointError) and a disk without room for
  it (OSError ENOSPC) before writing anything.
  """
  bad = non_finite(state)
  if bad:  # Parameters or optimizer state.
    raise FloatingPointError(
        f'non-finite train state after step {step}: {bad[:3]}; training '
        'stopped and no checkpoint was written from it; lower '
        'train.learning_rate or check the inputs.')
  # The state (measured: 1.08x its bytes on disk), and room for the log
  # lines after it.
  diskspace.require(workdir, 5 * diskspace.tree_bytes(state) // 4 +
                    diskspace.LOG_MARGIN_BYTES, f'the checkpoint of step {step}')
  with _quiet(), manager(workdir) as mngr:
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        progress=ocp.args.JsonSave(progress)), force=True)
    mngr.wait_until_finished()
    if jax.process_index() == 0:
      _record_digests(directory(workdir) / str(step))
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


def unfinished(step_dir: pathlib.Path) -> bool:
  """Whether Orbax committed the checkpoint but posenc recorded no digests."""
  return ((step_dir / COMMIT_FILE).is_file() and
          not (step_dir / DIGEST_FILE).exists())


def _set_aside_time(path: pathlib.Path) -> int:
  stamp = path.name.rpartition('-')[2]
  return int(stamp) if stamp.isdigit() else path.stat().st_mtime_ns


def _set_aside(step_dir: pathlib.Path) -> pathlib.Path:
  """Moves a checkpoint to `damaged/`, then deletes all there but the newest
  DAMAGED_KEEP (logging each)."""
  target = step_dir.parent / DAMAGED_DIR / f'{step_dir.name}-{time.time_ns()}'
  target.parent.mkdir(exist_ok=True)
  step_dir.rename(target)
  for old in sorted(target.parent.iterdir(), key=_set_aside_time)[
      :-DAMAGED_KEEP]:
    shutil.rmtree(old, ignore_errors=True)
    logging.warning('Deleted the damaged checkpoint %s: %s keeps the newest '
                    '%d.', old, target.parent, DAMAGED_KEEP)
  return target


def steps(workdir: pathlib.Path) -> list[int]:
  if not directory(workdir).exists():
    return []
  with _quiet(), manager(workdir) as mngr:
    return list(mngr.all_steps())


def _adopt(workdir: pathlib.Path, target: Any, step: int, *, record: bool
           ) -> tuple[tuple[Any, dict[str, Any]] | None, str | None]:
  """An unfinished checkpoint, restored and checked, its digests recorded
  if `record`: `(restored, None)`; or `(None, what is wrong)`."""
  try:
    state, progress = restore(workdir, target, step)
    bad = non_finite(state)
    if bad or int(progress['step']) != step:
      raise ValueError(f'non-finite values in {bad[:3]} or a wrong step')
  except Exception as e:  # pylint: disable=broad-except
    return None, ('unfinished: committed by Orbax, no digests from posenc, '
                  f'and it does not restore ({type(e).__name__}: {e})')
  note = ('its digests are recorded now' if record else
          'its digests are not recorded (reading only)')
  if record and jax.process_index() == 0:
    try:
      _record_digests(directory(workdir) / str(step))
    except OSError as e:
      note = f'its digests could not be recorded ({e})'
  logging.warning('Checkpoint of step %d is unfinished, not damaged: the run '
                  'stopped after Orbax committed it and before posenc '
                  'recorded its digests. It restores and checks out, so it '
                  'is used; %s.', step, note)
  return (state, progress), None


def restore_latest(workdir: pathlib.Path, target: Any, *,
                   restart_if_damaged: bool = False, read_only: bool = False
                   ) -> tuple[Any, dict[str, Any]] | None:
  """The newest intact checkpoint as (state, progress), or None if none.

  Damaged checkpoints newer than it are logged, moved aside (unless
  `read_only`, for readers such as evaluation) and skipped; unfinished ones
  are adopted if they restore (their digests recorded unless `read_only`).
  If there are checkpoints but all are damaged, raises `AllDamaged` and
  moves nothing, unless `restart_if_damaged`: then they are moved aside and
  None is returned. A checkpoint whose files are intact but do not fit
  `target` raises.
  """
  damaged, restored = [], None
  for step in sorted(steps(workdir), reverse=True):
    step_dir = directory(workdir) / str(step)
    problem = damage(step_dir)
    if problem is None:
      restored = restore(workdir, target, step)
    elif unfinished(step_dir):
      restored, problem = _adopt(workdir, target, step,
                                 record=not read_only)
    if restored is not None:
      break
    if jax.process_index() == 0:
      logging.warning('Checkpoint of step %d is damaged (%s); trying the '
                      'previous one.', step, problem)
    damaged.append((step, problem))
  problems = '; '.join(f'step {s}: {p}' for s, p in damaged[:3])
  if restored is None and damaged and read_only:
    raise AllDamaged(
        f'every checkpoint in {directory(workdir)} is damaged ({problems}); '
        'there is nothing to evaluate. Restore them from a copy.')
  if restored is None and damaged and not restart_if_damaged:
    raise AllDamaged(
        f'every checkpoint in {directory(workdir)} is damaged ({problems}), '
        f'so {workdir} would restart from step 0; none was moved. Restore '
        'them from a copy, or restart training from step 0 with '
        '--restart_if_damaged (train_and_evaluate(restart_if_damaged=True)), '
        f'which moves them to {DAMAGED_DIR}/.')
  if jax.process_index() == 0 and not read_only:
    for step, _ in reversed(damaged):  # Oldest first: newer ones kept longer.
      moved = _set_aside(directory(workdir) / str(step))
      logging.warning('Moved the damaged checkpoint of step %d to %s.', step,
                      moved)
  return restored


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
