"""What long sequences cost: step time and memory against length.

Two uses.

Study 5 (`experiments.run`): for one encoding per process (so its peak
resident memory is its own), for each length in increasing order: compile
posenc's train step (jit, one device, state donated) for a batch of `batch`
sequences of 16 features with the seed model (d=64, 4 heads, 2 blocks), read
XLA's buffer assignment (`memory_analysis`: arguments + outputs +
temporaries - aliased), and, where that fits in `run_limit_gib`, the length
is at most `max_run_len` and the previous length's step predicts less than
`max_step_s`, run it: one warm-up step, then the median of 3. Lengths past
the limits are compiled only (XLA's estimate, status 'estimated').

  python -m experiments.cost --encoding=rope --lengths=64,128 --batch=8

The attention paths side by side (`--compare`): the same model and batch
with `model.attention='einsum'` (every L x L array) and 'blocked' (one
block at a time, posenc.blocked), from 64 tokens doubling up to
`--max_len`, in one process: at each length both are compiled, and those
whose buffers fit in `--run_limit_gib` and whose step the previous length
predicts under `--max_step_s` run alternately (a warm-up and 3 timed steps
each), so a noisy machine slows both alike; a longer predicted step is
timed once, without a warm-up. Records go to `--out` (.jsonl, one line per
path and length, written as each completes; a rerun keeps the lengths
recorded for the same setting and goes on, `--fresh` starts over), a table
(.md) and a figure (.png); `--report_only` rebuilds the last two from the
records.

  python -m experiments.cost --compare     # about 8 minutes on 2 cores
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import figures
from posenc import config as default
from posenc import data
from posenc import train as train_lib

GIB = 2**30
NUM_CLASSES = 10  # As data.name='random' (its default num_classes).
PATHS = ('einsum', 'blocked')
OUT = (pathlib.Path(__file__).resolve().parent / 'results' /
       'attention_paths')


def config_for(encoding: str, seq_len: int, batch: int,
               attention: str = 'einsum'):
  config = default.get_config()
  config.data.name = 'random'
  config.data.seq_len = seq_len
  config.model.posemb = encoding
  config.model.attention = attention
  config.train.batch_size = batch
  return config


def random_batch(batch: int, seq_len: int, n_features: int) -> data.Batch:
  """Standard-normal features and uniform labels (as data.name='random')."""
  rng = np.random.default_rng(0)
  return {'inputs': rng.standard_normal((batch, seq_len, n_features),
                                        np.float32),
          'labels': rng.integers(0, NUM_CLASSES, batch).astype(np.int32)}


def xla_peak_bytes(compiled) -> int:
  stats = compiled.memory_analysis()
  return (stats.argument_size_in_bytes + stats.output_size_in_bytes
          + stats.temp_size_in_bytes - stats.alias_size_in_bytes)


class Step:
  """The compiled, donated train step of one config, with its state."""

  def __init__(self, config, batch: int):
    seq_len = config.data.seq_len
    self.batch = random_batch(batch, seq_len, config.data.n_features)
    # The model is sized by the data it sees: this one batch, 10 classes.
    dataset = data.Dataset.from_arrays(train=self.batch, eval=self.batch,
                                       num_classes=NUM_CLASSES)
    model = train_lib.make_model(config, dataset)
    self.rng = jax.random.key(0)
    inputs = dataset.example_inputs()
    # Compiled from the state's shapes; the parameters are made at the first
    # step, through blocked attention (the same parameters): init runs the
    # model once, which at 32,768 tokens takes einsum's 16 GiB of logits and
    # at 2^20 tokens blocked's hours, for lengths that are only compiled.
    tx = train_lib.make_optimizer(config)  # One, so both states match.
    abstract = jax.eval_shape(lambda: train_lib.create_train_state(
        self.rng, config, model, inputs, tx=tx))
    blocked = config.copy_and_resolve_references()
    blocked.model.attention = 'blocked'
    self._make_state = lambda: train_lib.create_train_state(
        None, config, model, inputs, tx=tx, params=train_lib.init_params(
            self.rng, train_lib.make_model(blocked, dataset), inputs))
    self.state = None
    start = time.perf_counter()
    step = jax.jit(train_lib.train_step, donate_argnums=0)
    self.compiled = step.lower(abstract, self.batch, self.rng).compile()
    self.compile_s = time.perf_counter() - start
    self.xla_gib = xla_peak_bytes(self.compiled) / GIB

  def run(self) -> tuple[float, float]:
    """One step: (seconds, training loss)."""
    if self.state is None:
      self.state = self._make_state()
    start = time.perf_counter()
    self.state, metrics = self.compiled(self.state, self.batch, self.rng)
    jax.block_until_ready((self.state, metrics))
    return time.perf_counter() - start, float(metrics['train_loss'])


def measure(encoding: str, lengths: list[int], batch: int, *,
            run_limit_gib: float, max_step_s: float,
            max_run_len: int, attention: str = 'einsum') -> list[dict]:
  """Study 5's records for one encoding (see the module docstring)."""
  records = []
  predicted_s = 0.0
  for seq_len in sorted(lengths):
    step = Step(config_for(encoding, seq_len, batch, attention), batch)
    record = {'study': 'cost', 'encoding': encoding, 'seq_len': seq_len,
              'batch': batch, 'compile_s': step.compile_s,
              'xla_peak_gib': step.xla_gib}
    if attention != 'einsum':
      record['attention'] = attention
    if seq_len > max_run_len:
      record['status'] = 'estimated'
      record['reason'] = 'compile only'
    elif record['xla_peak_gib'] > run_limit_gib:
      record['status'] = 'estimated'
      record['reason'] = f'XLA needs more than {run_limit_gib:.0f} GiB'
    elif predicted_s > max_step_s:
      record['status'] = 'estimated'
      record['reason'] = f'predicted step over {max_step_s:.0f}s'
    else:
      times = [step.run() for _ in range(4)]  # A warm-up, then three timed.
      # rss_peak_gib: the process's peak so far (lengths run in increasing
      # order), not this length's alone; it includes the runtime's own.
      record.update(status='ran',
                    step_s=statistics.median(t for t, _ in times[1:]),
                    rss_peak_gib=_rss_gib(), loss=times[-1][1])
      # Attention is quadratic: the next (doubled) length costs up to 4x.
      predicted_s = 4 * record['step_s']
    records.append(record)
    del step
  return records


