"""The generated part of docs/results.md, rendered from the studies' records.

Every cell is a mean over seeds with the half-width of its 95% t interval
(`m ± h`); differences between encodings are paired over shared seeds, and
marked * where they hold under Holm's correction over the table's
differences (family-wise 5%).
"""

import os
import pathlib

import numpy as np

from experiments import figures
from experiments import markdown
from experiments import records as records_lib
from experiments import report_ruoss
from experiments import stats

BEGIN = ('<!-- results:begin (written by `python -m experiments.run`; '
         'edits between these markers are overwritten) -->')
END = '<!-- results:end -->'


def _task_mean(rows, value: str, tasks: int, **where) -> dict:
  """{seed: mean of `value` over the tasks} for the rows matching `where`,
  over the seeds that have all `tasks` tasks."""
  per = {}
  for r in rows:
    if all(r.get(k) == v for k, v in where.items()):
      per.setdefault(r['seed'], []).append(r[value])
  return {s: float(np.mean(v)) for s, v in per.items() if len(v) == tasks}


def _point(point: dict, grid: dict) -> str:
  """The tuned point; † where it lies on the grid's edge."""
  text = f'{point["learning_rate"]:g}'
  edge = point['learning_rate'] in (min(grid['learning_rates']),
                                    max(grid['learning_rates']))
  if 'posemb_init_std' in point:
    text += f', std {point["posemb_init_std"]:g}'
    edge |= point['posemb_init_std'] in (min(grid['table_init_stds']),
                                         max(grid['table_init_stds']))
  return text + (' †' if edge else '')


def _tasks(records, grid, out, links) -> list[str]:
  final = [r for r in records if r.get('kind') == 'task']
  if not final:
    return []
  figures.tasks(final, out / 'figures' / 'tasks.png')
  lines = ['### 1. Which encoding, on which task', '',
           'Test accuracy (%, mean ± 95% interval over seeds; the test split '
           'read once, after training). Each encoding was tuned on each group '
           'of tasks on the validation split (learning rate, and for tables '
           'the initial scale: the chosen point is the last column). Class '
           'token, d=64, 4 heads, 2 blocks. `Δ learned`: the paired '
           'difference to `learned` on the same seeds, mean over the group\'s '
           'tasks (*: it holds under Holm\'s correction over the column). '
           '†: the chosen point lies on the edge of the grid.', '']
  for group in dict.fromkeys(r['group'] for r in final):
    rows = [r for r in final if r['group'] == group]
    names = list(dict.fromkeys(r['task'] for r in rows))
    encodings = list(dict.fromkeys(r['encoding'] for r in rows))

    def mean_by_seed(e):
      return _task_mean(rows, 'test_accuracy', len(names), encoding=e)
    learned = mean_by_seed('learned')
    diffs = markdown.diffs([(mean_by_seed(e), learned) if e != 'learned' and learned
                    else None for e in encodings])
    body = []
    for e, diff in zip(encodings, diffs):
      chosen = [r for r in rows if r['encoding'] == e]
      body.append([f'`{e}`'] + [
          markdown.cell(r['test_accuracy'] for r in chosen if r['task'] == t)
          for t in names] + [diff if e != 'learned' else '',
                             _point(chosen[0]['point'], grid)])
    lines += [f'**{group}**', '']
    lines += markdown.table(['encoding'] + names + ['Δ learned', 'lr, init'], body)
  shuffles = [(plain, f'{plain}_shuffled') for plain in ('mnist1d', 'digits')
              if any(r['task'] == plain for r in final)]
  if shuffles:
    lines += ['What one fixed permutation of the steps costs each encoding '
              '(plain minus shuffled test accuracy, paired over seeds). '
              'Without positions (`none`) the two are the same computation '
              'summed in another order: its row is the float noise floor.',
              '']
    encodings = list(dict.fromkeys(r['encoding'] for r in final))
    columns = [markdown.diffs([
        (stats.by_seed(final, 'test_accuracy', task=plain, encoding=e),
         stats.by_seed(final, 'test_accuracy', task=shuffled, encoding=e))
        for e in encodings]) for plain, shuffled in shuffles]
    body = [[f'`{e}`'] + [column[k] for column in columns]
            for k, e in enumerate(encodings)]
    lines += markdown.table(['encoding'] + [f'{p}: plain - shuffled'
                                    for p, _ in shuffles], body)
  return lines + markdown.figure(out, links, 'tasks', 'Study 1: test accuracy')


