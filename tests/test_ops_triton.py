"""The Triton backend: layer kernels against the naive ops, as a torch op (compile, export), and its limits.

Without a GPU these run in Triton's interpreter on CPU tensors (``conftest.py`` sets
``TRITON_INTERPRET=1``), one program per direction; tests marked ``gpu`` run the
compiled kernels with many programs on CUDA.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import rnnkit
from rnnkit import ops
from rnnkit.errors import RNNTypeError
from rnnkit.modules import GATES

from .utils import (
    assert_accumulates_like_naive,
    assert_close,
    assert_compiles_like_eager,
    assert_frozen_input_not_differentiated,
    cudnn_tf32,
    function_calls,
    relative_error,
)

pytestmark = pytest.mark.skipif(
    ops.unavailable_reason("triton") is not None, reason=f"triton backend: {ops.unavailable_reason('triton')}"
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def exact_float32():
    """float32 products in full precision: the kernels follow cuDNN's TF32 switch, on by default."""
    with cudnn_tf32(False):
        yield


# The ops folder of each mode and module class.
FOLDERS = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}
# Unit roundoff of the low-precision dtypes.
ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


def layer_inputs(mode, *, steps=5, batch=3, features=4, hidden=6, proj=0, bias=True, directions=2, seed=0):
    """float64 inputs of one layer op: x (T, B, I), states (D, B, *), D weight tuples; scaled like torch's init."""
    g = torch.Generator().manual_seed(seed)
    out = proj or hidden
    gates = GATES[mode] * hidden

    def rand(*shape, scale=hidden**-0.5):
        return (torch.rand(*shape, dtype=torch.float64, generator=g) * 2 - 1) * scale

    x = rand(steps, batch, features, scale=1.0)
    states = [rand(directions, batch, out, scale=0.5)]
    if mode == "LSTM":
        states.append(rand(directions, batch, hidden, scale=0.5))
    weights = []
    for _ in range(directions):
        w = [rand(gates, features), rand(gates, out), rand(gates) if bias else None, rand(gates) if bias else None]
        if mode == "LSTM":
            w.append(rand(out, hidden) if proj else None)
        weights.append(tuple(w))
    return x, tuple(states), weights


def cast_layer(x, states, weights, dtype, requires_grad=False):
    """``layer_inputs``' x, states and weights on DEVICE in ``dtype``, leaves wanting gradients if ``requires_grad``."""

    def cast(t):
        return None if t is None else t.detach().to(DEVICE, dtype).requires_grad_(requires_grad)

    return cast(x), tuple(cast(s) for s in states), [tuple(cast(w) for w in ws) for ws in weights]


def output_names(final):
    return ["output", *(f"final {i}" for i in range(len(final)))]


def run_inference(mode, x, states, weights, lengths, dtype):
    """Outputs of the Triton layer op with no gradient wanted (the forward keeps two steps' states)."""
    x, states, weights = cast_layer(x, states, weights, dtype)
    with torch.no_grad():
        output, final = ops.layer_op(mode, "triton")(x, states, weights, lengths)
    return dict(zip(output_names(final), (output, *final), strict=True))


def run_layer(backend, mode, x, states, weights, lengths, dtype, upstream_seed=1):
    """Outputs and every gradient of one layer op after one backward with random upstream gradients."""
    x, states, cast_weights = cast_layer(x, states, weights, dtype, requires_grad=True)
    leaves = [x, *states] + [w for ws in cast_weights for w in ws if w is not None]
    output, final = ops.layer_op(mode, backend)(x, states, cast_weights, lengths)
    results = (output, *final)
    g = torch.Generator().manual_seed(upstream_seed)
    upstream = [torch.randn(r.shape, dtype=torch.float64, generator=g).to(DEVICE, dtype) for r in results]
    grads = torch.autograd.grad(results, leaves, upstream)
    names = output_names(final)
    names += ["grad x", *(f"grad state {i}" for i in range(len(states)))]
    names += [f"grad {n}[{d}]" for d, ws in enumerate(cast_weights) for n, w in zip(WEIGHT_NAMES, ws) if w is not None]
    return dict(zip(names, [r.detach() for r in results] + list(grads), strict=True))


WEIGHT_NAMES = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr")


def layer_case(mode, proj, bias, lengths, directions):
    name = f"{mode}-P{proj}-{'bias' if bias else 'nobias'}-{'len' if lengths else 'full'}-D{directions}"
    return pytest.param(mode, proj, bias, lengths, directions, id=name)


