"""Runs posenc's studies in resumable units, writes their records, figures
and the generated part of docs/results.md.

  python -m experiments.run                   # every study (hours; resumes)
  python -m experiments.run --studies=depth   # one study
  python -m experiments.run --check           # which records are stale
  python -m experiments.run --report_only     # figures and report only
  python -m experiments.run --quick           # tiny sizes (about 2 min)

A study is a list of units (one training program each, see
experiments/records.py). A unit already recorded by the same code for the
same spec is not rerun, so the full suite runs in pieces: stop it at any
time and start it again. Each record carries its unit's key, the digest of
the code it ran on, the commit and the date. Writes to --out (default
experiments/results/studies, or .../quick): <study>.jsonl, figures/*.png,
results.md and run.json (machine, timings); a full run also replaces the
part of docs/results.md between the results markers.
"""

import argparse
import datetime
import importlib
import json
import pathlib
import sys
import time

from experiments import records as records_lib
from experiments import report
from experiments import studies
from experiments import tuning

REPO = records_lib.REPO
STUDIES = ('depth', 'lengths', 'tasks', 'ruoss')  # In the order they run.


def module(study: str):
  return importlib.import_module(f'experiments.study_{study}')


def code_digests() -> dict[str, str]:
  """Each study's code digest (tuning's too: its units are shared)."""
  modules = {s: module(s) for s in STUDIES}
  modules[tuning.STUDY] = tuning
  return {s: records_lib.source_digest(records_lib.library(m.CODE))
          for s, m in modules.items()}


def check(store: records_lib.Store, scale: studies.Scale,
          selected: tuple[str, ...]) -> bool:
  """Prints each study's records by state; True when all are current."""
  ok = True
  for study in selected:
    state = store.check(list(module(study).plan(scale, store)), study)
    counts = ', '.join(f'{len(v)} {k}' for k, v in state.items())
    print(f'{study}: {counts} (code {store.code[study]})')
    for kind in ('stale', 'missing'):
      for label in state[kind]:
        print(f'  {kind}: {label}')
    if state['unplanned']:
      print(f'  unplanned keys in {study}.jsonl (kept, not reported): '
            f'{", ".join(state["unplanned"])}')
    ok &= not state['stale'] and not state['missing']
  return ok


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n', 1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
  parser.add_argument('--quick', action='store_true',
                      help='tiny sizes: checks that it all runs')
  parser.add_argument('--studies', default=','.join(STUDIES),
                      help=f'comma-separated, of {",".join(STUDIES)}')
  parser.add_argument('--out', type=pathlib.Path, default=None)
  parser.add_argument('--doc', type=pathlib.Path, default=None,
                      help='Markdown file whose results markers to fill '
                      '(default: docs/results.md on a full run, none with '
                      '--quick)')
  parser.add_argument('--check', action='store_true',
                      help='train nothing: list stale and missing records')
  parser.add_argument('--report_only', action='store_true',
                      help='train nothing: redraw figures and the report '
                      'from the records in --out')
  args = parser.parse_args(argv)
  selected = tuple(s for s in args.studies.split(',') if s)
  unknown = [s for s in selected if s not in STUDIES]
  if unknown or not selected:
    parser.error(f'--studies={args.studies!r}: unknown {unknown}; valid: '
                 f'{",".join(STUDIES)}')
  scale = studies.QUICK if args.quick else studies.FULL
  out = args.out or REPO / 'experiments' / 'results' / (
      'quick' if args.quick else 'studies')
  doc = args.doc or (None if args.quick else REPO / 'docs' / 'results.md')
  if doc is not None and (not doc.is_file() or report.BEGIN.split(' (')[0]
                          not in doc.read_text() or report.END
                          not in doc.read_text()):
    parser.error(f'--doc={doc}: not a Markdown file with the results '
                 f'markers ({report.BEGIN.split(" (")[0]} ... {report.END}) '
                 'where the section belongs.')
  store = records_lib.Store(out, code_digests())
  if args.check:
    sys.exit(0 if check(store, scale, selected) else 1)

  info = records_lib.environment()
  start = time.perf_counter()
  if not args.report_only:
    print(f'posenc studies {",".join(selected)} on {info["cores"]} cores '
          f'({info["cpu"]}); writing {out}', flush=True)
    for study in selected:
      study_start, ran = time.perf_counter(), 0
      for unit in module(study).plan(scale, store):
        if not unit.ready:
          print(f'{study}: skipped {unit.label!r}: no tuned point (every '
                'point diverged)', flush=True)
          continue
        if store.current(unit):
          continue
        try:
          store.run(unit)
        except FloatingPointError as e:  # Recorded by none; the rest go on.
          print(f'\n{study}: {unit.label!r} diverged, not recorded: {e}',
                flush=True)
          continue
        ran += 1
      print(f'{study}: {ran} units run in '
            f'{time.perf_counter() - study_start:.0f}s', flush=True)

  # run.json: the machine of the latest run, merged into what is on disk
  # (another run may be writing other studies' records beside this one).
  meta_path = out / 'run.json'
  meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
  meta.update(machine=info, quick=args.quick, seeds=list(scale.seeds),
              code=store.code)
  if not args.report_only:
    meta['date'] = datetime.date.today().isoformat()
  studies_all = STUDIES + (tuning.STUDY,)
  on_disk = {s: store.read(s) for s in studies_all}
  planned = {s: set() for s in studies_all}
  for study in STUDIES:
    for unit in module(study).plan(scale, store):
      planned[unit.study].add(unit.key)
  grid = {'learning_rates': scale.learning_rates,
          'table_init_stds': scale.table_init_stds}
  (out / 'figures').mkdir(parents=True, exist_ok=True)
  tmp = meta_path.with_suffix('.tmp')
  tmp.write_text(json.dumps(meta, indent=2))
  tmp.replace(meta_path)
  # The same section twice, its image links relative to each file's folder.
  (out / 'results.md').write_text(report.render(on_disk, meta, out, store,
                                                planned, grid))
  if doc is not None:
    report.replace_section(doc, report.render(on_disk, meta, out, store,
                                              planned, grid,
                                              links=doc.parent))
  print(f'Done in {time.perf_counter() - start:.0f}s: {out / "results.md"}'
        + (f', {doc}' if doc else ''), flush=True)


if __name__ == '__main__':
  main()
