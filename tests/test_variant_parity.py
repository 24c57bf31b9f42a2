"""The compiled CPU kernels of the variants against the naive ops (``ops/variant.py``) on a seeded
random sweep: outputs, final states, every step's states and every gradient, the variant's own
parameters' too.

Each configuration is one of the parity sweep's configurations of LSTM, GRU, RNN tanh and ReLU
(sizes, layers, directions, bias, proj_size, lengths, PackedSequence, unbatched input, initial
states, float32 or float64) with random variant keywords (those of the cell), random gains, shifts
and peepholes, in training (the masks drawn from one seed for both) or in evaluation. float64:
within 1e-9 of the naive ops; float32: against the naive ops in float64, as exact as the naive ops
in float32 (``assert_as_exact``).
"""

from __future__ import annotations

import os
import random
import zlib

import pytest
import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit import ops
from rnnkit.modules import GATES

from .utils import (
    MODES,
    Config,
    OpCalls,
    as_tuple,
    assert_close,
    assert_compiles_like_eager,
    assert_frozen_input_not_differentiated,
    assert_frozen_state_not_differentiated,
    make_inputs,
    random_configs,
)

_CPU_REASON = ops.unavailable_reason("cpu")
pytestmark = [
    pytest.mark.skipif(_CPU_REASON is not None, reason=f"cpu backend: {_CPU_REASON}"),
    pytest.mark.cpu_kernels,
    pytest.mark.filterwarnings("ignore:layer_norm normalises"),  # the sweep draws input_size=1 too
]

LAYER_NORM = {
    "LSTM": [False, True, ("hh",), ("c",), ("ih", "hh"), ("ih", "c"), ("hh", "c")],
    "GRU": [False, True, ("hh",), ("ih",)],
}
ZONEOUT = {"LSTM": [0.0, 0.0, 0.2, (0.3, 0.1), (0.0, 0.25)], "GRU": [0.0, 0.0, 0.2]}
CASES_PER_MODE = {"LSTM": 90, "GRU": 45, "RNN_TANH": 30, "RNN_RELU": 30}
# The largest error of a result is noisier than a median: over this sweep the fused kernels' is about
# the naive ops' in the median. FLOAT32_FLOOR is 32 float32 rounding errors.
FLOAT32_FACTOR, FLOAT32_FLOOR = 3.0, 4e-6


def random_variant(mode: str, rng: random.Random) -> dict:
    """Variant keywords of ``mode``'s cell, each on about half the time; all off leaves every step's
    states to ask for."""
    cell = "LSTM" if mode == "LSTM" else "GRU"
    variant = dict(
        layer_norm=rng.choice(LAYER_NORM[cell]),
        recurrent_dropout=rng.choice([0.0, 0.0, 0.3]),
        zoneout=rng.choice(ZONEOUT[cell]),
        weight_dropout=rng.choice([0.0, 0.0, 0.0, 0.2]),
    )
    return {**variant, "peephole": rng.random() < 0.5} if mode == "LSTM" else variant


def sweep(mode: str, count: int, seed: int) -> list[tuple[Config, dict, bool]]:
    rng = random.Random(seed)
    return [(config, random_variant(mode, rng), rng.random() < 0.6) for config in random_configs(mode, count, seed)]


# tests/test_isa_paths.py reruns every n-th case on the other instruction-set paths.
EVERY = int(os.environ.get("RNNKIT_TEST_PARITY_EVERY", "1"))
EVERY_CASE = [case for i, (mode, n) in enumerate(CASES_PER_MODE.items()) for case in sweep(mode, n, seed=100 + i)]
CASES = EVERY_CASE[::EVERY]


