"""experiments/: the quick mode end to end, the training harness against
posenc.main, and the probes' and summaries' math."""

import json
import re

import chex
import jax
import numpy as np
import pytest

from posenc import config as default
from experiments import analysis
from experiments import fit
from experiments import report
from experiments import run
from experiments import studies
from experiments import tables
from posenc import checkpoints
from posenc import data
from posenc import train


def _records(out, study):
  return [json.loads(line) for line in
          (out / f'{study}.jsonl').read_text().splitlines()]


@pytest.fixture(scope='module')
def quick(tmp_path_factory):
  out = tmp_path_factory.mktemp('quick')
  run.main(['--quick', f'--out={out}'])  # About 2.5 minutes on 2 cores.
  return out


def test_quick_mode_writes_records_figures_and_report(quick):
  scale = studies.QUICK
  tasks = _records(quick, 'tasks')
  assert {(r['task'], r['encoding']) for r in tasks} == {
      (t, e) for t in ('argmax', 'before', 'sorted', 'marker', 'listops',
                       'mnist1d p1', 'mnist1d_shuffled p1')
      for e in scale.encodings}
  assert all(0 <= r['eval_accuracy'] <= 1 for r in tasks)
  assert all('test_accuracy' in r for r in tasks
             if r['task'].startswith(('listops', 'mnist1d')))

  depth = _records(quick, 'depth')
  for d in scale.depths:
    for e in scale.encodings:
      layers = sorted(r['layer'] for r in depth
                      if r['depth'] == d and r['encoding'] == e)
      assert layers == list(range(d + 1))
  assert all(0 <= r['probe_accuracy'] <= 1 for r in depth)
  # Learned positions are added before the first block: the probe reads them.
  assert min(r['probe_accuracy'] for r in depth
             if r['encoding'] == 'learned' and r['layer'] == 0) > 0.9

  lengths = _records(quick, 'lengths')
  n = scale.length
  assert {r['eval_len'] for r in lengths} == {n, 2 * n, 4 * n}
  assert {r['variant'] for r in lengths} == set(
      studies.length_variants(scale))

  tables = _records(quick, 'tables')
  assert {r['task'] for r in tables if r['order'] == 'signal'} == {
      'mnist1d_shuffled p1'}
  assert {r['rows'] for r in tables if r['task'] == 'mnist1d p1'} == {40}

  cost = _records(quick, 'cost')
  for e in scale.cost_encodings:
    rows = sorted((r for r in cost if r['encoding'] == e),
                  key=lambda r: r['seq_len'])
    assert [r['status'] for r in rows] == ['ran', 'estimated']
    assert rows[0]['step_s'] > 0
    assert rows[1]['xla_peak_gib'] > rows[0]['xla_peak_gib'] > 0

  for name in ('tasks', 'depth', 'lengths', 'tables', 'cost'):
    assert (quick / 'figures' / f'{name}.png').read_bytes()[:4] == (
        b'\x89PNG')
  section = (quick / 'results.md').read_text()
  assert section.startswith(report.BEGIN) and section.rstrip().endswith(
      report.END)
  for k in range(1, 6):
    assert f'### {k}. ' in section
  meta = json.loads((quick / 'run.json').read_text())
  assert meta['quick'] and meta['seeds'] == list(scale.seeds)
  assert set(meta['seconds']) >= set(run.STUDIES)


def _image_links(text):
  return re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)


def test_report_replaces_only_the_marked_section(quick, tmp_path):
  doc = tmp_path / 'docs' / 'results.md'
  doc.parent.mkdir()
  doc.write_text('# t\n\nbefore\n\n<!-- results:begin -->\nold\n'
                 '<!-- results:end -->\n\nafter\n')
  args = ['--quick', f'--out={quick}', '--report_only', f'--doc={doc}']
  run.main(args)
  text = doc.read_text()
  assert 'old' not in text and '### 5. ' in text
  assert text.startswith('# t\n\nbefore\n\n') and text.endswith('\n\nafter\n')
  # Each figure link resolves from the folder of the file it is in.
  for page in (doc, quick / 'results.md'):
    links = _image_links(page.read_text())
    assert len(links) == 5
    assert all((page.parent / link).is_file() for link in links), links
  run.main(args)  # Idempotent.
  assert doc.read_text() == text
  doc.write_text('# no markers\n')
  with pytest.raises(ValueError, match='no results markers'):
    run.main(args)


def test_docs_results_has_the_markers_and_its_figures():
  # A full run ends by filling these markers: check now, not after an hour.
  doc = run.REPO / 'docs' / 'results.md'
  text = doc.read_text()
  assert report.BEGIN.split(' (')[0] in text and report.END in text
  links = _image_links(text)
  assert len(links) == 5
  assert all((doc.parent / link).is_file() for link in links), links


