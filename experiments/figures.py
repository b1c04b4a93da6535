"""PNG figures of the studies, drawn from their records only: means over
seeds with 95% intervals (experiments/stats.py)."""

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from experiments import analysis
from experiments import stats

# The depth study's tasks: positions per sequence (probe chance 1/L).
POSITIONS = {'argmax': 10, 'digits': 64}
# Greydanus (2020), MNIST-1D test accuracy: (plain, shuffled).
PUBLISHED_MNIST1D = {'logistic regression': (0.32, 0.32), 'MLP': (0.68, 0.68),
                     'CNN': (0.94, 0.56), 'GRU': (0.91, 0.57)}


def _save(fig, path: pathlib.Path) -> None:
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _curve(ax, xs, per_x: list[list[float]], **style) -> None:
  """Mean and 95% band of the values at each x."""
  intervals = [stats.interval(v) for v in per_x]
  mean = np.array([i.mean for i in intervals]) * 100
  ax.plot(xs, mean, **style)
  if all(i.n > 1 for i in intervals):
    ax.fill_between(xs, [i.low * 100 for i in intervals],
                    [i.high * 100 for i in intervals], alpha=0.15,
                    color=ax.lines[-1].get_color(), linewidth=0)


def depth(records, path: pathlib.Path, probe: str = 'ridge') -> None:
  """`probe` accuracy against layer, trained (solid) and untrained (dashed,
  same colour): a row per task; columns: the learned table at each initial
  scale, the learned table at the sinusoidal table's norm (std 0.707)
  against the sinusoidal table, the other encodings. Chance: grey."""
  tasks = list(dict.fromkeys(r['task'] for r in records))
  variants = list(dict.fromkeys(r['variant'] for r in records))
  colours = dict(zip(variants, plt.cm.tab10.colors))
  scales = [v for v in variants if v.startswith('learned, std')]
  matched = [v for v in ('learned, std 0.707', 'sinusoidal') if v in variants]
  panels = [('learned table, by initial scale', scales),
            ('matched scale', matched),
            ('the others', [v for v in variants if v not in scales
                            and v not in matched])]
  panels = [p for p in panels if p[1]]
  fig, axes = plt.subplots(len(tasks), len(panels),
                           figsize=(5 * len(panels), 3.8 * len(tasks)),
                           squeeze=False)
  for row, task in enumerate(tasks):
    rows = [r for r in records if r['task'] == task]
    for col, (title, shown) in enumerate(panels):
      ax = axes[row, col]
      for variant in shown:
        for trained in (True, False):
          chosen = [r for r in rows if r['variant'] == variant
                    and r['trained'] == trained]
          if not chosen:
            continue
          layers = sorted({r['layer'] for r in chosen})
          _curve(ax, layers, [[r[probe] for r in chosen
                               if r['layer'] == layer] for layer in layers],
                 color=colours[variant], linestyle='-' if trained else '--',
                 marker='o' if trained else None, markersize=3,
                 label=variant if trained else None)
      length = POSITIONS.get(task)
      if length:
        ax.axhline(100 / length, color='grey', linewidth=0.8)
      ax.set(title=f'{task}: {title}', xlabel='layer (0: input)',
             ylabel=f'{probe} probe, held-out accuracy (%)', ylim=(0, 102))
      ax.xaxis.get_major_locator().set_params(integer=True)
      ax.legend(fontsize=7, loc='lower left')
  fig.suptitle('Position read from each layer: trained (solid) and untrained '
               'twins (dashed), 95% bands over seeds', fontsize=10)
  _save(fig, path)


def lengths(records, path: pathlib.Path) -> None:
  """Accuracy against evaluation length, one panel per task and masking."""
  records = [r for r in records if r['data'] == 'synthetic']
  panels = sorted({(r['task'], r['causal']) for r in records})
  fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5),
                           squeeze=False)
  for ax, (task, causal) in zip(axes[0], panels):
    rows = [r for r in records if r['task'] == task and r['causal'] == causal]
    variants = list(dict.fromkeys(r['variant'] for r in rows))
    cycle = plt.cm.tab20.colors
    for k, variant in enumerate(variants):
      chosen = [r for r in rows if r['variant'] == variant]
      xs = sorted({r['eval_len'] for r in chosen})
      _curve(ax, xs, [[r['accuracy'] for r in chosen if r['eval_len'] == x]
                      for x in xs], color=cycle[k % 20],
             linestyle='-' if k < 10 else '--', marker='o', markersize=3,
             label=variant)
    train_len = rows[0]['train_len']
    ax.axvline(train_len, color='grey', linewidth=0.8)
    ax.axhline(50, color='grey', linewidth=0.8, linestyle=':')
    ax.set(title=f'{task}, {"causal" if causal else "bidirectional"}',
           xscale='log', xlabel='evaluation length (trained on L/2..L)',
           ylabel='accuracy (%)', ylim=(40, 101))
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.legend(fontsize=6, ncol=2, loc='lower left')
  _save(fig, path)


def tasks(records, path: pathlib.Path) -> None:
  """Test accuracy per task (panels) and encoding (bars), with intervals."""
  names = list(dict.fromkeys(r['task'] for r in records))
  encodings = list(dict.fromkeys(r['encoding'] for r in records))
  cols = min(4, len(names))
  rows_n = -(-len(names) // cols)
  fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n),
                           squeeze=False)
  for ax, name in zip(axes.flat, names):
    means, errors, labels = [], [], []
    for e in encodings:
      values = [r['test_accuracy'] for r in records
                if r['task'] == name and r['encoding'] == e]
      if values:
        i = stats.interval(values)
        means.append(i.mean * 100)
        errors.append(0 if i.n == 1 else i.half_width * 100)
        labels.append(e)
    ax.barh(range(len(means)), means, xerr=errors, color='tab:blue')
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(title=name, xlabel='test accuracy (%)', xlim=(0, 100))
  for ax in list(axes.flat)[len(names):]:
    ax.axis('off')
  _save(fig, path)


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


def tables(records, path: pathlib.Path) -> None:
  """For the first seed of each task with kept tables: cosine similarity
  of the trained table's rows, of the change training made (trained -
  initial), and the change's first principal components."""
  panels = []
  for r in records:
    if 'tables' in r:
      trained = np.asarray(r['tables']['trained'])
      panels.append((r['task'], trained,
                     trained - np.asarray(r['tables']['initial'])))
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
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, bbox_inches='tight')
  plt.close(fig)


def ruoss(records, path: pathlib.Path, tasks: list[str]) -> None:
  """Test accuracy against test length, one panel per task: plain
  encodings dashed, randomized solid (Ruoss et al.'s figure)."""
  fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5),
                           squeeze=False)
  for ax, task in zip(axes[0], tasks):
    rows = [r for r in records if r['task'] == task and r['length'] != 'train']
    encodings = list(dict.fromkeys(r['encoding'] for r in rows))
    for k, encoding in enumerate(encodings):
      for randomized in (False, True):
        chosen = [r for r in rows if r['encoding'] == encoding
                  and r['randomized'] == randomized]
        if not chosen:
          continue
        xs = sorted({r['length'] for r in chosen})
        _curve(ax, xs, [[r['accuracy'] for r in chosen if r['length'] == x]
                        for x in xs], color=plt.cm.tab10.colors[k % 10],
               linestyle='-' if randomized else '--',
               label=encoding + (' (randomized)' if randomized else ''))
    ax.set(title=task, xlabel='test length (trained on 1..40)',
           ylabel='accuracy (%)', ylim=(0, 101))
    ax.legend(fontsize=6, ncol=2, loc='lower left')
  _save(fig, path)