def build(config: Config, variant: dict, backend: str, dtype: torch.dtype, training: bool) -> torch.nn.Module:
    """The module of ``config`` with ``variant``; the variant's parameters drawn at random (same seed, same net)."""
    torch.manual_seed(1234)
    kwargs = {**config.constructor_kwargs(), "dtype": torch.float64}  # the same weights in either dtype
    net = MODES[config.mode][0](config.input_size, config.hidden_size, backend=backend, **kwargs, **variant)
    torch.manual_seed(99)
    with torch.no_grad():
        for name, parameter in net.named_parameters():
            if name.startswith(("ln_", "weight_ch")):
                parameter.copy_(torch.rand_like(parameter) + (0.5 if "weight_l" in name else -0.5))
    return net.to(dtype).train(training)


def run(net: torch.nn.Module, config: Config, x: torch.Tensor, states) -> tuple[torch.Tensor, ...]:
    """Output, final states and every step's states, padded, the masks drawn from one seed."""
    torch.manual_seed(7)
    hx = states if states is None or config.mode == "LSTM" else states[0]
    if config.packed:
        packed = pack_padded_sequence(x, config.lengths, batch_first=config.batch_first, enforce_sorted=False)
        output, final, every = net(packed, hx, all_states=True)
        output, _ = pad_packed_sequence(output, batch_first=config.batch_first, total_length=config.steps)
    else:
        output, final, every = net(x, hx, lengths=config.lengths, all_states=True)
    return output, *as_tuple(final), *as_tuple(every)


def results(config: Config, variant: dict, training: bool, backend: str, dtype: torch.dtype) -> list:
    """(name, value) of every result and every gradient of the module on the case's inputs."""
    net = build(config, variant, backend, dtype, training)
    generator = torch.Generator().manual_seed(zlib.crc32(config.id.encode()))
    x, states = make_inputs(config, generator)
    x = x.detach().to(dtype).requires_grad_()
    states = None if states is None else tuple(s.detach().to(dtype).requires_grad_() for s in states)
    outputs = run(net, config, x, states)
    upstream = [torch.randn(o.shape, dtype=torch.float64, generator=generator).to(dtype) for o in outputs]
    inputs = [x, *(states or ()), *net.parameters()]
    grads = torch.autograd.grad(outputs, inputs, upstream, allow_unused=True)
    names = ["output", "h_n", "c_n", "every h", "every c"] if config.mode == "LSTM" else ["output", "h_n", "every h"]
    names += ["grad input"]
    names += [f"grad state {i}" for i in range(len(states or ()))] + [f"grad {n}" for n, _ in net.named_parameters()]
    return list(zip(names, (*outputs, *grads)))


@pytest.mark.parametrize(
    ("config", "variant", "training"),
    CASES,
    ids=[f"{i:03d}-{c.id}-{'train' if t else 'eval'}" for i, (c, _, t) in enumerate(CASES)],
)
def test_fused_variant_matches_the_naive_ops(config: Config, variant: dict, training: bool) -> None:
    assert_matches_naive(config, variant, training)


def assert_matches_naive(config: Config, variant: dict, training: bool) -> None:
    """The fused kernels' results and gradients against the naive ops': within 1e-9 in float64, and as
    exact as the naive ops in float32."""
    expected = results(config, variant, training, "naive", torch.float64)
    actual = results(config, variant, training, "cpu", config.dtype)
    float32 = config.dtype == torch.float32 and well_conditioned(config, variant)
    naive = results(config, variant, training, "naive", config.dtype) if float32 else None
    # float32's floor: relative to the largest value of the results' kind, values or gradients (a
    # gradient that nearly cancels, as the input's through layer norm of one feature, has no digits
    # of its own to keep)
    largest = {
        kind: max(e.abs().max().item() for name, e in expected if e is not None and name.startswith("grad") == kind)
        for kind in (False, True)
    }
    for i, ((name, a), (_, e)) in enumerate(zip(actual, expected, strict=True)):
        assert (a is None) == (e is None), name
        if a is None:
            continue
        if config.dtype == torch.float64:
            assert_close(name, a, e)
        elif naive is not None:
            assert_as_exact(name, a, naive[i][1], e, largest[name.startswith("grad")])


