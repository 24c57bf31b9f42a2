"""The compiled CPU backend: against the naive ops, as a torch op (compile, export), and its fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit import ops
from rnnkit.ops import compiled

from .test_naive import CASES, direction_inputs
from .test_variant_ops import extras_for
from .utils import (
    OpCalls,
    assert_accumulates_like_naive,
    assert_close,
    assert_compiles_like_eager,
    assert_frozen_input_not_differentiated,
    assert_frozen_state_not_differentiated,
)

pytestmark = pytest.mark.skipif(
    compiled.unavailable_reason() is not None, reason=f"compiled CPU backend: {compiled.unavailable_reason()}"
)


def run_op(backend, mode, x, states, weights, lengths, reverse):
    output, final = ops.DIRECTION_OPS[mode, backend](x, states, weights, lengths, reverse)
    return (output, *final)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize(("mode", "proj", "bias", "lengths", "reverse"), CASES)
def test_direction_op_matches_naive_and_gradcheck(mode, proj, bias, lengths, reverse):
    x, states, weights = direction_inputs(mode, proj, bias)
    lengths = None if lengths is None else torch.tensor(lengths)
    inputs = [x, *states, *(w for w in weights if w is not None)]
    expected = run_op("naive", mode, x, states, weights, lengths, reverse)
    actual = run_op("cpu", mode, x, states, weights, lengths, reverse)
    upstream = [torch.randn_like(t) for t in expected]
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)
    grads_e = torch.autograd.grad(expected, inputs, upstream)
    grads_a = torch.autograd.grad(actual, inputs, upstream)
    for a, e in zip(grads_a, grads_e, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-12)

    def fn(*tensors):
        rest = list(tensors[len(states) + 1 :])
        full = tuple(None if w is None else rest.pop(0) for w in weights)
        return run_op("cpu", mode, tensors[0], tensors[1 : len(states) + 1], full, lengths, reverse)

    assert torch.autograd.gradcheck(fn, inputs)


def assert_two_threads_match_naive(mode, proj, lengths, **sizes):
    """Both directions of the op on two threads against naive: outputs, states, every gradient."""
    x, states, weights = direction_inputs(mode, proj, True, **sizes)
    inputs = [x, *states, *(w for w in weights if w is not None)]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for reverse in (False, True):
            expected = run_op("naive", mode, x, states, weights, lengths, reverse)
            actual = run_op("cpu", mode, x, states, weights, lengths, reverse)
            upstream = [torch.randn_like(t) for t in expected]
            grads_e = torch.autograd.grad(expected, inputs, upstream)
            grads_a = torch.autograd.grad(actual, inputs, upstream)
            for a, e in zip([*actual, *grads_a], [*expected, *grads_e], strict=True):
                torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("mode", ["LSTM", "LSTM-proj", "GRU", "RNN_TANH"])
@pytest.mark.parametrize(("batch", "hidden"), [(4, 256), (48, 64)], ids=["units", "sequences"])
def test_threads_split_sequences_or_units_like_naive(mode, batch, hidden):
    """Two threads take blocks of whole sequences (48 of them), or slices of the hidden units (4
    sequences), meeting after every phase of a step; both match the naive ops, states and gradients.
    By units, the LSTM's (no projection) and the GRU's block of a thread comes in 3 and 2 slices of
    halving width, each run by whichever thread claims it first."""
    lengths = torch.randint(1, 6, (batch,), generator=torch.Generator().manual_seed(1))
    mode, proj = mode.removesuffix("-proj"), mode.endswith("-proj")
    assert_two_threads_match_naive(mode, proj, lengths, T=5, B=batch, I=8, H=hidden, P=hidden // 3)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("mode", ["LSTM", "LSTM-proj", "GRU", "RNN_TANH"])
@pytest.mark.parametrize(
    ("steps", "batch", "hidden", "features"),
    [(1, 1, 37, 21), (3, 2, 37, 21), (1, 2, 128, 300), (5, 4, 37, 21), (3, 2, 256, 300)],
    ids=["one-step", "few-rows", "few-rows-threads", "packed", "projected-input"],
)
def test_weights_read_in_place_or_packed_like_naive(mode, steps, batch, hidden, features):
    """Below 16 rows in all (packed.h's kPackUses) the kernels read W's rows where they lie, as dot
    products in blocks of four with a ragged tail along K, and the backward reads W^T's rows (W_hh's,
    W_hr's), eight vectors of outputs at a time with a partial last one, and sums the weights'
    gradients as outer products, row by row; the input projection splits W's rows between the
    threads (the third case has enough work for two); 20 rows pack the weight.
    In the last case a thread's slice of the LSTM's [W_hh | W_ih] (float64, no proj) outgrows
    Tiles::kCachedWeightBytes: x W_ih^T + b of all steps is then one product before the loop."""
    mode, proj = mode.removesuffix("-proj"), mode.endswith("-proj")
    assert_two_threads_match_naive(mode, proj, None, T=steps, B=batch, I=features, H=hidden, P=hidden // 3)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_weight_gradients_of_few_units_split_the_steps_like_naive(mode):
    """With fewer of d W's rows than a vector (H = 3) over 5,760 rows of steps, two threads split
    the steps, each summing its own d W, and the two are added: the weights' and biases' gradients
    match the naive ops' (on the AVX2 path the LSTM's 12 rows split by rows instead)."""
    lengths = torch.randint(1, 81, (72,), generator=torch.Generator().manual_seed(2))
    assert_two_threads_match_naive(mode, False, lengths, T=80, B=72, I=5, H=3)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize(("features", "hidden"), [(6, 7), (12, 9)], ids=["one-vector", "two-vectors"])
def test_weight_gradients_of_narrow_inputs_read_in_place_like_naive(mode, features, hidden):
    """Inputs x and h of at most two vectors (float64 on the AVX-512 path: 8 or 16 values) with
    enough of d W's rows for two threads: their outer products are summed straight from them, 8 of
    d W's rows at a time and the rest one by one; the weights' gradients match the naive ops'. (On
    the AVX2 and portable paths, 4 doubles a vector, the wider of them are packed as before.)"""
    lengths = torch.randint(1, 41, (24,), generator=torch.Generator().manual_seed(3))
    assert_two_threads_match_naive(mode, False, lengths, T=40, B=24, I=features, H=hidden)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("save", [True, False])
def test_lstm_keeps_one_step_of_activations_without_gradients(save):
    """With no gradient wanted the LSTM op keeps one step of gates and cell states, rewritten at
    every step, instead of T: the same results; its fake implementation agrees on every shape."""
    x, states, weights = direction_inputs("LSTM", True, True, T=6, B=3)
    lengths = torch.tensor([6, 2, 4])
    args = tuple(t.detach() if t is not None else None for t in (x, *states, *weights))
    expected = run_op("cpu", "LSTM", x, states, weights, lengths, False)
    with torch.no_grad():
        actual = run_op("cpu", "LSTM", x, states, weights, lengths, False)
    for a, e in zip(actual, expected, strict=True):
        assert torch.equal(a, e)
    results = torch.ops.rnnkit.lstm_forward(*args, lengths, False, save)
    assert results[3].shape[0] == results[5].shape[0] == (6 if save else 1)
    torch.library.opcheck(torch.ops.rnnkit.lstm_forward, (*args, lengths, False, save), test_utils="test_faketensor")


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_double_backward_replays_naive_with_a_note(mode):
    x, states, weights = direction_inputs(mode, mode == "LSTM", True)
    lengths = torch.tensor([4, 1, 2])
    inputs = [x, *states, *(w for w in weights if w is not None)]

    def grad_of_sum(backend):
        outputs = run_op(backend, mode, x, states, weights, lengths, True)
        loss = sum((o * o).sum() for o in outputs)
        return torch.autograd.grad(loss, inputs, create_graph=True)

    with pytest.warns(UserWarning, match="recomputes the forward with the naive ops"):
        first = grad_of_sum("cpu")
    second = torch.autograd.grad(sum(g.sum() for g in first), inputs)
    expected_second = torch.autograd.grad(sum(g.sum() for g in grad_of_sum("naive")), inputs)
    for a, e in zip(second, expected_second, strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-10)


@pytest.mark.cpu_kernels
@pytest.mark.filterwarnings("ignore:double backward through a fused rnnkit backend")
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
@pytest.mark.parametrize("backend", ["naive", "cpu"])
@pytest.mark.parametrize("variant", [False, True], ids=["plain", "layer-norm"])
def test_states_with_a_leading_one_come_back_with_it(mode, backend, variant):
    """A net of one layer and direction gives the direction op its (1, B, *) states whole: the
    results, and the states' gradients to second order, are those of the (B, *) states with the 1."""
    x, states, weights = direction_inputs(mode, mode == "LSTM", True)
    lengths = torch.tensor([4, 1, 2])
    extras = extras_for(mode, 3, layer_norm=True, peephole=False)

    def run(states):
        if not variant:
            return run_op(backend, mode, x, states, weights, lengths, True)
        every, final = ops.variant_direction(mode, backend)(mode, x, states, weights, extras, None, (), lengths, True)
        return (*every, *final)

    def results_and_gradients(states):
        results = run(states)
        first = torch.autograd.grad(sum((r * r).sum() for r in results), states, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in first), states)
        return results, first, second

    stacked = tuple(s.detach().unsqueeze(0).requires_grad_() for s in states)
    expected = results_and_gradients(states)
    actual = results_and_gradients(stacked)
    count = len(states)
    for group, (a_all, e_all) in enumerate(zip(actual, expected, strict=True)):
        for k, (a, e) in enumerate(zip(a_all, e_all, strict=True)):
            is_state = group > 0 or k >= len(a_all) - count  # the final states and the states' gradients
            assert a.shape == ((1, *e.shape) if is_state else e.shape)
            torch.testing.assert_close(a, e.unsqueeze(0) if is_state else e, rtol=0, atol=1e-12)