LAYER_CASES = [
    layer_case(mode, proj, bias, lengths, directions)
    for mode in GATES
    for proj in ([0, 4] if mode == "LSTM" else [0])
    for bias, lengths, directions in [(True, None, 1), (True, [5, 1, 3], 2), (False, [2, 5, 5], 2), (True, None, 2)]
]
# the op takes a square W_hr (P = H), which the modules refuse: the projection comes from W_hr, not from P < H
LAYER_CASES.append(layer_case("LSTM", 6, True, [5, 1, 3], 2))


@pytest.mark.parametrize(("mode", "proj", "bias", "lengths", "directions"), LAYER_CASES)
def test_layer_matches_naive(mode, proj, bias, lengths, directions):
    x, states, weights = layer_inputs(mode, proj=proj, bias=bias, directions=directions)
    lengths = None if lengths is None else torch.tensor(lengths)
    expected = run_layer("naive", mode, x, states, weights, lengths, torch.float64)
    actual = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    for name, e in expected.items():
        assert_close(name, actual[name].cpu(), e.float().cpu())


TILED_CASES = [("LSTM", 24, False), ("LSTM", 0, True), ("LSTM", 0, False), ("GRU", 0, True), ("GRU", 0, False)]


@pytest.mark.parametrize(("mode", "proj", "split"), [*TILED_CASES, ("RNN_TANH", 0, False)])
def test_tiled_path_matches_naive(mode, proj, split, monkeypatch):
    """Weights read tile by tile every step, several reduction and batch tiles, ragged edges."""
    from rnnkit.ops import persistent

    monkeypatch.setattr(persistent, "RESIDENT_BYTES", 0)
    monkeypatch.setattr(persistent, "MAX_BLOCK_K", 16)
    monkeypatch.setattr(persistent, "MAX_BLOCK_B", 16)
    if not split:
        monkeypatch.setattr(persistent, "SHARE_BYTES", 0)
    check_backward_plan_and_layer(mode, proj, split, resident=False)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_unsplit_backward_matches_naive(mode, monkeypatch):
    """The backward whose programs own 16 columns of dh, taken when the shares of dh outgrow SHARE_BYTES."""
    from rnnkit.ops import persistent

    monkeypatch.setattr(persistent, "SHARE_BYTES", 0)
    check_backward_plan_and_layer(mode, 0, False, resident=True)


def check_backward_plan_and_layer(mode, proj, split, resident):
    from rnnkit.ops import persistent

    x, states, weights = layer_inputs(mode, steps=3, batch=20, features=5, hidden=40, proj=proj)
    plan = persistent.plan(40, proj or None, GATES[mode], 20, 2, torch.float32, torch.device(DEVICE), backward=True)
    assert (plan.resident, plan.split) == (resident, split)
    if not resident:
        assert plan.block_k == 16 and plan.block_b == 16
    lengths = torch.tensor([3, 1, 2, 3] * 5)
    expected = run_layer("naive", mode, x, states, weights, lengths, torch.float64)
    actual = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    for name, e in expected.items():
        assert_close(name, actual[name].cpu(), e.float().cpu())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("mode", list(GATES))
def test_low_precision_within_the_naive_ops_error(mode, dtype):
    """fp16/bf16 against float64: no worse than twice the naive ops' own error in that dtype, plus one roundoff.

    Both round every stored state and product input to the dtype; the kernels accumulate
    in float32, so they should not lose more. A fixed bound would not do for ReLU, whose
    derivative jumps: rounding flips units near zero in the naive ops as well.
    """
    x, states, weights = layer_inputs(mode, steps=8, batch=5, features=8, hidden=24, proj=16 * (mode == "LSTM"))
    check_low_precision(mode, x, states, weights, torch.tensor([8, 3, 7, 1, 8]), dtype)


def check_low_precision(mode, x, states, weights, lengths, dtype):
    """The kernels' relative error against float64 within twice the naive ops' in ``dtype``, plus one roundoff."""
    exact = run_layer("naive", mode, x, states, weights, lengths, torch.float64)
    naive = run_layer("naive", mode, x, states, weights, lengths, dtype)
    kernel = run_layer("triton", mode, x, states, weights, lengths, dtype)
    for name, e in exact.items():
        bound = 2 * relative_error(naive[name], e) + ROUNDOFF[dtype]
        error = relative_error(kernel[name], e)
        assert error <= bound, f"{name}: relative error {error:.2e} > {bound:.2e}"


def make_model(cls=rnnkit.LSTM, **kwargs):
    torch.manual_seed(0)
    return cls(5, 7, num_layers=2, bidirectional=True, backend="triton", device=DEVICE, **kwargs)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_torch_compile_traces_without_graph_breaks(cls):
    assert_compiles_like_eager(make_model(cls), torch.randn(6, 3, 5, device=DEVICE, requires_grad=True))