def _rss_gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def compare(out: pathlib.Path, *, encoding: str, batch: int, max_len: int,
            estimate_to: int, block_size: int, run_limit_gib: float,
            max_step_s: float) -> list[dict]:
  """Both attention paths, lengths 64, 128, ... `max_len`, and compiled
  only up to `estimate_to` (see the module docstring); appends each record
  to `out`.jsonl as it completes."""
  out.parent.mkdir(parents=True, exist_ok=True)
  records_path = out.with_suffix('.jsonl')
  predicted = {path: 0.0 for path in PATHS}
  stopped = {}  # path -> why it no longer runs.
  seq_len, records = 64, []
  # Resumed: the lengths recorded for this setting are kept, not rerun.
  setting = dict(encoding=encoding, batch=batch, block_size=block_size)
  done = [json.loads(line) for line in records_path.read_text().splitlines()
          ] if records_path.exists() else []
  if any({k: r.get(k) for k in setting} != setting for r in done):
    done = []
  # Kept: steps that ran, at most max_len long, and lengths too big for
  # this run limit; the rest is compiled again (and may run now).
  too_big = f'XLA needs more than {run_limit_gib:g} GiB'
  done = [r for r in done if (r['status'] == 'ran' and
                              r['seq_len'] <= max_len) or
          r.get('reason') == too_big]
  complete = [n for n in {r['seq_len'] for r in done}
              if sum(r['seq_len'] == n for r in done) == len(PATHS)]
  done = [r for r in done if r['seq_len'] in complete]
  while seq_len in complete:  # The recorded lengths from 64 on, no gap.
    for r in done:
      if r['seq_len'] == seq_len and r['status'] == 'ran':
        predicted[r['attention']] = 4 * r['step_s']
      elif r['seq_len'] == seq_len:
        stopped[r['attention']] = r['reason']
    records += [r for r in done if r['seq_len'] == seq_len]
    seq_len *= 2
  records_path.write_text(''.join(json.dumps(r) + '\n' for r in records))
  while seq_len <= max(max_len, estimate_to):
    if seq_len > max_len:
      stopped = {p: stopped.get(p, f'compile only past {max_len:,}')
                 for p in PATHS}
    steps, rows = {}, {}
    for path in PATHS:
      config = config_for(encoding, seq_len, batch, path)
      config.model.attention_block_size = block_size
      step = Step(config, batch)
      rows[path] = {'study': 'attention_paths', 'encoding': encoding,
                    'attention': path, 'seq_len': seq_len, 'batch': batch,
                    'block_size': block_size, 'compile_s': step.compile_s,
                    'xla_peak_gib': step.xla_gib}
      why = stopped.get(path)
      if why is None and step.xla_gib > run_limit_gib:
        why = too_big
      if why is None:
        steps[path] = step
      else:
        stopped[path] = why
        rows[path].update(status='estimated', reason=why)
        del step
    # Alternate the paths; a long step is timed once, without a warm-up.
    reps = 1 if max(predicted[p] for p in steps or PATHS) > max_step_s else 4
    times = {path: [] for path in steps}
    for rep in range(reps):
      order = list(steps) if rep % 2 == 0 else list(reversed(steps))
      for path in order:
        times[path].append(steps[path].run())
    for path, runs in times.items():
      timed = runs[1:] if reps > 1 else runs
      step_s = statistics.median(t for t, _ in timed)
      rows[path].update(status='ran', step_s=step_s, timed_steps=len(timed),
                        loss=runs[-1][1])
      predicted[path] = 4 * step_s  # Both paths' time is quadratic in L.
      if not np.isfinite(runs[-1][1]):
        raise FloatingPointError(f'{path} at {seq_len}: loss {runs[-1][1]}')
    for path in PATHS:
      records.append(rows[path])
      with records_path.open('a') as f:
        f.write(json.dumps(rows[path]) + '\n')
      print(_line(rows[path]), flush=True)
    del steps
    seq_len *= 2
  return records


