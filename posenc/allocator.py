"""The host memory allocator: tcmalloc on request, where it is installed.

XLA:CPU allocates and frees every intermediate buffer of every step; with
glibc's malloc that costs page faults each time (a step at the benchmark's
medium size runs about 40% faster with tcmalloc on 2 cores, while the
seed-size main job trains about 12% slower, hence not the default; see the
docs/performance.md). A preloaded library only takes effect when a process
starts, so `use` re-executes the running command once, same arguments and
environment plus `LD_PRELOAD`. Where tcmalloc is not installed it warns and
goes on with the system allocator.
"""

import os
import pathlib
import sys

from absl import logging

ALLOCATORS = ('tcmalloc', 'system')
# Debian/Ubuntu `libtcmalloc-minimal4`, Fedora/RHEL `gperftools-libs`.
TCMALLOC_PATHS = (
    '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4',
    '/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4',
    '/usr/lib64/libtcmalloc_minimal.so.4',
    '/usr/lib/libtcmalloc_minimal.so.4',
)
# Set in the re-executed process so that a preload that did not take never
# loops.
_TRIED = 'POSENC_TCMALLOC_TRIED'


def find_tcmalloc() -> str | None:
  for path in TCMALLOC_PATHS:
    if pathlib.Path(path).exists():
      return path
  return None


def loaded() -> str | None:
  """The allocator this process runs with: 'tcmalloc' or None (another)."""
  try:
    maps = pathlib.Path('/proc/self/maps').read_text()
  except OSError:
    return None
  return 'tcmalloc' if 'libtcmalloc' in maps else None


def use(allocator: str) -> None:
  """Makes this process run on `allocator`, re-executing it if needed.

  Call before any work is done: the process is replaced. A no-op for
  'system', when tcmalloc is already loaded, or after one attempt.
  """
  if allocator not in ALLOCATORS:
    raise ValueError(f'train.allocator={allocator!r} is not valid; valid '
                     f'values: {", ".join(ALLOCATORS)}.')
  if allocator == 'system' or loaded() == 'tcmalloc':
    return
  if os.environ.get(_TRIED):
    logging.warning('train.allocator=tcmalloc: LD_PRELOAD=%s did not load; '
                    'using the system allocator.',
                    os.environ.get('LD_PRELOAD'))
    return
  path = find_tcmalloc()
  if path is None:
    logging.warning(
        'train.allocator=tcmalloc: not found (looked for %s); install '
        "Debian/Ubuntu's libtcmalloc-minimal4 or Fedora's gperftools-libs for "
        "faster steps on CPU, or set train.allocator='system' to silence "
        'this. Using the system allocator.', ', '.join(TCMALLOC_PATHS))
    return
  preload = ' '.join(p for p in (os.environ.get('LD_PRELOAD'), path) if p)
  logging.info('train.allocator=tcmalloc: restarting with LD_PRELOAD=%s.',
               preload)
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:],
            {**os.environ, 'LD_PRELOAD': preload, _TRIED: '1'})
