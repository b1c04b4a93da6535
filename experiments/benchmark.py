"""Side-by-side training-step benchmark: posenc (JAX) against PyTorch.

  pip install -e '.[bench]'            # torch==2.13.0, an optional extra
  python -m experiments.benchmark      # writes experiments/results/benchmark.*

Run from the repository root.

Times one Adam training step of the same encoder classifier (learned
positions, pre-LN blocks, FFN 4 * d, mean pooling, cross-entropy) in posenc's
jitted `train_step` (float32, and with model.matmul_dtype='bfloat16') and in
PyTorch (float32 eager, and torch.compile once per size), at the seed,
medium and long (512-token) sizes; then, in a second table, at 4,096 and
16,384 tokens, posenc's blocked attention against PyTorch's
scaled_dot_product_attention at 1 and at 2 threads (experiments/
benchmark_long.py; `--sizes=long4k,long16k` runs only those,
`--sizes=seed,medium,long` only the others). Both frameworks run on tcmalloc
where it is installed (posenc's train.allocator='tcmalloc';
--allocator=system for glibc's malloc).
Every measurement runs in its own subprocess (so memory peaks and thread
pools do not mix), and the frameworks alternate within each round, so a
noisy machine slows both alike; the PyTorch side gets the same cores and
allocator, and at these three sizes its default threads (one per core, as
XLA). Reported per size:
median and spread (min-max over rounds) of examples/s and tokens/s, compile
time, peak resident memory, and achieved FLOP/s (XLA's count for the step)
as a fraction of an f32 matmul rate measured in the same run.
"""

import argparse
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, NamedTuple

from posenc import allocator
from posenc import config as default

SIZES = {
    'seed': dict(seq_len=10, n_features=16, d_model=64, num_heads=4,
                 num_layers=2, batch_size=32),
    'medium': dict(seq_len=128, n_features=16, d_model=128, num_heads=4,
                   num_layers=4, batch_size=64),
    'long': dict(seq_len=512, n_features=16, d_model=128, num_heads=4,
                 num_layers=4, batch_size=16),
}
NUM_CLASSES = 10
LEARNING_RATE = 1e-3
MIN_REP_SECONDS = 0.5
# posenc's variants: model.matmul_dtype.
POSENC_MATMUL_DTYPES = {'posenc': 'float32', 'posenc_bf16': 'bfloat16'}
REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / 'experiments' / 'results' / 'benchmark'


def peak_rss_mb() -> float:
  """This process's peak resident memory so far."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(run_steps, reps: int, min_steps: int = 3) -> list[float]:
  """Seconds per step, one number per repetition of enough steps (at least
  `min_steps`, after as many to warm up)."""
  start = time.perf_counter()
  run_steps(min_steps)
  per_step = (time.perf_counter() - start) / min_steps
  n = max(min_steps, int(MIN_REP_SECONDS / max(per_step, 1e-6)))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    run_steps(n)
    times.append((time.perf_counter() - start) / n)
  return times


class PosencStep(NamedTuple):
  """posenc's compiled train step at one size, ready to run."""

  steps: Callable[[int], None]  # Runs n steps, waits for the last.
  compile_s: float
  flops_per_step: float  # XLA's count.
  hlo: str  # The optimised program.
  temp_bytes: int  # XLA's temporary buffers for one step.


