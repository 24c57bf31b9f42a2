"""rnnkit against torch.nn on a seeded random sweep: outputs, final states and every gradient.

Each configuration draws sizes 1..64, 1..3 layers, directions, bias, batch_first,
proj_size (LSTM), unbatched input, ``lengths`` (unsorted, including 1 and T),
PackedSequence input, given or zero initial states, float32 or float64.
"""

from __future__ import annotations

import os
import zlib

import pytest
import torch

from rnnkit import ops

from .utils import (
    MODES,
    Config,
    assert_close,
    cudnn_tf32,
    make_inputs,
    make_pair,
    random_configs,
    run_ours,
    run_torch,
)

CONFIGS_PER_MODE = 200
_CPU_REASON = ops.unavailable_reason("cpu")
BACKENDS = [
    "naive",
    "torch",
    pytest.param(
        "cpu",
        marks=[
            pytest.mark.skipif(_CPU_REASON is not None, reason=f"cpu backend: {_CPU_REASON}"),
            pytest.mark.cpu_kernels,
        ],
    ),
]
# tests/test_isa_paths.py reruns the compiled kernels' tests on the other instruction-set paths
# with every n-th configuration of the sweep (the first path runs them all).
EVERY = int(os.environ.get("RNNKIT_TEST_PARITY_EVERY", "1"))
CONFIGS = [c for i, mode in enumerate(MODES) for c in random_configs(mode, CONFIGS_PER_MODE, seed=i)][::EVERY]
# The Triton kernels run float32 here; in Triton's interpreter (no GPU), seconds a configuration, a
# subset keeps the suite fast (tests/test_ops_triton.py checks the kernels against naive too).
TRITON_CONFIGS_PER_MODE = CONFIGS_PER_MODE if torch.cuda.is_available() else 8
TRITON_CONFIGS = [
    (i, c)
    for mode in MODES
    for i, c in [(i, c) for i, c in enumerate(CONFIGS) if c.mode == mode and c.dtype == torch.float32][
        :TRITON_CONFIGS_PER_MODE
    ]
]
_TRITON_REASON = ops.unavailable_reason("triton")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", CONFIGS, ids=[f"{i:03d}-{c.id}" for i, c in enumerate(CONFIGS)])
def test_matches_torch(config: Config, backend: str) -> None:
    check_parity(config, backend)


@pytest.mark.skipif(_TRITON_REASON is not None, reason=f"triton backend: {_TRITON_REASON}")
@pytest.mark.parametrize("config", [c for _, c in TRITON_CONFIGS], ids=[f"{i:03d}-{c.id}" for i, c in TRITON_CONFIGS])
def test_triton_matches_torch(config: Config) -> None:
    with cudnn_tf32(False):  # the kernels follow cuDNN's TF32 switch, on by default
        check_parity(config, "triton", "cuda" if torch.cuda.is_available() else "cpu")


def check_parity(config: Config, backend: str, device: str = "cpu") -> None:
    """Outputs, final states and every gradient of rnnkit's module against torch.nn's, on the CPU reference."""
    reference, ours = make_pair(config, backend)
    ours.to(device)
    generator = torch.Generator().manual_seed(zlib.crc32(config.id.encode()))
    x, states = make_inputs(config, generator)
    expected_out, expected_final = run_torch(reference, config, x, states)
    actual_out, actual_final = run_ours(ours, config, *move(device, x, states))
    actual_out, actual_final = actual_out.cpu(), tuple(a.cpu() for a in actual_final)
    assert_close("output", actual_out, expected_out)
    for i, (a, e) in enumerate(zip(actual_final, expected_final, strict=True)):
        assert_close(f"final state {i}", a, e)

    upstream = [torch.randn(t.shape, dtype=t.dtype, generator=generator) for t in (expected_out, *expected_final)]
    inputs = [x, *(states or ())]
    expected_grads = torch.autograd.grad((expected_out, *expected_final), [*inputs, *reference.parameters()], upstream)
    actual_grads = torch.autograd.grad((actual_out, *actual_final), [*inputs, *ours.parameters()], upstream)
    actual_grads = [g.cpu() for g in actual_grads]
    names = ["input", *(f"state {i}" for i in range(len(inputs) - 1)), *(n for n, _ in ours.named_parameters())]
    for name, a, e in zip(names, actual_grads, expected_grads, strict=True):
        assert_close(f"grad {name}", a, e)


def move(device: str, x, states):
    """The input and states on ``device``, still differentiable with respect to the originals."""
    return x.to(device), None if states is None else tuple(s.to(device) for s in states)


def test_sweep_covers_every_option() -> None:
    """The sweep really draws each option, so a parity failure in any of them would show."""
    for mode in MODES:
        configs = [c for c in CONFIGS if c.mode == mode]
        assert len(configs) >= 200
        for flag in ("bidirectional", "batch_first", "unbatched", "packed", "with_hx"):
            assert any(getattr(c, flag) for c in configs), f"{mode}: no config with {flag}"
        assert not all(c.bias for c in configs)
        assert {c.num_layers for c in configs} == {1, 2, 3}
        assert {c.dtype for c in configs} == {torch.float32, torch.float64}
        with_lengths = [c for c in configs if c.lengths and not c.packed]
        assert any(1 in c.lengths for c in with_lengths)
        assert any(c.lengths != sorted(c.lengths, reverse=True) for c in with_lengths)
        assert any(c.steps == 1 for c in configs)
        if mode == "LSTM":
            assert any(c.proj_size for c in configs)
