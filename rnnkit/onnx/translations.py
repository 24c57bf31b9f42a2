"""The translations of the compiled CPU kernels' ops into ONNX's LSTM, GRU and RNN operators."""

from __future__ import annotations

from typing import Any

import torch

# torch's gate blocks in ONNX's order, by cell.
GATE_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2)}


def translations() -> dict[Any, Any]:
    """The ops of the compiled CPU kernels and the onnxscript functions that write them as ONNX nodes.

    Each writes one direction of one layer as one node. ``export`` passes them to ``torch.onnx.export``;
    a direct call of ``program = torch.onnx.export(model, args, dynamo=True,
    custom_translation_table=rnnkit.onnx.translations())`` followed by
    ``rnnkit.onnx.graph.optimize(program.model)`` gives the same graph when the model's rnnkit
    modules run the ``"cpu"`` backend (``"auto"`` may pick torch's kernels instead).
    """
    from onnxscript import opset18 as op

    def reordered(weight, mode, hidden):
        """``weight``'s gate blocks (rows) in ONNX's order; the exporter folds it into the initializer."""
        order = GATE_ORDER.get(mode, (0,))
        rows = [gate * hidden + unit for gate in order for unit in range(hidden)]
        return op.Gather(weight, op.Constant(value_ints=rows), axis=0)

    def node_inputs(mode, x, w_ih, w_hh, b_ih, b_hh, lengths):
        hidden = w_hh.shape[1]
        w = op.Unsqueeze(reordered(w_ih, mode, hidden), [0])
        r = op.Unsqueeze(reordered(w_hh, mode, hidden), [0])
        b = None
        if b_ih is not None:
            b = op.Unsqueeze(op.Concat(reordered(b_ih, mode, hidden), reordered(b_hh, mode, hidden), axis=0), [0])
        sequence_lens = None if lengths is None else op.Cast(lengths, to=6)  # int32, as ONNX asks
        return hidden, (x, w, r, b, sequence_lens)

    def direction(reverse):
        return "reverse" if reverse else "forward"

    # A state comes (B, H), or (1, B, H) from a net of one layer and direction: ONNX's operators
    # take and give (directions, B, H), and the op's final states have the shape of its states.
    def stacked(state):
        return state if len(state.shape) == 3 else op.Unsqueeze(state, [0])

    def shaped_as(final, state):
        return final if len(state.shape) == 3 else op.Squeeze(final, [0])

    # Each returns the op's outputs: output (T, B, H), the final states, then what the
    # backward would read, which nothing in an inference graph uses: stand-ins that the exporter
    # prunes. Each must be a value of its own, since the exporter gives it that output's shape.
    def unused(output, count):
        return tuple(op.Identity(output) for _ in range(count))

    def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, lengths=None, reverse=False, save=True):
        hidden, inputs = node_inputs("LSTM", x, w_ih, w_hh, b_ih, b_hh, lengths)
        y, y_h, y_c = op.LSTM(*inputs, stacked(h0), stacked(c0), hidden_size=hidden, direction=direction(reverse))
        output = op.Squeeze(y, [1])
        return output, shaped_as(y_h, h0), shaped_as(y_c, c0), *unused(output, 3)

    def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False):
        hidden, inputs = node_inputs("GRU", x, w_ih, w_hh, b_ih, b_hh, lengths)
        y, y_h = op.GRU(*inputs, stacked(h0), hidden_size=hidden, linear_before_reset=1, direction=direction(reverse))
        output = op.Squeeze(y, [1])
        return output, shaped_as(y_h, h0), *unused(output, 3)

    def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, lengths=None, reverse=False, relu=False):
        hidden, inputs = node_inputs("RNN", x, w_ih, w_hh, b_ih, b_hh, lengths)
        y, y_h = op.RNN(
            *inputs,
            stacked(h0),
            hidden_size=hidden,
            activations=["Relu" if relu else "Tanh"],
            direction=direction(reverse),
        )
        output = op.Squeeze(y, [1])
        return output, shaped_as(y_h, h0), *unused(output, 1)

    return {
        torch.ops.rnnkit.lstm_forward.default: lstm_forward,
        torch.ops.rnnkit.gru_forward.default: gru_forward,
        torch.ops.rnnkit.rnn_forward.default: rnn_forward,
    }
