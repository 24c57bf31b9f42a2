"""benchmarks/variants_cpu.py and its baseline, the scripted LayerNorm LSTM of benchmarks/scripted_lstm.py."""

from __future__ import annotations

import torch

import rnnkit

from .utils import benchmark_module


def test_scripted_layer_norm_lstm_computes_rnnkits_equations():
    """In float64 the scripted twin gives rnnkit's outputs, final states and every gradient: the
    benchmark compares two nets that compute the same, on two layers and both directions."""
    scripted_lstm = benchmark_module("scripted_lstm")
    torch.manual_seed(0)
    module = rnnkit.LSTM(5, 7, num_layers=2, bidirectional=True, layer_norm=True, dtype=torch.float64)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.startswith("ln_"):
                param.uniform_(0.5, 1.5)
    twin, names = scripted_lstm.scripted_twin(module)
    assert isinstance(twin, torch.jit.ScriptModule) and set(names.values()) == {n for n, _ in module.named_parameters()}
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    ours, theirs = module(x), twin(x)
    for a, b in zip((ours[0], *ours[1]), (theirs[0], *theirs[1])):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    for result in (ours, theirs):
        (result[0].sum() + result[1][0].sum() + result[1][1].sum()).backward()
    for name, param in twin.named_parameters():
        torch.testing.assert_close(param.grad, module.get_parameter(names[name]).grad, rtol=1e-10, atol=1e-12)


def test_a_row_checks_the_scripted_twin_then_times_every_net():
    variants_cpu = benchmark_module("variants_cpu")
    config = variants_cpu.Config(4, 6, 1, batch=3, steps=5)
    row = variants_cpu.bench_case(config, "LSTM", "layer_norm", repeats=1)
    assert row["max_abs_diff"] < 1e-5 and row["max_grad_diff"] < 1e-5
    fused = rnnkit.ops.unavailable_reason("cpu") is None  # then auto runs the compiled kernels, timed beside naive
    assert set(row["fwd_bwd_ms"]) == {"plain", "variant", "scripted"} | ({"naive"} if fused else set())
    assert row["on_naive"] is not fused
    assert row["fwd_bwd_scripted_over_variant"] > 0 and row["fwd_variant_over_plain"] > 0
    row = variants_cpu.bench_case(config, "GRU", "weight_dropout", repeats=1)
    assert set(row["fwd_bwd_ms"]) == {"plain", "variant", "naive"} and not row["on_naive"]
    row = variants_cpu.bench_case(config, "RNN", "zoneout", repeats=1)  # the module's mode is RNN_TANH
    assert set(row["fwd_bwd_ms"]) == {"plain", "variant"} | ({"naive"} if fused else set())
    assert row["on_naive"] is not fused


def test_the_training_benchmarks_scripted_lstm_is_rnnkits_module():
    """benchmarks/train_speed.py's scripted row trains the same net: batch-first, from given states,
    with the module's weights."""
    train_speed = benchmark_module("train_speed")
    torch.manual_seed(0)
    module = rnnkit.LSTM(5, 7, num_layers=2, batch_first=True, layer_norm=True, dtype=torch.float64).eval()
    scripted = train_speed.ScriptedRecurrent(module).eval()
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    state = (torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 7, dtype=torch.float64))
    for hx in (None, state):
        ours, theirs = module(x, hx), scripted(x, hx)
        for a, b in zip((ours[0], *ours[1]), (theirs[0], *theirs[1])):
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
