"""The benchmark's posenc side runs and reports sane figures (not timings:
speed is judged by running `python -m experiments.benchmark`, never by a
test)."""

import os

import pytest

from experiments import benchmark
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
