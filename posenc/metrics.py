"""Where metrics go: JSON lines, TensorBoard event files, logs and a progress bar.

Only process 0 writes, so multi-process runs produce one set of files.
"""

import json
import os
import pathlib
import sys
import time
from typing import Any, Mapping

import jax
import numpy as np
import tensorboardX
import tqdm
from absl import logging


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and TensorBoard event files."""

  def __init__(self, workdir: pathlib.Path):
    self._active = jax.process_index() == 0
    if self._active:
      self._workdir = workdir
      self._jsonl = open(workdir / 'metrics.jsonl', 'a', encoding='utf-8')
      self._tb = tensorboardX.SummaryWriter(str(workdir / 'tensorboard'))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self._active:
      return
    record = {'step': int(step), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tb.add_scalar(name, float(value), int(step))

  def write_missing(self, step: int, scalars: Mapping[str, float]) -> None:
    """Writes the line unless `metrics.jsonl` has one at `step` with these
    keys: a rerun of a finished run restores a final line that was lost."""
    if self._active and not any(
        r['step'] == step and set(scalars) <= set(r)
        for r in records(self._workdir)):
      self.write(step, scalars)

  def close(self) -> None:
    if self._active:
      self._jsonl.close()
      self._tb.close()


DAMAGED_FILE = 'metrics.damaged.jsonl'


def _parse(raw: bytes) -> tuple[dict | None, str]:
  """The record of one line, or None and what is wrong with the line."""
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    return None, f'not UTF-8 ({e})'
  if not text.strip():
    return None, 'blank'
  try:
    record = json.loads(text)
  except (ValueError, RecursionError) as e:
    return None, f'not JSON ({e})'
  step = record.get('step') if isinstance(record, dict) else None
  if not isinstance(step, int) or isinstance(step, bool):
    return None, 'not an object with an integer "step"'
  return record, ''


def _records(raw: bytes) -> tuple[list[str], list[dict], list[dict]]:
  """The lines of a JSON-lines file that are records (each ending in a
  newline), their records, and the other lines as {'line': number (from 1),
  'text': the line, undecodable bytes escaped, 'problem': why}."""
  lines, records, damaged = [], [], []
  parts = raw.split(b'\n')
  if parts[-1] == b'':  # The newline that ends the last line.
    parts.pop()
  for number, part in enumerate(parts, start=1):
    record, problem = _parse(part)
    if record is None:
      damaged.append({'line': number, 'problem': problem,
                      'text': part.decode('utf-8', 'backslashreplace')})
    else:
      lines.append(part.decode('utf-8') + '\n')
      records.append(record)
  return lines, records, damaged


def write_atomic(path: pathlib.Path, text: str) -> None:
  """Writes `text` to a copy, flushed to disk, and renames it over `path`."""
  tmp = path.with_name(f'{path.name}.tmp')
  with open(tmp, 'w', encoding='utf-8') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  tmp.replace(path)


def first_non_finite(history: list[tuple[int, dict[str, float]]]) -> None:
  """Raises FloatingPointError naming the first step with a non-finite
  metric in `history` ((step, metrics) pairs)."""
  for step, scalars in history:
    bad = {k: v for k, v in scalars.items() if not np.isfinite(v)}
    if bad:
      raise FloatingPointError(
          f'non-finite metrics at step {step}: {bad}; training stopped and '
          'no checkpoint was written from it; lower train.learning_rate or '
          'check the inputs.')


def mean(history: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
  """The mean of each metric over `history` ((step, metrics) pairs)."""
  return {k: float(np.mean([m[k] for _, m in history])) for k in history[0][1]}


def truncate(workdir: pathlib.Path, step: int) -> None:
  """Drops the lines of `workdir/metrics.jsonl` after `step`, which a resumed
  run writes again; a copy is renamed over the file.

  Lines that are not records (cut short by a crash, garbled, blank, not
  UTF-8) are appended to `metrics.damaged.jsonl` with their line numbers,
  with a warning; every other line is kept.
  """
  path = workdir / 'metrics.jsonl'
  if not path.exists():
    return
  raw = path.read_bytes()
  lines, records, damaged = _records(raw)
  if damaged:  # Kept before they leave metrics.jsonl.
    aside = workdir / DAMAGED_FILE
    with open(aside, 'a', encoding='utf-8') as f:
      for d in damaged:
        f.write(json.dumps({'file': path.name, **d}) + '\n')
      f.flush()
      os.fsync(f.fileno())
    logging.warning(
        '%d line(s) of %s are damaged and were moved to %s (line numbers '
        '%s; line %d: %s); the other lines are kept.', len(damaged), path,
        aside, ', '.join(str(d['line']) for d in damaged[:10]),
        damaged[0]['line'], damaged[0]['problem'])
  kept = [l for l, r in zip(lines, records) if r['step'] <= step]
  if ''.join(kept).encode('utf-8') != raw:
    write_atomic(path, ''.join(kept))
  if len(kept) < len(lines):
    logging.info('Dropped %d lines after step %d from %s: they are written '
                 'again.', len(lines) - len(kept), step, path)


def records(workdir: pathlib.Path) -> list[dict]:
  """The records of `workdir/metrics.jsonl` (lines that are not are skipped:
  `truncate` sets them aside when a run starts)."""
  path = workdir / 'metrics.jsonl'
  return _records(path.read_bytes())[1] if path.exists() else []


def last_record(workdir: pathlib.Path, key: str) -> dict[str, Any]:
  """The last record of `workdir/metrics.jsonl` with `key`, or {}."""
  return next((r for r in reversed(records(workdir)) if key in r), {})


def set_aside(workdir: pathlib.Path, why: str) -> None:
  """Renames `workdir/metrics.jsonl` to `metrics.<why>-<time>.jsonl`, so a
  run that starts again from step 0 keeps the old run's lines."""
  path = workdir / 'metrics.jsonl'
  if path.exists():
    stamp = time.strftime('%Y%m%d-%H%M%S')
    target = path.with_name(f'metrics.{why}-{stamp}.jsonl')
    path.rename(target)
    logging.warning('Moved the metrics of the run before to %s.', target)


