"""Every bad config value gets a ValueError naming the field, before
compiling; which changes a resumed run may make, and which of them keep it
bit-identical."""

import json
import math
import os
import pathlib
import subprocess
import sys

import hypothesis
import jax
import numpy as np
import pytest
from hypothesis import strategies as st

from posenc import config as default
from posenc import allocator
from posenc import checkpoints
from posenc import data
from posenc import encodings
from posenc import models
from posenc import train
from posenc import validate

# (field, bad value, a fragment of what the message must say)
BAD_VALUES = [
    ('data.name', 'mnist',
     r"data.name='mnist'.*valid values: argmax, before, random, sorted, "
     r"marker, listops, mnist1d, mnist1d_shuffled"),
    ('model.posemb', 'rotary',
     r"model.posemb='rotary'.*learned, sinusoidal, none, rope, alibi"),
    ('model.posemb_resample', 'cubic',
     r"posemb_resample='cubic'.*none, linear, nearest, bilinear, bicubic"),
    ('model.rope_base', 1.0, r'model.rope_base=1.0'),
    ('model.relative_num_buckets', 0, r'relative_num_buckets=0.*positive'),
    ('data.min_seq_len', 0, r'data.min_seq_len=0.*positive integer'),
    ('data.eval_seq_len', -2, r'data.eval_seq_len=-2.*positive integer'),
    ('model.pooling', 'max', r"model.pooling='max'.*mean, cls"),
    ('train.parallel', 'pjit', r"train.parallel='pjit'.*jit, pmap"),
    ('train.allocator', 'jemalloc', r"allocator='jemalloc'.*tcmalloc, system"),
    ('model.matmul_dtype', 'float16',
     r"matmul_dtype='float16'.*float32, bfloat16"),
    ('model.attention', 'flash', r"model.attention='flash'.*einsum, fused"),
    ('data.seq_len', 0, r'data.seq_len=0.*positive integer'),
    ('data.n_features', -3, r'data.n_features=-3.*positive integer'),
    ('data.num_train', 0, r'data.num_train=0.*positive integer'),
    ('model.d_model', 0, r'model.d_model=0.*positive integer'),
    ('model.num_heads', -1, r'model.num_heads=-1.*positive integer'),
    ('model.num_layers', 0, r'model.num_layers=0.*positive integer'),
    ('model.mlp_dim', 0, r'model.mlp_dim=0.*positive integer'),
    ('train.num_epochs', 0, r'train.num_epochs=0.*positive integer'),
    ('train.batch_size', 0, r'train.batch_size=0.*positive integer'),
    ('train.log_every_steps', 0, r'train.log_every_steps=0.*positive'),
    ('model.max_len', 0, r'model.max_len=0.*positive integer'),
    ('train.learning_rate', 0.0, r'train.learning_rate=0.0.*\(0.0, inf\)'),
    ('train.learning_rate', float('nan'), r'train.learning_rate=nan.*finite'),
    ('model.posemb_init_std', -1.0, r'model.posemb_init_std=-1.0'),
    ('model.dropout_rate', 1.0, r'model.dropout_rate=1.0.*\[0.0, 1.0\)'),
    ('model.attention_dropout_rate', -0.1, r'attention_dropout_rate=-0.1'),
    ('seed', -1, r'seed=-1.*non-negative integer'),
    ('data.seed', -5, r'data.seed=-5.*non-negative integer'),
    ('data.cache_dir', '', r"data.cache_dir=''.*folder path"),
    ('data.marker_offset', 0, r'data.marker_offset=0.*positive integer'),
    ('data.listops_max_depth', 0, r'listops_max_depth=0.*positive'),
    ('data.patch_size', 0, r'data.patch_size=0.*positive integer'),
    ('data.patch_size', 4, r"patch_size=4 applies to digits, .*mnist1d.*; valid "
     r"for data.name='argmax': 1"),
    ('train.memory_limit_gib', 0.0,
     r'train.memory_limit_gib=0.0.*finite number in \(0.0, inf\)'),
    ('model.posemb_randomized_eval', 'sorted',
     r"posemb_randomized_eval='sorted'.*random, fixed"),
    ('model.rope_scaling', 'dynamic',
     r"rope_scaling='dynamic'.*none, linear, ntk, yarn"),
    ('model.rope_scaling_factor', 0.5, r'rope_scaling_factor=0.5.*\[1.0, inf'),
    ('model.alibi_mode', 'left', r"alibi_mode='left'.*symmetric, directional"),
    ('model.fire_mlp_width', 0, r'model.fire_mlp_width=0.*positive integer'),
    ('model.fire_init_c', 0.0, r'model.fire_init_c=0.0'),
    ('model.fire_init_threshold', -1.0, r'model.fire_init_threshold=-1.0'),
    ('model.cls_init_std', -0.1, r'model.cls_init_std=-0.1'),
    ('model.posemb_randomized_eval_draws', 0,
     r'posemb_randomized_eval_draws=0.*positive integer'),
]


