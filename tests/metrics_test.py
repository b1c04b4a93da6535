"""metrics.jsonl on resume: lines after the checkpoint dropped, damaged lines
set aside (never everything after them), lost final lines restored, and
results that survive a failed write."""

import json

import pytest

from posenc import metrics

# What each kind of damage does to line 21 of 84.
DAMAGE = {
    'garbage': b'GARBAGE',
    'blank': b'',
    'empty_object': b'{}',
    'array': b'[1, 2]',
    'not_utf8': b'{"step": 210, "train_loss": \xff\xfe}',
    'cut_short': b'{"step": 210, "train_lo',
    'no_step': b'{"train_loss": 0.5}',
}


def _lines(n=84):
  return [json.dumps({'step': 10 * (i + 1), 'train_loss': 1.0 / (i + 1)})
          for i in range(n)]


@pytest.mark.parametrize('kind', sorted(DAMAGE))
def test_a_damaged_line_is_set_aside_and_every_other_line_kept(
    tmp_path, kind, caplog):
  good = _lines()
  raw = [l.encode() for l in good]
  raw[20] = DAMAGE[kind]  # Line 21.
  path = tmp_path / 'metrics.jsonl'
  path.write_bytes(b'\n'.join(raw) + b'\n')
  metrics.truncate(tmp_path, 10_000)
  kept = path.read_text(encoding='utf-8').splitlines()
  assert kept == good[:20] + good[21:]  # 83 of 84, in order.
  (aside,) = (tmp_path / metrics.DAMAGED_FILE).read_text().splitlines()
  aside = json.loads(aside)
  assert aside['line'] == 21 and aside['file'] == 'metrics.jsonl'
  assert aside['text'] == DAMAGE[kind].decode('utf-8', 'backslashreplace')
  assert f'1 line(s) of {path} are damaged' in caplog.text
  assert metrics.last_record(tmp_path, 'train_loss')['step'] == 840


def test_damage_and_the_steps_after_the_checkpoint_both_go(tmp_path, caplog):
  caplog.set_level('INFO', logger='absl')  # tasks_test sets absl's verbosity to WARNING
  good = _lines(10)
  path = tmp_path / 'metrics.jsonl'
  # A damaged line at 3 and a last line cut short by a kill.
  path.write_text('\n'.join(good[:2] + ['{"st'] + good[2:]) + '\n{"step": 1',
                  encoding='utf-8')
  metrics.truncate(tmp_path, 50)
  assert path.read_text().splitlines() == good[:5]
  aside = [json.loads(l) for l in
           (tmp_path / metrics.DAMAGED_FILE).read_text().splitlines()]
  assert [a['line'] for a in aside] == [3, 12]
  assert 'Dropped 5 lines after step 50' in caplog.text


def test_a_last_line_without_its_newline_is_completed(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 1}\n{"step": 2}', encoding='utf-8')
  metrics.truncate(tmp_path, 2)
  assert path.read_text() == '{"step": 1}\n{"step": 2}\n'
  assert not (tmp_path / metrics.DAMAGED_FILE).exists()


def test_write_missing_restores_a_lost_line_once(tmp_path):
  writer = metrics.MetricWriter(tmp_path)
  writer.write(10, {'train_loss': 0.5})
  writer.write_missing(10, {'eval_loss': 0.25, 'epoch': 1})  # Lost: written.
  writer.write_missing(10, {'eval_loss': 0.25, 'epoch': 1})  # Present.
  writer.close()
  assert [json.loads(l) for l in
          (tmp_path / 'metrics.jsonl').read_text().splitlines()] == [
              {'step': 10, 'train_loss': 0.5},
              {'step': 10, 'eval_loss': 0.25, 'epoch': 1.0}]


def test_a_failed_append_names_the_path_and_keeps_the_line(tmp_path):
  path = tmp_path / 'eval.jsonl'
  path.mkdir()  # Cannot be appended to (as a read-only file cannot).
  with pytest.raises(OSError) as e:
    metrics.append(path, {'step': 3, 'eval_accuracy': 0.5})
  assert e.value.filename == str(path)
  assert '{"step": 3, "eval_accuracy": 0.5}' in e.value.strerror
  metrics.append(tmp_path / 'other.jsonl', {'step': 3})
  assert (tmp_path / 'other.jsonl').read_text() == '{"step": 3}\n'


def test_an_append_after_a_cut_line_starts_a_line_of_its_own(tmp_path):
  path = tmp_path / 'eval.jsonl'
  path.write_text('{"step": 1}\n{"step": 2, "eval_accur')  # Cut by a kill.
  metrics.append(path, {'step': 3})
  lines = path.read_text().splitlines()
  assert lines == ['{"step": 1}', '{"step": 2, "eval_accur', '{"step": 3}']
  metrics.append(path, {'step': 4})  # Ends in a newline: appended as is.
  assert path.read_text().splitlines()[-2:] == ['{"step": 3}', '{"step": 4}']