def _depth(records, out, links) -> list[str]:
  rows = [r for r in records if r.get('kind') == 'probe']
  if not rows:
    return []
  figures.depth(rows, out / 'figures' / 'depth.png', 'ridge')
  figures.depth(rows, out / 'figures' / 'depth_mlp.png', 'mlp')
  lines = ['### 2. Does position survive depth?', '',
           'Held-out accuracy (%) of probes for each token\'s absolute '
           'position, at the input (layer 0) and after the last block, '
           'trained and untrained (its twin: the same initial parameters, no '
           'step). `Δ`: trained minus untrained, paired over seeds (*: holds '
           'under Holm\'s correction over the column). `selectivity`: the '
           'MLP probe\'s kappa (accuracy above chance, as a share of what '
           'lies above it; chance 1/L) minus its kappa on the control task '
           '(a random position per content type, Hewitt and Liang 2019; '
           'chance its most frequent label), after the last block, x100. '
           '`share`: the share of the input\'s variance that position alone '
           'explains (%), at initialisation and after training. `task`: '
           'validation accuracy.', '']
  for task in dict.fromkeys(r['task'] for r in rows):
    chosen = [r for r in rows if r['task'] == task]
    last = max(r['layer'] for r in chosen)
    length = figures.POSITIONS.get(task)
    variants = list(dict.fromkeys(r['variant'] for r in chosen))

    def pick(variant, layer, trained):
      return [r for r in chosen if r['variant'] == variant
              and r['layer'] == layer and r['trained'] == trained]

    def cell(field, variant, layer, trained):
      return markdown.cell(r[field] for r in pick(variant, layer, trained))
    deltas = {field: markdown.diffs([
        ({r['seed']: r[field] for r in pick(v, last, True)},
         {r['seed']: r[field] for r in pick(v, last, False)})
        for v in variants]) for field in ('ridge', 'mlp')}
    body = []
    for k, variant in enumerate(variants):
      mine = pick(variant, last, True)
      selectivity = [
          stats.kappa(r['mlp'], 1 / length) - stats.kappa(
              r['mlp_control'], r['control_majority'])
          for r in mine if length and 'control_majority' in r]
      body.append([
          variant, cell('ridge', variant, 0, True),
          cell('ridge', variant, last, True),
          cell('ridge', variant, last, False), deltas['ridge'][k],
          cell('mlp', variant, last, True), cell('mlp', variant, last, False),
          deltas['mlp'][k], markdown.cell(selectivity),
          cell('position_share', variant, 0, False),
          cell('position_share', variant, 0, True),
          markdown.cell(r['task_accuracy'] for r in mine)])
    lines += [f'**{task}** ({chosen[0]["num_layers"]} blocks, {length} '
              'positions)', '']
    lines += markdown.table(['variant', 'linear, input', f'linear, layer {last}',
                     'untrained', 'Δ', f'MLP, layer {last}', 'untrained',
                     'Δ', 'selectivity', 'share, init', 'trained',
                     'task'], body)
  return lines + markdown.figure(out, links, 'depth', 'Study 2: linear probes') + (
      markdown.figure(out, links, 'depth_mlp', 'Study 2: MLP probes'))


