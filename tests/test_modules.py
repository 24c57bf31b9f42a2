"""Module behaviour beyond the parity sweep: construction, state dicts, cells, dropout, autograd."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit
from rnnkit import ops

from .utils import assert_close

PAIRS = [
    (rnnkit.LSTM, nn.LSTM, {}),
    (rnnkit.LSTM, nn.LSTM, {"proj_size": 3, "num_layers": 2, "bidirectional": True}),
    (rnnkit.GRU, nn.GRU, {"num_layers": 3, "bias": False, "batch_first": True, "dropout": 0.25}),
    (rnnkit.RNN, nn.RNN, {"nonlinearity": "relu", "bidirectional": True}),
]
CELL_PAIRS = [
    (rnnkit.LSTMCell, nn.LSTMCell, {}),
    (rnnkit.GRUCell, nn.GRUCell, {"bias": False}),
    (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    (rnnkit.RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
]
ALL_PAIRS = PAIRS + CELL_PAIRS
IDS = [f"{ours.__name__}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for ours, _, kw in ALL_PAIRS]


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), ALL_PAIRS, ids=IDS)
def test_same_seed_same_parameters_names_and_repr(ours, theirs, kwargs):
    torch.manual_seed(7)
    a = ours(5, 8, **kwargs)
    torch.manual_seed(7)
    b = theirs(5, 8, **kwargs)
    assert list(a.state_dict()) == list(b.state_dict())
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name
    # torch.nn.RNN's repr omits a non-default nonlinearity; rnnkit shows it
    assert repr(a) == repr(b).replace("RNN(5, 8", f"RNN(5, 8{', nonlinearity=relu' * (a.mode == 'RNN_RELU')}", 1)


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), ALL_PAIRS, ids=IDS)
def test_state_dict_round_trips_and_twins(ours, theirs, kwargs):
    reference = theirs(5, 8, dtype=torch.float64, **kwargs)
    model = ours(5, 8, dtype=torch.float64, **kwargs)
    model.load_state_dict(reference.state_dict())
    back = theirs(5, 8, dtype=torch.float64, **kwargs)
    back.load_state_dict(model.state_dict())
    for (name, p), q in zip(reference.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(p, q), name

    reference.eval()
    twin = ours.from_torch(reference, backend="naive")
    assert twin.backend == "naive" and not twin.training
    assert next(twin.parameters()).dtype == torch.float64
    again = twin.to_torch()
    assert type(again) is theirs and not again.training
    assert repr(again) == repr(reference)
    for (name, p), q in zip(reference.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_from_torch_checks_the_class():
    with pytest.raises(TypeError, match=r"expects a torch\.nn\.LSTM, got GRU"):
        rnnkit.LSTM.from_torch(nn.GRU(2, 3))


@pytest.mark.parametrize("backend", ["naive", "torch"])
@pytest.mark.parametrize(("ours", "theirs", "kwargs"), CELL_PAIRS, ids=IDS[len(PAIRS) :])
def test_cells_match_torch(ours, theirs, kwargs, backend):
    rng = random.Random(0)
    for dtype in (torch.float32, torch.float64):
        for _ in range(10):
            input_size, hidden, batch = rng.randint(1, 40), rng.randint(1, 40), rng.randint(1, 9)
            reference = theirs(input_size, hidden, dtype=dtype, **kwargs)
            cell = ours.from_torch(reference, backend=backend)
            unbatched = rng.random() < 0.3
            shape = () if unbatched else (batch,)
            x = torch.randn(*shape, input_size, dtype=dtype, requires_grad=True)
            count = 2 if ours is rnnkit.LSTMCell else 1
            states = [torch.randn(*shape, hidden, dtype=dtype, requires_grad=True) for _ in range(count)]
            hx = (states[0], states[1]) if ours is rnnkit.LSTMCell else states[0]
            if rng.random() < 0.3:
                hx = None
            expected, actual = reference(x, hx), cell(x, hx)
            expected = expected if isinstance(expected, tuple) else (expected,)
            actual = actual if isinstance(actual, tuple) else (actual,)
            for a, e in zip(actual, expected, strict=True):
                assert_close("cell state", a, e)
            upstream = [torch.randn_like(e) for e in expected]
            inputs = [x, *(states if hx is not None else [])]
            grads_e = torch.autograd.grad(expected, [*inputs, *reference.parameters()], upstream)
            grads_a = torch.autograd.grad(actual, [*inputs, *cell.parameters()], upstream)
            for a, e in zip(grads_a, grads_e, strict=True):
                assert_close("cell grad", a, e)


@pytest.mark.parametrize("backend", ["naive", "torch", "cpu"])
def test_dropout_between_layers(backend):
    if backend == "cpu" and ops.unavailable_reason("cpu") is not None:
        pytest.skip(f"cpu backend: {ops.unavailable_reason('cpu')}")
    torch.manual_seed(0)
    reference = nn.LSTM(4, 6, num_layers=3, dropout=1.0)
    model = rnnkit.LSTM.from_torch(reference, backend=backend)
    x = torch.randn(5, 2, 4)
    # p = 1 zeroes every input of layers 2 and 3: deterministic, comparable with torch.nn
    torch.testing.assert_close(model(x)[0], reference(x)[0])
    model.dropout = reference.dropout = 0.5
    model.eval()
    reference.eval()
    torch.testing.assert_close(model(x)[0], reference(x)[0])
    model.train()
    torch.manual_seed(1)
    first = model(x)[0]
    torch.manual_seed(2)
    assert not torch.equal(first, model(x)[0])


@pytest.mark.parametrize("backend", ["naive", "cpu"])
def test_backward_in_eval_mode(backend):
    """cuDNN refuses backward in eval mode; every rnnkit backend gives torch.nn's CPU gradients."""
    if backend == "cpu" and ops.unavailable_reason("cpu") is not None:
        pytest.skip(f"cpu backend: {ops.unavailable_reason('cpu')}")
    reference = nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64).eval()
    model = rnnkit.GRU.from_torch(reference, backend=backend)
    assert not model.training
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    packed = pack_padded_sequence(x, [6, 3], enforce_sorted=False)
    expected = torch.autograd.grad(reference(packed)[0].data.sum(), [x, *reference.parameters()])
    actual = torch.autograd.grad(model(x, lengths=[6, 3])[0].sum(), [x, *model.parameters()])
    for a, e in zip(actual, expected, strict=True):
        assert_close("grad", a, e)


