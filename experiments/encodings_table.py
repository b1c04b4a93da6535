"""Every encoding on the 'before' task: bidirectional and causal, evaluated
at the training length and at twice it.

  python -m experiments.encodings_table      # about 15 minutes, 2 cores

Each row trains `configs/before.py` (length 10, 5 epochs, seed 0) with one
encoding through `posenc.train.train_and_evaluate`, then evaluates its
checkpoint at length 20 through `posenc.evaluation.evaluate_checkpoint`
(what `python -m posenc.main --mode=eval --config.data.eval_seq_len=20`
runs): learned tables resampled linearly, rope once per scaling method (the
factor derived from the lengths, 2). Causal rows use `model.causal=True` and
last-token pooling. Workdirs go under --workdir (default
runs/encodings_table); a rerun reuses finished runs. Writes
experiments/results/encodings_table.{jsonl,md}.

One seed: this table shows that each encoding trains and evaluates, and
where a symmetry forces chance; the studies (`python -m experiments.run`)
compare encodings with seeds and intervals.
"""

import json
import pathlib

import jax
from absl import app
from absl import flags
from absl import logging

from posenc import config as posenc_config
from posenc import evaluation
from posenc import train

REPO = pathlib.Path(__file__).resolve().parents[1]
_WORKDIR = flags.DEFINE_string('workdir', 'runs/encodings_table',
                               'Where the runs are kept.')
_OUT = flags.DEFINE_string('out', str(REPO / 'experiments' / 'results'),
                           'Where the table is written.')

# (row name, model fields)
VARIANTS = (
    ('learned', dict(posemb='learned')),
    ('learned_every_layer', dict(posemb='learned_every_layer')),
    ('sinusoidal', dict(posemb='sinusoidal')),
    ('none', dict(posemb='none')),
    ('rope', dict(posemb='rope')),
    ('alibi (symmetric)', dict(posemb='alibi')),
    ('alibi (directional)', dict(posemb='alibi', alibi_mode='directional')),
    ('relative', dict(posemb='relative')),
    ('fire', dict(posemb='fire')),
    ('kerple', dict(posemb='kerple')),
)
ROPE_SCALINGS = ('none', 'linear', 'ntk', 'yarn')


def before_config(model: dict, causal: bool):
  config = posenc_config.load_file(REPO / 'configs' / 'before.py').get_config()
  config.model.update(model)
  if causal:
    config.model.causal = True
    config.model.pooling = 'last'
  return config


def evaluations(config) -> list[tuple[str, object]]:
  """(label, config) of the evaluations at twice the training length."""
  longer = config.copy_and_resolve_references()
  longer.data.eval_seq_len = 2 * config.data.seq_len
  if config.model.posemb in ('learned', 'learned_every_layer'):
    longer.model.posemb_resample = 'linear'
  if config.model.posemb != 'rope':
    return [('', longer)]
  out = []
  for scaling in ROPE_SCALINGS:
    scaled = longer.copy_and_resolve_references()
    scaled.model.rope_scaling = scaling
    out.append((scaling, scaled))
  return out


def main(argv):
  del argv
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  records = []
  for causal in (False, True):
    for name, model in VARIANTS:
      if causal and model.get('alibi_mode') == 'directional':
        continue  # Refused: causal attention hides half its heads' keys.
      config = before_config(model, causal)
      slug = name.replace(' (', '_').rstrip(')')
      workdir = pathlib.Path(_WORKDIR.value) / (
          slug + ('_causal' if causal else ''))
      summary = train.train_and_evaluate(config, workdir,
                                         devices=jax.devices()[:1])
      for label, longer in evaluations(config):
        record = evaluation.evaluate_checkpoint(longer, workdir)
        records.append({
            'encoding': name, 'causal': causal, 'rope_scaling': label,
            'eval_accuracy': summary['eval_accuracy'],
            'eval_accuracy_2x': record['eval_accuracy'],
            'wall_time_sec': summary['wall_time_sec']})
        logging.info('%s', records[-1])
  with open(out / 'encodings_table.jsonl', 'w') as f:
    for record in records:
      f.write(json.dumps(record) + '\n')
  lines = ['| encoding | attention | eval accuracy, length 10 | '
           'length 20 |', '|---|---|---|---|']
  for r in records:
    name = r['encoding'] + (f" (scaling {r['rope_scaling']})"
                            if r['rope_scaling'] else '')
    lines.append(f"| {name} | {'causal' if r['causal'] else 'bidirectional'}"
                 f" | {r['eval_accuracy']:.3f} | {r['eval_accuracy_2x']:.3f} |")
  (out / 'encodings_table.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
