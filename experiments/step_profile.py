"""Where posenc's training step spends its time, from a `jax.profiler` trace.

  python -m experiments.step_profile --size=medium    # seed, medium, long

Builds the benchmark's step (experiments/benchmark.py, same model and
sizes), traces a few steps with `jax.profiler`, and prints the time of the
step's operations by kind: matrix products (XLA:CPU hands most to YNNPACK,
fused with neighbouring elementwise work), copies and transposes, other
elementwise and reductions; forward and backward apart; then the slowest
operations with the model code they come from. The trace stays in --trace
for TensorBoard's or Perfetto's viewer. Runs on tcmalloc where installed, as
the benchmark does.
"""

import argparse
import collections
import gzip
import json
import pathlib
import re
import sys
import time

from experiments import benchmark
from posenc import allocator

_RUNTIME = ('ThunkExecutor', 'PjitFunction', 'CommonPjRt', 'ParseArguments',
            'PjRt', '$', 'SlinkyThreadPool')


def _kind(name: str) -> str:
  if name.startswith(('ynn_fusion', 'xnn_fusion', 'dot', 'onednn')):
    return 'matrix products'
  if 'copy' in name or 'transpose' in name:
    return 'copies and transposes'
  return 'elementwise and reductions'


def _op_names(hlo: str) -> dict[str, str]:
  """HLO instruction name -> the model code it comes from (op_name)."""
  names = {}
  for match in re.finditer(r'%([\w.\-]+) = [^\n]*?op_name="([^"]+)"', hlo):
    names.setdefault(match.group(1), match.group(2))
  return names


def summarise(events: list[dict], num_steps: int, hlo: str,
              flops_per_step: float) -> str:
  """Per-step milliseconds by kind and direction, and the top operations."""
  per_op = collections.Counter()
  count = 0
  for event in events:
    if event.get('ph') == 'X' and not event['name'].startswith(_RUNTIME):
      per_op[event['name']] += event['dur'] / 1e3 / num_steps
      count += 1
  origin = _op_names(hlo)
  total = sum(per_op.values())
  by_kind = collections.Counter()
  for name, ms in per_op.items():
    backward = 'transpose(jvp(' in origin.get(name, '')
    by_kind[(_kind(name), 'backward' if backward else 'forward')] += ms
  lines = [f'{count / num_steps:.0f} timed operations per step (an operation '
           f'split over threads counts once per piece), {total:.1f} ms in '
           f'all ({total / count * num_steps * 1e3:.1f} us each on average; '
           'they may overlap on several cores), by kind:']
  for (kind, direction), ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
    lines.append(f'  {ms:8.1f} ms  {ms / total:5.1%}  {kind}, {direction}')
  products_ms = sum(ms for (kind, _), ms in by_kind.items()
                    if kind == 'matrix products')
  lines.append(f'XLA counts {flops_per_step / 1e9:.2f} GFLOP per step, '
               'nearly all in matrix products: they run at '
               f'{flops_per_step / products_ms / 1e6:.0f} GFLOP/s.')
  lines.append('slowest operations (ms per step, model code):')
  for name, ms in per_op.most_common(12):
    code = origin.get(name, '').replace('jit(train_step)/', '')
    lines.append(f'  {ms:8.2f}  {name}: {code}')
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', choices=benchmark.SIZES, default='medium')
  parser.add_argument('--set', action='append', default=[],
                      metavar='FIELD=VALUE',
                      help='a config override, e.g. model.remat=True or '
                      'model.matmul_dtype=bfloat16 (repeatable)')
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--trace', default='/tmp/posenc_step_profile')
  args = parser.parse_args()
  allocator.use('tcmalloc')  # As the benchmark.
  import jax  # pylint: disable=g-import-not-at-top

  overrides = {}
  for item in args.set:
    field, sep, value = item.partition('=')
    if not sep:
      parser.error(f'--set={item!r}: expected FIELD=VALUE')
    overrides[field] = value
  try:
    run = benchmark.posenc_step(benchmark.SIZES[args.size], overrides)
  except (KeyError, TypeError, ValueError) as e:
    parser.error(f'--set: {e}')
  run.steps(3)  # Warm.
  start = time.perf_counter()
  run.steps(args.steps)
  wall_ms = (time.perf_counter() - start) / args.steps * 1e3
  jax.profiler.start_trace(args.trace)
  run.steps(args.steps)
  jax.profiler.stop_trace()
  trace = sorted(pathlib.Path(args.trace).glob('**/*.trace.json.gz'),
                 key=lambda p: p.stat().st_mtime)[-1]
  events = json.loads(gzip.decompress(trace.read_bytes()))['traceEvents']
  print(f'{args.size} ({benchmark.SIZES[args.size]}), '
        f'{overrides or "default options"}, allocator '
        f'{allocator.loaded() or "system"}: {wall_ms:.1f} ms per '
        f'step untraced, {run.temp_bytes / 2**20:,.0f} MiB of temporary '
        f"buffers (XLA's buffer assignment); trace in {trace}")
  print(summarise(events, args.steps, run.hlo, run.flops_per_step))
  sys.stdout.flush()


if __name__ == '__main__':
  main()