def test_double_backward_through_naive_module():
    model = rnnkit.LSTM(3, 4, num_layers=2, proj_size=2, dtype=torch.float64, backend="naive")
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)

    def fn(x):
        output, (h_n, c_n) = model(x, lengths=[5, 2])
        return output.pow(2).sum() + h_n.sum() + c_n.sum()

    assert torch.autograd.gradgradcheck(lambda x: torch.autograd.grad(fn(x), x, create_graph=True)[0], (x,))


def test_packed_sequence_in_and_out():
    model = rnnkit.GRU(3, 4, backend="naive")
    packed = pack_padded_sequence(torch.randn(5, 3, 3), [2, 5, 4], enforce_sorted=False)
    output, _ = model(packed)
    assert type(output) is PackedSequence
    assert torch.equal(output.batch_sizes, packed.batch_sizes)
    assert torch.equal(output.sorted_indices, packed.sorted_indices)
    assert torch.equal(output.unsorted_indices, packed.unsorted_indices)


def test_functional_call_and_all_weights():
    model = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True)
    model.flatten_parameters()
    assert [[p.shape for p in layer] for layer in model.all_weights] == [
        [p.shape for p in layer] for layer in nn.LSTM(3, 4, num_layers=2, bidirectional=True).all_weights
    ]
    zeros = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    output, _ = torch.func.functional_call(model, zeros, (torch.randn(5, 2, 3),))
    assert torch.equal(output, torch.zeros(5, 2, 8))


def test_lengths_equal_to_padded_length_is_the_plain_run():
    model = rnnkit.RNN(3, 4, backend="naive")
    x = torch.randn(5, 2, 3)
    assert torch.equal(model(x)[0], model(x, lengths=torch.tensor([5, 5]))[0])
    assert torch.equal(model(x)[0], model(x, lengths=[5, 5])[0])
