"""The benchmark's long sizes: 4,096 and 16,384 tokens at batch 1.

Run by `python -m experiments.benchmark` (in its default --sizes, as a
second table of its output; `--sizes=long4k,long16k
--out=experiments/results/benchmark_long` runs only these, as for the
committed `results/benchmark_long.*`). The model: 16 features, d_model 64, 4
heads, 2 layers, MLP 4 * d, learned positions, mean pooling, Adam.

posenc runs its jitted train step with model.attention='blocked' (blocks of
BLOCK_SIZE queries and keys, an online softmax: memory linear in the
length), float32, with the threads XLA takes (one per core). PyTorch runs
the same model with torch.nn.functional.scaled_dot_product_attention (its
CPU flash kernel), float32 eager, once with 1 thread and once with 2
(torch.set_num_threads; at the seed size its 2-thread runs on 2 cores varied
tenfold). Not run here: posenc's einsum path (its (H, L, L) weights are
4 GiB a layer at 16,384 tokens), bfloat16, and torch.compile (a compile per
size for a handful of steps). Each measurement runs in its own subprocess
and the three alternate within each round, as at the other sizes. Reported
per size: seconds per step (median over rounds, min-max), tokens/s,
posenc's compile time, each process's peak resident memory, and posenc's
tokens/s over PyTorch's at PyTorch's faster thread count.
"""

import statistics

from experiments import benchmark
from posenc import models

SIZES = {
    'long4k': dict(seq_len=4096, n_features=16, d_model=64, num_heads=4,
                   num_layers=2, batch_size=1),
    'long16k': dict(seq_len=16384, n_features=16, d_model=64, num_heads=4,
                    num_layers=2, batch_size=1),
}
# posenc's default model.attention_block_size.
BLOCK_SIZE = models.ModelConfig.attention_block_size
# PyTorch's runs and their torch.set_num_threads.
TORCH_THREADS = {'torch_sdpa_1t': 1, 'torch_sdpa_2t': 2}
FRAMEWORKS = ('posenc_blocked', *TORCH_THREADS)
# Warm-up steps, and the fewest per timed repetition: a step at 16,384
# tokens takes about 10 s (the other sizes use 3).
MIN_STEPS = 1


def posenc_worker(size: dict, reps: int) -> dict:
  """posenc's blocked-attention step at one size, timed in this process."""
  run = benchmark.posenc_step(size, {
      'model.attention': 'blocked',
      'model.attention_block_size': str(BLOCK_SIZE)})
  return {'step_s': benchmark.time_steps(run.steps, reps, MIN_STEPS),
          'compile_s': run.compile_s, 'temp_mb': run.temp_bytes / 2**20,
          'peak_rss_mb': benchmark.peak_rss_mb()}


def torch_worker(size: dict, reps: int, threads: int) -> dict:
  """PyTorch's SDPA step at one size on `threads` threads, in this process
  (whose thread count it sets)."""
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(threads)
  run_steps, _ = benchmark.torch_step(size, attention='sdpa')
  return {'step_s': benchmark.time_steps(run_steps, reps, MIN_STEPS),
          'compile_s': 0.0, 'peak_rss_mb': benchmark.peak_rss_mb(),
          'threads': torch.get_num_threads()}


def worker(framework: str, size: dict, reps: int) -> dict:
  """One of FRAMEWORKS at one size."""
  if framework == 'posenc_blocked':
    return posenc_worker(size, reps)
  if framework in TORCH_THREADS:
    return torch_worker(size, reps, TORCH_THREADS[framework])
  raise ValueError(f'framework={framework!r} at a long size; valid: '
                   f"{', '.join(FRAMEWORKS)}.")


def summarise(runs: list[dict]) -> dict:
  """Median and spread over rounds of each round's median step time."""
  size = SIZES[runs[0]['size']]
  per_round = [statistics.median(r['step_s']) for r in runs]
  step_s = statistics.median(per_round)
  out = {'step_s': step_s, 'step_s_min': min(per_round),
         'step_s_max': max(per_round),
         'tokens_per_s': size['batch_size'] * size['seq_len'] / step_s,
         'compile_s': statistics.median(r['compile_s'] for r in runs),
         'peak_rss_mb': max(r['peak_rss_mb'] for r in runs),
         'rounds': len(runs)}
  if 'temp_mb' in runs[0]:  # XLA's temporary buffers: the same every round.
    out['temp_mb'] = runs[0]['temp_mb']
  return out


def _cells(r: dict | None, with_compile: bool = False) -> list[str]:
  """Seconds per step (min-max), tokens/s, [compile s,] peak RSS MB."""
  if not r:
    return ['not run', ''] + [''] * with_compile + ['']
  cells = [f"{r['step_s']:.3f} ({r['step_s_min']:.3f}-{r['step_s_max']:.3f})",
           f"{r['tokens_per_s']:,.0f}"]
  if with_compile:
    cells.append(f"{r['compile_s']:.2f}")
  return cells + [f"{r['peak_rss_mb']:,.0f}"]


def _ratio(posenc: dict | None, by_fw: dict) -> str:
  """posenc's tokens/s over PyTorch's faster thread count's."""
  ran = [fw for fw in TORCH_THREADS if by_fw.get(fw)]
  if not posenc or not ran:
    return ''
  best = max(ran, key=lambda fw: by_fw[fw]['tokens_per_s'])
  threads = TORCH_THREADS[best]
  return (f"{posenc['tokens_per_s'] / by_fw[best]['tokens_per_s']:.2f}x "
          f"(vs {threads} thread{'s' if threads > 1 else ''})")


def markdown(summary: dict, machine: str) -> str:
  """The long sizes' table, a row for each in `summary`."""
  lines = [
      f'Long sizes. Machine: {machine}. Seconds per step: median over rounds '
      '(min-max); each round runs every framework once, alternating, each in '
      "its own process. posenc: model.attention='blocked' (blocks of "
      f'{BLOCK_SIZE}), float32, XLA on every core. PyTorch: '
      'scaled_dot_product_attention, float32 eager, at 1 and at 2 threads '
      '(torch.set_num_threads); no torch.compile. posenc / PyTorch: tokens/s '
      "against PyTorch's faster thread count.", '',
      '| size | shape | posenc blocked s/step | tokens/s | compile s | '
      'peak RSS MB | PyTorch SDPA 1 thread s/step | tokens/s | peak RSS MB | '
      'PyTorch SDPA 2 threads s/step | tokens/s | peak RSS MB | '
      'posenc / PyTorch |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for name, size in SIZES.items():
    if name not in summary:
      continue
    by_fw = summary[name]
    p = by_fw.get('posenc_blocked')
    shape = (f"T={size['seq_len']:,}, d={size['d_model']}, "
             f"{size['num_heads']} heads, {size['num_layers']} layers, "
             f"batch {size['batch_size']}")
    row = [name, shape, *_cells(p, with_compile=True)]
    for fw in TORCH_THREADS:
      row += _cells(by_fw.get(fw))
    lines.append(f"| {' | '.join([*row, _ratio(p, by_fw)])} |")
  return '\n'.join(lines) + '\n'
