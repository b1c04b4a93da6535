"""experiments/: the quick mode end to end (records, resume, --check,
report), and the training harness against posenc.main."""

import json
import re

import chex
import jax
import numpy as np
import pytest

from experiments import fit
from experiments import report
from experiments import run
from experiments import studies
from experiments import study_depth
from experiments import study_lengths
from experiments import study_ruoss
from posenc import checkpoints
from posenc import config as default
from posenc import data
from posenc import train


def _records(out, study):
  return [json.loads(line) for line in
          (out / f'{study}.jsonl').read_text().splitlines()]


def _image_links(text):
  return re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)


def test_quick_mode_records_resumes_checks_and_reports(tmp_path, capsys):
  # One test, so that the ~3-minute run happens once under pytest-xdist.
  scale, out = studies.QUICK, tmp_path / 'quick'
  doc = tmp_path / 'results.md'
  doc.write_text('# t\n\nbefore\n\n<!-- results:begin -->\nold\n'
                 '<!-- results:end -->\n\nafter\n')
  run.main(['--quick', f'--out={out}', f'--doc={doc}'])
  digests = run.code_digests()
  for study in run.STUDIES:
    records = _records(out, study)
    assert {r['code'] for r in records} == {digests[study]}
    assert all(r['commit'] and r['date'] and r['unit'] for r in records)

  tasks = [r for r in _records(out, 'tasks') if r['kind'] == 'task']
  assert {(r['task'], r['encoding'], r['seed']) for r in tasks} == {
      (t, e, s) for t in ('argmax', 'before', 'sorted', 'marker', 'listops')
      for e in scale.encodings for s in scale.seeds}
  assert all(r['point'] == {'learning_rate': 2e-3, 'posemb_init_std': 1.0}
             for r in tasks if r['encoding'] == 'learned')
  learned = [r for r in tasks if r['encoding'] == 'learned']
  assert all(0 < r['moved'] for r in learned)
  assert sum('tables' in r for r in learned) == 5  # Seed 0, each task.

  depth = _records(out, 'depth')
  layers = scale.depth_layers
  for trained in (True, False):
    rows = [r for r in depth if r['trained'] == trained]
    assert sorted({r['layer'] for r in rows}) == list(range(layers + 1))
    assert {r['variant'] for r in rows} == set(study_depth.variants(scale))
  # Added before the first block, the table is all the input says of
  # position: read perfectly there, trained or not.
  assert min(r['ridge'] for r in depth if r['encoding'] == 'learned'
             and r['layer'] == 0) == 1.0
  # Without positions (and the class token left out) the tokens say nothing
  # of where they are: chance is 1/10.
  assert max(r['ridge'] for r in depth if r['encoding'] == 'none'
             and r['layer'] == 0) < 0.25
  assert all(0 < r['control_majority'] < 1 for r in depth)

  lengths = _records(out, 'lengths')
  assert {r['eval_len'] for r in lengths} == set(scale.length_evals)
  assert {r['variant'] for r in lengths} == set(
      study_lengths.variants(scale))

  ruoss = _records(out, 'ruoss')
  assert {(r['task'], r['variant'], r['seed']) for r in ruoss} == {
      (t, v, s) for t in scale.ruoss_tasks for v in scale.ruoss_variants
      for s in scale.ruoss_seeds}
  assert {r['length'] for r in ruoss} == {
      'train', *study_ruoss.test_lengths(scale)}

  for name in ('tasks', 'depth', 'lengths', 'tables', 'ruoss'):
    assert (out / 'figures' / f'{name}.png').read_bytes()[:4] == b'\x89PNG'
  text = doc.read_text()
  assert text.startswith('# t\n\nbefore\n\n') and text.endswith('\n\nafter\n')
  assert '\nold\n' not in text
  for k in (1, 2, 3, 4, 6):
    assert f'### {k}. ' in text
  for page in (doc, out / 'results.md'):  # Links resolve from each page.
    links = _image_links(page.read_text())
    assert len(links) == 6
    assert all((page.parent / link).is_file() for link in links), links

  # A second run finds every unit recorded and trains nothing.
  before = {s: (out / f'{s}.jsonl').read_text() for s in run.STUDIES}
  capsys.readouterr()
  run.main(['--quick', f'--out={out}', f'--doc={doc}'])
  assert 'epoch' not in capsys.readouterr().out
  assert before == {s: (out / f'{s}.jsonl').read_text() for s in run.STUDIES}
  assert doc.read_text() == text

  with pytest.raises(SystemExit) as exit_:
    run.main(['--quick', f'--out={out}', '--check'])
  assert exit_.value.code == 0
  # A record of a unit no longer planned (another spec) is kept on disk,
  # not reported.
  path = out / 'tasks.jsonl'
  extra = json.loads(path.read_text().splitlines()[-1])
  path.write_text(path.read_text() + json.dumps(
      {**extra, 'unit': 'superseded', 'test_accuracy': 0.0}) + '\n')
  run.main(['--quick', f'--out={out}', '--report_only', f'--doc={doc}'])
  assert 'of units no longer planned left out' in doc.read_text()
  assert doc.read_text().replace(
      '; 1 records of other code or of units no longer planned left out',
      '') == text
  # Records of other code are stale: listed, left out of the report.
  path = out / 'depth.jsonl'
  path.write_text(path.read_text().replace(digests['depth'], 'other'))
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_:
    run.main(['--quick', f'--out={out}', '--check'])
  assert exit_.value.code == 1
  printed = capsys.readouterr().out
  assert 'depth: 0 current, 2 stale' in printed
  run.main(['--quick', f'--out={out}', '--report_only', f'--doc={doc}'])
  assert '### 2. ' not in doc.read_text()
  assert 'depth: no record from today\'s code' in doc.read_text()
  doc.write_text('# no markers\n')
  capsys.readouterr()
  for bad in (doc, tmp_path / 'absent.md'):
    with pytest.raises(SystemExit):
      run.main(['--quick', f'--out={out}', '--report_only', f'--doc={bad}'])
    assert f'--doc={bad}: not a Markdown file with the results markers' in (
        capsys.readouterr().err)


def test_docs_results_has_the_markers():
  text = (run.REPO / 'docs' / 'results.md').read_text()
  assert report.BEGIN.split(' (')[0] in text and report.END in text
  for link in _image_links(text):
    assert (run.REPO / 'docs' / link).is_file(), link


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
  # The untrained twin starts where posenc.main started.
  initial = train.create_train_state(
      jax.random.split(jax.random.key(3))[0], config, model,
      dataset.example_inputs())
  chex.assert_trees_all_close(fit.untrained(result).member_params(1),
                              initial.params, atol=1e-6)
  assert not np.allclose(
      fit.untrained(result).member_params(1)['posemb_learned'][
          'pos_embedding'], state.params['posemb_learned']['pos_embedding'])


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
