"""experiments/cost.py --compare: both attention paths, records, table and
figure; and that the committed records say what the docs quote."""

import json
import pathlib

from experiments import cost

RESULTS = pathlib.Path(__file__).resolve().parents[1] / 'experiments' / (
    'results')


def test_compare_runs_both_paths_then_compiles_only(tmp_path):
  out = tmp_path / 'paths'
  records = cost.compare(out, encoding='alibi', batch=1, max_len=64,
                         estimate_to=512, block_size=32, run_limit_gib=20.0,
                         max_step_s=10.0)
  on_disk = [json.loads(line) for line in
             out.with_suffix('.jsonl').read_text().splitlines()]
  assert on_disk == records
  assert [(r['attention'], r['seq_len']) for r in records] == [
      (p, n) for n in (64, 128, 256, 512) for p in cost.PATHS]
  ran = [r for r in records if r['status'] == 'ran']
  assert {r['seq_len'] for r in ran} == {64}
  assert all(r['step_s'] > 0 and r['timed_steps'] == 3 for r in ran)
  assert all(r['reason'] == 'compile only past 64' for r in records
             if r['status'] == 'estimated')
  gib = {(r['attention'], r['seq_len']): r['xla_peak_gib'] for r in records}
  # Eight times the length: einsum's buffers grew 12-fold (its L x L
  # arrays take over from the O(L) ones), blocked's at most 8-fold.
  assert gib['einsum', 512] > 10 * gib['einsum', 64]
  assert gib['blocked', 512] < 8 * gib['blocked', 64]
  assert gib['blocked', 512] < gib['einsum', 512] / 2
  table = cost.report(records, out, memory_gib=24.0)
  assert '| 64 |' in table and 'not run' in table
  assert out.with_suffix('.png').stat().st_size > 10_000


def test_a_rerun_keeps_what_is_recorded_and_goes_on(tmp_path):
  out = tmp_path / 'p'
  run = lambda **kw: cost.compare(
      out, encoding='learned', batch=1, block_size=32, run_limit_gib=20.0,
      max_step_s=10.0, **kw)
  first = run(max_len=64, estimate_to=64)
  again = run(max_len=64, estimate_to=128)
  assert again[:2] == first  # Kept, not rerun: the same timings.
  assert [(r['seq_len'], r['status']) for r in again[2:]] == [
      (128, 'estimated')] * 2
  # A longer max_len runs what was compiled only.
  longer = run(max_len=128, estimate_to=128)
  assert longer[:2] == first
  assert {r['status'] for r in longer[2:]} == {'ran'}
  other = cost.compare(out, encoding='alibi', batch=1, block_size=32,
                       run_limit_gib=20.0, max_step_s=10.0, max_len=64,
                       estimate_to=64)
  assert other[0]['encoding'] == 'alibi' and len(other) == 2


def test_too_big_to_run_is_compiled_only(tmp_path):
  records = cost.compare(tmp_path / 'p', encoding='learned', batch=1,
                         max_len=128, estimate_to=128, block_size=64,
                         run_limit_gib=0.003, max_step_s=10.0)
  status = {(r['attention'], r['seq_len']): r['status'] for r in records}
  assert status['einsum', 128] == 'estimated'
  assert status['blocked', 64] == 'ran'
  reasons = {r.get('reason') for r in records}
  assert 'XLA needs more than 0.003 GiB' in reasons


def test_committed_records_reach_65536_tokens_in_linear_memory():
  path = RESULTS / 'attention_paths.jsonl'
  records = [json.loads(line) for line in path.read_text().splitlines()]
  ran = {p: max(r['seq_len'] for r in records
                if r['attention'] == p and r['status'] == 'ran')
         for p in cost.PATHS}
  assert ran['blocked'] >= 65_536 > 4 * ran['einsum']
  assert cost.slope(records, 'blocked', 1024) < 1.1
  assert cost.slope(records, 'einsum', 1024) > 1.8
  table = (RESULTS / 'attention_paths.md').read_text()
  assert (f"Longest run: einsum {ran['einsum']:,} tokens, blocked "
          f"{ran['blocked']:,}.") in table


def test_performance_doc_quotes_the_committed_ratios():
  records = [json.loads(line) for line in
             (RESULTS / 'attention_paths.jsonl').read_text().splitlines()]
  step = {(r['attention'], r['seq_len']): r.get('step_s') for r in records}
  doc = (RESULTS.parents[1] / 'docs' / 'performance.md').read_text()
  for n in (1024, 2048, 4096):
    ratio = step['blocked', n] / step['einsum', n]
    assert f"| {n:,} |" in doc and f'{ratio:.2f}x |' in doc, n
  assert f"{step['blocked', 65536]:.0f} (one step)" in doc