def _config(field, value):
  config = default.get_config()
  *groups, name = field.split('.')
  target = config
  for group in groups:
    target = target[group]
  target[name] = value
  return config


def test_default_config_is_valid():
  validate.check_config(default.get_config(), num_devices=8)


@pytest.mark.parametrize('field,value,message', BAD_VALUES)
def test_bad_value_names_field_and_valid_values(field, value, message):
  with pytest.raises(ValueError, match=message):
    validate.check_config(_config(field, value), num_devices=1)


def test_d_model_not_divisible_by_num_heads():
  config = _config('model.num_heads', 5)
  with pytest.raises(ValueError,
                     match=r'model.d_model=64 is not divisible by '
                     r'model.num_heads=5.*\[1, 2, 4, 8'):
    validate.check_config(config, num_devices=1)


def test_batch_size_not_divisible_by_devices():
  config = _config('train.batch_size', 12)
  with pytest.raises(ValueError, match=r'train.batch_size=12.*device count '
                     r'\(8\).*multiple of 8'):
    validate.check_config(config, num_devices=8)
  validate.check_config(config, num_devices=4)


def test_seq_len_longer_than_max_len():
  config = _config('model.max_len', 8)
  with pytest.raises(ValueError, match=r'data.seq_len=10.*model.max_len=8'):
    validate.check_config(config, num_devices=1)


def test_batch_larger_than_training_set():
  config = _config('data.num_train', 16)
  with pytest.raises(ValueError, match=r'train.batch_size=32.*num_train=16'):
    validate.check_config(config, num_devices=1)


def _with(**fields):
  config = default.get_config()
  for field, value in fields.items():
    group, name = field.split('__')
    config[group][name] = value
  return config


