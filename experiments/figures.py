"""PNG figures of the studies, drawn from their records only."""

import collections
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from experiments import analysis

# Greydanus (2020), MNIST-1D test accuracy: (plain, shuffled).
PUBLISHED_MNIST1D = {'logistic regression': (0.32, 0.32), 'MLP': (0.68, 0.68),
                     'CNN': (0.94, 0.56), 'GRU': (0.91, 0.57)}


def mean_std(values) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  std = values.std(ddof=1) if len(values) > 1 else 0.0
  return float(values.mean()), float(std)


def group(records, keys, value):
  """{tuple of key values: [value of each seed]}, in first-seen order."""
  out = collections.defaultdict(list)
  for r in records:
    if value in r:
      out[tuple(r[k] for k in keys)].append(r[value])
  return out


def _save(fig, path: pathlib.Path) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def tasks(records, path: pathlib.Path) -> None:
  """Accuracy of every encoding on every task (bars: mean, lines: std)."""
  metric = lambda r: 'test_accuracy' if 'test_accuracy' in r else (
      'eval_accuracy')
  values = collections.defaultdict(list)
  for r in records:
    values[(r['task'], r['encoding'])].append(r[metric(r)])
  task_names = list(dict.fromkeys(r['task'] for r in records))
  encodings = list(dict.fromkeys(r['encoding'] for r in records))
  panels = [[t for t in task_names if not t.startswith('mnist1d')],
            [t for t in task_names if t.startswith('mnist1d')]]
  panels = [p for p in panels if p]
  fig, axes = plt.subplots(len(panels), 1, figsize=(13, 3.6 * len(panels)),
                           squeeze=False)
  width = 0.8 / len(encodings)
  for ax, names in zip(axes[:, 0], panels):
    for j, encoding in enumerate(encodings):
      stats = [mean_std(values[(t, encoding)]) if values[(t, encoding)]
               else (np.nan, 0.0) for t in names]
      x = np.arange(len(names)) + (j - len(encodings) / 2 + 0.5) * width
      ax.bar(x, [s[0] for s in stats], width, yerr=[s[1] for s in stats],
             label=encoding, capsize=2)
    ax.set_xticks(np.arange(len(names)), names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel('accuracy (test where there is one)')
    ax.grid(axis='y', alpha=0.3)
    if names[0].startswith('mnist1d'):
      for (name, (plain, shuffled)), style in zip(
          PUBLISHED_MNIST1D.items(), (':', '-.', '--', '-')):
        for k, t in enumerate(names):
          acc = shuffled if 'shuffled' in t else plain
          ax.hlines(acc, k - 0.45, k + 0.45, colors='black',
                    linestyles=style, linewidth=0.8,
                    label=f'{name} (published)' if k == 0 else None)
  for ax in axes[:, 0]:  # Beside the bars, not over them.
    ax.legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  axes[0, 0].set_title('Which encoding, on which task (mean and std over '
                       'seeds)')
  _save(fig, path)


def depth(records, path: pathlib.Path) -> None:
  """Probe accuracy for absolute position against layer, per depth."""
  depths = sorted({r['depth'] for r in records})
  encodings = list(dict.fromkeys(r['encoding'] for r in records))
  values = group(records, ('depth', 'encoding', 'layer'), 'probe_accuracy')
  fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6),
                           squeeze=False, sharey=True)
  for ax, d in zip(axes[0], depths):
    for encoding in encodings:
      layers = np.arange(d + 1)
      stats = np.array([mean_std(values[(d, encoding, l)]) for l in layers])
      ax.plot(layers, stats[:, 0], marker='o', markersize=3, label=encoding)
      ax.fill_between(layers, stats[:, 0] - stats[:, 1],
                      stats[:, 0] + stats[:, 1], alpha=0.2)
    seq_len = 10  # The argmax task's length (chance 1/10).
    ax.axhline(1 / seq_len, color='grey', linestyle=':', label='chance')
    ax.set_title(f'{d} blocks')
    ax.set_xlabel('layer (0: embeddings, k: after block k)')
    ax.set_xticks(np.arange(d + 1))
    ax.set_ylim(0, 1.02)
  axes[0, 0].set_ylabel('linear probe accuracy (position)')
  axes[0, -1].legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  _save(fig, path)