def posenc_step(size: dict, overrides: dict[str, str] | None = None
                ) -> PosencStep:
  """The jitted, donated `train.train_step` of the benchmark's model.

  `overrides`: config fields and values as on the command line, e.g.
  {'model.remat': 'True'}; checked as posenc.main checks a config.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from posenc import data  # pylint: disable=g-import-not-at-top
  from posenc import train  # pylint: disable=g-import-not-at-top
  from posenc import validate  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  for field in ('seq_len', 'n_features'):
    config.data[field] = size[field]
  # The step sees one batch: the memory check should count only that.
  config.data.num_train = config.data.num_eval = size['batch_size']
  config.train.batch_size = size['batch_size']
  for field in ('d_model', 'num_heads', 'num_layers'):
    config.model[field] = size[field]
  config.model.mlp_dim = 4 * size['d_model']
  config.train.learning_rate = LEARNING_RATE
  for field, value in (overrides or {}).items():
    group, _, name = field.rpartition('.')
    target = config[group] if group else config
    if name not in target:
      raise KeyError(f'{field} is not a config field')
    kind = type(target[name])
    target[name] = (value.lower() == 'true' if kind is bool else kind(value))
  validate.check_config(config, 1)
  rng = np.random.default_rng(0)
  arrays = {'inputs': rng.standard_normal(
                (size['batch_size'], size['seq_len'], size['n_features']),
                dtype=np.float32),
            'labels': rng.integers(0, NUM_CLASSES, size['batch_size'])}
  # The model is sized by its data: this batch, NUM_CLASSES classes (as the
  # PyTorch model).
  dataset = data.Dataset.from_arrays(train=arrays, eval=arrays,
                                     num_classes=NUM_CLASSES)
  model = train.make_model(config, dataset)
  state = train.create_train_state(jax.random.key(0), config, model,
                                   dataset.example_inputs())
  batch = {k: jnp.asarray(v) for k, v in dataset.train.items()}
  key = jax.random.key(1)
  step = jax.jit(train.train_step, donate_argnums=0)
  start = time.perf_counter()
  compiled = step.lower(state, batch, key).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  holder = [state]

  def run_steps(n):
    s = holder[0]
    for _ in range(n):
      s, metrics = compiled(s, batch, key)
    jax.block_until_ready(metrics)
    holder[0] = s

  return PosencStep(run_steps, compile_s, float(cost['flops']),
                    compiled.as_text(),
                    compiled.memory_analysis().temp_size_in_bytes)


def _jax_worker(size: dict, reps: int, matmul_dtype: str = 'float32') -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  run = posenc_step(size, {'model.matmul_dtype': matmul_dtype})
  times = time_steps(run.steps, reps)
  # The f32 matmul rate, in the same process: best of a few 2048^3 products.
  a = jnp.ones((2048, 2048), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = min(_timed(lambda: matmul(a).block_until_ready()) for _ in range(5))
  return {'step_s': times, 'compile_s': run.compile_s,
          'flops_per_step': run.flops_per_step,
          'matmul_gflops': 2 * 2048**3 / best / 1e9,
          'peak_rss_mb': peak_rss_mb()}


def _timed(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def torch_step(size: dict, attention: str = 'softmax', compiled: bool = False
               ) -> tuple[Callable[[int], None], float]:
  """The PyTorch model's Adam step on one batch, as `run_steps(n)`, and its
  torch.compile time (0 in eager). `attention`: torch_model's."""
  import torch  # pylint: disable=g-import-not-at-top
  from experiments import torch_model  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  model = torch_model.EncoderClassifier(
      size['seq_len'], size['n_features'], size['d_model'],
      size['num_heads'], size['num_layers'], 4 * size['d_model'],
      NUM_CLASSES, attention)
  step = torch_model.make_train_step(model, LEARNING_RATE)
  inputs = torch.randn(size['batch_size'], size['seq_len'],
                       size['n_features'])
  labels = torch.randint(0, NUM_CLASSES, (size['batch_size'],))
  compile_s = 0.0
  if compiled:
    step = torch.compile(step)
    start = time.perf_counter()
    step(inputs, labels)
    compile_s = time.perf_counter() - start

  def run_steps(n):
    for _ in range(n):
      step(inputs, labels)

  return run_steps, compile_s


