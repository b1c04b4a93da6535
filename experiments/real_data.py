"""The real datasets: every row of docs/results.md's "Real data" section.

  python -m experiments.real_data          # about 30 minutes, 2 cores

Trains each row's config for seeds 0, 1 and 2 through
`posenc.train.train_and_evaluate` (what `python -m posenc.main` runs) and
evaluates the 2-D rows' checkpoints on 16x16 digits through
`posenc.evaluation.evaluate_checkpoint` (`--mode=eval
--config.data.eval_image_size=16`):

- digits (`configs/digits.py`, one pixel per token): learned, sinusoidal,
  rope, none, and learned on digits_shuffled;
- digits2d (`configs/digits2d.py`, 2 x 2 patches): the 2-D encodings, and
  learned, sinusoidal and none on the flattened grid; at 16x16, tables
  resampled (learned2d bilinear and bicubic, learned linearly in 1-D);
- vowels (`configs/vowels.py`): all lengths, and trained on utterances of at
  most 15 frames, tested on those of 16 to 29 (learned with
  `model.max_len=29`: rows 15 to 28 never train).

The split of each dataset is fixed; the seed changes the initialisation,
the batch order and dropout. Workdirs go under --workdir (default
runs/real_data); a rerun reuses finished runs, so an interrupted run picks
up where it stopped (`--report_only` rebuilds the Markdown from the
records). Writes experiments/results/real_data.{jsonl,md}; the
references (logistic regression on the same test split) come from each
run's references.json.
"""

import json
import pathlib

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging

from posenc import config as posenc_config
from posenc import evaluation
from posenc import train

REPO = pathlib.Path(__file__).resolve().parents[1]
_WORKDIR = flags.DEFINE_string('workdir', 'runs/real_data',
                               'Where the runs are kept.')
_OUT = flags.DEFINE_string('out', str(REPO / 'experiments' / 'results'),
                           'Where the table is written.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of every row.')
_REPORT_ONLY = flags.DEFINE_bool(
    'report_only', False, 'Rebuild real_data.md from real_data.jsonl only.')

# (group, row name, config file, overrides, 16x16 evaluations: resample
# methods, or None for none)
ROWS = (
    ('digits', 'learned', 'digits.py', {}, None),
    ('digits', 'sinusoidal', 'digits.py', {'model.posemb': 'sinusoidal'},
     None),
    ('digits', 'rope', 'digits.py', {'model.posemb': 'rope'}, None),
    ('digits', 'none', 'digits.py', {'model.posemb': 'none'}, None),
    ('digits', 'learned, shuffled pixels', 'digits.py',
     {'data.name': 'digits_shuffled'}, None),
    ('digits2d', 'learned2d', 'digits2d.py', {}, ('bilinear', 'bicubic')),
    ('digits2d', 'sincos2d', 'digits2d.py', {'model.posemb': 'sincos2d'},
     ('none',)),
    ('digits2d', 'rope2d', 'digits2d.py', {'model.posemb': 'rope2d'},
     ('none',)),
    ('digits2d', 'learned (1-D)', 'digits2d.py', {'model.posemb': 'learned'},
     ('linear',)),
    ('digits2d', 'sinusoidal (1-D)', 'digits2d.py',
     {'model.posemb': 'sinusoidal'}, ('none',)),
    ('digits2d', 'none', 'digits2d.py', {'model.posemb': 'none'}, ('none',)),
) + tuple(
    ('vowels', name, 'vowels.py', {'model.posemb': name}, None)
    for name in ('learned', 'sinusoidal', 'rope', 'alibi', 'none')
) + tuple(
    ('vowels, 16-29 frames', name, 'vowels.py',
     {'model.posemb': name, 'data.seq_len': 15, 'data.eval_seq_len': 29,
      **({'model.max_len': 29} if name == 'learned' else {})}, None)
    for name in ('learned', 'sinusoidal', 'rope', 'alibi', 'none'))


