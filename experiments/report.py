"""The generated part of docs/results.md, rendered from the studies' records."""

import os
import pathlib


from experiments import figures

BEGIN = ('<!-- results:begin (written by `python -m experiments.run`; '
         'edits between these markers are overwritten) -->')
END = '<!-- results:end -->'


def _cell(values, scale: float = 100.0, digits: int = 1) -> str:
  if not values:
    return '–'
  mean, std = figures.mean_std(values)
  if len(values) == 1:
    return f'{mean * scale:.{digits}f}'
  return f'{mean * scale:.{digits}f} ± {std * scale:.{digits}f}'


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
  return lines + ['']


def _figure(out: pathlib.Path, links: pathlib.Path, name: str,
            alt: str) -> list[str]:
  """An image link to out/figures/<name>.png, relative to the directory
  `links` of the document it goes into."""
  path = out / 'figures' / f'{name}.png'
  if not path.exists():
    return []
  link = pathlib.Path(os.path.relpath(path, links)).as_posix()
  return [f'![{alt}]({link})', '']


def _tasks(records, out, links) -> list[str]:
  metric = lambda r: r.get('test_accuracy', r.get('eval_accuracy'))
  values = figures.group(
      [dict(r, acc=metric(r)) for r in records], ('task', 'encoding'), 'acc')
  task_names = list(dict.fromkeys(r['task'] for r in records))
  encodings = list(dict.fromkeys(r['encoding'] for r in records
                                 if 'tuned' not in r['task']))
  lines = ['### 1. Which encoding, on which task', '',
           'Accuracy (%, mean ± std over seeds) on the held-out split: '
           '`eval` for the synthetic suite (sequences of 10 steps, 16 '
           'features), `test` for ListOps and MNIST-1D (read once, after '
           'training). Encoder: d=64, 4 heads, 2 blocks, MLP 256, Adam 2e-3.',
           '']
  rows = [[t] + [_cell(values.get((t, e), [])) for e in encodings]
          for t in task_names if 'tuned' not in t]
  lines += _table(['task'] + [f'`{e}`' for e in encodings], rows)
  mnist = [t for t in task_names if t.startswith('mnist1d')]
  if mnist:
    lines += ['MNIST-1D beside the published rows (Greydanus 2020, test '
              'accuracy %). `p1`: one step per token (40 tokens), `p4`: '
              'patches of 4 steps (10 tokens); `tuned`: `configs/mnist1d.py` '
              '(4 blocks, dropout 0.2, 60 epochs; chosen on the validation '
              'split).', '']
    columns = [('mnist1d p1', 'mnist1d_shuffled p1'),
               ('mnist1d p4', 'mnist1d_shuffled p4')]
    rows = []
    for e in encodings:
      row = [f'posenc `{e}`']
      for plain, shuffled in columns:
        a, b = values.get((plain, e), []), values.get((shuffled, e), [])
        drop = ([x - y for x, y in zip(a, b)] if a and b else [])
        row += [_cell(a), _cell(b), _cell(drop)]
      rows.append(row)
    tuned = [t for t in task_names if 'tuned' in t]
    for t in tuned:
      e = next(r['encoding'] for r in records if r['task'] == t)
      rows.append([f'posenc `{e}`, tuned'] + ['–'] * 3
                  + [_cell(values[(t, e)]), '–', '–'])
    for name, (plain, shuffled) in figures.PUBLISHED_MNIST1D.items():
      cells = [f'{plain * 100:.0f}', f'{shuffled * 100:.0f}',
               f'{(plain - shuffled) * 100:.0f}']
      rows.append([f'{name} (published)'] + cells + cells)
    lines += _table(['model', 'p1 plain', 'p1 shuffled', 'p1 cost of '
                     'shuffling', 'p4 plain', 'p4 shuffled',
                     'p4 cost of shuffling'], rows)
  lines += _figure(out, links, 'tasks', 'accuracy of every encoding on every '
                   'task')
  return lines


