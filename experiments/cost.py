"""Study 5: what long sequences cost. Step time and memory against length.

For one encoding per process (so its peak resident memory is its own), for
each length in increasing order: compile posenc's train step (jit, one
device, state donated) for a batch of `batch` sequences of 16 features with
the seed model (d=64, 4 heads, 2 blocks), read XLA's buffer assignment
(`memory_analysis`: arguments + outputs + temporaries - aliased), and, where
that fits in `run_limit_gib`, the length is at most `max_run_len` and the
previous length's step predicts less than `max_step_s`, run it: one warm-up
step, then the median of 3. Lengths past the limits are compiled only (XLA's
estimate, status 'estimated').

  python -m experiments.cost --encoding=rope --lengths=64,128 --batch=8
"""

import argparse
import json
import resource
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import fit
from posenc import config as default
from posenc import data
from posenc import train as train_lib

GIB = 2**30
NUM_CLASSES = 10  # As data.name='random' (its default num_classes).


def config_for(encoding: str, seq_len: int, batch: int):
  config = default.get_config()
  config.data.name = 'random'
  config.data.seq_len = seq_len
  config.model.posemb = encoding
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


def measure(encoding: str, lengths: list[int], batch: int, *,
            run_limit_gib: float, max_step_s: float,
            max_run_len: int) -> list[dict]:
  records = []
  step = jax.jit(train_lib.train_step, donate_argnums=0)
  predicted_s = 0.0
  for seq_len in sorted(lengths):
    config = config_for(encoding, seq_len, batch)
    batch_data = random_batch(batch, seq_len, config.data.n_features)
    # The model is sized by the data it sees: this one batch, 10 classes.
    dataset = data.Dataset.from_arrays(train=batch_data, eval=batch_data,
                                       num_classes=NUM_CLASSES)
    model = train_lib.make_model(config, dataset)
    rng = jax.random.key(0)
    state = fit.init_states(config, model, dataset.example_inputs(), rng[None])
    state = jax.tree.map(lambda x: x[0], state)
    start = time.perf_counter()
    compiled = step.lower(state, batch_data, rng).compile()
    record = {'study': 'cost', 'encoding': encoding, 'seq_len': seq_len,
              'batch': batch, 'compile_s': time.perf_counter() - start,
              'xla_peak_gib': xla_peak_bytes(compiled) / GIB}
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
      times = []
      for _ in range(4):  # A warm-up step, then three timed.
        start = time.perf_counter()
        state, metrics = compiled(state, batch_data, rng)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - start)
      # rss_peak_gib: the process's peak so far (lengths run in increasing
      # order), not this length's alone; it includes the runtime's own.
      record.update(status='ran', step_s=statistics.median(times[1:]),
                    rss_peak_gib=resource.getrusage(
                        resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
                    loss=float(metrics['train_loss']))
      # Attention is quadratic: the next (doubled) length costs up to 4x.
      predicted_s = 4 * record['step_s']
    records.append(record)
    del state
  return records


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--encoding', required=True)
  parser.add_argument('--lengths', required=True,
                      help='comma-separated sequence lengths')
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--run_limit_gib', type=float, default=12.0)
  parser.add_argument('--max_step_s', type=float, default=10.0)
  parser.add_argument('--max_run_len', type=int, default=2**20,
                      help='longer lengths are compiled only')
  args = parser.parse_args()
  jnp.zeros(())  # Initialise the backend before timing anything.
  records = measure(args.encoding, [int(x) for x in args.lengths.split(',')],
                    args.batch, run_limit_gib=args.run_limit_gib,
                    max_step_s=args.max_step_s,
                    max_run_len=args.max_run_len)
  print(json.dumps(records))


if __name__ == '__main__':
  main()