@pytest.mark.parametrize('fields,message', [
    (dict(model__posemb='rope', model__num_heads=64),
     r"posemb='rope'.*64 / 64 = 1 is odd"),
    (dict(model__posemb='relative', model__relative_num_buckets=7),
     r'relative_num_buckets=7.*even number >= 4'),
    (dict(model__posemb='relative', model__relative_max_distance=8),
     r'relative_max_distance=8.*larger than relative_num_buckets // 4 = 8'),
    (dict(model__attention='fused', model__attention_dropout_rate=0.1),
     r"attention='fused'.*no dropout.*attention_dropout_rate=0.1; valid: 0.0"),
    (dict(model__posemb='none', model__posemb_randomized=True),
     r"posemb_randomized=True needs positions; model.posemb='none'"),
    (dict(model__posemb_randomized=True),
     r'model.max_len=None must be larger than the training length 10 '
     r'\(e.g. 40\)'),
    (dict(model__posemb_resample='linear'),
     r"posemb_resample='linear' applies when evaluating.*--mode=eval"),
    (dict(data__min_seq_len=12), r'data.min_seq_len=12.*seq_len=10'),
    (dict(data__eval_seq_len=20),
     r"eval_seq_len=20 differs.*'argmax' has one class per position"),
    (dict(data__name='before', data__eval_seq_len=20),
     r'eval_seq_len=20 is longer than the learned table \(model.max_len=10\);'
     r' evaluate the checkpoint with --mode=eval'),
    (dict(data__name='marker', data__seq_len=4),
     r"data.seq_len=4 is too short for data.name='marker'; valid: at least 5"),
    (dict(data__name='marker', data__marker_offset=3, data__min_seq_len=6),
     r"data.min_seq_len=6 is too short.*at least 7"),
    (dict(data__name='before', data__n_features=1),
     r"data.n_features=1 is too few for data.name='before'"),
    (dict(data__name='listops', data__listops_max_args=1),
     r'listops_max_args=1.*valid: >= 2'),
    (dict(data__name='listops', data__min_seq_len=20,
          data__listops_max_depth=1, data__listops_max_args=5, data__seq_len=30),
     r'ListOps band \[20, 30\].*only a fraction 0 of generated expressions'),
    (dict(data__name='listops', data__min_seq_len=500, data__seq_len=2000),
     r'ListOps band \[500, 2000\].*listops_max_depth=10 and '
     r'data.listops_max_args=5; valid: a band holding at least 1e-3'),
    (dict(data__name='listops', data__seq_len=5, data__min_seq_len=4),
     r'ListOps band \[4, 5\] tokens \(data.min_seq_len, data.seq_len\) holds '
     r'4400 distinct expressions.*fewer than data.num_train = 16384'),
    (dict(data__name='listops', data__seq_len=12, data__eval_seq_len=5,
          data__num_train=2000, data__num_eval=1500),
     r'\[4, 5\] tokens \(data.min_seq_len, data.eval_seq_len\) holds 4400 '
     r'distinct.*fewer than data.num_train \+ 2 \* data.num_eval'),
    (dict(data__name='listops', data__seq_len=64, data__min_seq_len=32,
          data__eval_seq_len=16),
     r"data.eval_seq_len=16 is shorter than the band's lower end"),
    (dict(data__name='listops', data__seq_len=3),
     r"data.seq_len=3 is shorter than the band's lower end"),
    (dict(data__name='listops', data__min_seq_len=2),
     r'data.min_seq_len=2 is shorter than any ListOps expression'),
    (dict(data__name='mnist1d', data__patch_size=3),
     r'data.patch_size=3 does not divide the 40 steps.*\[1, 2, 4, 5, 8'),
    (dict(data__name='mnist1d', data__patch_size=4, data__seq_len=40),
     r'data.seq_len=40 does not match MNIST-1D with data.patch_size=4.*'
     r'valid: data.seq_len=10'),
    (dict(data__name='mnist1d_shuffled', data__seq_len=40,
          data__min_seq_len=20),
     r'MNIST-1D sequences all have the same length'),
    (dict(data__name='mnist1d', data__seq_len=40, data__seed=2**32),
     r'data.seed=4294967296 is too large for MNIST-1D; valid: 0 to 4294967295'),
    (dict(data__name='mnist1d', data__seq_len=40, data__num_train=3900,
          data__num_eval=400),
     r'num_train=3900 \+ data.num_eval=400 is more than the 4000'),
    (dict(model__causal=True, model__pooling='cls'),
     r"model.causal=True lets the class token.*valid with causal: "
     r"pooling='last' or 'mean'"),
    (dict(model__posemb='alibi', model__alibi_mode='directional',
          model__causal=True),
     r"alibi_mode='directional'.*model.causal=True hides.*valid with causal"),
    (dict(data__name='before', data__eval_seq_len=50, model__max_len=40,
          model__posemb_randomized=True),
     r"posemb_randomized_eval='random' draws the eval length 50.*max_len=40"
     r".*posemb_randomized_eval='fixed'"),
    (dict(model__posemb='rope', model__rope_scaling='ntk', model__d_model=8,
          model__num_heads=4),
     r"rope_scaling='ntk'.*head dimension K = 2; valid: K >= 4"),
    (dict(model__posemb='alibi', model__alibi_mode='directional',
          model__num_heads=1),
     r"alibi_mode='directional'.*model.num_heads=1; valid: num_heads >= 2"),
    (dict(model__rope_scaling_factor=2.0),
     r"rope_scaling_factor=2.0 has no effect with model.rope_scaling='none'"),
    (dict(model__posemb='rope', model__rope_scaling='yarn', model__max_len=40),
     r"rope_scaling='yarn'.*model.max_len=40, but training sequences have "
     r'10 steps; valid: leave model.max_len unset'),
])
def test_combinations_that_cannot_work(fields, message):
  with pytest.raises(ValueError, match=message):
    validate.check_config(_with(**fields), num_devices=1)


