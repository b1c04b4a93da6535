"""Train state, pure train/eval steps, and the training loop."""

import dataclasses
import functools
import json
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from posenc import checkpoints
from posenc import checks
from posenc import data
from posenc import diskspace
from posenc import metrics as metrics_lib
from posenc import models
from posenc import optimizers
from posenc import parallel as parallel_lib
from posenc import preemption as preemption_lib
from posenc import randomized
from posenc import validate
from posenc import workdir as workdir_lib

TrainState = train_state.TrainState
Metrics = dict[str, jax.Array]


def model_config(config: ml_collections.ConfigDict,
                 dataset: data.Dataset | None = None) -> models.ModelConfig:
  """`config.model` as the typed `ModelConfig`; an unset `max_len` becomes
  the dataset's training length."""
  cfg = models.ModelConfig(**config.model.to_dict())
  if cfg.max_len is None and dataset is not None:
    cfg = dataclasses.replace(cfg, max_len=dataset.seq_len)
  return cfg


def make_model(config: ml_collections.ConfigDict,
               dataset: data.Dataset) -> models.EncoderClassifier:
  """The classifier for `config.model`, sized by the loaded `dataset`
  (classes, vocabulary or features, training length)."""
  return models.EncoderClassifier(model_config(config, dataset),
                                  num_classes=dataset.num_classes,
                                  vocab_size=dataset.vocab_size)


def make_optimizer(config: ml_collections.ConfigDict
                   ) -> optax.GradientTransformation:
  """`config.train.optimizer` at `config.train.learning_rate`."""
  return optimizers.make(config)


def init_params(rng: jax.Array, model: models.EncoderClassifier,
                inputs: np.ndarray | jax.Array) -> Any:
  """The model's parameters for inputs shaped like `inputs` (not jitted:
  `create_train_state` jits it; vmap it for several seeds)."""
  return model.init(rng, inputs, train=False)['params']


def _check_params(params: Any, expected: Any) -> None:
  """Given parameters must have the model's tree, shapes and dtypes."""
  want = {jax.tree_util.keystr(p): (x.shape, x.dtype) for p, x in
          jax.tree_util.tree_leaves_with_path(expected)}
  got = {jax.tree_util.keystr(p): (jnp.shape(x), jnp.result_type(x))
         for p, x in jax.tree_util.tree_leaves_with_path(params)}
  missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
  if missing or extra:
    raise ValueError(f'the given params do not fit the model: missing '
                     f'{missing[:5]}, unexpected {extra[:5]}.')
  for path, (shape, dtype) in want.items():
    if got[path] != (shape, dtype):
      raise ValueError(f'the given params{path} has shape and dtype '
                       f'{got[path]}; the model needs {(shape, dtype)}.')


