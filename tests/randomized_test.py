"""Randomized positions at evaluation (Ruoss et al., 2023): positions drawn
as in training, for each sequence's real length, averaged over a fixed
number of draws that depend only on the seed; `'fixed'` evaluates at
0..L-1."""

import dataclasses

import jax
import numpy as np
import pytest

from posenc import checkpoints
from posenc import config as default
from posenc import data
from posenc import encodings
from posenc import evaluation
from posenc import models
from posenc import randomized
from posenc import train

ONE_DEVICE = jax.devices()[:1]
MODEL = models.ModelConfig(posemb='learned', posemb_randomized=True,
                           max_len=40)


def _split(n=300, length=10, lengths=None):
  split = {'inputs': np.zeros((n, length, 2), np.float32),
           'labels': np.zeros(n, np.int32)}
  if lengths is not None:
    split['mask'] = np.arange(length)[None] < np.asarray(lengths)[:, None]
  return split


def test_draws_are_fixed_by_the_seed_and_differ_by_draw_seed_and_split():
  splits = randomized.eval_splits(MODEL, _split(), seed=3, name='eval')
  assert len(splits) == MODEL.posemb_randomized_eval_draws == 4
  again = randomized.eval_splits(MODEL, _split(), seed=3, name='eval')
  for a, b in zip(splits, again):
    np.testing.assert_array_equal(a['positions'], b['positions'])
  p = [s['positions'] for s in splits]
  assert not np.array_equal(p[0], p[1])
  other_seed = randomized.eval_splits(MODEL, _split(), seed=4, name='eval')
  other_split = randomized.eval_splits(MODEL, _split(), seed=3, name='test')
  assert not np.array_equal(p[0], other_seed[0]['positions'])
  assert not np.array_equal(p[0], other_split[0]['positions'])
  assert p[0].shape == (300, 10) and p[0].max() < 40
  assert (np.diff(p[0], axis=1) > 0).all()


def test_a_draw_does_not_depend_on_the_examples_after_it():
  """Positions of example n depend on its chunk, not on the split's size,
  so evaluating a prefix of the split sees the same positions."""
  full = randomized.draw(0, 'eval', 0, np.full(600, 10), 10, 40)
  prefix = randomized.draw(0, 'eval', 0, np.full(300, 10), 10, 40)
  np.testing.assert_array_equal(full[:256], prefix[:256])


def test_positions_are_drawn_for_the_real_length():
  lengths = np.array([10, 4] * 50)
  split = randomized.eval_splits(MODEL, _split(100, 10, lengths), 0, 'eval')[0]
  short = split['positions'][1::2, :4]
  assert (np.diff(short, axis=1) > 0).all() and short.max() < 40
  # Drawn for length 4, the last real position reaches far (mean about
  # 4 * 41 / 5 - 1 = 31.8), not the 4th of 10 (about 14).
  assert short[:, 3].mean() > 25


@pytest.mark.parametrize('changes', [dict(posemb_randomized_eval='fixed'),
                                     dict(posemb_randomized=False)])
def test_fixed_or_plain_evaluates_once_at_the_given_split(changes):
  split = _split()
  assert randomized.eval_splits(dataclasses.replace(MODEL, **changes), split,
                                0, 'eval') == [split]


def test_at_max_len_every_draw_is_every_position():
  split = _split(5, 40)
  assert randomized.eval_splits(MODEL, split, 0, 'eval') == [split]


def test_numpy_and_jax_draws_follow_one_rule():
  """The host's draws (NumPy) and the model's training draws (JAX) turn
  the same noise into the same positions."""
  key = jax.random.key(0)
  lengths = np.array([10, 3, 7, 1])
  noise = np.asarray(jax.random.uniform(key, (4, 40)))
  np.testing.assert_array_equal(
      randomized.positions_for_lengths(noise, lengths, 10),
      encodings.random_positions(key, 4, 10, 40, jax.numpy.asarray(lengths)))


def test_too_long_for_the_positions_names_the_fix():
  with pytest.raises(ValueError, match=r"eval length <= model.max_len \(40\)"
                     r".*posemb_randomized_eval='fixed'"):
    randomized.draw(0, 'eval', 0, np.full(3, 50), 50, 40)


def test_mean_averages_floats_and_arrays():
  assert randomized.mean([{'a': 1.0}, {'a': 2.0}]) == {'a': 1.5}
  np.testing.assert_array_equal(
      randomized.mean([{'a': np.array([1., 3.])}, {'a': np.array([3., 5.])}])
      ['a'], [2., 4.])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  config = default.get_config()
  config.data.name = 'before'
  config.data.num_train, config.data.num_eval = 512, 256
  config.train.num_epochs = 2
  config.model.posemb_randomized = True
  config.model.max_len = 40
  workdir = tmp_path_factory.mktemp('randomized')
  summary = train.train_and_evaluate(config, workdir, devices=ONE_DEVICE)
  return config, workdir, summary


def test_eval_of_the_checkpoint_repeats_the_runs_number(trained):
  """--mode=eval draws the positions the training run drew for its final
  evaluation, in batches of any size."""
  config, workdir, summary = trained
  config = config.copy_and_resolve_references()
  config.train.batch_size = 64
  record = evaluation.evaluate_checkpoint(config, workdir)
  assert record['eval_accuracy'] == pytest.approx(summary['eval_accuracy'],
                                                  abs=1e-12)
  assert record['eval_loss'] == pytest.approx(summary['eval_loss'],
                                              rel=1e-6)
  assert record['randomized_eval_draws'] == 4
  assert record['posemb_randomized_eval'] == 'random'


def test_the_protocol_changes_the_number(trained):
  config, workdir, summary = trained
  fixed = config.copy_and_resolve_references()
  fixed.model.posemb_randomized_eval = 'fixed'
  record = evaluation.evaluate_checkpoint(fixed, workdir)
  assert record['eval_accuracy'] != summary['eval_accuracy']
  assert record['randomized_eval_draws'] == 1
  assert record['posemb_randomized_eval'] == 'fixed'
  # By hand: the mean over the 4 draws of the model at the drawn positions.
  dataset = data.load(config.data, config.seed)
  model = train.make_model(config, dataset)
  state = train.create_train_state(jax.random.key(0), config, model,
                                   dataset.example_inputs())
  state, _ = checkpoints.restore_latest(workdir, state, read_only=True)
  accuracies = []
  for split in randomized.eval_splits(model.config, dataset.eval,
                                      config.seed, 'eval'):
    logits, _ = model.apply({'params': state.params}, split['inputs'],
                            positions=split['positions'], train=False)
    accuracies.append(float((logits.argmax(-1) == split['labels']).mean()))
  assert summary['eval_accuracy'] == pytest.approx(np.mean(accuracies),
                                                   abs=1e-6)
