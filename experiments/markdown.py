"""Markdown for the generated report: tables, interval cells, paired
differences and figure links."""

import os
import pathlib

from experiments import stats


def table(header: list[str], rows: list[list[str]]) -> list[str]:
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '---|' * len(header)]
  return lines + ['| ' + ' | '.join(row) + ' |' for row in rows] + ['']


def cell(values) -> str:
  values = list(values)
  return stats.interval(values).format() if values else '–'


def diffs(pairs: list[tuple[dict, dict] | None]) -> list[str]:
  """a - b for each (a, b) pair (paired over shared seeds, in points),
  marked * where Holm's correction over the list rejects zero."""
  intervals = [stats.paired(*pair) if pair and set(pair[0]) & set(pair[1])
               else None for pair in pairs]
  reject = stats.holm([i.p if i else float('nan') for i in intervals])
  return [i.format() + ('*' if r else '') if i else '–'
          for i, r in zip(intervals, reject)]


def figure(out: pathlib.Path, links: pathlib.Path, name: str,
           alt: str) -> list[str]:
  path = out / 'figures' / f'{name}.png'
  if not path.exists():
    return []
  link = pathlib.Path(os.path.relpath(path, links)).as_posix()
  return [f'![{alt}]({link})', '']