def lengths(records, path: pathlib.Path) -> None:
  """Accuracy against evaluation length, per task, per variant."""
  task_names = list(dict.fromkeys(r['task'] for r in records))
  variants = list(dict.fromkeys(r['variant'] for r in records))
  values = group(records, ('task', 'variant', 'eval_len'), 'accuracy')
  fig, axes = plt.subplots(1, len(task_names), squeeze=False, sharey=True,
                           figsize=(4.4 * len(task_names), 3.8))
  for ax, task in zip(axes[0], task_names):
    for k, variant in enumerate(variants):
      lens = sorted({r['eval_len'] for r in records})
      stats = np.array([mean_std(values[(task, variant, n)]) for n in lens])
      ax.errorbar(lens, stats[:, 0], yerr=stats[:, 1],
                  marker='os^vD<>p*'[k % 9],
                  markersize=4, capsize=2, label=variant,
                  linestyle='-' if k < 5 else '--')
    train_len = records[0]['train_len']
    ax.axvline(train_len, color='grey', linestyle=':', linewidth=0.8)
    ax.axhline(0.5, color='grey', linestyle=':', linewidth=0.8)
    ax.set_xscale('log', base=2)
    ax.set_xticks(lens, [str(n) for n in lens])
    ax.set_title(f'{task} (trained on {train_len // 2}..{train_len})')
    ax.set_xlabel('evaluation length')
    ax.set_ylim(0.4, 1.02)
  axes[0, 0].set_ylabel('accuracy')
  axes[0, -1].legend(fontsize=7, loc='upper left', bbox_to_anchor=(1.01, 1.0))
  _save(fig, path)


def tables(learned: dict[str, np.ndarray], initial: dict[str, np.ndarray],
           orders: dict[str, np.ndarray], path: pathlib.Path) -> None:
  """For seed 0 of each task: cosine similarity of the trained table's rows,
  of the change training made (trained - initial), and the change's first
  principal components. `initial` has the same keys as `learned`."""
  first_seed = str(min(int(k.rsplit('/', 1)[1]) for k in learned))
  panels = []
  for key, table in learned.items():
    task, seed = key.rsplit('/', 1)
    if seed != first_seed or task in analysis.BINARY_TASKS[2:] or (
        ' p4' in task and 'tuned' not in task):
      continue  # Enough panels: two binary tasks, MNIST-1D mostly at p1.
    panels.append((task, table, table - initial[key]))
    if task in orders:
      rows = orders[task]
      panels.append((f'{task}, signal order', table[rows],
                     (table - initial[key])[rows]))
  fig, axes = plt.subplots(3, len(panels), figsize=(3.0 * len(panels), 9),
                           squeeze=False)
  for k, (title, table, change) in enumerate(panels):
    for row, (t, what) in enumerate(((table, 'trained'), (change, 'change'))):
      image = axes[row, k].imshow(analysis.cosine_similarity(t), vmin=-1,
                                  vmax=1, cmap='RdBu_r')
      axes[row, k].set_title(f'{title}: {what}', fontsize=7)
    coords, explained = analysis.principal_components(change)
    for c in range(coords.shape[1]):
      axes[2, k].plot(coords[:, c], label=f'PC{c + 1} ({explained[c]:.0%})')
    axes[2, k].set_xlabel('position')
    axes[2, k].legend(fontsize=6)
  axes[0, 0].set_ylabel('cosine, trained table')
  axes[1, 0].set_ylabel('cosine, change in training')
  axes[2, 0].set_ylabel('change: principal components')
  fig.colorbar(image, ax=axes[:2, -1], fraction=0.046)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)


def cost(records, path: pathlib.Path, memory_gib: float,
         key: str = 'encoding') -> None:
  """Step time and XLA's memory estimate against sequence length, a line
  per value of `key` (the encoding, or the attention path); open markers
  where the step was compiled but not run."""
  names = list(dict.fromkeys(r[key] for r in records))
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for name in names:
    rows = sorted((r for r in records if r[key] == name),
                  key=lambda r: r['seq_len'])
    ran = [r for r in rows if r['status'] == 'ran']
    line, = axes[0].plot([r['seq_len'] for r in ran],
                         [r['step_s'] * 1000 for r in ran], marker='o',
                         markersize=3, label=name)
    color = line.get_color()
    axes[1].plot([r['seq_len'] for r in rows],
                 [r['xla_peak_gib'] for r in rows], color=color, label=name)
    for r in rows:
      axes[1].plot(r['seq_len'], r['xla_peak_gib'], marker='o', markersize=4,
                   color=color,
                   markerfacecolor=color if r['status'] == 'ran' else 'none')
  axes[1].axhline(memory_gib, color='black', linestyle=':',
                  label=f'this machine ({memory_gib:.0f} GiB)')
  for ax, label in zip(axes, ('train step (ms, median)',
                              'XLA peak buffers (GiB)')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('sequence length')
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  axes[1].legend(fontsize=7)
  batch = records[0]['batch']
  axes[0].set_title(f'Batch {batch}, d=64, 4 heads, 2 encoder blocks')
  axes[1].set_title('open markers: compiled, not run')
  _save(fig, path)