def _torch_worker(size: dict, reps: int, compiled: bool) -> dict:
  import torch  # pylint: disable=g-import-not-at-top

  run_steps, compile_s = torch_step(size, compiled=compiled)
  times = time_steps(run_steps, reps)
  a = torch.ones(2048, 2048)
  a @ a
  best = min(_timed(lambda: a @ a) for _ in range(5))
  return {'step_s': times, 'compile_s': compile_s,
          'matmul_gflops': 2 * 2048**3 / best / 1e9,
          'peak_rss_mb': peak_rss_mb(), 'threads': torch.get_num_threads()}


def _worker(framework: str, size_name: str, reps: int) -> None:
  # Imported here: benchmark_long builds on this module.
  from experiments import benchmark_long  # pylint: disable=g-import-not-at-top

  if size_name in benchmark_long.SIZES:
    result = benchmark_long.worker(framework, benchmark_long.SIZES[size_name],
                                   reps)
    print(json.dumps({'framework': framework, 'size': size_name, **result}))
    return
  size = SIZES[size_name]
  if framework in POSENC_MATMUL_DTYPES:
    result = _jax_worker(size, reps, POSENC_MATMUL_DTYPES[framework])
  else:
    result = _torch_worker(size, reps, compiled=framework == 'torch_compile')
  print(json.dumps({'framework': framework, 'size': size_name, **result}))


def _spawn(framework: str, size: str, reps: int, env: dict) -> dict | None:
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.benchmark', f'--worker={framework}',
       f'--size={size}', f'--reps={reps}'], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=1800, check=False)
  if proc.returncode != 0:
    print(f'  {framework} {size}: failed ({proc.stderr.strip()[-300:]})',
          file=sys.stderr)
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _summarise(runs: list[dict]) -> dict:
  """Median and spread over rounds of each round's median step time."""
  size = SIZES[runs[0]['size']]
  per_round = [statistics.median(r['step_s']) for r in runs]
  examples = [size['batch_size'] / t for t in per_round]
  out = {'examples_per_s': statistics.median(examples),
         'examples_per_s_min': min(examples),
         'examples_per_s_max': max(examples),
         'compile_s': statistics.median(r['compile_s'] for r in runs),
         'peak_rss_mb': max(r['peak_rss_mb'] for r in runs),
         'matmul_gflops': max(r['matmul_gflops'] for r in runs),
         'rounds': len(runs)}
  out['tokens_per_s'] = out['examples_per_s'] * size['seq_len']
  if 'flops_per_step' in runs[0]:
    out['gflops'] = (runs[0]['flops_per_step'] * out['examples_per_s'] /
                     size['batch_size'] / 1e9)
  return out


def _markdown(summary: dict, machine: str) -> str:
  lines = [
      f'Machine: {machine}. Medians over rounds (min-max); each round runs '
      'every framework once, alternating. posenc runs float32 (the default) '
      'and with model.matmul_dtype=bfloat16 (bfloat16 products, float32 sums '
      'and parameters); PyTorch runs float32.', '',
      '| size | shape | posenc ex/s | tokens/s | compile s | '
      'peak RSS MB, posenc vs eager | GFLOP/s (of matmul) | posenc bf16 ex/s | '
      'PyTorch eager ex/s | torch.compile ex/s | posenc / eager | '
      'posenc bf16 / eager |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|']
  fmt = lambda r: (f"{r['examples_per_s']:,.0f} ({r['examples_per_s_min']:,.0f}"
                   f"-{r['examples_per_s_max']:,.0f})" if r else 'not run')
  ratio = lambda a, b: (f"{a['examples_per_s'] / b['examples_per_s']:.2f}x"
                        if a and b else '')
  for name, size in SIZES.items():
    if name not in summary:
      continue
    s = summary[name]
    p, b = s.get('posenc'), s.get('posenc_bf16')
    e, c = s.get('torch_eager'), s.get('torch_compile')
    shape = (f"T={size['seq_len']}, d={size['d_model']}, "
             f"{size['num_layers']} layers, batch {size['batch_size']}")
    if p:
      flops = (f"{p['gflops']:.1f} ({p['gflops'] / p['matmul_gflops']:.0%} of "
               f"{p['matmul_gflops']:.0f})")
      memory = f"{p['peak_rss_mb']:.0f} vs " + (
          f"{e['peak_rss_mb']:.0f}" if e else '-')
      posenc = (f"{fmt(p)} | {p['tokens_per_s']:,.0f} | {p['compile_s']:.2f} | "
                f'{memory} | {flops}')
    else:
      posenc = f'{fmt(p)} | | | |'
    lines.append(f'| {name} | {shape} | {posenc} | {fmt(b)} | {fmt(e)} | '
                 f'{fmt(c)} | {ratio(p, e)} | {ratio(b, e)} |')
  return '\n'.join(lines) + '\n'