def _lengths(records, tasks, out, links) -> list[str]:
  rows = [r for r in records if r.get('kind') == 'length']
  grid = [r for r in tasks if r.get('kind') == 'task'
          and 'test_accuracy_16x16' in r]
  if not rows and not grid:
    return []
  lines = ['### 3. Lengths', '']
  synthetic = [r for r in rows if r['data'] == 'synthetic']
  if synthetic:
    figures.lengths(synthetic, out / 'figures' / 'lengths.png')
    evals = sorted({r['eval_len'] for r in synthetic})
    lines += ['Accuracy (%) on sequences of exactly each length, mean of '
              "'before' and 'sorted' per seed, then over seeds (± 95% "
              f'interval). Trained on {synthetic[0]["train_len"] // 2} to '
              f'{synthetic[0]["train_len"]} steps. The last column: the '
              'paired difference to the learned table resampled, at the '
              'longest length (*: holds under Holm\'s correction over the '
              'column).', '']
    tasks_n = len({r['task'] for r in synthetic})

    def by_seed(variant, length):
      return _task_mean(synthetic, 'accuracy', tasks_n, variant=variant,
                        eval_len=length)
    variants = list(dict.fromkeys(r['variant'] for r in synthetic))
    reference = 'learned (resample)'
    longest = max(evals)
    diffs = markdown.diffs([(by_seed(v, longest), by_seed(reference, longest))
                    if v != reference and by_seed(reference, longest)
                    else None for v in variants])
    body = [[v] + [markdown.cell(by_seed(v, x).values()) for x in evals]
            + [diff if v != reference else '']
            for v, diff in zip(variants, diffs)]
    train_len = synthetic[0]['train_len']
    baseline = [r for r in synthetic if r['variant'] == 'learned (resample)'
                and r['eval_len'] == train_len]
    if baseline:
      lines += ['The learned baseline at the training length (`learned '
                '(resample)`, L = %d): ' % train_len + ', '.join(
                    f'{t} {markdown.cell(r["accuracy"] for r in baseline if r["task"] == t)}'
                    for t in dict.fromkeys(r['task'] for r in baseline))
                + '.', '']
    lines += markdown.table(['variant'] + [str(x) for x in evals]
                    + [f'Δ {reference}, {longest}'], body)
    lines += markdown.figure(out, links, 'lengths', 'Study 3: accuracy by length')
  vowels = [r for r in rows if r['data'] == 'vowels' and r['split'] == 'test']
  if vowels:
    lines += ['JapaneseVowels trained on utterances of at most 15 frames, '
              'test accuracy (%) on those of 16 to 29:', '']
    names = list(dict.fromkeys(r['variant'] for r in vowels))
    learned = stats.by_seed(vowels, 'accuracy', variant='learned')
    diffs = markdown.diffs([(stats.by_seed(vowels, 'accuracy', variant=e), learned)
                    if e != 'learned' and learned else None for e in names])
    lines += markdown.table(['encoding', 'test, 16-29 frames', 'Δ learned'], [
        [f'`{e}`', markdown.cell(r['accuracy'] for r in vowels if r['variant'] == e),
         diff if e != 'learned' else ''] for e, diff in zip(names, diffs)])
  if grid:
    lines += ['Digits in 2 x 2 patches, trained at 8 x 8 pixels (a 4 x 4 '
              'grid) and tested at 16 x 16 (8 x 8), test accuracy (%); '
              'tables resampled by each method (study 1\'s digits2d runs):',
              '']
    body = []
    for e in dict.fromkeys(r['encoding'] for r in grid):
      mine = [r for r in grid if r['encoding'] == e]
      for method in mine[0]['test_accuracy_16x16']:
        body.append([f'`{e}`' + ('' if method == 'none' else f', {method}'),
                     markdown.cell(r['test_accuracy'] for r in mine),
                     markdown.cell(r['test_accuracy_16x16'][method] for r in mine)])
    lines += markdown.table(['encoding', '8 x 8', '16 x 16'], body)
  return lines


def _tables(tasks, grid, out, links) -> list[str]:
  rows = [r for r in tasks if r.get('kind') == 'task' and 'moved' in r]
  if not rows:
    return []
  figures.tables(rows, out / 'figures' / 'tables.png')
  lines = ['### 4. What the learned table learns', '',
           'The learned tables of study 1 (at their tuned initial scale): '
           'how far training moved each (norm of the change over the '
           'initial norm, %); mean cosine similarity of neighbouring rows and '
           'of rows at least half the table apart, of the trained table and '
           'of the change alone (trained - initial); the variance the '
           'change\'s first principal component explains (%). For shuffled '
           'data, also with the rows in the signal\'s order.', '']
  body = []
  for task in dict.fromkeys(r['task'] for r in rows):
    mine = [r for r in rows if r['task'] == task]
    for prefix in ('', 'signal_'):
      if prefix + 'table' not in mine[0]:
        continue
      get = lambda part, key: markdown.cell(r[prefix + part][key] for r in mine)
      body.append([task + (', signal order' if prefix else ''),
                   _point(mine[0]['point'], grid),
                   markdown.cell(r['moved'] for r in mine),
                   get('table', 'neighbour_cosine'),
                   get('table', 'far_cosine'),
                   get('change', 'neighbour_cosine'),
                   get('change', 'far_cosine'),
                   markdown.cell(r[prefix + 'change']['explained_variance_3'][0]
                         for r in mine)])
  lines += markdown.table(['task', 'lr, init', 'moved', 'neighbour cos (x100)',
                   'far cos (x100)', 'change: neighbour', 'change: far',
                   'change: PC1'], body)
  return lines + markdown.figure(out, links, 'tables', 'cosine similarity of '
                         'learned position vectors and their change')


