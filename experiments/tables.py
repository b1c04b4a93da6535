"""Study 4: what the learned tables of study 1 look like, and what training
changed in them (cosine similarity of rows, principal components)."""

import jax
import ml_collections
import numpy as np

from configs import mnist1d as mnist1d_config
from experiments import analysis
from experiments import fit
from experiments import studies
from posenc import data
from posenc import train as train_lib
from posenc.datasets import mnist1d

Record = studies.Record


def _task_config(scale: studies.Scale, task: str) -> ml_collections.ConfigDict:
  """The learned-table config study 1 trained `task` (a record's label)
  with."""
  if task == 'mnist1d p4 tuned':
    return mnist1d_config.get_config()
  if task.startswith('mnist1d'):
    name, patch = task.split(' p')
    return studies.mnist_config(scale, name, int(patch), 'learned')
  if task == 'listops':
    return studies.listops_config(scale, 'learned')
  return studies.task_config(scale, task, 'learned')


def initial_table(scale: studies.Scale, task: str, seed: int) -> np.ndarray:
  """The learned table of `task` and `seed` before training (the same keys
  as fit.train)."""
  config = _task_config(scale, task)
  dataset = data.load(config.data, seed)
  model = train_lib.make_model(config, dataset)
  init_rng = jax.random.split(jax.random.key(seed))[0]
  state = fit.init_states(config, model, dataset.example_inputs(),
                          init_rng[None])
  return np.asarray(state.params['posemb_learned']['pos_embedding'][0, 0])


def study(scale: studies.Scale, learned: dict[str, np.ndarray],
           orders: dict[str, np.ndarray]) -> list[Record]:
  """Study 4: summaries of the learned tables of study 1.

  `orders[task]`, where given, reorders a table's rows (e.g. the shuffled
  MNIST-1D's rows back into signal order) before the summary. 'moved':
  how far training took the table from its initial value, relative to it;
  'delta_*': the same summaries of the change (trained - initial), where
  whatever training wrote into the table shows.
  """
  records = []
  for key, table in learned.items():
    task, seed = key.rsplit('/', 1)
    start = initial_table(scale, task, int(seed))
    moved = float(np.linalg.norm(table - start) / np.linalg.norm(start))
    for order_name, rows in (('sequence', None), ('signal', orders.get(task))):
      if order_name == 'signal' and rows is None:
        continue
      pick = (lambda t: t) if rows is None else (lambda t, r=rows: t[r])
      record = {'study': 'tables', 'task': task, 'seed': int(seed),
                'order': order_name, 'rows': len(table), 'moved': moved}
      for prefix, t in (('', pick(table)), ('initial_', pick(start)),
                        ('delta_', pick(table - start))):
        record.update({prefix + k: v
                       for k, v in analysis.summarise(t).items()})
      records.append(record)
  return records


def signal_orders(scale: studies.Scale, learned: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
  """For shuffled MNIST-1D at one step per token: the rows in signal order
  (token j holds step permutation[j], so step k is row argsort(perm)[k])."""
  orders = {}
  for key in learned:
    task = key.rsplit('/', 1)[0]
    if task.startswith('mnist1d_shuffled p1'):
      config = studies.mnist_config(scale, 'mnist1d_shuffled', 1, 'learned')
      orders[task] = np.argsort(
          mnist1d.permutation(config.data, int(key.rsplit('/', 1)[1])))
  return orders