def test_longer_eval_needs_a_resample_method_when_evaluating():
  config = _with(data__name='before', data__eval_seq_len=20)
  with pytest.raises(ValueError, match=r"set model.posemb_resample to "
                     r"'linear' or 'nearest'"):
    validate.check_config(config, num_devices=1, evaluating=True)
  config.model.posemb_resample = 'linear'
  validate.check_config(config, num_devices=1, evaluating=True)
  # Encodings without a table reach any length.
  for posemb in ('sinusoidal', 'rope', 'alibi', 'relative', 'none'):
    config = _with(data__name='before', data__eval_seq_len=20,
                   model__posemb=posemb)
    validate.check_config(config, num_devices=1)


# Property-based: any invalid value of a numeric or string field gives a
# ValueError naming that field, never an error from deep inside JAX.
POSITIVE_INT_FIELDS = (
    'data.seq_len', 'data.n_features', 'data.num_classes', 'data.num_train',
    'data.num_eval', 'data.marker_offset', 'data.listops_max_depth',
    'data.listops_max_args', 'data.patch_size', 'model.d_model',
    'model.num_heads', 'model.num_layers', 'model.mlp_dim',
    'model.relative_num_buckets', 'model.relative_max_distance',
    'train.num_epochs', 'train.batch_size', 'train.log_every_steps',
    'train.checkpoint_every_steps', 'train.keep_checkpoints',
    'model.max_len', 'data.min_seq_len', 'data.eval_seq_len',
    'model.fire_mlp_width', 'model.posemb_randomized_eval_draws')
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
REAL_FIELDS = {  # field: invalid values
    'train.learning_rate': st.floats(max_value=0.0) | NON_FINITE,
    'model.posemb_init_std': st.floats(max_value=0.0) | NON_FINITE,
    'model.fire_init_c': st.floats(max_value=0.0) | NON_FINITE,
    'model.cls_init_std': st.floats(max_value=-1e-9) | NON_FINITE,
    'model.rope_scaling_factor': st.floats(max_value=0.999) | NON_FINITE,
    'model.rope_base': st.floats(max_value=1.0) | NON_FINITE,
    'model.dropout_rate': (st.floats(min_value=1.0) |
                           st.floats(max_value=-1e-9) | NON_FINITE),
    'model.attention_dropout_rate': (st.floats(min_value=1.0) |
                                     st.floats(max_value=-1e-9) | NON_FINITE),
    'train.memory_limit_gib': st.floats(max_value=0.0) | NON_FINITE,
}
STRING_FIELDS = {
    'data.name': data.names(),
    'model.posemb': encodings.names(),
    'model.posemb_resample': ('none',) + encodings.resample_methods(),
    'model.pooling': models.POOLING_NAMES,
    'train.parallel': validate.PARALLEL_MODES,
    'train.allocator': allocator.ALLOCATORS,
    'model.matmul_dtype': tuple(models.MATMUL_DTYPES),
    'model.attention': models.ATTENTION_NAMES,
    'model.posemb_randomized_eval': models.RANDOMIZED_EVAL,
    'model.rope_scaling': encodings.ROPE_SCALINGS,
    'model.alibi_mode': encodings.ALIBI_MODES,
}
_SETTINGS = hypothesis.settings(max_examples=200, deadline=None)


def _assert_names_field(field, value):
  with pytest.raises(ValueError) as error:
    validate.check_config(_config(field, value), num_devices=1)
  assert f'{field}=' in str(error.value), (field, value, str(error.value))


@_SETTINGS
@hypothesis.given(field=st.sampled_from(POSITIVE_INT_FIELDS),
                  value=st.integers(max_value=0))
def test_any_non_positive_integer_is_refused_naming_the_field(field, value):
  _assert_names_field(field, value)


@_SETTINGS
@hypothesis.given(data_=st.data())
def test_any_out_of_range_real_is_refused_naming_the_field(data_):
  field = data_.draw(st.sampled_from(sorted(REAL_FIELDS)))
  _assert_names_field(field, data_.draw(REAL_FIELDS[field]))