def make_model(cls=rnnkit.LSTM, **kwargs):
    torch.manual_seed(0)
    return cls(5, 7, num_layers=2, bidirectional=True, backend="cpu", **kwargs)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_torch_compile_traces_without_graph_breaks(cls):
    assert_compiles_like_eager(make_model(cls), torch.randn(6, 3, 5, requires_grad=True))


def run_in_a_fresh_process(script: str) -> None:
    """Runs ``script`` in a new Python process of this checkout; fails with its stderr if it does."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_auto_compiles_without_graph_breaks_in_a_fresh_process():
    """``"auto"`` asks for the thread count and loads the kernels the first time outside the graph."""
    run_in_a_fresh_process(
        "import torch, rnnkit\n"
        "model, x = rnnkit.LSTM(5, 7), torch.randn(4, 1, 5)\n"
        "output, _ = torch.compile(model, backend='aot_eager', fullgraph=True)(x)\n"
        "torch.testing.assert_close(output, model(x)[0])\n"
    )


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_an_input_without_gradient_is_not_differentiated(cls):
    name = f"{cls.__name__.lower()}_backward"
    assert_frozen_input_not_differentiated(make_model(cls), torch.randn(6, 3, 5), OpCalls(name), at=-2)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_a_state_without_gradient_is_not_differentiated(cls):
    """The last step's product into h0 is skipped where h0 needs no gradient (no states given, or
    states without one), as when text is generated a token at a time with the states carried."""
    name = f"{cls.__name__.lower()}_backward"
    assert_frozen_state_not_differentiated(make_model(cls), torch.randn(6, 3, 5), OpCalls(name), at=-1, result_at=1)


@pytest.mark.cpu_kernels
def test_a_freed_result_block_is_handed_out_again():
    """A kernel's result of at least 64 KB takes its memory from the blocks earlier results freed
    (ops/csrc/workspace.h's BlockCache), not from the system's allocator, which hands that block to
    the next tensor of its size (and gives the top of its heap back to the system, fresh pages then).
    In a fresh process: the cache hands out the oldest of its blocks of a size, and blocks other
    tests' results left there would come first."""
    run_in_a_fresh_process(
        "import torch, rnnkit\n"
        "model = rnnkit.LSTM(28, 64, backend='cpu')\n"
        "x = torch.randn(50, 32, 28)\n"
        "with torch.no_grad():\n"
        "    first, _ = model(x)  # (50, 32, 64) floats: 400 KB\n"
        "    address = first.data_ptr()\n"
        "    del first\n"
        "    taken = torch.empty(50 * 32 * 64)\n"
        "    second, _ = model(x)\n"
        "assert second.data_ptr() == address != taken.data_ptr()\n"
    )


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_gradients_accumulate_and_clip_like_naive(cls):
    assert_accumulates_like_naive(make_model(cls), make_model(cls), torch.randn(4, 3, 5))


def test_torch_export():
    model = make_model(proj_size=3)
    x = torch.randn(6, 3, 5)
    program = torch.export.export(model, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "rnnkit.lstm_forward.default" in targets
    expected = model(x)
    actual = program.module()(x)
    torch.testing.assert_close(actual, expected)


def test_auto_uses_the_compiled_kernels_where_they_are_faster():
    x = torch.randn(2, 2, dtype=torch.float64)
    for mode in ("LSTM", "GRU", "RNN_TANH"):
        assert ops.resolve_backend("auto", x, mode) == "cpu"
        assert ops.resolve_backend("auto", x.float(), mode, varying_lengths=True) == "cpu"
        assert ops.resolve_backend("auto", x.bfloat16(), mode) == "torch"
    assert ops.resolve_backend("auto", x.float(), "GRU") == "cpu"
    # oneDNN's LSTM is as fast where a large step is split by hidden units (few sequences per thread)
    few = ops.ROWS_PER_THREAD * torch.get_num_threads() - 1
    large = ops.ONEDNN_STEP_MACS
    assert ops.resolve_backend("auto", x.float(), "LSTM") == "cpu"
    assert ops.resolve_backend("auto", x.float(), "LSTM", step_macs=large, batch=few) == "torch"
    assert ops.resolve_backend("auto", x.float(), "LSTM", step_macs=large, batch=few + 1) == "cpu"
    assert ops.resolve_backend("auto", x.float(), "LSTM", step_macs=large - 1, batch=few) == "cpu"
    assert ops.resolve_backend("auto", x.float(), "LSTM", step_macs=large, batch=few, varying_lengths=True) == "cpu"
    # a short sequence: torch's kernels cost less per call, but for a few sequences (one token)
    short, rows = ops.SHORT_STEPS - 1, ops.ROWS_PER_THREAD
    for mode in ("GRU", "RNN_TANH", "LSTM"):
        assert ops.resolve_backend("auto", x.float(), mode, batch=rows, steps=short) == "torch"
        assert ops.resolve_backend("auto", x.float(), mode, batch=rows, steps=short + 1) == "cpu"
        assert ops.resolve_backend("auto", x.float(), mode, batch=rows, steps=short, varying_lengths=True) == "cpu"
        assert ops.resolve_backend("auto", x.float(), mode, batch=rows - 1, steps=1) == "cpu"


def test_unsupported_dtype_names_what_to_use():
    model = rnnkit.GRU(3, 4, backend="cpu", dtype=torch.bfloat16)
    with pytest.raises(TypeError, match=r"float32 and float64 .* torch.bfloat16 .* backend='auto' or 'torch'"):
        model(torch.randn(5, 2, 3, dtype=torch.bfloat16))


def test_without_a_compiler_auto_falls_back_and_cpu_says_why(monkeypatch):
    monkeypatch.setattr(compiled, "unavailable_reason", lambda: "compiling its C++ kernels failed (no compiler)")
    assert ops.resolve_backend("auto", torch.randn(2), "GRU") == "torch"
    with pytest.raises(RuntimeError, match=r"backend='cpu' is not available: .*no compiler.*use one of 'auto'"):
        rnnkit.LSTM(3, 4, backend="cpu")


@pytest.mark.cpu_kernels
def test_the_library_is_built_for_the_selected_path():
    assert torch.ops.rnnkit.vector_isa() == compiled.selected_isa()


def test_paths_are_chosen_from_the_cpu_and_the_environment(monkeypatch):
    monkeypatch.setattr(compiled, "_cpu_flags", lambda: {"avx2", "fma", "sse4_2"})
    monkeypatch.setattr(compiled, "_X86", True)
    monkeypatch.delenv(compiled.ISA_VARIABLE, raising=False)
    assert compiled.supported_isas() == ["avx2", "default"] and compiled.selected_isa() == "avx2"
    monkeypatch.setenv(compiled.ISA_VARIABLE, "DEFAULT")
    assert compiled.selected_isa() == "default"
    monkeypatch.setenv(compiled.ISA_VARIABLE, "avx512")
    lacks = r"RNNKIT_CPU_ISA='avx512' cannot be built here \(this CPU lacks its instructions\); this CPU runs 'avx2'"
    with pytest.raises(ValueError, match=lacks):
        compiled.selected_isa()
    monkeypatch.setenv(compiled.ISA_VARIABLE, "sse")
    with pytest.raises(ValueError, match="the paths are 'avx512', 'avx2', 'default'"):
        compiled.selected_isa()


def test_the_build_cache_keys_on_the_path():
    directories = {isa.name: compiled._build_directory(isa.name) for isa in compiled.ISAS}
    assert len(set(directories.values())) == len(compiled.ISAS)
    assert all(f"cpu-{name}-" in directory.name for name, directory in directories.items())


def test_loading_the_library_keeps_denormals():
    """Loading the kernels does not switch the process to flush-to-zero (no -ffast-math at link time)."""
    assert (torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() != 0.0


@pytest.mark.cpu_kernels
@pytest.mark.parametrize(
    ("cls", "hidden", "kwargs"),
    [
        (rnnkit.LSTM, 128, {"proj_size": 0}),
        (rnnkit.LSTM, 200, {"proj_size": 150}),
        (rnnkit.GRU, 128, {}),
        (rnnkit.RNN, 256, {}),
    ],
)
def test_large_float32_steps_match_torch(cls, hidden, kwargs):
    """Steps large enough for the threads to split the hidden units (the sweep's small ones run on one) match torch."""
    torch.manual_seed(0)
    model = cls(48, hidden, bidirectional=True, backend="cpu", **kwargs)
    reference = model.to_torch()
    x = torch.randn(9, 32, 48, requires_grad=True)
    lengths = torch.randint(1, 10, (32,))
    lengths[0] = 9
    output, _ = model(x, lengths=lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(reference(packed)[0], total_length=9)
    torch.testing.assert_close(output, expected, rtol=1e-4, atol=2e-5)
    upstream = torch.randn_like(output)
    grads = torch.autograd.grad(output, [x, *model.parameters()], upstream)
    expected_grads = torch.autograd.grad(expected, [x, *reference.parameters()], upstream)
    for (name, _), a, e in zip(model.named_parameters(), grads[1:], expected_grads[1:], strict=True):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4, msg=name)
    torch.testing.assert_close(grads[0], expected_grads[0], rtol=1e-4, atol=2e-5)


@pytest.mark.cpu_kernels
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_saturated_gates_stay_finite(mode, dtype):
    """Gate inputs far beyond the range of exp (|x| up to ~1e4) saturate as in the equations, never NaN."""
    x, states, weights = direction_inputs(mode, mode == "LSTM", True)
    x, states = (x * 1e4).to(dtype), tuple(s.to(dtype) for s in states)
    weights = tuple(None if w is None else w.to(dtype) for w in weights)
    lengths = torch.tensor([4, 1, 2])
    expected = run_op("naive", mode, x, states, weights, lengths, False)
    actual = run_op("cpu", mode, x, states, weights, lengths, False)
    for a, e in zip(actual, expected, strict=True):
        assert torch.isfinite(a).all()
        assert_close("saturated", a.detach(), e.detach())


def test_ops_check_their_arguments():
    x, h0, w = torch.randn(3, 64, 5), torch.zeros(1, 4), torch.randn(12, 4)
    with pytest.raises(RuntimeError, match=r"gru_forward: expected h0 of shape \[64, 4\], got \[1, 4\]"):
        torch.ops.rnnkit.gru_forward(x, h0, torch.randn(12, 5), w, None, None, None, False)
    with pytest.raises(RuntimeError, match=r"gru_forward: expected w_ih of shape \[12, 5\], got \[12, 6\]"):
        torch.ops.rnnkit.gru_forward(x, torch.zeros(64, 4), torch.randn(12, 6), w, None, None, None, False)
    with pytest.raises(RuntimeError, match=r"lengths must lie in \[1, 3\]"):
        torch.ops.rnnkit.gru_forward(
            x, torch.zeros(64, 4), torch.randn(12, 5), w, None, None, torch.full((64,), 4), False
        )


@pytest.mark.cpu_kernels
def test_threads_split_the_batch_like_one_thread():
    """Steps split across threads by hidden units give the single-thread result (1 thread against 4)."""
    torch.manual_seed(0)
    model = rnnkit.LSTM(16, 200, bidirectional=True, proj_size=50, backend="cpu", dtype=torch.float64)
    x = torch.randn(6, 300, 16, dtype=torch.float64, requires_grad=True)
    lengths = torch.randint(1, 7, (300,))
    threads = torch.get_num_threads()
    results = []
    for count in (1, 4):
        torch.set_num_threads(count)
        try:
            output, (h_n, c_n) = model(x, lengths=lengths)
            (grad,) = torch.autograd.grad(output.sum() + h_n.sum() + c_n.sum(), x)
        finally:
            torch.set_num_threads(threads)
        results.append((output, h_n, c_n, grad))
    for a, b in zip(*results, strict=True):
        assert_close("threads", a.detach(), b.detach())


def test_the_build_names_no_file_of_the_checkout(tmp_path):
    """The unity source includes copies kept in the build directory, so another clone (newer file
    times, another path) finds the library built and loads it without a rebuild."""
    unity = compiled._unity_source(tmp_path)
    checkout = str(Path(compiled.__file__).parent)
    assert checkout not in unity.read_text() and unity.read_text().startswith('#include "src/lstm/lstm_cpu.cpp"')
    for source in compiled.SOURCES + compiled.HEADERS:
        assert (tmp_path / "src" / source.relative_to(checkout)).read_bytes() == source.read_bytes()
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    compiled._unity_source(tmp_path)  # unchanged sources: nothing is written again
    assert before == {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}


def test_a_library_cut_short_is_removed_and_built_again(tmp_path):
    library = tmp_path / "rnnkit_cpu.so"
    assert not compiled._load_built(library)
    library.write_bytes(b"\x7fELF cut short")
    assert not compiled._load_built(library) and not library.exists()
