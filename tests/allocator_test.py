"""Tests of posenc.allocator: tcmalloc through one re-execution."""

import os
import subprocess
import sys

import pytest
from absl import logging

from posenc import allocator

_REPORT = ('from posenc import allocator; allocator.use({!r}); '
           'print("allocator:", allocator.loaded())')


def _run(choice: str, **env) -> subprocess.CompletedProcess:
  environ = {k: v for k, v in os.environ.items()
             if k not in ('LD_PRELOAD', 'POSENC_TCMALLOC_TRIED')}
  return subprocess.run([sys.executable, '-c', _REPORT.format(choice)],
                        env={**environ, **env}, capture_output=True,
                        text=True, timeout=120, check=True)


@pytest.mark.skipif(allocator.find_tcmalloc() is None,
                    reason='tcmalloc is not installed here')
def test_tcmalloc_restarts_the_process_with_it_preloaded():
  assert 'allocator: tcmalloc' in _run('tcmalloc').stdout
  assert 'allocator: None' in _run('system').stdout


def test_a_preload_that_did_not_take_is_not_retried():
  # The marker of an earlier attempt, and nothing preloaded: no loop.
  out = _run('tcmalloc', POSENC_TCMALLOC_TRIED='1')
  assert 'allocator: None' in out.stdout
  assert 'did not load' in out.stderr


def test_missing_tcmalloc_warns_and_goes_on(monkeypatch):
  monkeypatch.setattr(allocator, 'TCMALLOC_PATHS', ('/nonexistent/tc.so',))
  monkeypatch.delenv('POSENC_TCMALLOC_TRIED', raising=False)
  monkeypatch.setattr(allocator, 'loaded', lambda: None)
  warnings = []
  monkeypatch.setattr(logging, 'warning', lambda msg, *a: warnings.append(
      msg % a))
  allocator.use('tcmalloc')  # Returns: nothing to preload.
  assert 'libtcmalloc-minimal4' in warnings[0]


def test_invalid_choice_names_the_field():
  with pytest.raises(ValueError, match=r"train.allocator='jemalloc'.*tcmalloc"):
    allocator.use('jemalloc')