@_SETTINGS
@hypothesis.given(data_=st.data())
def test_any_unknown_string_is_refused_naming_the_field(data_):
  field = data_.draw(st.sampled_from(sorted(STRING_FIELDS)))
  value = data_.draw(st.text().filter(
      lambda s: s not in STRING_FIELDS[field]))
  _assert_names_field(field, value)


@_SETTINGS
@hypothesis.given(field=st.sampled_from(['seed', 'data.seed']),
                  value=st.integers(max_value=-1))
def test_any_negative_seed_is_refused_naming_the_field(field, value):
  _assert_names_field(field, value)


# Resuming with changed fields: refused, allowed with a warning that the
# numbers will differ, or allowed keeping the run bit-identical.
def _saved_workdir(tmp_path, config):
  (tmp_path / 'checkpoints' / '8').mkdir(parents=True)
  (tmp_path / 'config.json').write_text(json.dumps(validate.run_record(config)))
  return tmp_path


def test_resume_warns_where_numbers_will_differ(tmp_path, caplog):
  workdir = _saved_workdir(tmp_path, default.get_config())
  assert not set(validate.BIT_IDENTICAL_CHANGES) & set(
      validate.CHANGES_WITH_WARNING)
  changed = _with(model__remat=True, train__num_epochs=9,
                  train__memory_limit_gib=8.0, train__allocator='tcmalloc')
  validate.check_resume(changed, workdir)
  assert 'bit-identical' not in caplog.text
  validate.check_resume(_with(model__attention='fused'), workdir)
  assert ("model.attention: 'einsum' in the workdir, 'fused' now: the same "
          'model, computed with other rounding, so results will differ from '
          'an uninterrupted run') in caplog.text
  with pytest.raises(ValueError, match=r'model.d_model: 64 in the workdir, '
                     r'32 now.*only these may change on resume: '
                     r'train.num_epochs'):
    validate.check_resume(_with(model__d_model=32), workdir)


def test_a_run_older_than_a_field_counts_as_what_it_used(tmp_path):
  """A config.json written before the randomized-positions protocol and
  the class token's init existed: its run evaluated at 0..L-1 and started
  the class token at zero, so resuming it under today's defaults is refused
  by name, evaluating it under either protocol is allowed, and the class
  token's init may differ (the checkpoint replaces it)."""
  config = _with(model__posemb_randomized=True, model__max_len=40,
                 model__pooling='cls')
  record = validate.run_record(config)
  for field in ('posemb_randomized_eval', 'cls_init_std', 'causal'):
    del record['model'][field]
  (tmp_path / 'checkpoints' / '8').mkdir(parents=True)
  (tmp_path / 'config.json').write_text(json.dumps(record))
  with pytest.raises(ValueError, match=r"model.posemb_randomized_eval: "
                     r"'fixed' in the workdir, 'random' now"):
    validate.check_resume(config, tmp_path)
  fixed = _with(model__posemb_randomized=True, model__max_len=40,
                model__pooling='cls', model__posemb_randomized_eval='fixed')
  assert validate.check_resume(fixed, tmp_path) == {
      'model.cls_init_std': (0.0, 0.02)}
  validate.check_eval(config, tmp_path)


def test_rope_scaling_may_change_at_eval_only_where_training_ran_unscaled(
    tmp_path):
  trained = _with(model__posemb='rope', model__rope_scaling='linear',
                  model__rope_scaling_factor=2.0)
  workdir = _saved_workdir(tmp_path / 'scaled', trained)
  with pytest.raises(ValueError, match=r"model.rope_scaling: 'linear' in "
                     r"the workdir, 'yarn' now"):
    validate.check_eval(_with(model__posemb='rope', model__rope_scaling='yarn',
                              model__rope_scaling_factor=2.0), workdir)
  workdir = _saved_workdir(tmp_path / 'plain', _with(model__posemb='rope'))
  validate.check_eval(_with(model__posemb='rope', model__rope_scaling='yarn'),
                      workdir)
  with pytest.raises(ValueError, match=r'model.rope_scaling_factor'):
    validate.check_eval(_with(model__posemb='rope', model__rope_scaling='yarn',
                              model__rope_scaling_factor=2.0), workdir)