@pytest.mark.parametrize("hidden", [1, 2, 3, 5, 6, 7, 10, 16, 17])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_norm_rows_of_every_length_in_groups_like_naive(hidden, mode, dtype):
    """Layer norm takes up to 16 rows side by side, a short row (at most 64 values) in registers: rows
    of one vector to several, of exactly 64 values (LSTM, H = 16) and of more (H = 17), in groups cut
    short by the batch's end (33 sequences: 16, 16 and 1) and by sequences that ended. Rows of H
    values end in a partial vector of every length of the AVX2 path's (1 to 7 floats, 1 to 3
    doubles), which it stores a run of 4, 2 and 1 lanes at a time (packed.h's store_first)."""
    config = Config(
        mode=mode, input_size=5, hidden_size=hidden, num_layers=1, bidirectional=False, bias=True,
        batch_first=False, proj_size=0, batch=33, steps=4, dtype=dtype, unbatched=False, with_hx=True,
    )  # fmt: skip
    config.lengths = torch.randint(1, 5, (33,), generator=torch.Generator().manual_seed(hidden)).tolist()
    assert_matches_naive(config, dict(layer_norm=True), training=True)


@pytest.mark.parametrize(("mode", "proj"), [("LSTM", 0), ("LSTM", 64), ("GRU", 0), ("RNN_TANH", 0)])
@pytest.mark.parametrize("batch", [1, 5])
def test_layer_norm_products_of_few_rows_split_between_threads_like_naive(mode, proj, batch):
    """Layer norm takes whole rows, so fewer than 16 sequences are one part of the loop: two threads
    then split W_hh's rows in each step's product, and its columns in the backward's (common.h's
    SplitProduct; at H = 256 even the RNN's has work for two). Both directions, sequences that end
    early, zoneout, float64: outputs, states and every gradient match the naive ops'."""
    config = Config(
        mode=mode, input_size=7, hidden_size=256, num_layers=1, bidirectional=True, bias=True,
        batch_first=False, proj_size=proj, batch=batch, steps=4, dtype=torch.float64, unbatched=False, with_hx=True,
    )  # fmt: skip
    config.lengths = [4, 2, 3, 1, 4][:batch]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert_matches_naive(config, dict(layer_norm=True, zoneout=0.1), training=True)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_input_feature_weight_gradient_like_naive(mode, dtype):
    """One input feature (MNIST-1D, a sine wave): W_ih's gradient, a product apart from W_hh's where
    layer norm is on the recurrence, sums its one column vectorised along the gate rows (packed.h's
    add_column_products), two threads each taking some of the rows, in blocks of 64 steps (70 rows
    here: a block and a part), as the other products sum; sequences that end early."""
    config = Config(
        mode=mode, input_size=1, hidden_size=37, num_layers=1, bidirectional=False, bias=True,
        batch_first=False, proj_size=0, batch=7, steps=10, dtype=dtype, unbatched=False, with_hx=True,
    )  # fmt: skip
    config.lengths = [10, 3, 10, 7, 1, 10, 5]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert_matches_naive(config, dict(layer_norm=("hh", "c") if mode == "LSTM" else ("hh",)), training=True)
    finally:
        torch.set_num_threads(threads)


def well_conditioned(config: Config, variant: dict) -> bool:
    """Whether float32 has digits to compare: not layer norm of W_ih x_t with one input feature (the
    module warns: it keeps the sign of x_t and rounding noise), nor of fewer than 4 values."""
    places = variant["layer_norm"]
    places = ("ih", "hh", "c") if places is True else places or ()
    width = config.hidden_size * (1 if "c" in places else GATES[config.mode])
    return not places or (width >= 4 and not ("ih" in places and config.input_size == 1))


def assert_as_exact(name: str, actual: Tensor, naive: Tensor, expected: Tensor, largest: float) -> None:
    """float32: ``actual``'s largest error against the float64 ``expected`` at most FLOAT32_FACTOR
    times the naive ops' float32 error plus FLOAT32_FLOOR of ``largest``."""
    assert not actual.isnan().any(), f"{name}: NaN in result"
    error = (actual.double() - expected).abs().max().item()
    naive_error = (naive.double() - expected).abs().max().item()
    assert error <= FLOAT32_FACTOR * naive_error + FLOAT32_FLOOR * largest, (
        f"{name}: max abs error {error:.3e} in float32, the naive ops' {naive_error:.3e}"
    )


