"""The report's section on Ruoss et al. (2023): posenc's table beside the
paper's (experiments/ruoss_paper.json holds what could be read of it).

A model's score is its accuracy averaged over the test lengths (41..500),
as the paper scores; a cell gives the mean over seeds with its 95% interval
and, in brackets, the maximum over seeds (the paper's statistic).
"""

import json
import pathlib

import numpy as np

from experiments import figures
from experiments import markdown
from experiments import stats

PAPER = pathlib.Path(__file__).with_name('ruoss_paper.json')
FIGURE_TASKS = ('even_pairs', 'cycle_navigation', 'missing_duplicate')
# The paper's randomized encodings: its average gain is over these.
PAPER_ENCODINGS = ('sin/cos', 'relative', 'rope', 'alibi', 'learned')


def scores(records: list[dict], length: str = 'test') -> dict:
  """{(task, variant): {seed: score}}: the mean over test lengths, or the
  accuracy at the training lengths (length='train')."""
  per = {}
  for r in records:
    if (r['length'] == 'train') == (length == 'train'):
      per.setdefault((r['task'], r['variant']), {}).setdefault(
          r['seed'], []).append(r['accuracy'])
  return {k: {s: float(np.mean(v)) for s, v in seeds.items()}
          for k, seeds in per.items()}


def _cell(by_seed: dict | None) -> str:
  if not by_seed:
    return '–'
  return (f'{markdown.cell(by_seed.values())} '
          f'({100 * max(by_seed.values()):.0f})')


def gains(test: dict, tasks: list[str], plain: list[str]) -> dict:
  """{encoding: {seed: randomized - plain, averaged over tasks}} for each
  encoding with both versions on every task, and 'all': their mean over
  the paper's encodings (PAPER_ENCODINGS) among them."""
  out = {}
  for encoding in plain:
    per_seed = {}
    for task in tasks:
      a = test.get((task, f'{encoding} (randomized)'), {})
      b = test.get((task, encoding), {})
      for seed in set(a) & set(b):
        per_seed.setdefault(seed, []).append(a[seed] - b[seed])
    full = {s: float(np.mean(v)) for s, v in per_seed.items()
            if len(v) == len(tasks)}
    if full:
      out[encoding] = full
  paper = [v for e, v in out.items() if e in PAPER_ENCODINGS]
  if paper:
    seeds = set.intersection(*(set(v) for v in paper))
    out['all'] = {s: float(np.mean([v[s] for v in paper])) for s in seeds}
  return out


def section(records: list[dict], out: pathlib.Path,
            links: pathlib.Path) -> list[str]:
  paper = json.loads(PAPER.read_text())
  lines = ['### 6. Beside a published table: Ruoss et al. (2023)', '']
  if not records:
    return lines + ['No record from today\'s code yet (`python -m '
                    'experiments.run --studies=ruoss`).', '']
  tasks = list(dict.fromkeys(r['task'] for r in records))
  variants = list(dict.fromkeys(r['variant'] for r in records))
  test, train = scores(records), scores(records, 'train')
  seeds = sorted({r['seed'] for r in records})
  lengths = sorted({r['length'] for r in records if r['length'] != 'train'})
  lines += [f'Test accuracy (%) averaged over the test lengths {lengths[0]}'
            f'..{lengths[-1]} ({len(lengths)} lengths), mean over seeds '
            f'{seeds} with its 95% interval, and (in brackets) the maximum '
            'over seeds, the statistic the paper reports. The paper\'s own '
            'numbers: ' + (paper['table_1_note'] if paper['table_1'] is None
                           else 'below each row') + '', '']
  lines += markdown.table(['task'] + variants, [
      [task] + [_cell(test.get((task, v))) for v in variants]
      for task in tasks])
  lines += ['At the training lengths (1..40, the validation split):', '']
  lines += markdown.table(['task'] + variants, [
      [task] + [markdown.cell(train.get((task, v), {}).values())
                for v in variants] for task in tasks])
  plain = [v for v in variants if f'{v} (randomized)' in variants]
  gain = gains(test, tasks, plain)
  if gain:
    claim = paper['claims'][0]
    lines += [f'Randomized minus plain, in points, averaged over the '
              f'{len(tasks)} tasks (paired over seeds; a seed\'s gain is its '
              'mean over tasks); `all` is the mean over the paper\'s '
              f'encodings ({", ".join(PAPER_ENCODINGS)}). The paper: '
              f'+{claim["value"]} on average over {claim["over"]}.', '']
    lines += markdown.table(
        ['encoding', 'randomized - plain'],
        [[e, stats.interval(list(v.values())).format()]
         for e, v in gain.items()])
  figures.ruoss(records, out / 'figures' / 'ruoss.png',
                [t for t in FIGURE_TASKS if t in tasks] or tasks[:3])
  lines += markdown.figure(out, links, 'ruoss',
                           'Accuracy against test length, per encoding')
  return lines