def _tiny(**fields):
  """8 steps per epoch, 2 epochs, a checkpoint every epoch, dropout on."""
  return _with(**{**dict(
      data__num_train=256, data__num_eval=64, model__d_model=16,
      model__num_heads=2, model__mlp_dim=32, model__dropout_rate=0.1,
      train__num_epochs=2, train__checkpoint_every_steps=8), **fields})


def _params(workdir, config):
  dataset = data.load(config.data, config.seed)
  target = train.create_train_state(
      jax.random.key(0), config, train.make_model(config, dataset),
      dataset.example_inputs())
  return jax.tree.leaves(jax.device_get(
      checkpoints.restore(workdir, target)[0].params))


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Trains once uninterrupted; returns (its parameters, a resumer: train
  1 epoch, then resume to 2 with `fields` changed)."""
  one = jax.devices()[:1]
  base = tmp_path_factory.mktemp('resume')
  train.train_and_evaluate(_tiny(), base / 'whole', devices=one)
  expected = _params(base / 'whole', _tiny())

  def resume(name, **fields):
    workdir = base / name
    train.train_and_evaluate(_tiny(train__num_epochs=1), workdir, devices=one)
    train.train_and_evaluate(_tiny(**fields), workdir, devices=one)
    return _params(workdir, _tiny())
  resume.base = base
  return expected, resume


def _bit_identical(a, b):
  return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_bit_identical_changes_resume_bit_identically(runs):
  # Measured: remat recomputes the same operations in the backward pass.
  # (train.allocator takes effect only from the command line: below.)
  expected, resume = runs
  resumed = resume('bit', model__remat=True, train__log_every_steps=3,
                   train__checkpoint_every_steps=5, train__keep_checkpoints=1,
                   train__memory_limit_gib=8.0, data__cache_dir='/tmp/other')
  assert _bit_identical(resumed, expected)


def test_fused_attention_resumes_with_other_numbers(runs):
  # Measured: the largest parameter difference after 8 more steps is about
  # 2e-7; the eval loss of the main config moved in the 7th digit.
  expected, resume = runs
  resumed = resume('fused', model__attention='fused')
  assert not _bit_identical(resumed, expected)
  (change,) = [json.loads(line) for line in (
      resume.base / 'fused' / 'config_changes.jsonl').read_text().splitlines()]
  assert change == {'step': 8, 'changed': {  # Kept beside config.json.
      'model.attention': ['einsum', 'fused'], 'train.num_epochs': [1, 2]}}
  np.testing.assert_allclose(np.concatenate([x.ravel() for x in resumed]),
                             np.concatenate([x.ravel() for x in expected]),
                             atol=1e-5)


@pytest.mark.skipif(allocator.find_tcmalloc() is None,
                    reason='tcmalloc is not installed')
def test_allocator_change_resumes_bit_identically(tmp_path):
  # The allocator is chosen when the process starts: from the command line.
  # Measured with libtcmalloc-minimal4 2.10: bit-identical.
  repo = pathlib.Path(__file__).resolve().parents[1]
  flags = ['--config.data.num_train=256', '--config.data.num_eval=64',
           '--config.model.d_model=16', '--config.model.num_heads=2',
           '--config.model.mlp_dim=32', '--config.model.dropout_rate=0.1',
           '--config.train.checkpoint_every_steps=8']
  env = {**os.environ, 'PYTHONPATH': str(repo), 'XLA_FLAGS': ''}
  cli = lambda workdir, *more: subprocess.run(
      [sys.executable, '-m', 'posenc.main', f'--config={repo}/configs/'
       'default.py', f'--workdir={workdir}', *flags, *more], env=env,
      cwd=repo, capture_output=True, text=True, timeout=300, check=True)
  cli(tmp_path / 'whole', '--config.train.num_epochs=2')
  cli(tmp_path / 'resumed', '--config.train.num_epochs=1')
  result = cli(tmp_path / 'resumed', '--config.train.num_epochs=2',
               '--config.train.allocator=tcmalloc')
  assert 'restarting with LD_PRELOAD' in result.stderr
  assert _bit_identical(_params(tmp_path / 'resumed', _tiny()),
                        _params(tmp_path / 'whole', _tiny()))
