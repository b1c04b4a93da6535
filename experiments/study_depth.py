"""Study 2: does positional information survive into deeper layers?

Each setting trains the reported seeds and keeps each seed's untrained twin
(the same initial parameters, no step taken). On every layer's residual
stream (the class token left out) four probes read each token's absolute
position, fitted on training sequences and scored on held-out ones:

- a linear probe (ridge regression) and an MLP probe (`experiments.probes`),
- each also on the control task: labels that are a fixed random position
  per content type, not per position (Hewitt and Liang, 2019), drawn anew
  for each seed. Content and place are not independent (a digit's centre
  pixels are brighter), so the control carries a little position; its
  chance level is its most frequent label (`control_majority`), far above
  1/L where one content type dominates (blank pixels), so accuracies are
  compared above their own chance (`report`: Cohen's kappa).

Beside them, `position_share`: the share of the residual stream's variance
that the position alone explains (the variance of the per-position means
over the total variance). The learned table runs at several initial
scales, among them 0.707, where its rows have the sinusoidal table's
expected norm (sqrt(D / 2)): position signal at matched scale.

Tasks: 'argmax' (10 positions) and, with real data, the digits (64 pixel
positions). They differ in more than their length (data, 8 against 4
blocks, epochs): read each on its own. No tuning: every model trains with
the same recipe, since the study compares representations (each trained
row carries its task accuracy).
"""

import numpy as np

from experiments import fit
from experiments import probes
from experiments import records as records_lib
from experiments import studies

STUDY = 'depth'
# Beside records.LIBRARY:
CODE = ('experiments/study_depth.py', 'experiments/probes.py')


def variants(scale: studies.Scale) -> dict[str, tuple[str, dict]]:
  """Name -> (encoding, config.model overrides)."""
  out = {f'learned, std {std:g}': ('learned', {'posemb_init_std': std})
         for std in scale.depth_learned_stds}
  out.update({name: (name, {}) for name in scale.depth_encodings})
  return out


def task_configs(scale: studies.Scale, encoding: str, model: dict) -> dict:
  configs = {'argmax': studies.base_config(
      scale, 'argmax', encoding, num_layers=scale.depth_layers, **model)}
  if scale.real_data:
    configs['digits'] = studies.file_config(
        'digits', encoding, num_layers=scale.depth_digits_layers, **model)
    configs['digits'].train.num_epochs = scale.digits_epochs
  return configs


def position_share(hidden_NxLxD: np.ndarray) -> float:
  """Variance explained by position: mean over features of
  Var_position(E[h | position]) / Var(h)."""
  total = hidden_NxLxD.reshape(-1, hidden_NxLxD.shape[-1]).var(0)
  by_position = hidden_NxLxD.mean(0).var(0)
  return float((by_position / np.maximum(total, 1e-12)).mean())


def probe_records(hidden: dict[str, np.ndarray],
                  types: dict[str, np.ndarray], seeds: tuple[int, ...],
                  scale: studies.Scale) -> list[dict]:
  """hidden[split]: (members, layers + 1, N, L, D) without the class
  token; one record per member and layer."""
  members, layers, n, length, width = hidden['train'].shape
  test_n = hidden['eval'].shape[2]
  position = {'train': np.tile(np.arange(length), n),
              'eval': np.tile(np.arange(length), test_n)}
  labels = {s: np.broadcast_to(y, (members, layers, len(y)))
            for s, y in position.items()}
  # types[split]: (members, N, L); member i's control task is drawn with
  # its seed, one for all its layers.
  control = {s: np.broadcast_to(np.stack([
      probes.control_labels(t[i], length, seed=seeds[i]).reshape(-1)
      for i in range(members)])[:, None], labels[s].shape)
             for s, t in types.items()}
  flat = {s: h.reshape(members * layers, -1, width) for s, h in hidden.items()}
  mlp = {}
  for name, y in (('mlp', labels), ('mlp_control', control)):
    mlp[name] = probes.mlp_probe(
        flat['train'], y['train'].reshape(members * layers, -1),
        flat['eval'], y['eval'].reshape(members * layers, -1),
        length, steps=scale.probe_steps).reshape(members, layers)
  out = []
  for i in range(members):
    for layer in range(layers):
      train_x = hidden['train'][i, layer].reshape(-1, width)
      eval_x = hidden['eval'][i, layer].reshape(-1, width)
      out.append({
          'layer': layer,
          # The control task's chance: its most frequent held-out label.
          'control_majority': float(np.bincount(
              control['eval'][i, 0]).max() / control['eval'].shape[-1]),
          'ridge': probes.ridge_probe(train_x, position['train'], eval_x,
                                      position['eval'], length),
          'ridge_control': probes.ridge_probe(
              train_x, control['train'][i, 0], eval_x,
              control['eval'][i, 0], length),
          'mlp': float(mlp['mlp'][i, layer]),
          'mlp_control': float(mlp['mlp_control'][i, layer]),
          'position_share': position_share(hidden['eval'][i, layer])})
  return out


def unit(scale: studies.Scale, progress: studies.Progress, task: str,
         name: str, encoding: str, config) -> records_lib.Unit:
  seeds = scale.seeds

  def compute():
    run = progress.train(f'{name} on {task}', [config] * len(seeds),
                         list(seeds))
    accuracy = fit.evaluate(run, [ds.eval for ds in run.datasets])
    untrained = fit.untrained(run)
    cls = 1 if config.model.pooling == 'cls' else 0
    inputs = {}
    for split in ('train', 'eval'):
      split_inputs = [getattr(ds, split)['inputs'][:scale.probe_sequences]
                      for ds in run.datasets]
      if any('mask' in getattr(ds, split) for ds in run.datasets):
        raise ValueError(f'{task}: the depth probes need sequences of one '
                         'length.')
      inputs[split] = np.stack(split_inputs)
    # Each member's tokens' content types, one numbering for both splits.
    types = [probes.content_types(inputs['train'][i], inputs['eval'][i])
             for i in range(len(seeds))]
    types = {'train': np.stack([t[0] for t in types]),
             'eval': np.stack([t[1] for t in types])}
    records = []
    for trained, source in ((True, run), (False, untrained)):
      hidden = {s: fit.hidden_states(source, x)[:, :, :, cls:]
                for s, x in inputs.items()}
      rows = probe_records(hidden, types, seeds, scale)
      layers = hidden['train'].shape[1]
      for i, seed in enumerate(seeds):
        for row in rows[i * layers:(i + 1) * layers]:
          records.append({
              'kind': 'probe', 'task': task, 'variant': name,
              'encoding': encoding,
              'init_std': config.model.posemb_init_std
              if encoding in studies.TABLES else None,
              'num_layers': config.model.num_layers, 'seed': seed,
              'trained': trained,
              'task_accuracy': (float(accuracy['accuracy'][i]) if trained
                                else None), **row})
    return records
  return records_lib.Unit(
      STUDY, f'{name} on {task}',
      studies.spec({task: config}, seeds, probe_sequences=(
          scale.probe_sequences), probe_steps=scale.probe_steps), compute)


def plan(scale: studies.Scale, store: records_lib.Store):
  """The study's units, in order (a generator, as the other studies')."""
  del store  # No tuning here.
  progress = studies.Progress(STUDY)
  for name, (encoding, model) in variants(scale).items():
    for task, config in task_configs(scale, encoding, model).items():
      yield unit(scale, progress, task, name, encoding, config)
