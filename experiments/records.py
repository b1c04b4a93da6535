"""Study records you can trust: what each was made from, and resuming.

A study is a list of `Unit`s. A unit is one training program (or one
analysis) with a `spec`: a JSON-able dict that fixes everything it computes
(resolved configs, seeds, evaluation settings). Its key is a digest of the
spec. Each record a unit writes carries that key, the digest of the source
code the numbers depend on (`code`), the commit and the date:

- `Store.current(unit)` is true when records for the unit's key exist with
  today's code digest: `experiments.run` does not rerun it;
- a record whose code digest differs from the code's now is stale, and
  `python -m experiments.run --check` lists it.

The code digest reads the syntax trees of the files, without docstrings and
comments: editing documentation does not make records stale, editing code
does.
"""

import ast
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import platform
import subprocess
import time
from importlib import metadata
from typing import Any, Callable

import jax

REPO = pathlib.Path(__file__).resolve().parents[1]
Record = dict[str, Any]
# The code every study's numbers depend on: these files and every posenc
# module they import, directly or not (`library`); each study adds its own
# modules (its `CODE`) and their imports. experiments/studies.py builds
# configs only, and those are in each unit's spec. A module that none of
# these imports (a dataset or encoding that registers itself when a config
# imports it) cannot change a study's numbers and is left out.
LIBRARY = ('posenc/main.py', 'experiments/fit.py')
PACKAGE = 'posenc'


def _strip_docstrings(tree: ast.AST) -> ast.AST:
  for node in ast.walk(tree):
    body = getattr(node, 'body', None)
    if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)):
      node.body = body[1:] or [ast.Pass()]
  return tree


def _module_files(name: str, root: pathlib.Path) -> list[pathlib.Path]:
  """The files importing module `name` runs: its packages' `__init__.py`
  and its own file ([] for a name that is not a module, such as a
  function imported from one)."""
  parts = name.split('.')
  files = []
  for n in range(1, len(parts) + 1):
    stem = root.joinpath(*parts[:n])
    if (stem / '__init__.py').exists():
      files.append(stem / '__init__.py')
    elif stem.with_suffix('.py').exists():
      files.append(stem.with_suffix('.py'))
    else:
      break
  return files


def library(code: tuple[str, ...], root: pathlib.Path = REPO
            ) -> tuple[str, ...]:
  """`LIBRARY` and `code` (paths under `root`) with every `PACKAGE` module
  they import, followed through their own imports: the files a study's
  numbers can depend on, sorted."""
  todo = [root / path for path in LIBRARY + code]
  seen: set[pathlib.Path] = set()
  while todo:
    path = todo.pop()
    if path in seen:
      continue
    if not path.exists():
      raise FileNotFoundError(f'{path} is not a file; it is named by '
                              'records.LIBRARY or a study\'s CODE.')
    seen.add(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names = [node.module] + [f'{node.module}.{alias.name}'
                                 for alias in node.names]
      else:
        continue
      for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + '.'):
          todo.extend(_module_files(name, root))
  return tuple(sorted(p.relative_to(root).as_posix() for p in seen))


def source_digest(patterns: tuple[str, ...], root: pathlib.Path = REPO
                  ) -> str:
  """Digest of the code (syntax trees less docstrings) of the files that
  `patterns` (globs under `root`) match."""
  digest = hashlib.sha256()
  files = sorted({p for pattern in patterns for p in root.glob(pattern)})
  if not files:
    raise FileNotFoundError(f'no file under {root} matches {patterns}')
  for path in files:
    tree = _strip_docstrings(ast.parse(path.read_text(), str(path)))
    digest.update(path.relative_to(root).as_posix().encode())
    digest.update(ast.dump(tree).encode())
  return digest.hexdigest()[:16]


def commit(root: pathlib.Path = REPO) -> str:
  """HEAD's hash, with '+changes' when tracked code (not records) differs
  from it."""
  try:
    head = subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'],
                          cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain',
                            '--untracked-files=no', '--', 'posenc',
                            'configs', 'experiments/*.py'], cwd=root,
                           capture_output=True, text=True,
                           check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'
  return head + ('+changes' if dirty else '')


