"""Checkpoints on resume: unfinished ones (committed by Orbax, no digests
yet) adopted when they restore, damaged ones set aside and bounded, and a
workdir whose every checkpoint is damaged refused instead of restarted."""

import numpy as np
import pytest

from posenc import checkpoints

TARGET = {'w': np.zeros(4096, np.float32)}


def _save(workdir, *steps):
  for step in steps:
    checkpoints.save(workdir, step, {'w': np.full(4096, step, np.float32)},
                     {'step': step})


def _dir(workdir, step):
  return checkpoints.directory(workdir) / str(step)


def _truncate_largest(step_dir):
  """Cuts the largest file of the train state (array data) in half."""
  victim = max((p for p in (step_dir / 'state').rglob('*') if p.is_file()),
               key=lambda p: p.stat().st_size)
  victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])


def _restored_step(restored):
  state, progress = restored
  assert (state['w'] == progress['step']).all()
  return progress['step']


def test_unfinished_checkpoint_that_restores_is_adopted(tmp_path, caplog):
  _save(tmp_path, 1, 2)
  # A crash between Orbax's commit and posenc's digests.
  (_dir(tmp_path, 2) / checkpoints.DIGEST_FILE).unlink()
  assert checkpoints.unfinished(_dir(tmp_path, 2))
  assert _restored_step(checkpoints.restore_latest(tmp_path, TARGET)) == 2
  assert 'Checkpoint of step 2 is unfinished, not damaged' in caplog.text
  assert checkpoints.damage(_dir(tmp_path, 2)) is None  # Digests recorded.
  assert not (checkpoints.directory(tmp_path) / 'damaged').exists()


def test_unfinished_checkpoint_that_does_not_restore_is_set_aside(
    tmp_path, caplog):
  _save(tmp_path, 1, 2)
  (_dir(tmp_path, 2) / checkpoints.DIGEST_FILE).unlink()
  _truncate_largest(_dir(tmp_path, 2))
  assert _restored_step(checkpoints.restore_latest(tmp_path, TARGET)) == 1
  assert 'Checkpoint of step 2 is damaged (unfinished' in caplog.text
  (moved,) = (checkpoints.directory(tmp_path) / 'damaged').iterdir()
  assert moved.name.startswith('2-')


def test_every_checkpoint_damaged_is_refused_unless_restarting(tmp_path):
  _save(tmp_path, 1, 2)
  for step in (1, 2):
    _truncate_largest(_dir(tmp_path, step))
  with pytest.raises(checkpoints.AllDamaged) as e:
    checkpoints.restore_latest(tmp_path, TARGET)
  assert not isinstance(e.value, ValueError)
  assert str(tmp_path) in str(e.value)
  assert 'restart_if_damaged' in str(e.value)
  assert checkpoints.steps(tmp_path) == [1, 2]  # Left in place.
  assert checkpoints.restore_latest(tmp_path, TARGET,
                                    restart_if_damaged=True) is None
  assert checkpoints.steps(tmp_path) == []
  assert sorted(p.name.split('-')[0] for p in (
      checkpoints.directory(tmp_path) / 'damaged').iterdir()) == ['1', '2']
  assert checkpoints.restore_latest(tmp_path, TARGET) is None  # Fresh now.


def test_damaged_keeps_the_newest_few(tmp_path, caplog):
  _save(tmp_path, 1, 2, 3, 4, 5)
  for step in (2, 3, 4, 5):
    _truncate_largest(_dir(tmp_path, step))
  assert _restored_step(checkpoints.restore_latest(tmp_path, TARGET)) == 1
  kept = sorted(p.name.split('-')[0] for p in (
      checkpoints.directory(tmp_path) / 'damaged').iterdir())
  assert len(kept) == checkpoints.DAMAGED_KEEP == 3
  assert kept == ['3', '4', '5']
  assert 'Deleted the damaged checkpoint' in caplog.text
  assert '/damaged/2-' in caplog.text