def _depth(records, out, links) -> list[str]:
  values = figures.group(records, ('depth', 'encoding', 'layer'),
                         'probe_accuracy')
  # task_accuracy is repeated on every layer's record: once per seed.
  task = figures.group([r for r in records if r['layer'] == 0],
                       ('depth', 'encoding'), 'task_accuracy')
  depths = sorted({r['depth'] for r in records})
  encodings = list(dict.fromkeys(r['encoding'] for r in records))
  lines = ['### 2. Does position survive depth?', '',
           'Each model is trained on `argmax` (10 steps); then a ridge '
           'regression (closed form) on one layer\'s hidden state of each '
           'token predicts the token\'s position (10 classes, chance 10%), '
           'fitted on training sequences and scored on held-out ones. '
           'Layer 0 is the input to the first block (positions added, if '
           'any); layer k the output of block k. Probe accuracy %:', '']
  header = ['encoding']
  for d in depths:
    header += [f'{d} blocks: layer 0', f'middle ({d // 2})', f'last ({d})',
               'task acc.']
  rows = []
  for e in encodings:
    row = [f'`{e}`']
    for d in depths:
      row += [_cell(values.get((d, e, l), [])) for l in (0, d // 2, d)]
      row.append(_cell(task.get((d, e), [])))
    rows.append(row)
  lines += _table(header, rows)
  lines += _figure(out, links, 'depth', 'probe accuracy against layer')
  return lines


def _lengths(records, out, links) -> list[str]:
  values = figures.group(records, ('variant', 'task', 'eval_len'), 'accuracy')
  variants = list(dict.fromkeys(r['variant'] for r in records))
  task_names = list(dict.fromkeys(r['task'] for r in records))
  lens = sorted({r['eval_len'] for r in records})
  train_len = records[0]['train_len']
  lines = ['### 3. Lengths', '',
           f'Trained on lengths {train_len // 2}..{train_len} (padded, '
           f'masked), evaluated at {", ".join(map(str, lens))} (chance 50%). '
           '`learned (slice)`: a table of '
           f'{4 * train_len} rows whose rows past {train_len} are never '
           'trained; `learned (resample)`: a table of '
           f'{train_len} rows, linearly resampled to the evaluation length; '
           '`(randomized)`: trained on sorted random positions from '
           f'0..{4 * train_len - 1} (Ruoss et al., 2023). Accuracy %:', '']
  header = ['variant'] + [f'{t} @{n}' for t in task_names for n in lens]
  rows = [[v] + [_cell(values.get((v, t, n), [])) for t in task_names
                 for n in lens] for v in variants]
  lines += _table(header, rows)
  lines += _figure(out, links, 'lengths', 'accuracy against evaluation length')
  return lines


def _tables(records, out, links) -> list[str]:
  keys = list(dict.fromkeys((r['task'], r['order']) for r in records))
  lines = ['### 4. What the learned table learns', '',
           'The learned tables of study 1: how far training moved each '
           'from its initial N(0, 1) draw (norm of the change over the '
           'initial norm, %); mean cosine similarity of neighbouring rows '
           'and of rows at least half the table apart, of the trained table '
           'and of the change alone (trained - initial); and the variance '
           'explained by the first three principal components, trained and '
           'initial (%, mean ± std over seeds). For shuffled MNIST-1D at one '
           'step per token the rows are also taken in signal order (the row '
           'of step k of the original signal).', '']
  rows = []
  pcs = lambda rs, key: ' / '.join(
      _cell([r[key][c] for r in rs], digits=0) for c in range(3))
  for task, order in keys:
    rs = [r for r in records if r['task'] == task and r['order'] == order]
    rows.append([task, order, str(rs[0]['rows']),
                 _cell([r['moved'] for r in rs]),
                 _cell([r['neighbour_cosine'] for r in rs], 1, 2),
                 _cell([r['far_cosine'] for r in rs], 1, 2),
                 _cell([r['delta_neighbour_cosine'] for r in rs], 1, 2),
                 _cell([r['delta_far_cosine'] for r in rs], 1, 2),
                 pcs(rs, 'explained_variance_3'),
                 pcs(rs, 'initial_explained_variance_3')])
  lines += _table(['task', 'row order', 'rows', 'moved', 'neighbour cos',
                   'far cos', 'change: neighbour cos', 'change: far cos',
                   'PC1/2/3 %', 'PC1/2/3 % before training'], rows)
  lines += _figure(out, links, 'tables', 'cosine similarity of learned '
                   'position vectors and their principal components')
  return lines


def _gib(x: float) -> str:
  return f'{x:.0f} GiB' if x >= 10 else f'{x:.2g} GiB'


def _cost(records, meta, out, links) -> list[str]:
  encodings = list(dict.fromkeys(r['encoding'] for r in records))
  lens = sorted({r['seq_len'] for r in records})
  memory = meta['machine']['memory_gib']
  batch = records[0]['batch']
  lines = ['### 5. What long sequences cost', '',
           f'One train step (batch {batch}, 16 features, d=64, 4 heads, 2 '
           'blocks, jit on one device): median step time of 3 after a '
           'warm-up, and the peak of XLA\'s buffer assignment for the step '
           '(arguments + outputs + temporaries). Lengths marked * were '
           'compiled but not run (longer than the longest length the study '
           'runs, or a step predicted over 10 s, or more than half the '
           'memory: the record says which); "stops fitting": the first '
           f'length whose buffers exceed this machine\'s {memory:.0f} GiB.',
           '']
  rows = []
  for e in encodings:
    by_len = {r['seq_len']: r for r in records if r['encoding'] == e}
    row = [f'`{e}`']
    for n in lens:
      r = by_len.get(n)
      if r is None:
        row.append('–')
      elif r['status'] == 'ran':
        row.append(f'{r["step_s"] * 1000:.0f} ms / {_gib(r["xla_peak_gib"])}')
      else:
        row.append(f'* / {_gib(r["xla_peak_gib"])}')
    over = [n for n in lens if n in by_len
            and by_len[n]['xla_peak_gib'] > memory]
    row.append(str(over[0]) if over else f'> {lens[-1]}')
    rows.append(row)
  lines += _table(['encoding'] + [str(n) for n in lens] + ['stops fitting'],
                  rows)
  lines += _figure(out, links, 'cost', 'step time and memory against length')
  return lines


def render(records: dict[str, list[dict]], meta: dict, out: pathlib.Path,
           repo: pathlib.Path, links: pathlib.Path | None = None) -> str:
  """The section between the markers. Image links are relative to `links`,
  the directory of the document the section goes into (default `out`, where
  `results.md` lies); the records' folder is named relative to `repo`."""
  links = out if links is None else links
  m = meta['machine']
  seconds = meta.get('seconds', {})
  studies_s = {k: v for k, v in seconds.items()
               if k != 'total_last_run' and v is not None}
  timing = ', '.join(f'{k} {v / 60:.1f} min' for k, v in studies_s.items())
  timing += f' ({sum(studies_s.values()) / 60:.0f} min in all)'
  lines = [BEGIN, '',
           f'Written by `{meta["command"]}` on {meta.get("date", "?")}: '
           f'{m["cores"]} cores of an {m["cpu"]}, {m["memory_gib"]:.0f} GiB, '
           f'{m["backend"]} backend, jax {m["jax"]}, Python {m["python"]}; '
           f'seeds {meta["seeds"]}. Time per study, as last run: {timing}. '
           'Records (one '
           f'JSON line per seed and setting) are in '
           f'`{os.path.relpath(out, repo)}/`.', '']
  if records.get('tasks'):
    lines += _tasks(records['tasks'], out, links)
  if records.get('depth'):
    lines += _depth(records['depth'], out, links)
  if records.get('lengths'):
    lines += _lengths(records['lengths'], out, links)
  if records.get('tables'):
    lines += _tables(records['tables'], out, links)
  if records.get('cost'):
    lines += _cost(records['cost'], meta, out, links)
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