def test_the_sweep_draws_every_variant() -> None:
    for mode in CASES_PER_MODE:
        cases = [case for case in EVERY_CASE if case[0].mode == mode]
        variants = [v for _, v, _ in cases]
        cell = "LSTM" if mode == "LSTM" else "GRU"
        assert {str(v["layer_norm"]) for v in variants} == {str(p) for p in LAYER_NORM[cell]}, mode
        for key in ("recurrent_dropout", "weight_dropout") + (("peephole",) if mode == "LSTM" else ()):
            assert any(v[key] for v in variants) and not all(v[key] for v in variants), (mode, key)
        assert {str(v["zoneout"]) for v in variants} == {str(z) for z in ZONEOUT[cell]}, mode
        assert {t for _, _, t in cases} == {True, False}
        assert any(c.packed for c, _, _ in cases) and any(c.lengths and not c.packed for c, _, _ in cases)
        assert {c.dtype for c, _, _ in cases} == {torch.float32, torch.float64}
    assert any(c.proj_size for c, _, _ in EVERY_CASE)


FULL = dict(layer_norm=True, peephole=True, recurrent_dropout=0.2, zoneout=(0.2, 0.1))


@pytest.mark.parametrize(
    ("batch", "hidden", "steps", "variant"),
    [
        (48, 32, 5, dict(layer_norm=True, recurrent_dropout=0.2, zoneout=0.2)),
        (48, 32, 5, dict(recurrent_dropout=0.2, zoneout=0.2)),
        (48, 10, 5, dict(recurrent_dropout=0.2, zoneout=0.2)),
        (4, 256, 5, dict(recurrent_dropout=0.2, zoneout=0.1)),
        (4, 64, 5, dict(layer_norm=("hh",))),
        (48, 32, 12, dict(layer_norm=True)),
    ],
    ids=[
        "sequences-layer-norm",
        "sequences",
        "short-rows",
        "units",
        "layer-norm-one-thread",
        "input-layer-norm-blocks",
    ],
)
@pytest.mark.parametrize("mode", ["LSTM", "LSTM-proj", "GRU", "RNN_TANH"])
def test_threads_split_sequences_or_units_like_naive(batch, hidden, steps, variant, mode):
    """Two threads take blocks of whole sequences (always with layer norm, which reads a whole row),
    or slices of the hidden units of every sequence (4 of them), meeting after every phase of a step.
    The backward of the input projection's layer norm sums blocks of rows on each thread (576
    rows in the last case), then the blocks' sums. An Elman cell's rows of a step lie end to end:
    one run where every sequence is alive (the first step here), row by row past a length (H = 10:
    a row ends inside a vector)."""
    mode, proj = mode.removesuffix("-proj"), 5 if mode.endswith("-proj") else 0
    config = Config(
        mode=mode, input_size=6, hidden_size=hidden, num_layers=1, bidirectional=True, bias=True,
        batch_first=False, proj_size=proj, batch=batch, steps=steps, dtype=torch.float64, unbatched=False,
        with_hx=True,
    )  # fmt: skip
    config.lengths = torch.randint(1, steps + 1, (batch,), generator=torch.Generator().manual_seed(1)).tolist()
    config.lengths[0] = steps
    variant = {**variant, "peephole": True} if mode == "LSTM" else variant
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        actual = results(config, variant, True, "cpu", torch.float64)
        expected = results(config, variant, True, "naive", torch.float64)
    finally:
        torch.set_num_threads(threads)
    for (name, a), (_, e) in zip(actual, expected, strict=True):
        assert_close(name, a, e)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(rnnkit.LSTM, dict(proj_size=3, **FULL)), (rnnkit.GRU, dict(layer_norm=True, zoneout=0.2)), (rnnkit.RNN, {})],
)
def test_without_gradients_the_results_are_the_same(cls, kwargs):
    """No gradient wanted: the kernels keep one step of what the backward reads (two of m h), same numbers."""
    torch.manual_seed(0)
    net = cls(6, 8, num_layers=2, backend="cpu", **kwargs).eval()
    x = torch.randn(7, 5, 6)
    with torch.no_grad():
        light = net(x, all_states=True)
    full = net(x, all_states=True)
    for a, b in zip(torch.utils._pytree.tree_leaves(light), torch.utils._pytree.tree_leaves(full), strict=True):
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("mode", ["GRU", "RNN_TANH"])
@pytest.mark.parametrize("biases", ["b_hh", "b_ih", "both"])
@pytest.mark.parametrize("keywords", [dict(zoneout=0.3), dict(recurrent_dropout=0.3), dict(layer_norm=("hh",))])
def test_direction_ops_take_either_bias_like_naive(mode, biases, keywords):
    """The fused direction ops with b_ih, b_hh or both (the modules give both or neither): where a gate's
    a and u are only summed, the kernels add b_hh to a, so each bias alone must land where it belongs."""
    torch.manual_seed(3)
    gates = GATES[mode]
    T, B, I, H = 6, 4, 5, 7
    x, h0 = torch.randn(T, B, I, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    w_ih, w_hh = torch.randn(gates * H, I, dtype=torch.float64), torch.randn(gates * H, H, dtype=torch.float64)
    b_ih, b_hh = torch.randn(gates * H, dtype=torch.float64), torch.randn(gates * H, dtype=torch.float64)
    weights = (w_ih, w_hh, None if biases == "b_hh" else b_ih, None if biases == "b_ih" else b_hh)
    variant = rnnkit.variants.variant_of(mode, "test", keywords)
    extras = ops.Extras(ln_hh_weight=torch.rand(gates * H, dtype=torch.float64) + 0.5 if variant.layer_norm else None)
    mask, zone = ops.variant_ops.noise(variant, True, T, B, (H,), x)
    fused = ops.variant_direction(mode, "cpu")(mode, x, (h0,), weights, extras, mask, zone)
    naive = ops.variant_direction(mode, "naive")(mode, x, (h0,), weights, extras, mask, zone)
    for a, b in zip(torch.utils._pytree.tree_leaves(fused), torch.utils._pytree.tree_leaves(naive), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(
    "keywords",
    [dict(recurrent_dropout=0.3), dict(zoneout=0.2), dict(recurrent_dropout=0.4, zoneout=0.1), dict(layer_norm=True)],
    ids=["dropout", "zoneout", "both", "no-masks"],
)
def test_drawn_ops_draw_the_masks_noise_draws(mode, training, keywords):
    """``*_variant_drawn`` (eager calls) draws its masks in C++: the same ones ``ops/variant.py``'s
    ``noise`` draws from the same seed (recurrent dropout's first, then zoneout's per state; zoneout's
    probability in evaluation), so its results equal the direction op's given ``noise``'s masks."""
    torch.manual_seed(5)
    lstm = mode == "LSTM"
    if lstm and "zoneout" in keywords:
        keywords = {**keywords, "zoneout": (0.15, keywords["zoneout"])}  # z_c differs from z_h
    cls, _, mode_kwargs = MODES[mode]
    net = cls(5, 7, backend="cpu", **mode_kwargs, **keywords)
    x = torch.randn(6, 3, 5)
    states = tuple(torch.randn(3, 7) for _ in range(2 if lstm else 1))
    weights, extras, variant = net._weights()[0], net._extras()[0], net.variant
    torch.manual_seed(11)
    mask, zone = ops.variant_ops.noise(variant, training, 6, 3, (7,) * len(states), x)
    given = ops.variant_direction(mode, "cpu")(mode, x, states, weights, extras, mask, zone)
    torch.manual_seed(11)
    drawn = ops.VARIANT_DRAWN_OPS[mode, "cpu"](mode, variant, training, x, states, weights, extras)
    for a, b in zip(torch.utils._pytree.tree_leaves(drawn), torch.utils._pytree.tree_leaves(given), strict=True):
        assert torch.equal(a, b)


def test_without_gradients_the_lstm_keeps_one_step():
    torch.manual_seed(0)
    net = rnnkit.LSTM(6, 8, proj_size=3, backend="cpu", **FULL)
    with torch.no_grad():
        saved = torch.ops.rnnkit.lstm_variant_forward(
            torch.zeros(7, 5, 6), net.weight_ih_l0, None, None, net.ln_ih_weight_l0, torch.zeros(5, 3),
            torch.zeros(5, 8), net.weight_hh_l0, net.weight_hr_l0, net.ln_hh_weight_l0, net.ln_c_weight_l0,
            net.ln_c_bias_l0, net.weight_ch_l0, None, None, None, None, False, False,
        )  # fmt: skip
    assert [tuple(t.shape[:1]) for t in saved[4:9]] == [(2,), (1,), (1,), (1,), (1,)]  # hm keeps two, the rest one
    assert [t.numel() for t in saved[13:]] == [0, 0]  # nor the input projection's layer norm


@pytest.mark.parametrize(
    ("cls", "op", "kwargs"),
    [
        (rnnkit.LSTM, "lstm_variant_forward", dict(proj_size=3, layer_norm=True, peephole=True, zoneout=0.1)),
        (rnnkit.LSTM, "lstm_variant_forward", dict(peephole=True)),
        (rnnkit.GRU, "gru_variant_forward", dict(layer_norm=True, zoneout=0.1)),
        (rnnkit.RNN, "rnn_variant_forward", dict(layer_norm=True, nonlinearity="relu")),
    ],
)
def test_torch_compile_and_export_see_one_op(cls, op, kwargs):
    torch.manual_seed(0)
    model = cls(5, 7, num_layers=2, bidirectional=True, backend="cpu", **kwargs).eval()
    assert_compiles_like_eager(model, torch.randn(6, 3, 5, requires_grad=True))
    x = torch.randn(6, 3, 5)
    program = torch.export.export(model, (x,))
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert targets.count(f"rnnkit.{op}.default") == 4
    torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (rnnkit.LSTM, dict(layer_norm=("hh",), peephole=True, zoneout=0.1)),
        (rnnkit.GRU, dict(layer_norm=("hh",))),
        (rnnkit.RNN, dict(layer_norm=("ih",), zoneout=0.2)),
    ],
)
def test_frozen_parameters_and_absent_ones_get_the_naive_gradients(cls, kwargs):
    """Frozen parameters beside absent optional ones (no gain where layer norm is off): the ops'
    C++ autograd formulas learn which inputs want a gradient from the tensors given, so an absent
    one shifts the others' places; each parameter still gets the naive ops' gradient, or none."""
    nets = []
    for backend in ("cpu", "naive"):
        torch.manual_seed(0)
        net = cls(5, 7, num_layers=2, backend=backend, dtype=torch.float64, **kwargs).eval()
        for name, parameter in net.named_parameters():
            parameter.requires_grad_(not name.startswith(("weight_hh_l0", "ln_hh_weight_l1", "bias_ih_l1")))
        output, final = net(torch.randn(6, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
        (output.sum() + sum(f.sum() for f in as_tuple(final))).backward()
        nets.append(net)
    for (name, fused), (_, naive) in zip(nets[0].named_parameters(), nets[1].named_parameters(), strict=True):
        assert (fused.grad is None) == (naive.grad is None), name
        if naive.grad is not None:
            torch.testing.assert_close(fused.grad, naive.grad, rtol=0, atol=1e-10, msg=name)


def test_torch_compile_draws_the_eager_masks():
    """In training, a compiled net draws its masks by their specification (ops/masks.py, traced) and
    an eager one in the variant ops (C++): the same seed gives the same masks, so the same output."""
    torch.manual_seed(0)
    model = rnnkit.LSTM(
        5, 7, num_layers=2, bidirectional=True, backend="cpu", zoneout=(0.2, 0.1), recurrent_dropout=0.3
    )
    x = torch.randn(6, 3, 5)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.manual_seed(42)
    eager, _ = model(x)
    torch.manual_seed(42)
    traced, _ = compiled(x)
    assert torch.equal(eager, traced)


# Each variant backward op, and where its flag input_grad lies among its arguments (state_grad follows).
VARIANT_BACKWARDS = [
    (rnnkit.LSTM, "lstm_variant_backward", 7),
    (rnnkit.GRU, "gru_variant_backward", 5),
    (rnnkit.RNN, "rnn_variant_backward", 5),
]
VARIANT_KWARGS = pytest.mark.parametrize(
    "kwargs", [dict(zoneout=0.1), dict(layer_norm=True)], ids=["zoneout", "layer-norm"]
)


@pytest.mark.parametrize(("cls", "name", "at"), VARIANT_BACKWARDS)
@VARIANT_KWARGS
def test_an_input_without_gradient_is_not_differentiated(cls, name, at, kwargs):
    """The ops make the input projection (and its layer norm) themselves: a first layer's x without
    a gradient gets none, and the weights' gradients are the same."""
    torch.manual_seed(0)
    model = cls(5, 7, num_layers=2, backend="cpu", **kwargs).eval()
    assert_frozen_input_not_differentiated(model, torch.randn(6, 3, 5), OpCalls(name), at)


@pytest.mark.parametrize(("cls", "name", "at"), VARIANT_BACKWARDS)
@VARIANT_KWARGS
def test_a_state_without_gradient_is_not_differentiated(cls, name, at, kwargs):
    """h0 without a gradient gets none, the last step's product into it skipped (zoneout's share of
    dh_t too), and the weights' gradients are the same."""
    torch.manual_seed(0)
    model = cls(5, 7, num_layers=2, backend="cpu", **kwargs).eval()
    assert_frozen_state_not_differentiated(model, torch.randn(6, 3, 5), OpCalls(name), at + 1, result_at=4)


@pytest.mark.parametrize("name", ["lstm_variant_forward", "gru_variant_forward", "rnn_variant_forward"])
@pytest.mark.parametrize("layer_norm", [False, True], ids=["plain-input", "layer-normed-input"])
@pytest.mark.parametrize("save", [False, True], ids=["inference", "training"])
def test_the_fake_forwards_give_the_kernels_shapes(name, layer_norm, save):
    """The fake implementation of each forward op gives the shapes its kernel returns, with and
    without layer norm on the input projection, keeping every step for a backward or not."""
    T, B, I, H = 4, 3, 5, 6
    G = {"lstm": 4, "gru": 3, "rnn": 1}[name.split("_")[0]] * H
    x, w_ih, bias, ln_ih = (
        torch.randn(T, B, I),
        torch.randn(G, I),
        torch.randn(G),
        torch.ones(G) if layer_norm else None,
    )
    h0, w_hh, ln = torch.randn(B, H), torch.randn(G, H), torch.ones(G)
    keep, mask = torch.full((T, B, H), 0.5), torch.ones(B, H)
    if name == "lstm_variant_forward":
        states_and_weights = (h0, h0, w_hh, None, ln, None, None, torch.randn(3 * H))
        args = (x, w_ih, bias, bias, ln_ih, *states_and_weights, mask, keep, keep, None, False, save)
    else:
        flags = (False, save) if name[0] == "r" else (save,)
        args = (x, w_ih, bias, ln_ih, h0, w_hh, torch.randn(G), ln, mask, keep, None, False, *flags)
    op = getattr(torch.ops.rnnkit, name)
    with FakeTensorMode() as mode:
        fakes = op(*(mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args))
    assert [tuple(f.shape) for f in fakes] == [tuple(t.shape) for t in op(*args)]


def test_the_ops_check_their_arguments():
    x, w_ih, h0, c0, w_hh = (
        torch.randn(3, 2, 5),
        torch.randn(16, 5),
        torch.zeros(2, 4),
        torch.zeros(2, 4),
        torch.randn(16, 4),
    )
    op = torch.ops.rnnkit.lstm_variant_forward

    def lstm(*extras, w_ih=w_ih, b_ih=None, b_hh=None, ln_ih=None):
        return op(x, w_ih, b_ih, b_hh, ln_ih, h0, c0, w_hh, None, *extras, None, False)

    with pytest.raises(RuntimeError, match=r"expected ln_hh_weight of shape \[16\], got \[4\]"):
        lstm(torch.ones(4), None, None, None, None, None, None)
    with pytest.raises(RuntimeError, match="layer norm on c takes both ln_c_weight and ln_c_bias"):
        lstm(None, torch.ones(4), None, None, None, None, None)
    with pytest.raises(RuntimeError, match=r"expected keep_h of shape \[3, 2, 4\], got \[3, 2, 5\]"):
        lstm(None, None, None, None, None, torch.ones(3, 2, 5), None)
    with pytest.raises(RuntimeError, match=r"expected dropout_mask of dtype Float"):
        lstm(None, None, None, None, torch.ones(2, 4, dtype=torch.float64), None, None)
    with pytest.raises(RuntimeError, match=r"expected w_ih of shape \[16, 5\], got \[16, 6\]"):
        lstm(*[None] * 7, w_ih=torch.randn(16, 6))
    with pytest.raises(RuntimeError, match=r"expected w_ih of shape \(4\*H, I\), got \[16\]"):
        lstm(*[None] * 7, w_ih=torch.randn(16))
    with pytest.raises(RuntimeError, match=r"expected b_ih of shape \[16\], got \[4\]"):
        lstm(*[None] * 7, b_ih=torch.ones(4))
    with pytest.raises(RuntimeError, match=r"expected b_hh of shape \[16\], got \[4\]"):
        lstm(*[None] * 7, b_ih=torch.ones(16), b_hh=torch.ones(4))
    with pytest.raises(RuntimeError, match=r"expected ln_ih_weight of shape \[16\], got \[5\]"):
        lstm(*[None] * 7, ln_ih=torch.ones(5))
    gru = torch.ops.rnnkit.gru_variant_forward
    with pytest.raises(RuntimeError, match=r"gru_variant_forward: expected xw of shape \[3, 2, 12\], got \[3, 2, 16\]"):
        gru(x, w_ih, None, None, h0, torch.randn(12, 4), None, None, None, None, None, False)
    with pytest.raises(RuntimeError, match=r"rnn_variant_forward: expected b_hh of shape \[4\], got \[5\]"):
        torch.ops.rnnkit.rnn_variant_forward(x, w_ih[:4], None, None, h0, torch.randn(4, 4), torch.ones(5), None, None,
                                            None, None, False, False)  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (rnnkit.LSTMCell, dict(layer_norm=True, peephole=True, zoneout=(0.2, 0.1))),
        (rnnkit.GRUCell, dict(layer_norm=True, zoneout=0.3)),
        (rnnkit.RNNCell, dict(layer_norm=("hh",), nonlinearity="relu")),
    ],
)
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_cell_runs_its_step_on_the_compiled_kernels_like_naive(cls, kwargs, training):
    torch.manual_seed(0)
    fused = cls(4, 6, backend="cpu", dtype=torch.float64, **kwargs).train(training)
    naive = cls(4, 6, backend="naive", dtype=torch.float64, **kwargs).train(training)
    naive.load_state_dict(fused.state_dict())
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for cell in (fused, naive):
        torch.manual_seed(5)
        state = cell(x)
        state = state if isinstance(state, tuple) else (state,)
        results.append((*state, *torch.autograd.grad(sum(s.sum() for s in state), [x, *cell.parameters()])))
    for a, e in zip(*results, strict=True):
        assert_close("cell", a, e)