def test_unknown_study_is_refused():
  with pytest.raises(SystemExit):
    run.main(['--studies=tasks,speed'])


def test_harness_trains_what_posenc_main_trains(tmp_path):
  config = default.get_config()
  config.seed = 3
  config.data.num_train = 256
  config.model.dropout_rate = 0.1  # The step's keys matter too.
  config.train.num_epochs = 2
  summary = train.train_and_evaluate(config, tmp_path,
                                     devices=jax.devices()[:1])
  dataset = data.load(config.data, config.seed)
  model = train.make_model(config, dataset)
  target = train.create_train_state(jax.random.key(0), config, model,
                                    dataset.example_inputs())
  state, _ = checkpoints.restore_latest(tmp_path, target)

  result = fit.train([config, config], [5, 3])  # Member 1 is seed 3.
  # The same steps on the same batches; vmap and scan may round differently
  # (measured: one weight in 4,096 off by 4e-5 after 16 steps).
  chex.assert_trees_all_close(result.member_params(1), state.params,
                              atol=1e-4, rtol=1e-4)
  with pytest.raises(AssertionError):  # And seed 5 is another run.
    chex.assert_trees_all_close(result.member_params(0), state.params,
                                atol=1e-2)
  accuracy = fit.evaluate(result, [ds.eval for ds in result.datasets])
  assert abs(accuracy['accuracy'][1] - summary['eval_accuracy']) <= 2 / 2048
  # The tables study's initial table is the one this run started from.
  initial = train.create_train_state(
      jax.random.split(jax.random.key(3))[0], config, model,
      dataset.example_inputs())
  np.testing.assert_allclose(
      tables.initial_table(studies.QUICK, 'argmax', 3),
      initial.params['posemb_learned']['pos_embedding'][0], atol=1e-6)


def test_members_may_differ_in_their_data_only():
  config = default.get_config()
  other = default.get_config()
  other.model.d_model = 32
  with pytest.raises(ValueError, match='config.model'):
    fit.train([config, other], [0, 0])
  argmax, before = default.get_config(), default.get_config()
  before.data.name = 'before'
  with pytest.raises(ValueError, match='num_classes'):
    fit.train([argmax, before], [0, 0])


def test_ridge_probe_reads_a_linear_code_and_not_noise():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, 2000)
  code = rng.standard_normal((10, 32))
  x = code[labels] + 0.1 * rng.standard_normal((2000, 32))
  assert studies.ridge_probe(x[:1000], labels[:1000], x[1000:],
                             labels[1000:], 10) == 1.0
  noise = rng.standard_normal((2000, 32))
  assert studies.ridge_probe(noise[:1000], labels[:1000], noise[1000:],
                             labels[1000:], 10) < 0.2


def test_table_summaries_see_smoothness_and_change():
  positions = np.arange(40)[:, None]
  smooth = np.concatenate([np.sin(positions / 8 * (k + 1)) for k in range(4)]
                          + [np.cos(positions / 8 * (k + 1))
                             for k in range(4)], axis=1)
  summary = analysis.summarise(smooth)
  assert summary['neighbour_cosine'] > 0.9 > summary['far_cosine']
  noise = np.random.default_rng(0).standard_normal((40, 64))
  assert abs(analysis.summarise(noise)['neighbour_cosine']) < 0.1
  ramp = np.outer(np.arange(10.0), np.linspace(-1, 1, 8))  # Rank one.
  coords, explained = analysis.principal_components(ramp)
  assert coords.shape == (10, 3) and explained[0] > 0.999
  np.testing.assert_allclose(np.abs(np.diff(coords[:, 0])),
                             np.linalg.norm(ramp[1] - ramp[0]), rtol=1e-6)

  # A trained table = its initial draw + a smooth change: the summary of
  # the change sees the smoothness; 'signal' order undoes a permutation.
  initial = tables.initial_table(studies.QUICK, 'mnist1d p1', 0)
  perm = np.random.default_rng(1).permutation(40)
  shuffled_change = np.tile(smooth, (1, 8))[perm] * 0.3  # Token j: perm[j].
  records = tables.study(
      studies.QUICK, {'mnist1d p1/0': initial + shuffled_change},
      {'mnist1d p1': np.argsort(perm)})
  by_order = {r['order']: r for r in records}
  assert by_order['sequence']['delta_neighbour_cosine'] < 0.3
  assert by_order['signal']['delta_neighbour_cosine'] > 0.9
  assert by_order['signal']['moved'] > 0
  untrained = tables.study(studies.QUICK, {'mnist1d p1/0': initial}, {})
  assert untrained[0]['moved'] == 0