def main() -> None:
  # Imported here: benchmark_long builds on this module.
  from experiments import benchmark_long  # pylint: disable=g-import-not-at-top

  all_sizes = {**SIZES, **benchmark_long.SIZES}
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default=','.join(all_sizes),
                      help=f"comma-separated, of {', '.join(all_sizes)}")
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--reps', type=int, default=5)
  parser.add_argument('--out', default=str(OUT))
  parser.add_argument('--no-compile', action='store_true',
                      help='skip torch.compile')
  parser.add_argument('--allocator', choices=allocator.ALLOCATORS,
                      default='tcmalloc',
                      help="as posenc's train.allocator, for both frameworks "
                      '(tcmalloc: where installed)')
  parser.add_argument('--worker', help=argparse.SUPPRESS)
  parser.add_argument('--size', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    _worker(args.worker, args.size, args.reps)
    return
  sizes = args.sizes.split(',')
  if unknown := [s for s in sizes if s not in all_sizes]:
    parser.error(f"unknown sizes {', '.join(unknown)}; valid: "
                 f"{', '.join(all_sizes)}")
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  if args.allocator == 'tcmalloc':
    if allocator.find_tcmalloc() is None:
      print('tcmalloc is not installed: both frameworks use the system '
            'allocator.', file=sys.stderr)
      args.allocator = 'system'
    else:
      env['LD_PRELOAD'] = allocator.find_tcmalloc()
  runs = {s: {} for s in sizes}
  for round_ in range(args.rounds):
    for size in sizes:
      long = size in benchmark_long.SIZES
      frameworks = (list(benchmark_long.FRAMEWORKS) if long else
                    [*POSENC_MATMUL_DTYPES, 'torch_eager'])
      if round_ % 2:
        frameworks.reverse()
      if round_ == 0 and not args.no_compile and not long:
        frameworks.append('torch_compile')
      for framework in frameworks:
        print(f'round {round_ + 1}/{args.rounds}: {framework} at {size}...',
              file=sys.stderr, flush=True)
        result = _spawn(framework, size, args.reps, env)
        if result is not None:
          runs[size].setdefault(framework, []).append(result)
  summary = {size: {fw: (benchmark_long.summarise(r) if size in
                         benchmark_long.SIZES else _summarise(r))
                    for fw, r in by_fw.items()}
             for size, by_fw in runs.items()}
  machine = (f'{os.cpu_count()} CPU cores, {_cpu_name()}, allocator '
             f'{args.allocator}, {time.strftime("%Y-%m-%d")}')
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix('.json').write_text(json.dumps(
      {'machine': machine, 'sizes': all_sizes, 'summary': summary,
       'runs': runs}, indent=2))
  tables = []  # Each table for the sizes that ran, with the machine.
  if any(size in SIZES for size in sizes):
    tables.append(_markdown(summary, machine))
  if any(size in benchmark_long.SIZES for size in sizes):
    tables.append(benchmark_long.markdown(summary, machine))
  table = '\n'.join(tables)
  out.with_suffix('.md').write_text(table)
  print(table)


def _cpu_name() -> str:
  try:
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown CPU'


if __name__ == '__main__':
  main()