def _hours(study: str, rows: list[dict], meta: dict) -> float:
  """Seconds its units took (the records' own, else run.json's)."""
  seconds = dict(meta.get('seconds', {}).get(study, {}))
  for r in rows:
    if 'unit_seconds' in r:
      seconds[r['unit']] = r['unit_seconds']
  units = {r['unit'] for r in rows}
  return sum(v for k, v in seconds.items() if k in units) / 3600


def _provenance(records: dict, current: dict, store: records_lib.Store,
                meta: dict) -> list[str]:
  lines = []
  for study, rows in records.items():
    mine = current.get(study, [])
    if not rows:
      continue
    if not mine:
      lines.append(f'- {study}: no record from today\'s code and plan')
    else:
      dates = sorted({r['date'] for r in mine})
      commits = sorted({r['commit'] for r in mine})
      lines.append(
          f'- {study}: {len(mine)} records of '
          f'{len({r["unit"] for r in mine})} units from code '
          f'{store.code[study]}, {dates[0]} to {dates[-1]}, commits '
          f'{", ".join(commits)}; {_hours(study, mine, meta):.1f} h')
      diverged = {r['unit'] for r in mine if r.get('diverged')}
      if diverged:
        lines[-1] += f'; {len(diverged)} points diverged (never chosen)'
    if len(rows) > len(mine):
      lines[-1] += (f'; {len(rows) - len(mine)} records of other code or '
                    'of units no longer planned left out')
  return lines + ['']


def render(records: dict[str, list[dict]], meta: dict, out: pathlib.Path,
           store: records_lib.Store, planned: dict[str, set[str]],
           grid: dict, links: pathlib.Path | None = None) -> str:
  """The section between the markers, from the records that today's code
  made for today's plan (`planned`: the unit keys of each study); `grid`:
  the tuning grid ('learning_rates', 'table_init_stds'). Image links are
  relative to `links`, the directory of the document the section goes into
  (default `out`, where `results.md` lies)."""
  links = out if links is None else links
  m = meta['machine']
  current = {s: [r for r in rows if r.get('code') == store.code[s]
                 and r.get('unit') in planned.get(s, ())]
             for s, rows in records.items()}
  lines = [BEGIN, '',
           f'Records in `{os.path.relpath(out, records_lib.REPO)}/`, made on '
           f'{m["cores"]} cores of an {m["cpu"]}, {m["memory_gib"]:.0f} GiB, '
           f'{m["backend"]} backend, jax {m["jax"]}, Python {m["python"]} '
           '(each record carries its own machine and versions); reported '
           f'seeds {meta["seeds"]}. By study (`python -m experiments.run '
           '--check` lists what is missing or stale):', '']
  lines += _provenance(records, current, store, meta)
  lines += _tasks(current.get('tasks', []), grid, out, links)
  lines += _depth(current.get('depth', []), out, links)
  lines += _lengths(current.get('lengths', []), current.get('tasks', []),
                    out, links)
  lines += _tables(current.get('tasks', []), grid, out, links)
  lines += ['### 5. What long sequences cost', '',
            'Study 5 is `python -m experiments.cost --compare` (resumable on '
            'its own): einsum against blocked attention from 64 tokens up; '
            'its records, table and figure are `experiments/results/'
            'attention_paths.*`, read in docs/performance.md.', '']
  lines += report_ruoss.section(current.get('ruoss', []), out, links)
  return '\n'.join(lines + [END]) + '\n'


def replace_section(doc: pathlib.Path, section: str) -> None:
  """Replaces the text of `doc` between the markers (inclusive) with
  `section`; the hand-written text around them stays as it is."""
  text = doc.read_text()
  if BEGIN.split(' (')[0] not in text or END not in text:
    raise ValueError(f'{doc} has no results markers ({BEGIN!r} ... '
                     f'{END!r}); add them where the section belongs.')
  head, rest = text.split(BEGIN.split(' (')[0], 1)
  _, tail = rest.split(END, 1)
  doc.write_text(head + section.rstrip('\n') + tail)