def create_train_state(rng: jax.Array, config: ml_collections.ConfigDict,
                       model: models.EncoderClassifier,
                       inputs: np.ndarray | jax.Array, *,
                       params: Any = None,
                       tx: optax.GradientTransformation | None = None
                       ) -> TrainState:
  """Parameters for inputs shaped like `inputs` (one example,
  `dataset.example_inputs()`) and the optimizer state.

  `params`: start from these instead of initialising (checked against the
  model's shapes); `tx`: an optax transformation instead of
  `make_optimizer(config)`.
  """
  if params is None:
    params = jax.jit(functools.partial(init_params, model=model))(rng,
                                                                   inputs=inputs)
  else:
    _check_params(params, jax.eval_shape(
        functools.partial(init_params, model=model, inputs=inputs),
        jax.random.key(0)))
  tx = make_optimizer(config) if tx is None else tx
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def _loss_and_accuracy(logits: jax.Array, labels: jax.Array,
                       weights: jax.Array | None = None):
  """Per-example cross-entropy and correctness, weighted where given."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (logits.argmax(-1) == labels).astype(jnp.float32)
  if weights is not None:
    loss, correct = loss * weights, correct * weights
  return loss, correct


def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array,
               *, axis_name: str | None = None) -> tuple[TrainState, Metrics]:
  """One optimizer step on the batch's mean cross-entropy.

  Pure: the dropout and random-position keys come from
  `fold_in(rng, state.step)`. Under `jax.jit` the batch is global (sharded)
  and XLA averages the gradient; under `jax.pmap`, pass `axis_name` and
  gradients and metrics are averaged over that axis.
  """
  rng = jax.random.fold_in(rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  dropout_rng, positions_rng = jax.random.split(rng)

  def loss_fn(params):
    logits, _ = state.apply_fn(
        {'params': params}, batch['inputs'], mask=batch.get('mask'),
        train=True, rngs={'dropout': dropout_rng, 'positions': positions_rng})
    loss, correct = _loss_and_accuracy(logits, batch['labels'])
    return loss.mean(), correct.mean()

  (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  metrics = {'train_loss': loss, 'train_accuracy': accuracy}
  if axis_name is not None:
    grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
  return state.apply_gradients(grads=grads), metrics


def eval_step(params: Any, batch: dict[str, jax.Array],
              apply_fn: Callable[..., Any]) -> Metrics:
  """Per-example loss and correctness, times the batch's 'weights'.

  Returned per example (not summed) so that a sharded batch needs no
  cross-device reduction: `evaluate` sums on the host, exactly. Keeping the
  train step the only program with collectives also matters on XLA:CPU with
  simulated devices: alternating two such programs deadlocked in the
  all-reduce rendezvous in about a third of runs (jax 0.10.2, 8 devices, 2
  cores); with one, no run did.
  """
  logits, _ = apply_fn({'params': params}, batch['inputs'],
                       mask=batch.get('mask'),
                       positions=batch.get('positions'), train=False)
  loss, correct = _loss_and_accuracy(logits, batch['labels'], batch['weights'])
  return {'loss': loss, 'correct': correct, 'count': batch['weights']}


def make_eval(apply_fn: Callable[..., Any],
              mesh: jax.sharding.Mesh | None = None):
  """`eval_step` jitted over `mesh` (all devices), and its batch placer."""
  return parallel_lib.make_eval(
      functools.partial(eval_step, apply_fn=apply_fn), mesh)


def make_parallel(mode: str, apply_fn: Callable[..., Any],
                  devices: list[jax.Device] | None = None
                  ) -> parallel_lib.Parallel:
  """`train_step` and `eval_step` for `mode` ('jit' or 'pmap') over
  `devices` (default: all)."""
  return parallel_lib.make_parallel(
      mode, train_step, functools.partial(eval_step, apply_fn=apply_fn),
      devices)


@workdir_lib.releasing
def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path, *,
                       dataset: data.Dataset | None = None,
                       params: Any = None,
                       devices: list[jax.Device] | None = None,
                       restart_if_damaged: bool = False
                       ) -> dict[str, Any]:
  """Trains `config`, evaluating after every epoch; returns the summary.

  `dataset`: your own data (`data.Dataset.from_arrays`) instead of the one
  `config.data` names; its digest is recorded, so a resumed run refuses
  other data. `params`: start from these parameters (a fresh run only).
  Resumes from the newest intact checkpoint in `workdir` (the config must
  match the one it was trained with). On SIGTERM or SIGINT, finishes the
  step, saves and returns a summary with 'preempted'. `devices`: where the
  step runs (default: all devices). Raises `workdir.Busy` if another run
  holds `workdir`, and `checkpoints.AllDamaged` if every checkpoint is
  damaged, unless `restart_if_damaged` (then trains from step 0).
  """
  devices = jax.devices() if devices is None else devices
  workdir = pathlib.Path(workdir)
  data_given = dataset is not None
  with checks.config_errors():  # All before anything is written.
    validate.check_config(config, len(devices), data_given=data_given)
    if dataset is None:
      data_sha256 = data.fingerprint(config)
      dataset = data.load(config.data, config.seed)
    else:
      data_sha256 = dataset.sha256()
    validate.check_dataset(config, dataset)
    workdir_lib.acquire(workdir)  # Until this returns; before any write.
    changed = validate.check_resume(config, workdir, data_sha256)
  start_time = time.perf_counter()
  workdir.mkdir(parents=True, exist_ok=True)
  diskspace.require(workdir, diskspace.LOG_MARGIN_BYTES, 'starting the run')
  is_chief = jax.process_index() == 0

  model = make_model(config, dataset)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  state = create_train_state(init_rng, config, model,
                             dataset.example_inputs(), params=params)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  batch_size = config.train.batch_size
  steps_per_epoch = data.num_examples(dataset.train) // batch_size
  num_steps = config.train.num_epochs * steps_per_epoch
  # Train metrics of the steps since the last log: (step, host metrics).
  history: list[tuple[int, dict[str, float]]] = []

  restored = checkpoints.restore_latest(
      workdir, state, restart_if_damaged=restart_if_damaged)
  start_step = 0
  if restored is not None:
    state, saved = restored
    start_step = int(saved['step'])
    history = [(s, m) for s, m in saved['pending_metrics']]
    logging.info('Resuming from the checkpoint of step %d (epoch %d, batch '
                 '%d of %d).', start_step, saved['epoch'],
                 saved['batch_in_epoch'], steps_per_epoch)
    if start_step > num_steps:
      raise checks.ConfigError(
          f'train.num_epochs={config.train.num_epochs} makes {num_steps} '
          f'steps, but {workdir} is trained to step {start_step}; valid: '
          f'num_epochs >= {-(-start_step // steps_per_epoch)}, or a new '
          '--workdir.')
  if is_chief:  # Lines after the start are written again (all, if fresh).
    if restored is None and restart_if_damaged:
      metrics_lib.set_aside(workdir, 'before-restart')
    metrics_lib.truncate(workdir, start_step)
    if changed:  # What config.json said before, kept beside it.
      metrics_lib.append(workdir / 'config_changes.jsonl', {
          'step': start_step, 'changed': changed})
    record = json.dumps(validate.run_record(config, data_sha256), indent=2)
    if metrics_lib.read_text(workdir / 'config.json') != record:
      metrics_lib.write_atomic(workdir / 'config.json', record)
  logging.info('Model: %s, %d parameters, %d devices (%s).',
               model.config, num_params, len(devices),
               config.train.parallel)

  parallel = make_parallel(config.train.parallel, model.apply, devices)
  state = parallel.place_state(state)
  step_rng = parallel.place_rng(dropout_rng)
  writer = metrics_lib.MetricWriter(workdir)
  progress = metrics_lib.Progress(num_steps, initial=start_step)
  train_scalars, eval_scalars, test_scalars = {}, {}, {}
  pending: list[tuple[int, Metrics]] = []  # On device, not yet fetched.
  saved_steps = [start_step]
  # A rerun of a finished run keeps what only its training knew.
  previous = (metrics_lib.previous_summary(workdir, start_step)
              if start_step == num_steps else {})
  step = start_step
  last_log_time, last_log_step = time.perf_counter(), start_step
  # The eval split (under the randomized protocol, one copy per draw of
  # positions), drawn once for every evaluation of the run.
  eval_splits = randomized.eval_splits(model.config, dataset.eval,
                                       config.seed, 'eval')
  eval_fn = lambda splits, prefix: randomized.evaluate(
      lambda split: parallel_lib.evaluate(
          parallel.eval_fn, parallel.place_eval_batch,
          parallel.eval_params(state), split, batch_size, prefix), splits)

  def fetch():
    history.extend((s, parallel.host_metrics(m)) for s, m in pending)
    pending.clear()
    metrics_lib.first_non_finite(history)

  def save():
    fetch()  # Never save a state whose metrics were not finite.
    epoch, batch_in_epoch = divmod(step, steps_per_epoch)
    checkpoints.save(workdir, step, parallel.host_state(state), {
        'step': step, 'epoch': epoch, 'batch_in_epoch': batch_in_epoch,
        'pending_metrics': history,
        'dropout_key': jax.random.key_data(dropout_rng).tolist()},
        keep=config.train.keep_checkpoints)
    saved_steps.append(step)

  try:
    with preemption_lib.Preemption() as preemption:
      batches = iter(())
      stop = False
      while step < num_steps and not stop:
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        if step == start_step or batch_in_epoch == 0:
          batches = data.train_batches(
              dataset.train, batch_size,
              np.random.default_rng([config.seed, epoch]), start=batch_in_epoch,
              shard=parallel_lib.process_shard())
        state, step_metrics = parallel.step(
            state, parallel.place_batch(next(batches)), step_rng)
        step += 1
        pending.append((step, step_metrics))
        progress.update()
        if step == start_step + 1:  # One sync: steps/s excludes compiling.
          jax.block_until_ready(step_metrics)
          logging.info('First step (compile and run): %.2fs',
                       time.perf_counter() - last_log_time)
          last_log_time, last_log_step = time.perf_counter(), step
        if step % config.train.log_every_steps == 0 or step == num_steps:
          fetch()  # The loop's only regular host sync.
          train_scalars = metrics_lib.mean(history)
          history.clear()
          now = time.perf_counter()
          scalars = dict(train_scalars)
          if step > last_log_step:
            scalars['steps_per_sec'] = ((step - last_log_step) /
                                        (now - last_log_time))
          last_log_time, last_log_step = now, step
          diskspace.require(workdir, diskspace.LOG_MARGIN_BYTES, 'logging')
          writer.write(step, scalars)
          metrics_lib.log_scalars('train', step, scalars)
          progress.show(train_scalars)
        if step % steps_per_epoch == 0:
          eval_start = time.perf_counter()
          eval_scalars = eval_fn(eval_splits, 'eval')
          last_log_time += time.perf_counter() - eval_start  # Not in steps/s.
          writer.write(step, {**eval_scalars, 'epoch': step // steps_per_epoch})
          metrics_lib.log_scalars(f'eval (epoch {step // steps_per_epoch})',
                                  step, eval_scalars)
          progress.show({**train_scalars, **eval_scalars})
        stop = preemption.should_stop(step)  # The same in every process.
        if (step % config.train.checkpoint_every_steps == 0
            or step == num_steps or stop):
          save()
      if preemption.requested and saved_steps[-1] != step:
        save()  # The signal came after this step's checkpoint check.
      if preemption.requested and step < num_steps:
        logging.warning(
            'Stopped by %s at step %d of %d; saved a checkpoint in %s. Run '
            'the same command again to resume from it.',
            preemption.requested, step, num_steps,
            checkpoints.directory(workdir))
        return {'step': step, 'preempted': preemption.requested}
      if start_step == num_steps:  # A rerun of a finished (or stopped) run.
        logging.info('Already trained to step %d; evaluating only.', step)
        eval_scalars = eval_fn(eval_splits, 'eval')
        writer.write_missing(step, {**eval_scalars, 'epoch': step //
                                    steps_per_epoch})  # If it was lost.
        last = metrics_lib.last_record(workdir, 'train_loss')
        train_scalars = {k: v for k, v in (
            last if last.get('step') == step else previous).items()
                         if k.startswith('train_')}
      if dataset.test is not None:  # Read once, after training.
        test_scalars = eval_fn(
            randomized.eval_splits(model.config, dataset.test, config.seed,
                                   'test'), 'test')
        if metrics_lib.last_record(workdir, 'test_loss').get('step') != step:
          writer.write(step, test_scalars)
        metrics_lib.log_scalars('test', step, test_scalars)
        if not data_given:  # Simple models' accuracy on the same split.
          metrics_lib.report_references(
              workdir, step, test_scalars,
              data.references(config.data, config.seed))
  except Exception as e:  # pylint: disable=broad-except
    if diskspace.is_disk_full(e):
      raise diskspace.stopped_error(e, workdir, step, saved_steps[-1],
                                    checkpoints.directory(workdir)) from None
    raise
  finally:
    progress.close()
    try:
      writer.close()
    except OSError as e:  # A full disk: the error above says what matters.
      logging.warning('Could not close the metric files: %s', e)

  summary = {'step': step, 'num_params': int(num_params),
             'wall_time_sec': previous.get(  # Training's, on a rerun.
                 'wall_time_sec', time.perf_counter() - start_time),
             **train_scalars, **eval_scalars, **test_scalars}
  if is_chief:
    metrics_lib.write_atomic(workdir / 'summary.json',
                             json.dumps(summary, indent=2))
  reported = ' '.join(f'{k}={summary[k]:.4f}' for k in (
      'train_accuracy', 'eval_accuracy', 'eval_loss', 'test_accuracy')
                      if k in summary)
  logging.info('Done: %d steps in %.1fs; %s; workdir %s', step,
               summary['wall_time_sec'], reported, workdir)
  return summary