def row_config(file: str, overrides: dict, seed: int):
  config = posenc_config.load_file(REPO / 'configs' / file).get_config()
  for field, value in overrides.items():
    group, name = field.split('.')
    config[group][name] = value
  config.seed = seed
  return config


def slug(*parts: str) -> str:
  return '_'.join(parts).replace(', ', '_').replace(' ', '_').replace(
      '(', '').replace(')', '')


def run_row(group, name, file, overrides, methods, seed, root) -> dict:
  config = row_config(file, overrides, seed)
  workdir = root / slug(group, name, f'seed{seed}')
  summary = train.train_and_evaluate(config, workdir,
                                     devices=jax.devices()[:1])
  refs = json.loads((workdir / 'references.json').read_text())
  record = {'group': group, 'row': name, 'seed': seed,
            'test_accuracy': summary['test_accuracy'],
            'eval_accuracy': summary['eval_accuracy'],
            'references': refs['references'], 'published': refs['published'],
            'wall_time_sec': summary['wall_time_sec']}
  for method in methods or ():
    bigger = config.copy_and_resolve_references()
    bigger.data.eval_image_size = 16
    bigger.model.posemb_resample = method
    result = evaluation.evaluate_checkpoint(bigger, workdir)
    record[f'eval_accuracy_16x16_{method}'] = result['eval_accuracy']
  logging.info('%s', record)
  return record


def _cell(values: list[float]) -> str:
  values = np.asarray(values) * 100
  if len(values) == 1:
    return f'{values[0]:.1f}'
  return (f'{values.mean():.1f} ({values.min():.1f}–{values.max():.1f})')


def table(records: list[dict]) -> str:
  """Markdown: mean (lowest–highest) over seeds, in %."""
  lines = []
  groups = dict.fromkeys(r['group'] for r in records)
  for group in groups:
    rows = [r for r in records if r['group'] == group]
    extra = sorted({k for r in rows for k in r if k.startswith('eval_acc'
                                                               'uracy_16')})
    # At 16x16 the eval split is evaluated: beside it, the same split at 8x8.
    header = ['encoding', 'test accuracy'] + (
        ['eval split, 8x8'] if extra else []) + [
            'eval split, 16x16, ' + k.rsplit('_', 1)[1] for k in extra]
    lines += [f'**{group}**', '', '| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)]
    for name in dict.fromkeys(r['row'] for r in rows):
      mine = [r for r in rows if r['row'] == name]
      cells = [name, _cell([r['test_accuracy'] for r in mine])]
      if extra:
        cells.append(_cell([r['eval_accuracy'] for r in mine]))
      cells += [_cell([r[k] for r in mine if k in r]) if any(
          k in r for r in mine) else '' for k in extra]
      lines.append('| ' + ' | '.join(cells) + ' |')
    refs = rows[0]['references']
    lines += [''] + [f'Reference on the same test split: {k} '
                     f'{100 * v:.1f}.' for k, v in refs.items()]
    lines += [f'Published: {k} {100 * v:.1f}.'
              for k, v in rows[0]['published'].items()] + ['']
  return '\n'.join(lines)


def main(argv):
  del argv
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  if _REPORT_ONLY.value:
    with open(out / 'real_data.jsonl') as f:
      records = [json.loads(line) for line in f]
    (out / 'real_data.md').write_text(table(records) + '\n')
    return
  root = pathlib.Path(_WORKDIR.value)
  records = []
  seeds = [int(s) for s in _SEEDS.value]
  for row in ROWS:
    for seed in seeds:
      records.append(run_row(*row, seed, root))
      with open(out / 'real_data.jsonl', 'w') as f:  # After every run.
        for record in records:
          f.write(json.dumps(record) + '\n')
  text = table(records)
  (out / 'real_data.md').write_text(text + '\n')
  print(text)


if __name__ == '__main__':
  app.run(main)