def read_text(path: pathlib.Path) -> str | None:
  """The text of `path`, or None where it cannot be read."""
  try:
    return path.read_text(encoding='utf-8')
  except (OSError, ValueError):
    return None


def previous_summary(workdir: pathlib.Path, step: int) -> dict[str, Any]:
  """`workdir/summary.json` if it is readable and of `step`, else {}."""
  try:
    summary = json.loads(read_text(workdir / 'summary.json') or 'null')
  except ValueError:
    return {}
  ok = isinstance(summary, dict) and summary.get('step') == step
  return summary if ok else {}


def append(path: pathlib.Path, record: Mapping[str, Any]) -> None:
  """Appends `record` to the JSON-lines file `path`. If that fails, the
  OSError names the path and carries the line, so the result is not lost."""
  line = json.dumps(record)
  try:
    with open(path, 'ab+') as f:
      cut = False  # A last line cut short stays a damaged line of its own.
      if f.seek(0, os.SEEK_END) > 0:
        f.seek(-1, os.SEEK_END)
        cut = f.read(1) != b'\n'
      f.write((('\n' if cut else '') + line + '\n').encode('utf-8'))
  except OSError as e:
    raise OSError(e.errno, f'could not append the result to {path.name} '
                  f'({e.strerror or e}); the line, also logged above: {line}',
                  str(path)) from e


class _AboveTheBar:
  """A stream that prints log lines above the progress bar, not through it."""

  def write(self, text: str) -> None:
    tqdm.tqdm.write(text, end='', file=sys.stderr)

  def flush(self) -> None:
    sys.stderr.flush()


class Progress:
  """A progress bar on an interactive terminal (process 0 only); else nothing.

  While the bar is shown, absl log lines are printed above it.
  """

  def __init__(self, total: int, initial: int = 0):
    self._bar = None
    self._log_handler = logging.get_absl_handler().python_handler
    self._log_stream = self._log_handler.stream
    if jax.process_index() == 0 and sys.stderr.isatty():
      self._bar = tqdm.tqdm(total=total, initial=initial, unit='step',
                            dynamic_ncols=True, leave=False)
      self._log_handler.stream = _AboveTheBar()

  def update(self, n: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(n)

  def show(self, scalars: Mapping[str, float]) -> None:
    if self._bar is not None:
      self._bar.set_postfix({k: f'{v:.4g}' for k, v in scalars.items()},
                            refresh=False)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._log_handler.stream = self._log_stream


def log_scalars(prefix: str, step: int, scalars: Mapping[str, Any]) -> None:
  text = ', '.join(f'{k}={v:.4g}' for k, v in scalars.items())
  logging.info('%s step %d: %s', prefix, step, text)


def report_references(workdir: pathlib.Path, step: int,
                      test_scalars: Mapping[str, float],
                      references: Mapping[str, Mapping[str, float]]) -> None:
  """Logs the run's test accuracy beside simple models' on the same test
  split and published results (`posenc.data.references`), and (process 0)
  writes them to `workdir/references.json`."""
  computed, published = references['computed'], references['published']
  if not computed and not published:
    return
  ours = test_scalars.get('test_accuracy')
  lines = [f'{k} {v:.4f}' for k, v in computed.items()]
  lines += [f'published: {k} {v:.4f}' for k, v in published.items()]
  logging.info('Test accuracy %s; beside it: %s',
               'n/a' if ours is None else f'{ours:.4f}', '; '.join(lines))
  if jax.process_index() == 0:
    write_atomic(workdir / 'references.json', json.dumps(
        {'step': step, 'test_accuracy': ours, 'references': dict(computed),
         'published': dict(published)}, indent=2))