def _line(r: dict) -> str:
  time_s = (f"{r['step_s']:.3f} s/step" if r['status'] == 'ran'
            else f"not run: {r['reason']}")
  return (f"{r['attention']:>7} L={r['seq_len']:>7,}: XLA "
          f"{r['xla_peak_gib']:.3f} GiB, {time_s}")


def slope(records, path: str, low: int) -> float:
  """The log-log slope of `path`'s XLA bytes against length from `low`
  tokens on: 1 for linear growth, 2 for quadratic."""
  rows = [r for r in records if r['attention'] == path and
          r['seq_len'] >= low]
  x = np.log([r['seq_len'] for r in rows])
  y = np.log([r['xla_peak_gib'] for r in rows])
  return float(np.polyfit(x, y, 1)[0])


def report(records, out: pathlib.Path, memory_gib: float) -> str:
  """The table and figure of `compare`'s records."""
  by = {(r['attention'], r['seq_len']): r for r in records}
  lengths = sorted({r['seq_len'] for r in records})
  first = records[0]
  cell = lambda r: (f"{r['step_s']:.3g}" if r and r['status'] == 'ran'
                    else 'not run')
  lines = [
      f"Train step of the seed model (d=64, 4 heads, 2 encoder blocks, "
      f"{first['encoding']} positions), batch {first['batch']}, one device, "
      f"blocks of {first['block_size']}; memory is XLA's buffer assignment "
      "for the step (arguments + outputs + temporaries - aliased), time the "
      "median of 3 steps after a warm-up (one step where marked *), both "
      'paths alternating in one process.', '',
      '| tokens | einsum GiB | blocked GiB | einsum s/step | blocked s/step '
      '| blocked / einsum time |', '|---|---|---|---|---|---|']
  for n in lengths:
    e, b = by.get(('einsum', n)), by.get(('blocked', n))
    ratio = (f"{b['step_s'] / e['step_s']:.2f}x" if e and b and
             e['status'] == b['status'] == 'ran' else '')
    star = lambda r: '*' if r and r.get('timed_steps') == 1 else ''
    lines.append(f"| {n:,} | {e['xla_peak_gib']:.3f} | "
                 f"{b['xla_peak_gib']:.3f} | {cell(e)}{star(e)} | "
                 f"{cell(b)}{star(b)} | {ratio} |")
  ran = lambda p: max((r['seq_len'] for r in records if r['attention'] == p
                       and r['status'] == 'ran'), default=0)
  # The slope from 1,024 tokens on (below, the O(L) buffers dominate both).
  low = 1024 if lengths[-1] >= 4096 else lengths[len(lengths) // 2]
  lines += ['', f"Longest run: einsum {ran('einsum'):,} tokens, blocked "
            f"{ran('blocked'):,}. Growth of XLA's buffers from {low:,} "
            f"tokens (log-log slope; 1 is linear, 2 quadratic): einsum "
            f"{slope(records, 'einsum', low):.2f}, blocked "
            f"{slope(records, 'blocked', low):.2f}."]
  table = '\n'.join(lines) + '\n'
  out.with_suffix('.md').write_text(table)
  figures.cost(records, out.with_suffix('.png'), memory_gib, key='attention')
  return table


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--compare', action='store_true',
                      help='both attention paths side by side')
  parser.add_argument('--report_only', action='store_true',
                      help='--compare: rebuild the table and figure')
  parser.add_argument('--fresh', action='store_true',
                      help='--compare: discard the records and start over')
  parser.add_argument('--out', default=str(OUT))
  parser.add_argument('--encoding', default=None)
  parser.add_argument('--attention', default='einsum')
  parser.add_argument('--lengths', help='comma-separated sequence lengths')
  parser.add_argument('--batch', type=int, default=None,
                      help='8 for the study, 1 with --compare')
  parser.add_argument('--max_len', type=int, default=65_536,
                      help='--compare: the longest length run')
  parser.add_argument('--estimate_to', type=int, default=2**20,
                      help='--compare: longer lengths are compiled only')
  parser.add_argument('--block_size', type=int, default=512)
  parser.add_argument('--run_limit_gib', type=float, default=None,
                      help='12 for the study, 20 with --compare')
  parser.add_argument('--max_step_s', type=float, default=10.0)
  parser.add_argument('--max_run_len', type=int, default=2**20,
                      help='longer lengths are compiled only')
  args = parser.parse_args()
  memory_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB
  if args.compare or args.report_only:
    out = pathlib.Path(args.out)
    if args.fresh:
      out.with_suffix('.jsonl').unlink(missing_ok=True)
    if not args.report_only:
      jnp.zeros(())  # Initialise the backend before timing anything.
      compare(out, encoding=args.encoding or 'learned', batch=args.batch or 1,
              max_len=args.max_len, estimate_to=args.estimate_to,
              block_size=args.block_size,
              run_limit_gib=args.run_limit_gib or 20.0,
              max_step_s=args.max_step_s)
    records = [json.loads(line) for line in
               out.with_suffix('.jsonl').read_text().splitlines()]
    print(report(records, out, memory_gib))
    return
  if not args.encoding or not args.lengths:
    parser.error('--encoding and --lengths are required without --compare')
  jnp.zeros(())
  records = measure(args.encoding, [int(x) for x in args.lengths.split(',')],
                    args.batch or 8, run_limit_gib=args.run_limit_gib or 12.0,
                    max_step_s=args.max_step_s,
                    max_run_len=args.max_run_len, attention=args.attention)
  print(json.dumps(records))


if __name__ == '__main__':
  main()
