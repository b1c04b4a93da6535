"""Tests of the dataset cache: reuse, damaged files regenerated, and the
temporary files of a killed writer removed."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from posenc.datasets import cache

REPO = pathlib.Path(__file__).resolve().parents[1]


def _generator(calls):
  def generate():
    calls.append(1)
    return {'x': np.arange(1000, dtype=np.float32).reshape(10, 100),
            'y': np.arange(10, dtype=np.int32)}
  return generate


def _entry(tmp_path):
  (npz,) = tmp_path.glob('toy-*.npz')
  return npz, npz.with_suffix('.json')


def test_generated_once_then_reused(tmp_path):
  calls = []
  first = cache.load_or_generate(tmp_path, 'toy', {'a': 1}, _generator(calls))
  second = cache.load_or_generate(tmp_path, 'toy', {'a': 1}, _generator(calls))
  assert len(calls) == 1
  for k in first:
    np.testing.assert_array_equal(first[k], second[k])
  record = json.loads(_entry(tmp_path)[1].read_text())
  assert record['params'] == {'format': cache.FORMAT, 'a': 1}
  # Other parameters: another entry.
  cache.load_or_generate(tmp_path, 'toy', {'a': 2}, _generator(calls))
  assert len(calls) == 2
  assert not list(tmp_path.glob('.*'))  # No temporary files left.


@pytest.mark.parametrize('damage', ['truncate', 'flip_byte', 'drop_record',
                                    'garble_record', 'drop_npz'])
def test_damaged_entry_is_detected_and_regenerated(tmp_path, damage, caplog):
  calls = []
  good = cache.load_or_generate(tmp_path, 'toy', {}, _generator(calls))
  npz, record = _entry(tmp_path)
  raw = npz.read_bytes()
  if damage == 'truncate':
    npz.write_bytes(raw[:len(raw) // 2])
  elif damage == 'flip_byte':  # Still a readable zip: only the digest sees it.
    i = raw.index(np.arange(1000, dtype=np.float32)[500:].tobytes()[:8])
    npz.write_bytes(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1:])
  elif damage == 'drop_record':
    record.unlink()
  elif damage == 'garble_record':
    record.write_text('{not json')
  else:
    npz.unlink()
  again = cache.load_or_generate(tmp_path, 'toy', {}, _generator(calls))
  assert len(calls) == 2  # Regenerated, not used.
  assert 'damaged' in caplog.text and 'regenerating' in caplog.text
  for k in good:
    np.testing.assert_array_equal(good[k], again[k])
  # The regenerated entry is intact and reused.
  cache.load_or_generate(tmp_path, 'toy', {}, _generator(calls))
  assert len(calls) == 2


_KILLED_WRITER = '''
import os, pathlib, sys, time
from posenc.datasets import cache
def write(f):
  f.write(b'x' * 1000)
  f.flush()
  print('writing', flush=True)
  time.sleep(600)
cache._atomic_write(pathlib.Path(sys.argv[1]) / 'toy-0.npz', write)
'''


def test_temporary_files_of_a_killed_writer_are_removed(tmp_path, caplog):
  writer = subprocess.Popen(
      [sys.executable, '-c', _KILLED_WRITER, str(tmp_path)],
      cwd=REPO, env={**os.environ, 'PYTHONPATH': str(REPO)},
      stdout=subprocess.PIPE, text=True)
  try:
    assert writer.stdout.readline().strip() == 'writing'
    (orphan,) = tmp_path.glob('.toy-0.npz.*')
    assert f'.{writer.pid}.' in orphan.name
    # Its writer alive and writing: left alone.
    cache.load_or_generate(tmp_path, 'toy', {}, _generator([]))
    assert orphan.exists()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
  finally:
    if writer.poll() is None:
      writer.kill()
      writer.wait()
  # Untouched for long (another host's, or an older posenc's): removed too.
  old = tmp_path / '.toy-0123456789abcdef.json.abc_123x'
  # Hidden files of the user's that only look alike: never touched.
  users = [tmp_path / n for n in ('.settings.json.bak', '.my.npz.v2',
                                  '.toy-1.json.abc_123x')]
  for path in [old] + users:
    path.write_text('{')
    os.utime(path, (time.time() - cache.STALE_SECONDS - 60,) * 2)
  recent = tmp_path / '.toy-2.json.tmp.1.otherhost.abc_123x'
  recent.write_text('{')
  cache.load_or_generate(tmp_path, 'toy', {}, _generator([]))
  assert not orphan.exists() and not old.exists()
  assert recent.exists()  # Another host's writer may still be at work.
  assert all(path.exists() for path in users)
  assert 'its writer is gone' in caplog.text
  assert 'untouched for' in caplog.text
