"""The bad-input table of DESIGN.md: each error names what was expected and what came,
and is an instance of what torch.nn raises for the same mistake."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell


def raises(kind, *fragments):
    """pytest.raises for ``kind`` whose message contains every fragment (plain text, not regex)."""
    return pytest.raises(kind, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# --- input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
def test_wrong_feature_size_is_runtime_error_like_torch(cls):
    model = cls(28, 10, batch_first=True)
    with raises(RuntimeError, "expected input with 28 features (input_size=28), got 27"):
        model(torch.randn(4, 5, 27))
    with raises(ValueError, "28 features", "got 27"):
        model(torch.randn(5, 27))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4, 5)])
def test_wrong_input_dims(shape):
    with raises(ValueError, "3-D (batched) or 2-D (unbatched)", f"got {len(shape)}-D"):
        LSTM(4, 5)(torch.randn(shape))


@pytest.mark.parametrize("shape", [(0, 2, 4), (3, 0, 4)])
def test_empty_input(shape):
    with raises(ValueError, "non-empty input", str(shape)):
        GRU(4, 5)(torch.randn(shape))


def test_input_not_a_tensor():
    with raises(TypeError, "input to be a Tensor", "list"):
        LSTM(2, 3)([[1.0, 2.0]])


def test_dtype_mismatch_names_both_and_the_fix():
    model = LSTM(4, 5)
    with raises(TypeError, "torch.float32", "torch.float64", ".to("):
        model(torch.randn(3, 2, 4, dtype=torch.float64))
    with raises(ValueError, "h_0", "torch.float32", "torch.float64"):
        model(torch.randn(3, 2, 4), (torch.zeros(1, 2, 5, dtype=torch.float64), torch.zeros(1, 2, 5)))


def test_device_mismatch_names_both():
    model = GRU(4, 5, device="meta")
    with raises(TypeError, "meta", "cpu"):
        model(torch.randn(3, 2, 4))


# --- states ------------------------------------------------------------------------------------


def test_seed_003_fixed_batch_state_on_smaller_last_batch():
    """h_0 built with batch 128 while the last batch of MNIST has 96: a clear message."""
    model = LSTM(28, 10, 2, batch_first=True)
    h0 = torch.zeros(2, 128, 10)
    c0 = torch.zeros(2, 128, 10)
    with raises(RuntimeError, "h_0 of shape (2, 96, 10)", "got (2, 128, 10)", "batch dimension", "96"):
        model(torch.randn(96, 28, 28), (h0, c0))
    with raises(ValueError, "batch dimension"):
        model(torch.randn(96, 28, 28), (h0, c0))


@pytest.mark.parametrize(
    ("model", "hx", "expected", "got"),
    [
        (LSTM(3, 5, proj_size=2), (torch.zeros(1, 4, 5), torch.zeros(1, 4, 5)), "h_0 of shape (1, 4, 2)", "(1, 4, 5)"),
        (LSTM(3, 5, num_layers=2), (torch.zeros(2, 4, 5), torch.zeros(1, 4, 5)), "c_0 of shape (2, 4, 5)", "(1, 4, 5)"),
        (GRU(3, 5, bidirectional=True), torch.zeros(1, 4, 5), "h_0 of shape (2, 4, 5)", "(1, 4, 5)"),
        (RNN(3, 5), torch.zeros(4, 5), "h_0 of shape (1, 4, 5)", "(4, 5)"),
    ],
)
def test_state_shape(model, hx, expected, got):
    with raises(RuntimeError, expected, f"got {got}"):
        model(torch.randn(7, 4, 3), hx)


def test_unbatched_state_must_be_unbatched():
    with raises(ValueError, "h_0 of shape (1, 5)", "got (1, 1, 5)"):
        GRU(3, 5)(torch.randn(7, 3), torch.zeros(1, 1, 5))


@pytest.mark.parametrize("hx", [torch.zeros(1, 2, 5), (torch.zeros(1, 2, 5),), [torch.zeros(1, 2, 5)] * 3])
def test_lstm_hx_must_be_a_pair(hx):
    with raises(TypeError, "pair (h_0, c_0)"):
        LSTM(3, 5)(torch.randn(4, 2, 3), hx)


@pytest.mark.parametrize("cls", [GRU, RNN])
def test_gru_rnn_hx_must_not_be_a_pair(cls):
    with raises(TypeError, "single tensor h_0", "tuple"):
        cls(3, 5)(torch.randn(4, 2, 3), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)))


# --- lengths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lengths", "fragments"),
    [
        ([3, 2], ["one entry per sequence", "expected 3, got 2"]),
        ([3, 0, 2], ["[1, 5]", "from 0"]),
        ([3, -1, 2], ["[1, 5]", "from -1"]),
        ([3, 6, 2], ["[1, 5]", "to 6"]),
        ([3, 2.5, 2], ["integers", "2.5"]),
        (torch.tensor([3.0, 2.0, 1.0]), ["integers", "torch.float32"]),
        (torch.tensor([[3, 2, 1]]), ["1-D", "(1, 3)"]),
        ("abc", ["list of ints or a 1-D integer tensor", "str"]),
    ],
)
def test_bad_lengths(lengths, fragments):
    with raises(ValueError, *fragments):
        LSTM(2, 4)(torch.randn(5, 3, 2), lengths=lengths)


def test_lengths_with_packed_input():
    packed = pack_padded_sequence(torch.randn(5, 3, 2), [5, 3, 2])
    with raises(ValueError, "PackedSequence", "lengths"):
        GRU(2, 4)(packed, lengths=[5, 3, 2])


# --- constructor -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kind", "fragments"),
    [
        (lambda: LSTM(0, 5), ValueError, ["input_size", "greater than zero", "got 0"]),
        (lambda: LSTM(3, -1), ValueError, ["hidden_size", "got -1"]),
        (lambda: GRU(3, 5, num_layers=0), ValueError, ["num_layers", "got 0"]),
        (lambda: RNN(3, 5.0), TypeError, ["hidden_size", "int", "float"]),
        (lambda: LSTM(3, 5, dropout=1.5), ValueError, ["dropout", "[0, 1]", "1.5"]),
        (lambda: LSTM(3, 5, dropout=-0.1), ValueError, ["dropout", "-0.1"]),
        (lambda: LSTM(3, 5, proj_size=5), ValueError, ["proj_size", "smaller than hidden_size (5)", "got 5"]),
        (lambda: LSTM(3, 5, proj_size=-1), ValueError, ["proj_size", "got -1"]),
        (lambda: GRU(3, 5, proj_size=2), ValueError, ["proj_size", "only supported by LSTM", "GRU"]),
        (lambda: RNN(3, 5, proj_size=2), ValueError, ["proj_size", "RNN"]),
        (lambda: RNN(3, 5, nonlinearity="sigmoid"), ValueError, ["'tanh' or 'relu'", "sigmoid"]),
        (lambda: LSTM(3, 5, backend="fast"), ValueError, ["backend", "'naive'", "'fast'"]),
        (lambda: LSTMCell(3, 5, backend="fast"), ValueError, ["backend", "'fast'"]),
        (lambda: LSTM(3, 5, bias=1), TypeError, ["bias", "bool", "int"]),
    ],
)
def test_constructor(make, kind, fragments):
    with raises(kind, *fragments):
        make()


def test_unavailable_backend_says_what_to_use():
    for backend in ("cpu", "triton"):
        reason = rnnkit.ops.unavailable_reason(backend)
        if reason is not None:
            with raises(RuntimeError, f"backend={backend!r} is not available", "'naive'", "'torch'"):
                LSTM(3, 5, backend=backend)


def test_dropout_on_one_layer_warns():
    with pytest.warns(UserWarning, match="num_layers=1"):
        GRU(3, 5, dropout=0.5)


# --- load_state_dict ---------------------------------------------------------------------------


def test_load_state_dict_wrong_shape_names_parameter():
    with raises(RuntimeError, "weight_ih_l0", "size mismatch"):
        LSTM(3, 5).load_state_dict(nn.LSTM(4, 5).state_dict())


# --- cells -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, RNNCell])
def test_cells(cls):
    cell = cls(4, 6)
    with raises(RuntimeError, "4 features", "got 3"):
        cell(torch.randn(2, 3))
    with raises(ValueError, "2-D (batched) or 1-D (unbatched)", "got 3-D"):
        cell(torch.randn(2, 3, 4))
    with raises(ValueError, "non-empty", "(0, 4)"):
        cell(torch.randn(0, 4))
    with raises(TypeError, "torch.float64"):
        cell(torch.randn(2, 4, dtype=torch.float64))
    state = torch.zeros(3, 6)
    hx = (state, state) if cls is LSTMCell else state
    with raises(RuntimeError, "of shape (2, 6)", "got (3, 6)", "batch dimension (dim 0)"):
        cell(torch.randn(2, 4), hx)
    bad_hx = state if cls is LSTMCell else (state, state)
    with pytest.raises(TypeError):
        cell(torch.randn(3, 4), bad_hx)
