"""The benchmark's posenc side runs and reports sane figures (not timings:
speed is judged by running `python -m experiments.benchmark`, never by a
test)."""

import json
import os

import pytest

from experiments import benchmark
from experiments import benchmark_long
from experiments import step_profile


def test_posenc_worker_reports_throughput_flops_and_memory(monkeypatch):
  monkeypatch.setattr(benchmark, 'MIN_REP_SECONDS', 0.05)
  result = benchmark._jax_worker(benchmark.SIZES['seed'], reps=2)  # pylint: disable=protected-access
  assert len(result['step_s']) == 2 and min(result['step_s']) > 0
  assert result['compile_s'] > 0 and result['peak_rss_mb'] > 0
  assert result['matmul_gflops'] > 0
  # XLA's count for one step is at least 3x the forward matmuls' FLOPs.
  size = benchmark.SIZES['seed']
  tokens = size['batch_size'] * size['seq_len']
  d = size['d_model']
  forward = 2 * tokens * size['num_layers'] * (4 * d * d + 8 * d * d)
  assert result['flops_per_step'] >= 3 * forward


def test_summary_and_table():
  run = {'size': 'seed', 'step_s': [0.01, 0.02], 'compile_s': 1.0,
         'peak_rss_mb': 500.0, 'matmul_gflops': 100.0,
         'flops_per_step': 1e8}
  posenc = benchmark._summarise([run, {**run, 'step_s': [0.04]}])  # pylint: disable=protected-access
  # Per-round medians 0.015 s and 0.04 s -> 2133 and 800 examples/s.
  assert posenc['examples_per_s_max'] == pytest.approx(32 / 0.015)
  assert posenc['examples_per_s_min'] == pytest.approx(32 / 0.04)
  assert posenc['tokens_per_s'] == pytest.approx(posenc['examples_per_s'] * 10)
  eager = benchmark._summarise([{**run, 'step_s': [0.03]}])  # pylint: disable=protected-access
  table = benchmark._markdown({'seed': {'posenc': posenc,  # pylint: disable=protected-access
                                        'torch_eager': eager}}, 'test machine')
  ratio = posenc['examples_per_s'] / eager['examples_per_s']
  assert f'| {ratio:.2f}x |' in table and 'not run' in table


def test_step_profile_sums_the_trace_by_kind_and_direction():
  hlo = '\n'.join([
      '%ynn_fusion.1 = f32[8,4] fusion(%a), metadata={op_name="jit(train_step)'
      '/jvp(EncoderClassifier)/block_0/mlp_in/dot_general"}',
      '%ynn_fusion.2 = f32[8,4] fusion(%b), metadata={op_name="jit(train_step)'
      '/transpose(jvp(EncoderClassifier))/block_0/mlp_in/dot_general"}',
      '%copy.3 = f32[4,8] copy(%c), metadata={op_name="jit(train_step)'
      '/transpose(jvp(EncoderClassifier))/block_0/attn/transpose"}'])
  event = lambda name, us: {'ph': 'X', 'name': name, 'dur': us}
  events = [event('ynn_fusion.1', 1000), event('ynn_fusion.2', 3000),
            event('copy.3', 1000), event('ThunkExecutor::Execute', 99000)]
  text = step_profile.summarise(events, num_steps=1, hlo=hlo,
                                flops_per_step=4e9)
  assert '3 timed operations per step' in text and '5.0 ms in all' in text
  assert '3.0 ms  60.0%  matrix products, backward' in text
  assert '1.0 ms  20.0%  matrix products, forward' in text
  assert '1.0 ms  20.0%  copies and transposes, backward' in text
  assert 'they run at 1000 GFLOP/s' in text  # 4 GFLOP in 4 ms.
  assert 'block_0/mlp_in/dot_general' in text


def test_posenc_step_refuses_an_unknown_override():
  with pytest.raises(KeyError, match='model.nonsense is not a config field'):
    benchmark.posenc_step(benchmark.SIZES['seed'], {'model.nonsense': '1'})
  with pytest.raises(ValueError, match="model.attention='flash'"):
    benchmark.posenc_step(benchmark.SIZES['seed'], {'model.attention': 'flash'})


def test_spawned_worker_runs_as_a_module_from_any_directory(tmp_path,
                                                           monkeypatch):
  monkeypatch.chdir(tmp_path)  # The worker must not depend on the caller's.
  env = {k: v for k, v in os.environ.items()
         if k != 'PYTHONPATH'}
  result = benchmark._spawn('posenc', 'seed', 1, env)  # pylint: disable=protected-access
  assert result is not None, 'the worker failed; see its stderr above'
  assert result['framework'] == 'posenc' and result['size'] == 'seed'
  assert len(result['step_s']) == 1 and result['flops_per_step'] > 0


def test_sdpa_torch_model_is_the_written_out_one():
  torch = pytest.importorskip('torch')
  from experiments import torch_model  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  shape = (32, 16, 64, 4, 2, 256, 10)  # seq_len, ..., num_classes.
  written = torch_model.EncoderClassifier(*shape)
  sdpa = torch_model.EncoderClassifier(*shape, attention='sdpa')
  sdpa.load_state_dict(written.state_dict())
  inputs = torch.randn(3, 32, 16)
  logits = written(inputs)
  torch.testing.assert_close(sdpa(inputs), logits, rtol=1e-5, atol=1e-5)
  # And the gradients: the step trains the same model.
  logits.sum().backward()
  sdpa(inputs).sum().backward()
  for (name, a), b in zip(written.named_parameters(), sdpa.parameters()):
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5,
                               msg=name)
  with pytest.raises(ValueError, match="attention='flash'; valid: softmax"):
    torch_model.EncoderClassifier(*shape, attention='flash')