def test_torch_export():
    model = make_model(proj_size=3)
    x = torch.randn(6, 3, 5, device=DEVICE)
    program = torch.export.export(model, (x,))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "rnnkit.lstm_triton.default" in targets
    torch.testing.assert_close(program.module()(x), model(x))


def test_backward_in_eval_mode():
    """cuDNN refuses 'RNN backward can only be called in training mode'; the kernels do not."""
    model = make_model(rnnkit.GRU, dropout=0.5).eval()
    x = torch.randn(4, 2, 5, device=DEVICE, requires_grad=True)
    output, h_n = model(x)
    (output.sum() + h_n.sum()).backward()
    reference = make_model(rnnkit.GRU, dropout=0.5).eval()
    reference.backend = "naive"
    x_ref = x.detach().clone().requires_grad_()
    output_ref, h_n_ref = reference(x_ref)
    (output_ref.sum() + h_n_ref.sum()).backward()
    assert_close("grad x", x.grad, x_ref.grad)


@pytest.mark.parametrize("steps", [5, 4], ids=["odd-T", "even-T"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_inference_keeps_two_steps_and_no_gates(mode, steps, monkeypatch):
    """Without a gradient wanted the forward keeps no step's gates and two steps' states; a backward is refused."""
    from rnnkit.ops import persistent

    folder = FOLDERS[mode]
    module = importlib.import_module(f"rnnkit.ops.{folder}.triton")
    name = f"{folder}_triton"
    saves = []
    op = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args: saves.append(args[-1]) or op(*args))

    x, states, weights = layer_inputs(mode, steps=steps, proj=4 if mode == "LSTM" else 0, directions=2)
    lengths = torch.tensor([steps, 1, 3])
    expected = run_layer("naive", mode, x, states, weights, lengths, torch.float64)
    for key, actual in run_inference(mode, x, states, weights, lengths, torch.float32).items():
        assert_close(key, actual.cpu(), expected[key].float().cpu())
    assert saves == [False]

    x, states, weights = cast_layer(x, states, weights, torch.float32)

    stacked = persistent.stack_weights(weights)
    flags = (True,) if mode.startswith("RNN") else ()  # the RNN's tanh/relu switch
    kept = {"LSTM": (3, 4), "GRU": (2, 3), "RNN_TANH": (None, 2)}[mode]  # gates and hidden states in the outputs
    with torch.no_grad():
        for save, slots in ((True, steps + 1), (False, 2)):
            outputs = op(x, *states, *stacked, lengths, *flags, save)
            assert outputs[kept[1]].shape[:2] == (2, slots)
            if kept[0] is not None:
                assert outputs[kept[0]].numel() == (2 * steps * 3 * 4 * 6 if save else 0)
    leaves = [w.requires_grad_() for w in stacked]
    output, *_ = op(x, *states, *leaves, lengths, *flags, False)
    with pytest.raises(RuntimeError, match="save=False"):
        output.sum().backward()


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_double_backward_replays_naive_with_a_note(mode):
    x, states, weights = layer_inputs(mode, proj=4 * (mode == "LSTM"))
    lengths = torch.tensor([4, 1, 2])
    x, states, cast = cast_layer(x, states, weights, torch.float32, requires_grad=True)
    inputs = [x, *states] + [w for ws in cast for w in ws if w is not None]

    def grad_of_sum(backend):
        output, final = ops.layer_op(mode, backend)(x, states, cast, lengths)
        loss = sum((o * o).sum() for o in (output, *final))
        return torch.autograd.grad(loss, inputs, create_graph=True)

    with pytest.warns(UserWarning, match="recomputes the forward with the naive ops"):
        first = grad_of_sum("triton")
    second = torch.autograd.grad(sum(g.sum() for g in first), inputs)
    expected = torch.autograd.grad(sum(g.sum() for g in grad_of_sum("naive")), inputs)
    for i, (a, e) in enumerate(zip(second, expected, strict=True)):
        assert_close(f"second derivative {i}", a, e)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_an_input_without_gradient_is_not_differentiated(cls, monkeypatch):
    folder = FOLDERS[cls.__name__]
    owner = importlib.import_module(f"rnnkit.ops.{folder}.triton")
    x = torch.randn(6, 3, 5, device=DEVICE)
    calls = function_calls(owner, f"{folder}_triton_backward", monkeypatch)
    assert_frozen_input_not_differentiated(make_model(cls), x, calls)


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_gradients_accumulate_and_clip_like_naive(cls):
    assert_accumulates_like_naive(make_model(cls), make_model(cls), torch.randn(4, 3, 5, device=DEVICE))


@pytest.mark.parametrize(("mode", "proj"), [("LSTM", 4), ("LSTM", 0), ("GRU", 0)], ids=["LSTM-P4", "LSTM", "GRU"])
def test_gradients_are_deterministic(mode, proj):
    """Bit-identical across runs: no atomics in any accumulation, a fixed reduction order (split or not).

    The interpreter runs one program per direction, in order, so on the CPU this holds by
    construction; tests/triton_threads.py compares two runs of several programs in threads.
    """
    x, states, weights = layer_inputs(mode, proj=proj, batch=17)
    lengths = torch.tensor([5, 1, 3] * 5 + [2, 4])
    first = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    second = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    for name, a in first.items():
        assert torch.equal(a, second[name]), name


def test_unsupported_dtype_names_what_to_use():
    model = rnnkit.LSTM(3, 4, backend="triton", dtype=torch.float64, device=DEVICE)
    with pytest.raises(
        RNNTypeError, match=r"float32, bfloat16 and float16 .* got torch.float64 .* backend='auto' or 'torch'"
    ):
        model(torch.randn(5, 2, 3, dtype=torch.float64, device=DEVICE))


def test_without_cuda_the_backend_says_which_ones_work(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "torch.cuda.is_available() is False" in ops.unavailable_reason("triton")
    with pytest.raises(
        RuntimeError,
        match=r"backend='triton' is not available: .*CUDA.*; use one of 'auto', 'naive'(, 'cpu')?, 'torch'$",
    ):
        rnnkit.GRU(3, 4, backend="triton")


def test_cells_use_torchs_cell_kernels(monkeypatch):
    calls = []
    torch_cell = ops.aten.cell
    monkeypatch.setattr(ops.aten, "cell", lambda *args: calls.append(args[0]) or torch_cell(*args))
    cell = rnnkit.LSTMCell(3, 4, backend="triton", device=DEVICE)
    reference = torch.nn.LSTMCell(3, 4, device=DEVICE)
    reference.load_state_dict(cell.state_dict())
    x = torch.randn(2, 3, device=DEVICE)
    for a, e in zip(cell(x), reference(x), strict=True):
        assert_close("cell state", a, e)
    assert calls == ["LSTM"]


@pytest.mark.long
def test_many_programs_meet_at_the_barrier():
    """Several programs per direction, one thread each in the interpreter (tests/triton_threads.py)."""
    specs = ["LSTM:28:0:18:1:0", "LSTM:50:17:20:1:1", "GRU:24:0:18:2:1", "GRU:70:0:18:2:0", "RNN_TANH:40:0:20:1:1"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "tests.triton_threads", *specs]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[1]
        )
    except subprocess.TimeoutExpired as timeout:
        raise AssertionError(f"the programs did not all pass the barrier within 300 s: {timeout.stdout}") from None
    if done.returncode == 2:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("programs of") == len(specs), done.stdout


def test_float32_products_follow_cudnns_tf32_switch(monkeypatch):
    from rnnkit.ops import persistent

    for allowed, precision in ((True, "tf32"), (False, "ieee")):
        with cudnn_tf32(allowed):
            assert persistent.dot_types(torch.float32)[1] == precision
    with cudnn_tf32(True):  # torch's per-operator setting, where it says something, comes first
        monkeypatch.setattr(torch.backends.cudnn, "rnn", SimpleNamespace(fp32_precision="ieee"))
        assert persistent.dot_types(torch.float32)[1] == "ieee"
    assert persistent.dot_types(torch.bfloat16)[1] == "ieee"


def test_plan_fits_the_grid_on_the_multiprocessors(monkeypatch):
    """Every program of a direction must be resident at once for the barrier; units never split unevenly."""
    from rnnkit.ops import persistent

    monkeypatch.setattr(persistent, "triton_interpreting", lambda: False)
    monkeypatch.setattr(persistent, "multiprocessors", lambda device: 132)
    cuda = torch.device("cuda")
    grid = itertools.product([1, 40, 128, 1000, 4096], ["none", "smaller", "square"], [1, 3, 4], [1, 2], [False, True])
    for hidden, projection, gates, directions, backward in grid:
        proj = {"none": None, "smaller": min(17, hidden), "square": hidden}[projection] if gates == 4 else None
        plan = persistent.plan(hidden, proj, gates, 8, directions, torch.bfloat16, cuda, backward)
        assert plan.programs * directions <= 132
        assert plan.programs * plan.block_u >= hidden and (plan.programs - 1) * plan.block_u < hidden
        assert plan.programs * plan.block_p >= (proj or hidden)
        # a product's columns: a forward or split program's units times its gates, else its units
        side_by_side = gates > 1 and (not backward or plan.split)
        assert plan.block_u * (persistent.GATE_SLOTS if side_by_side else 1) >= 16
        assert plan.split == (backward and side_by_side)
        if proj is None:
            assert plan.block_p == plan.block_u
        else:
            assert plan.block_p >= 16
    # side by side, an LSTM's gates let 4 units' W_hh stay resident where 16 units' would not
    forward = persistent.plan(512, None, 4, 8, 1, torch.float32, cuda)
    assert forward.resident and (forward.programs, forward.block_u) == (128, 4)
    assert persistent.plan(1024, None, 4, 8, 1, torch.bfloat16, cuda).resident
    # the backward likewise, while the programs' shares of dh fit SHARE_BYTES; else 16 columns of dh each
    split = persistent.plan(512, None, 4, 32, 1, torch.float32, cuda, backward=True)
    assert split.split and split.resident and split.programs == 128
    unsplit = persistent.plan(512, None, 4, 256, 1, torch.float32, cuda, backward=True)
    assert not unsplit.split and not unsplit.resident and unsplit.programs == 32
    assert not persistent.plan(512, 100, 4, 8, 1, torch.float32, cuda, backward=True).split
    assert not persistent.plan(512, 512, 4, 8, 1, torch.float32, cuda, backward=True).split
    # owning 16 units each, programs fill the multiprocessors as well: a split would spread W_hh no wider
    assert not persistent.plan(4096, None, 4, 2, 1, torch.float32, cuda, backward=True).split
    assert not persistent.plan(4096, None, 4, 8, 1, torch.float32, cuda).resident


# --- on a GPU: many programs, the barrier, the precision the issue asks for ------------------------

GPU_SIZES = [
    pytest.param(mode, hidden, proj, id=f"{mode}-H{hidden}-P{proj}")
    for mode, hidden, proj in [
        ("LSTM", 128, 0),
        ("LSTM", 512, 0),
        ("LSTM", 1024, 0),
        ("LSTM", 2048, 0),
        ("LSTM", 300, 100),
        ("GRU", 256, 0),
        ("GRU", 1024, 0),
        ("RNN_TANH", 512, 0),
        ("RNN_RELU", 200, 0),
    ]
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("mode", "hidden", "proj"), GPU_SIZES)
def test_gpu_fp32_matches_float64(mode, hidden, proj):
    """TF32 off: relative error <= 1e-5 on outputs and states, <= 1e-4 on gradients, against naive in float64."""
    x, states, weights = layer_inputs(mode, steps=33, batch=19, features=64, hidden=hidden, proj=proj)
    lengths = torch.randint(1, 34, (19,), generator=torch.Generator().manual_seed(0))
    lengths[0] = 33
    expected = run_layer("naive", mode, x, states, weights, lengths, torch.float64)
    actual = run_layer("triton", mode, x, states, weights, lengths, torch.float32)
    for name, e in expected.items():
        error = relative_error(actual[name], e)
        assert error <= (1e-4 if name.startswith("grad") else 1e-5), f"{name}: relative error {error:.2e}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize(("mode", "hidden", "proj"), GPU_SIZES[:3] + GPU_SIZES[5:7])
def test_gpu_low_precision_within_the_naive_ops_error(mode, hidden, proj, dtype):
    x, states, weights = layer_inputs(mode, steps=33, batch=19, features=64, hidden=hidden, proj=proj)
    lengths = torch.randint(1, 34, (19,), generator=torch.Generator().manual_seed(0))
    check_low_precision(mode, x, states, weights, lengths, dtype)


_TRITON = importlib.util.find_spec("triton")
TRITON_BIN = None if _TRITON is None else Path(_TRITON.origin).parent / "backends" / "nvidia" / "bin"


@pytest.mark.skipif(TRITON_BIN is None or not (TRITON_BIN / "ptxas").exists(), reason="no ptxas in this triton")
def test_kernels_compile_for_the_h100():
    """The interpreter runs any Python; this compiles every kernel with Triton's ptxas for sm_90, no GPU needed."""
    script = Path(__file__).parents[1] / "benchmarks" / "triton_resources.py"
    configs = ["lstm:40:0:3:2:fp32", "lstm:64:24:17:1:bf16", "lstm:24:24:5:1:fp32"]
    configs += ["gru:48:0:5:2:fp16", "rnn:1100:0:70:1:fp32"]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(script.parents[1])
    done = subprocess.run([sys.executable, str(script), *configs], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("REG:") == 3 * len(configs), done.stdout  # forward, inference, backward