def environment() -> dict:
  """The machine and the versions a record's numbers were made with."""
  cpu = platform.processor()
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        cpu = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  versions = {}
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'scipy',
                  'scikit-learn', 'sktime', 'mnist1d'):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      pass
  return {'cpu': cpu, 'cores': len(os.sched_getaffinity(0)),
          'memory_gib': round(os.sysconf('SC_PAGE_SIZE')
                              * os.sysconf('SC_PHYS_PAGES') / 2**30, 1),
          'python': platform.python_version(), 'backend':
          jax.default_backend(), **versions}


def spec_key(spec: dict) -> str:
  return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()
                        ).hexdigest()[:16]


@dataclasses.dataclass
class Unit:
  """One piece of a study: `compute()` returns its records."""

  study: str  # Whose records file it writes.
  label: str  # For progress lines and --check.
  spec: dict  # Everything the numbers depend on, besides the code.
  compute: Callable[[], list[Record]]
  ready: bool = True  # False: waits for another unit's records.

  @property
  def key(self) -> str:
    return spec_key({'study': self.study, **self.spec})


class Store:
  """One JSON-lines file per study under `out`; records are appended as
  each unit ends, so an interrupted run loses at most the unit in flight.
  Each record carries its unit's key, code digest, commit, date and the
  unit's seconds (training and evaluation)."""

  def __init__(self, out: pathlib.Path, code: dict[str, str]):
    self.out = out
    self.code = code  # Study -> digest of the code it runs.
    self.commit = commit()  # The code this process loaded, not a later one.
    self.env = environment()
    out.mkdir(parents=True, exist_ok=True)

  def path(self, study: str) -> pathlib.Path:
    return self.out / f'{study}.jsonl'

  def read(self, study: str) -> list[Record]:
    path = self.path(study)
    if not path.exists():
      return []
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError as e:
        raise ValueError(f'{path}:{n} is not a JSON record ({e.msg}); '
                         'remove that line to rerun its unit.') from None
    return records

  def records(self, unit: Unit) -> list[Record]:
    """The unit's records made by today's code (empty if none)."""
    return [r for r in self.read(unit.study) if r.get('unit') == unit.key
            and r.get('code') == self.code[unit.study]]

  def current(self, unit: Unit) -> bool:
    return bool(self.records(unit))

  @contextlib.contextmanager
  def _locked(self, study: str):
    """Excludes other processes writing the same study's file."""
    with open(self.out / f'{study}.lock', 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      try:
        yield
      finally:
        fcntl.flock(lock, fcntl.LOCK_UN)

  def run(self, unit: Unit) -> list[Record]:
    """The unit's records: read if current, else computed and appended
    (older records of the same key are dropped when the new ones land)."""
    done = self.records(unit)
    if done:
      return done
    start = time.perf_counter()
    computed = unit.compute()
    stamp = {'unit': unit.key, 'code': self.code[unit.study],
             'commit': self.commit, 'date': datetime.date.today().isoformat(),
             'unit_seconds': round(time.perf_counter() - start, 1),
             'env': self.env}
    new = [{**record, **stamp} for record in computed]
    if not new:
      raise ValueError(f'unit {unit.label!r} made no records.')
    with self._locked(unit.study):
      kept = [r for r in self.read(unit.study) if r.get('unit') != unit.key]
      self.write(unit.study, kept + new)
    return new

  def write(self, study: str, records: list[Record]) -> None:
    path = self.path(study)
    tmp = path.with_suffix(f'.tmp{os.getpid()}')
    tmp.write_text(''.join(json.dumps(r) + '\n' for r in records))
    tmp.replace(path)

  def check(self, units: list[Unit], study: str) -> dict[str, list[str]]:
    """Labels of the planned units by state ('current', 'stale': recorded
    by other code, 'missing'), and 'unplanned': keys in `study`'s own file
    that no planned unit has."""
    codes: dict[str, set[str]] = {}
    for name in dict.fromkeys([u.study for u in units] + [study]):
      for r in self.read(name):
        codes.setdefault(r.get('unit'), set()).add(r.get('code'))
    state = {'current': [], 'stale': [], 'missing': [], 'unplanned': []}
    for unit in units:
      found = codes.get(unit.key, set())
      state['current' if self.code[unit.study] in found else
            'stale' if found else 'missing'].append(unit.label)
    planned = {u.key for u in units}
    state['unplanned'] = sorted({r.get('unit') for r in self.read(study)}
                                - planned)
    return state
