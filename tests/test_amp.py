"""torch.autocast: inside a region a module or cell runs as if converted to the region's dtype."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit

MODULES = [
    (rnnkit.LSTM, {"proj_size": 3, "num_layers": 2, "bidirectional": True}),
    (rnnkit.GRU, {"num_layers": 2, "batch_first": True}),
    (rnnkit.RNN, {"nonlinearity": "relu", "bias": False}),
]
CELLS = [rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.RNNCell]


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def flatten(out):
    """The tensors of a module's or cell's result: a tensor, or nested tuples of them."""
    return [t for part in out for t in flatten(part)] if isinstance(out, tuple) else [out]


def run_both(model, inputs, **kwargs):
    """The model under autocast, and a bfloat16 copy of it on bfloat16 inputs: outputs, then parameter gradients."""
    twin = copy.deepcopy(model).to(torch.bfloat16)
    with autocast():
        ours = model(*inputs, **kwargs)
    theirs = twin(*[t.to(torch.bfloat16) for t in inputs], **kwargs)
    results = []
    for net, out in ((model, ours), (twin, theirs)):
        flat = flatten(out)
        sum(t.float().sum() for t in flat).backward()
        results.append((flat, [p.grad for p in net.parameters()]))
    return results


@pytest.mark.parametrize(("cls", "kwargs"), MODULES, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("backend", ["auto", "naive"])
def test_module_runs_in_the_regions_dtype(cls, kwargs, backend):
    torch.manual_seed(0)
    model = cls(5, 6, backend=backend, **kwargs)
    x = torch.randn(3, 4, 5)
    lengths = [4, 2, 1] if kwargs.get("batch_first") else None
    (ours, our_grads), (theirs, their_grads) = run_both(model, (x,), lengths=lengths)
    for a, e in zip(ours, theirs, strict=True):
        assert a.dtype == torch.bfloat16
        assert torch.equal(a, e)
    for p, a, e in zip(model.parameters(), our_grads, their_grads, strict=True):
        assert p.dtype == a.dtype == torch.float32  # through the casts to the float32 parameters
        assert torch.equal(a, e.float())


@pytest.mark.parametrize("cls", CELLS)
def test_cell_runs_in_the_regions_dtype(cls):
    torch.manual_seed(0)
    (ours, our_grads), (theirs, their_grads) = run_both(cls(5, 6), (torch.randn(3, 5),))
    for a, e in zip(ours, theirs, strict=True):
        assert a.dtype == torch.bfloat16 and torch.equal(a, e)
    for a, e in zip(our_grads, their_grads, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, e.float())


def test_lstm_under_autocast_runs_in_bfloat16_close_to_torch():
    """A mixed-precision script: bfloat16 from a Linear into the LSTM, float32 states, a PackedSequence.

    rnnkit's contract is the region's dtype on any CPU; torch.nn's CPU LSTM returns bfloat16 or
    float32 here depending on the CPU (float32 where it has no bfloat16 instructions, and always
    for a PackedSequence), so only its values are the reference, at bfloat16's precision.
    """
    torch.manual_seed(0)
    ours, linear = rnnkit.LSTM(6, 7, num_layers=2), nn.Linear(5, 6)
    theirs = ours.to_torch()
    x, states = torch.randn(4, 3, 5), (torch.randn(2, 3, 7), torch.randn(2, 3, 7))
    with autocast():
        features = linear(x)
        assert features.dtype == torch.bfloat16
        packed = pack_padded_sequence(features, [4, 2, 3], enforce_sorted=False)
        (out, (h_n, c_n)), (expected, (expected_h, expected_c)) = ours(features, states), theirs(features, states)
        (packed_out, _), (packed_expected, _) = ours(packed, states), theirs(packed, states)
    pairs = [(out, expected), (h_n, expected_h), (c_n, expected_c), (packed_out.data, packed_expected.data)]
    for actual, reference in pairs:
        assert actual.dtype == torch.bfloat16
        torch.testing.assert_close(actual.float(), reference.float(), rtol=2e-2, atol=1e-2)


def test_float64_is_left_alone():
    model = rnnkit.GRU(5, 6, dtype=torch.float64)
    with autocast():
        output, h_n = model(torch.randn(3, 2, 5, dtype=torch.float64))
    assert output.dtype == h_n.dtype == torch.float64


@pytest.mark.parametrize("model", [rnnkit.LSTM(5, 6, backend="cpu"), rnnkit.GRUCell(5, 6, backend="cpu")])
def test_a_backend_without_the_regions_dtype_runs_float32(model):
    """As autocast's float32 ops: the input, here bfloat16 from a Linear, cast up to float32."""
    x = torch.randn(3, 5) if isinstance(model, rnnkit.GRUCell) else torch.randn(3, 2, 5)
    with autocast():
        actual = model(x.bfloat16())
    expected = model(x.bfloat16().float())
    for a, e in zip(flatten(actual), flatten(expected), strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, e)


def test_compiles_under_autocast_without_graph_breaks():
    torch.manual_seed(0)
    model, x = rnnkit.GRU(5, 6, num_layers=2, backend="naive"), torch.randn(3, 2, 5)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with autocast():
        expected, actual = model(x, lengths=[3, 1]), compiled(x, lengths=[3, 1])
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == torch.bfloat16 and torch.equal(a, e)
