"""The studies' machinery: records and their code digest, intervals,
probes, the control task and tuning's choice."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments import analysis
from experiments import fit
from experiments import probes
from experiments import records
from experiments import report_ruoss
from experiments import stats
from experiments import studies
from experiments import study_lengths
from experiments import study_ruoss
from experiments import tuning
from posenc import validate


def _unit(calls, label='a', spec=None):
  def compute():
    calls.append(label)
    return [{'seed': 0, 'value': len(calls)}]
  return records.Unit('toy', label, spec or {'x': label}, compute)


def test_store_runs_a_unit_once_per_code_and_spec(tmp_path):
  calls = []
  store = records.Store(tmp_path, {'toy': 'code1'})
  first = store.run(_unit(calls))
  assert store.run(_unit(calls)) == first and calls == ['a']
  assert first[0]['code'] == 'code1' and first[0]['unit'] == _unit([]).key
  store.run(_unit(calls, 'b'))  # Another spec is another unit.
  assert calls == ['a', 'b']
  newer = records.Store(tmp_path, {'toy': 'code2'})
  state = newer.check([_unit([]), _unit([], 'c')], 'toy')
  assert state == {'current': [], 'stale': ['a'], 'missing': ['c'],
                   'unplanned': [_unit([], 'b').key]}
  newer.run(_unit(calls))  # Rerun with today's code replaces the old.
  assert calls == ['a', 'b', 'a']
  assert [r['code'] for r in newer.read('toy')] == ['code1', 'code2']
  assert newer.check([_unit([])], 'toy')['current'] == ['a']


def test_a_corrupt_record_is_named_and_a_failed_unit_saves_nothing(tmp_path):
  store = records.Store(tmp_path, {'toy': 'c'})
  store.run(_unit([]))
  with open(store.path('toy'), 'a') as f:
    f.write('{"unit": \n')
  with pytest.raises(ValueError, match=r'toy.jsonl:2 is not a JSON record'):
    store.read('toy')

  def broken():
    raise FloatingPointError('nan')
  clean = records.Store(tmp_path / 'clean', {'toy': 'c'})
  clean.run(_unit([]))
  with pytest.raises(FloatingPointError):
    clean.run(records.Unit('toy', 'z', {'x': 'z'}, broken))
  assert len(clean.read('toy')) == 1


def test_code_digest_ignores_documentation_and_sees_code(tmp_path):
  path = tmp_path / 'm.py'
  path.write_text('"""Doc."""\n\ndef f(x):\n  """Doc."""\n  return x + 1\n')
  digest = records.source_digest(('*.py',), tmp_path)
  path.write_text('"""Other doc."""\n# A comment.\n\ndef f(x):\n'
                  '  return x + 1  # Why.\n')
  assert records.source_digest(('*.py',), tmp_path) == digest
  path.write_text('def f(x):\n  return x + 2\n')
  assert records.source_digest(('*.py',), tmp_path) != digest
  with pytest.raises(FileNotFoundError):
    records.source_digest(('*.txt',), tmp_path)


def test_library_follows_imports_and_leaves_out_what_nothing_imports(
    tmp_path, monkeypatch):
  pkg = tmp_path / 'posenc'
  (pkg / 'sub').mkdir(parents=True)
  (tmp_path / 'experiments').mkdir()
  for name in ('__init__.py', 'sub/__init__.py', 'sub/plugin.py', 'util.py',
               'other.py'):
    (pkg / name).write_text('')
  (pkg / 'main.py').write_text('from posenc import util\nimport numpy\n')
  (pkg / 'util.py').write_text('from posenc.sub import helper\n'
                               'from posenc.util import thing  # itself\n')
  (pkg / 'sub' / 'helper.py').write_text('x = 1\n')
  (tmp_path / 'experiments' / 'fit.py').write_text('import posenc.other\n')
  (tmp_path / 'experiments' / 'study.py').write_text(
      'from posenc.sub import plugin\n')
  monkeypatch.setattr(records, 'LIBRARY', ('posenc/main.py',
                                           'experiments/fit.py'))
  base = {'experiments/fit.py', 'posenc/__init__.py', 'posenc/main.py',
          'posenc/other.py', 'posenc/sub/__init__.py', 'posenc/sub/helper.py',
          'posenc/util.py'}
  assert set(records.library((), tmp_path)) == base
  assert set(records.library(('experiments/study.py',), tmp_path)) == base | {
      'experiments/study.py', 'posenc/sub/plugin.py'}
  with pytest.raises(FileNotFoundError, match='gone.py'):
    records.library(('experiments/gone.py',), tmp_path)


def test_interval_is_students_t_and_pairing_removes_the_shared_part():
  i = stats.interval([1.0, 2.0, 3.0])
  half = scipy_stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
  assert (i.mean, i.n) == (2.0, 3)
  np.testing.assert_allclose([i.low, i.high], [2 - half, 2 + half])
  assert i.format(scale=1) == f'2.0 ± {half:.1f}'
  assert math.isnan(stats.interval([0.5]).half_width)
  assert stats.interval([0.5]).format() == '50.0'
  # Seeds move both settings together; b is 1 point better on every seed.
  shared = {s: v for s, v in enumerate([0.50, 0.70, 0.60, 0.80, 0.65])}
  better = {s: v + 0.01 for s, v in shared.items()}
  unpaired = (stats.interval(list(better.values())).mean
              - stats.interval(list(shared.values())).mean)
  paired = stats.paired(better, shared)
  np.testing.assert_allclose(paired.mean, unpaired)
  assert paired.excludes_zero() and paired.half_width < 1e-9
  assert not stats.paired({0: 0.1, 1: 0.3}, {0: 0.2, 1: 0.2}).excludes_zero()
  with pytest.raises(ValueError, match='no shared seeds'):
    stats.paired({0: 1.0}, {1: 1.0})
  # The t test behind the interval, and Holm's step-down over several:
  # 0.005 <= 0.05/4 and 0.01 <= 0.05/3 reject; 0.03 > 0.05/2 stops it.
  np.testing.assert_allclose(
      stats.interval([0.1, 0.3, 0.2, 0.4]).p,
      scipy_stats.ttest_1samp([0.1, 0.3, 0.2, 0.4], 0).pvalue)
  assert stats.holm([0.01, 0.04, 0.03, 0.005, float('nan')]) == [
      True, False, False, True, False]
  assert stats.kappa(0.55, 0.1) == pytest.approx(0.5)


def test_probes_linear_mlp_and_the_control_task():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 4000)
  code = rng.standard_normal((10, 32))
  x = code[labels] + 0.1 * rng.standard_normal((4000, 32))
  assert probes.ridge_probe(x[:2000], labels[:2000], x[2000:],
                            labels[2000:], 10) == 1.0
  noise = rng.standard_normal((4000, 32))
  assert probes.ridge_probe(noise[:2000], labels[:2000], noise[2000:],
                            labels[2000:], 10) < 0.2
  # Labels by the quadrant of two features: no linear read-out exists for
  # the XOR of their signs, the MLP probe finds it.
  few = noise[:, :8]
  xor = ((few[:, 0] > 0) ^ (few[:, 1] > 0)).astype(int)
  assert probes.ridge_probe(few[:2000], xor[:2000], few[2000:],
                            xor[2000:], 2) < 0.6
  mlp = probes.mlp_probe(np.stack([few[:2000]] * 2), np.stack(
      [xor[:2000], labels[:2000]]), np.stack([few[2000:]] * 2),
                         np.stack([xor[2000:], labels[2000:]]), 10)
  assert mlp[0] > 0.9 and mlp[1] < 0.2  # XOR read; noise labels not.

  # Content types: one numbering across splits; control labels depend on
  # the type only.
  pixels = rng.integers(0, 17, (2, 6, 8, 1)).astype(np.float32)
  pixels[0, 0, 0], pixels[1, 0, 0] = 16, 3  # 16 in train only, 3 in both.
  pixels[0, 0, 1] = 3
  pixels[1][pixels[1] == 16] = 0
  train_types, eval_types = probes.content_types(pixels[0], pixels[1])
  for types, split in ((train_types, pixels[0]), (eval_types, pixels[1])):
    for t in np.unique(types):  # One type, one pixel value.
      assert np.unique(split[types == t]).size == 1
  assert train_types[0, 1] == eval_types[0, 0]  # Both 3: one numbering.
  control = probes.control_labels(train_types, 8, seed=0)
  for t in np.unique(train_types):
    assert np.unique(control[train_types == t]).size == 1
  features = rng.standard_normal((30, 10, 16)).astype(np.float32)  # 300.
  np.testing.assert_array_equal(probes.content_types(features)[0],
                                features.argmax(-1))


def test_tables_summaries_and_tuning_choice(tmp_path):
  positions = np.arange(40)[:, None]
  smooth = np.concatenate([np.sin(positions / 8 * (k + 1)) for k in range(4)]
                          + [np.cos(positions / 8 * (k + 1))
                             for k in range(4)], axis=1)
  summary = analysis.summarise(smooth)
  assert summary['neighbour_cosine'] > 0.9 > summary['far_cosine']
  noise = np.random.default_rng(0).standard_normal((40, 64))
  assert abs(analysis.summarise(noise)['neighbour_cosine']) < 0.1

  scale = studies.QUICK.__class__(
      seeds=(0,), tune_seeds=(100, 101), learning_rates=(1e-3, 2e-3),
      table_init_stds=(0.02, 1.0))
  assert tuning.grid(scale, 'learned') == [
      {'learning_rate': lr, 'posemb_init_std': s} for lr in (1e-3, 2e-3)
      for s in (0.02, 1.0)]
  assert tuning.grid(scale, 'rope') == [{'learning_rate': 1e-3},
                                        {'learning_rate': 2e-3}]
  configs = {'argmax': studies.base_config(scale, 'argmax', 'rope')}
  units = tuning.tune_units('rope', configs, 'rope', scale,
                            studies.Progress('t'))
  store = records.Store(tmp_path, {'tuning': 'c'})
  assert tuning.choose(store, units) is None  # Not tuned yet.
  scores = {1e-3: [0.7, 0.9], 2e-3: [0.85, 0.8]}  # Means 0.8 and 0.825.
  for unit in units:
    lr = unit.spec['configs']['argmax']['train']['learning_rate']
    unit.compute = lambda lr=lr: [
        {'kind': 'tune', 'seed': s, 'point': {'learning_rate': lr},
         'validation_accuracy': a} for s, a in zip((100, 101), scores[lr])]
    store.run(unit)
  assert tuning.choose(store, units) == {'learning_rate': 2e-3}

  # A point that diverges is recorded as such and never chosen.
  class Diverging(studies.Progress):
    def train(self, label, configs, seeds):
      raise FloatingPointError('non-finite train loss')
  units = tuning.tune_units('rope', configs, 'rope', scale, Diverging('t'))
  store = records.Store(tmp_path / 'diverged', {'tuning': 'c'})
  store.run(units[1])
  assert [r['diverged'] for r in store.records(units[1])] == [True, True]
  units[0].compute = lambda: [
      {'kind': 'tune', 'seed': s, 'point': {'learning_rate': 1e-3},
       'validation_accuracy': 0.6} for s in (100, 101)]
  store.run(units[0])
  assert tuning.choose(store, units) == {'learning_rate': 1e-3}


def test_rope_scaling_evaluations_change_only_longer_inputs():
  scale = studies.QUICK
  config = studies.base_config(scale, 'before', 'rope')
  config.data.update(seq_len=8, num_train=64, num_eval=32)
  run = fit.train([config], [0])
  evaluations = study_lengths.evaluations(run, 'rope')
  assert set(evaluations) == {'', ' (linear)', ' (ntk)', ' (yarn)'}
  rng = np.random.default_rng(0)
  logits = {}
  for length in (8, 16):
    inputs = rng.standard_normal((4, length, 16)).astype(np.float32)
    logits[length] = {
        name: np.asarray(r.model.apply({'params': r.member_params(0)},
                                       inputs, train=False)[0])
        for name, r in evaluations.items()}
  for name in evaluations:  # At the trained length every method is exact.
    np.testing.assert_allclose(logits[8][name], logits[8][''], atol=1e-6)
  for name in (' (linear)', ' (ntk)', ' (yarn)'):
    assert np.abs(logits[16][name] - logits[16]['']).max() > 1e-3


def test_ruoss_scores_average_test_lengths_and_gains_pair_seeds():
  records = []
  for seed, (plain, rand) in enumerate([(0.5, 0.7), (0.6, 0.7), (0.4, 0.7)]):
    for task in ('a', 'b'):
      for length, shift in ((41, -0.1), (61, 0.1)):
        records += [
            {'task': task, 'variant': 'rope', 'seed': seed, 'length': length,
             'accuracy': plain + shift},
            {'task': task, 'variant': 'rope (randomized)', 'seed': seed,
             'length': length, 'accuracy': rand + shift}]
      records.append({'task': task, 'variant': 'rope', 'seed': seed,
                      'length': 'train', 'accuracy': 1.0})
  test = report_ruoss.scores(records)
  assert test[('a', 'rope')] == pytest.approx({0: 0.5, 1: 0.6, 2: 0.4})
  assert report_ruoss.scores(records, 'train')[('b', 'rope')] == {
      0: 1.0, 1: 1.0, 2: 1.0}
  gain = report_ruoss.gains(test, ['a', 'b'], ['rope'])
  assert gain['rope'] == pytest.approx({0: 0.2, 1: 0.1, 2: 0.3})
  assert gain['all'] == pytest.approx(gain['rope'])
  # 'all' averages the paper's encodings only.
  renamed = {(t, v.replace('rope', 'mine')): s for (t, v), s in test.items()}
  assert set(report_ruoss.gains(renamed, ['a', 'b'], ['mine'])) == {'mine'}
  # A task without both versions leaves the encoding out.
  assert report_ruoss.gains(test, ['a', 'b', 'c'], ['rope']) == {}


def test_ruoss_test_sequences_are_shared_and_exactly_one_length():
  a = study_ruoss.test_batch('cycle_navigation', 61, 32)
  b = study_ruoss.test_batch('cycle_navigation', 61, 32)
  assert 'mask' not in a and a['inputs'].shape == (32, 62)
  np.testing.assert_array_equal(a['inputs'], b['inputs'])
  assert not np.array_equal(
      study_ruoss.test_batch('cycle_navigation', 81, 32)['inputs'][:, :62],
      a['inputs'])
  assert study_ruoss.test_lengths(studies.FULL) == tuple(
      range(41, 500, 20)) + (500,)
  # The plain learned table has a row for every test position; the
  # randomized one draws from 2,048.
  plain = study_ruoss.train_config(studies.FULL, 'even_pairs', 'learned')
  rand = study_ruoss.train_config(studies.FULL, 'even_pairs',
                                  'learned (randomized)')
  assert (plain.model.max_len, plain.model.posemb_randomized) == (501, False)
  assert (rand.model.max_len, rand.model.posemb_randomized) == (2048, True)


def test_every_ruoss_config_is_valid_and_only_the_encoding_differs():
  base = study_ruoss.train_config(studies.FULL, 'parity_check', 'none')
  for variant in studies.FULL.ruoss_variants:
    config = study_ruoss.train_config(studies.FULL, 'parity_check', variant)
    validate.check_config(config, 1)
    assert config.train.to_dict() == base.train.to_dict()
    assert config.data.to_dict() == base.data.to_dict()
    assert config.model.posemb_randomized == variant.endswith('(randomized)')
