"""Runs posenc's studies, writes their records and figures, and the generated
part of docs/results.md.

  python -m experiments.run          # all five, 3 seeds (~60 min, 2 cores)
  python -m experiments.run --quick    # tiny sizes, 1 seed (about 2 min)
  python -m experiments.run --studies=lengths   # one study; the report is
                                                # rebuilt from every record

Writes to --out (default experiments/results/studies, or .../quick):
<study>.jsonl (one record per seed and setting), learned_tables.npz,
figures/*.png, results.md and run.json (command, machine, timings). A full
run also replaces the part of docs/results.md between the results markers;
the hand-written text around them stays.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import numpy as np

from experiments import figures
from experiments import report
from experiments import studies
from experiments import tables

REPO = pathlib.Path(__file__).resolve().parents[1]
STUDIES = ('tasks', 'depth', 'lengths', 'tables', 'cost')


def machine() -> dict:
  cpu = platform.processor()
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        cpu = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  return {'cpu': cpu, 'cores': len(os.sched_getaffinity(0)),
          'memory_gib': memory / 2**30, 'python': platform.python_version(),
          'jax': jax.__version__, 'backend': jax.default_backend()}


def run_cost(scale: studies.Scale, memory_gib: float) -> list[dict]:
  """Study 5, one subprocess per encoding (each its own memory peak)."""
  records = []
  lengths = scale.cost_lengths + scale.cost_estimate_lengths
  encodings = scale.cost_encodings or scale.encodings
  for k, encoding in enumerate(encodings):
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, '-m', 'experiments.cost', f'--encoding={encoding}',
         f'--lengths={",".join(map(str, lengths))}',
         f'--batch={scale.cost_batch}',
         f'--run_limit_gib={memory_gib / 2:.1f}',
         f'--max_run_len={max(scale.cost_lengths)}'],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={**os.environ, 'PYTHONPATH': str(REPO)})
    if result.returncode != 0:
      raise RuntimeError(f'experiments.cost for {encoding} failed:\n'
                         f'{result.stderr[-3000:]}')
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    records.extend(rows)
    ran = [r['seq_len'] for r in rows if r['status'] == 'ran']
    print(f'[cost {k + 1}/{len(encodings)}] {encoding}: ran up to '
          f'{max(ran, default="none")}, in '
          f'{time.perf_counter() - start:.0f}s', flush=True)
  return records


def run_all(scale: studies.Scale, selected: tuple[str, ...],
            save: Callable[[str, Any], None],
            learned: dict[str, np.ndarray] | None = None) -> dict[str, float]:
  """Runs the selected studies (of 'tasks', 'depth', 'lengths', 'tables'),
  calling `save(study, records)` as each ends (and `save('learned_tables',
  tables)` after 'tasks'); returns seconds by study. 'tables' alone
  analyses `learned` (study 1's saved tables) where given, else trains
  study 1 first."""
  seconds = {}
  learned = learned or {}
  plan = [('tasks', 'Study 1/5: which encoding, on which task'),
          ('tables', 'Study 4/5: what the learned table learns'),
          ('depth', 'Study 2/5: does position survive depth?'),
          ('lengths', 'Study 3/5: lengths')]
  for name, title in plan:
    needed = name in selected or (name == 'tasks' and 'tables' in selected
                                  and not learned)
    if not needed:
      continue
    print(title, flush=True)
    start = time.perf_counter()
    if name == 'tasks':
      records, learned = studies.tasks(scale)
      if learned:
        save('learned_tables', learned)
    elif name == 'tables':
      records = tables.study(scale, learned,
                             tables.signal_orders(scale, learned))
    else:
      records = getattr(studies, name)(scale)
    seconds[name] = time.perf_counter() - start
    save(name, records)
  return seconds


def write_jsonl(path: pathlib.Path, records: list[dict]) -> None:
  tmp = path.with_suffix('.tmp')
  tmp.write_text(''.join(json.dumps(r) + '\n' for r in records))
  tmp.replace(path)


def read_jsonl(path: pathlib.Path) -> list[dict]:
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line]


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n', 1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--quick', action='store_true',
                      help='tiny sizes and 1 seed: checks that it all runs')
  parser.add_argument('--studies', default=','.join(STUDIES),
                      help=f'comma-separated, of {",".join(STUDIES)}')
  parser.add_argument('--out', type=pathlib.Path, default=None)
  parser.add_argument('--doc', dest='doc', type=pathlib.Path,
                      default=None,
                      help='Markdown file whose results markers to fill '
                      '(default: docs/results.md on a full run, none with '
                      '--quick)')
  parser.add_argument('--report_only', action='store_true',
                      help='train nothing: redraw figures and the report '
                      'from the records in --out')
  args = parser.parse_args(argv)
  selected = tuple(s for s in args.studies.split(',') if s)
  unknown = [s for s in selected if s not in STUDIES]
  if args.report_only:
    selected = ()
  elif unknown or not selected:
    parser.error(f'--studies={args.studies!r}: unknown {unknown}; valid: '
                 f'{",".join(STUDIES)}')
  scale = studies.QUICK if args.quick else studies.FULL
  out = args.out or REPO / 'experiments' / 'results' / (
      'quick' if args.quick else 'studies')
  doc = args.doc or (None if args.quick else REPO / 'docs' / 'results.md')
  (out / 'figures').mkdir(parents=True, exist_ok=True)
  info = machine()
  meta_path = out / 'run.json'
  meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
  meta.setdefault('seconds', {})
  meta.update(machine=info, quick=args.quick, seeds=list(scale.seeds),
              command='python -m experiments.run' + (' --quick' if args.quick
                                                      else ''))
  print(f'posenc studies {",".join(selected)} on {info["cores"]} cores '
        f'({info["cpu"]}), seeds {scale.seeds}; writing {out}', flush=True)

  start = time.perf_counter()
  def save(name, payload):  # As each study ends: a later failure loses none.
    if name == 'learned_tables':
      np.savez(out / 'learned_tables.npz', **payload)
    else:
      write_jsonl(out / f'{name}.jsonl', payload)

  tables_path = out / 'learned_tables.npz'
  saved_tables = (dict(np.load(tables_path)) if tables_path.exists()
                  and 'tasks' not in selected else None)
  seconds = run_all(scale, selected, save, saved_tables)
  meta['seconds'].update(seconds)
  if 'cost' in selected:
    print('Study 5/5: what long sequences cost', flush=True)
    cost_start = time.perf_counter()
    write_jsonl(out / 'cost.jsonl', run_cost(scale, info['memory_gib']))
    meta['seconds']['cost'] = time.perf_counter() - cost_start
  if selected:
    meta['seconds']['total_last_run'] = time.perf_counter() - start
    meta['date'] = datetime.date.today().isoformat()
    meta['studies_last_run'] = list(selected)

  # Figures and the report come from every record on disk.
  on_disk = {name: read_jsonl(out / f'{name}.jsonl') for name in STUDIES}
  if on_disk['tasks']:
    figures.tasks(on_disk['tasks'], out / 'figures' / 'tasks.png')
  if on_disk['depth']:
    figures.depth(on_disk['depth'], out / 'figures' / 'depth.png')
  if on_disk['lengths']:
    figures.lengths(on_disk['lengths'], out / 'figures' / 'lengths.png')
  if on_disk['tables'] and tables_path.exists():
    learned = dict(np.load(tables_path))
    first = min(int(key.rsplit('/', 1)[1]) for key in learned)
    learned = {k: v for k, v in learned.items()  # The figure shows seed 0.
               if int(k.rsplit('/', 1)[1]) == first}
    initial = {key: tables.initial_table(scale, key.rsplit('/', 1)[0], first)
               for key in learned}
    figures.tables(learned, initial, tables.signal_orders(scale, learned),
                   out / 'figures' / 'tables.png')
  if on_disk['cost']:
    figures.cost(on_disk['cost'], out / 'figures' / 'cost.png',
                 info['memory_gib'])
  meta_path.write_text(json.dumps(meta, indent=2))
  # The same section twice, its image links relative to each file's folder.
  (out / 'results.md').write_text(report.render(on_disk, meta, out, REPO))
  if doc is not None:
    report.replace_section(doc, report.render(
        on_disk, meta, out, REPO, links=doc.parent))
  print(f'Done in {time.perf_counter() - start:.0f}s: {out / "results.md"}'
        + (f', {doc}' if doc else ''), flush=True)


if __name__ == '__main__':
  main()