def _short_long_size(monkeypatch, seq_len: int) -> dict:
  """The long sizes' shape at `seq_len` tokens, as the only long size."""
  size = {**benchmark_long.SIZES['long4k'], 'seq_len': seq_len}
  monkeypatch.setattr(benchmark_long, 'SIZES', {'long4k': size})
  monkeypatch.setattr(benchmark, 'MIN_REP_SECONDS', 0.0)
  return size


def test_long_posenc_worker_runs_blocked_attention(monkeypatch):
  size = _short_long_size(monkeypatch, 2048)
  result = benchmark_long.worker('posenc_blocked', size, reps=1)
  assert len(result['step_s']) == 1 and result['step_s'][0] > 0
  assert result['compile_s'] > 0 and result['peak_rss_mb'] > 0
  # No (H, L, L) array: XLA's temporaries (30 MB here) are less than one
  # layer's float32 weights, which the einsum path keeps for every layer.
  weights_mb = size['num_heads'] * size['seq_len']**2 * 4 / 2**20
  assert result['temp_mb'] < weights_mb
  with pytest.raises(ValueError, match="framework='posenc' at a long size"):
    benchmark_long.worker('posenc', size, reps=1)


def test_long_torch_worker_sets_its_threads(monkeypatch):
  torch = pytest.importorskip('torch')
  size = _short_long_size(monkeypatch, 64)
  threads = torch.get_num_threads()
  try:
    result = benchmark_long.worker('torch_sdpa_1t', size, reps=2)
  finally:
    torch.set_num_threads(threads)
  assert result['threads'] == 1 and len(result['step_s']) == 2
  assert min(result['step_s']) > 0 and result['peak_rss_mb'] > 0


def _long_run(size, framework, step_s):
  return {'framework': framework, 'size': size, 'step_s': [step_s],
          'compile_s': 2.0 if framework == 'posenc_blocked' else 0.0,
          'peak_rss_mb': 300.0}


def test_long_table_has_each_framework_and_the_ratio_to_the_faster_torch():
  summary = {
      'long4k': {fw: benchmark_long.summarise([_long_run('long4k', fw, t)])
                 for fw, t in [('posenc_blocked', 0.5), ('torch_sdpa_1t', 1.0),
                               ('torch_sdpa_2t', 2.0)]},
      'long16k': {'torch_sdpa_2t': benchmark_long.summarise(
          [_long_run('long16k', 'torch_sdpa_2t', 8.0),
           _long_run('long16k', 'torch_sdpa_2t', 4.0)])}}
  table = benchmark_long.markdown(summary, 'test machine')
  rows = [line for line in table.splitlines() if line.startswith('| long')]
  assert len(rows) == 2
  # 4,096 tokens in 0.5 s; PyTorch's faster run is its 1-thread one (1.0 s).
  assert rows[0] == ('| long4k | T=4,096, d=64, 4 heads, 2 layers, batch 1 | '
                     '0.500 (0.500-0.500) | 8,192 | 2.00 | 300 | '
                     '1.000 (1.000-1.000) | 4,096 | 300 | '
                     '2.000 (2.000-2.000) | 2,048 | 300 | 2.00x (vs 1 thread) |')
  # Rounds of 8 s and 4 s: median 6 s; posenc did not run, so no ratio.
  assert rows[1].startswith('| long16k | T=16,384,')
  assert rows[1].endswith('| not run |  |  |  | not run |  |  | '
                          '6.000 (4.000-8.000) | 2,731 | 300 |  |')
  assert 'Machine: test machine' in table


def test_main_alternates_the_long_frameworks_and_writes_both_tables(
    monkeypatch, tmp_path):
  calls = []

  def spawn(framework, size, reps, env):
    del reps, env
    calls.append((framework, size))
    run = _long_run(size, framework, 1.0)
    if size == 'seed':
      run.update(matmul_gflops=100.0, flops_per_step=1e8)
    return run

  monkeypatch.setattr(benchmark, '_spawn', spawn)
  out = tmp_path / 'bench'
  monkeypatch.setattr('sys.argv', [
      'benchmark', '--sizes=seed,long4k', '--rounds=2', f'--out={out}',
      '--allocator=system'])
  benchmark.main()
  long_calls = [fw for fw, size in calls if size == 'long4k']
  order = list(benchmark_long.FRAMEWORKS)
  assert long_calls == order + order[::-1]  # No torch.compile at long sizes.
  assert ('torch_compile', 'seed') in calls
  table = out.with_suffix('.md').read_text()
  assert '| seed |' in table and '| long4k |' in table
  assert '1.00x (vs 1 thread) |' in table  # A tie goes to 1 thread.
  assert json.loads(out.with_suffix('.json').read_text())['summary'][
      'long4k']['posenc_blocked']['rounds'] == 2
