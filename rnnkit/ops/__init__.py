"""Backends and the dispatch from a module's forward to them.

Every cell type (``mode``: LSTM, GRU, RNN_TANH, RNN_RELU) has one *direction op*
per backend with one signature::

    op(x (T, B, I), state, weights, lengths=None, reverse=False) -> (output, final_state)

(see ``ops/lstm/naive.py``). ``rnn_stack`` runs the layers and directions of a
stacked net with it. The ``"torch"`` backend instead hands the whole stack to
torch's fused kernels (``ops/aten.py``). A new backend is one more file per op
folder plus its entries in ``DIRECTION_OPS`` and ``unavailable_reason``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RNNTypeError
from . import aten, compiled
from .gru import cpu as gru_cpu
from .gru.naive import gru, gru_cell
from .lstm import cpu as lstm_cpu
from .lstm.naive import lstm, lstm_cell
from .rnn import cpu as rnn_cpu
from .rnn.naive import rnn, rnn_cell

BACKENDS = ("auto", "naive", "cpu", "triton", "torch")

DIRECTION_OPS: dict[tuple[str, str], Callable] = {
    ("LSTM", "naive"): lstm,
    ("GRU", "naive"): gru,
    ("RNN_TANH", "naive"): partial(rnn, nonlinearity="tanh"),
    ("RNN_RELU", "naive"): partial(rnn, nonlinearity="relu"),
    ("LSTM", "cpu"): lstm_cpu.lstm,
    ("GRU", "cpu"): gru_cpu.gru,
    ("RNN_TANH", "cpu"): partial(rnn_cpu.rnn, nonlinearity="tanh"),
    ("RNN_RELU", "cpu"): partial(rnn_cpu.rnn, nonlinearity="relu"),
}
CPU_DTYPES = (torch.float32, torch.float64)

# One step of each cell in the naive ops: (xw, *states, w_hh, b_hh) -> new states.
NAIVE_CELLS: dict[str, Callable] = {
    "LSTM": lstm_cell,
    "GRU": gru_cell,
    "RNN_TANH": partial(rnn_cell, nonlinearity="tanh"),
    "RNN_RELU": partial(rnn_cell, nonlinearity="relu"),
}


def unavailable_reason(backend: str) -> str | None:
    """None when ``backend`` can run here, else why not. Asking about ``"cpu"`` builds its kernels once."""
    if backend == "cpu":
        return compiled.unavailable_reason()
    if backend == "triton":
        return "the Triton GPU backend is not part of this version"
    return None


def check_backend(backend: str) -> None:
    """Raise ValueError for an unknown backend name, RuntimeError for one not usable here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    reason = unavailable_reason(backend)
    if reason is not None:
        usable = ", ".join(repr(b) for b in BACKENDS if unavailable_reason(b) is None)
        raise RuntimeError(f"backend={backend!r} is not available: {reason}; use one of {usable}")


def resolve_backend(backend: str, x: Tensor, mode: str = "LSTM", varying_lengths: bool = False) -> str:
    """The concrete backend for ``backend`` on ``x``'s device and dtype.

    ``"auto"`` picks the fastest correct backend available, as ``benchmarks/cpu.py``
    measures it on the CPU: the compiled kernels for GRU and RNN, and for LSTM in
    float64 or with varying lengths; for float32 LSTM on padded input, torch's own
    oneDNN LSTM, whose matrix products the compiled kernels do not beat yet.
    Elsewhere (CUDA, other dtypes) torch's fused kernels.
    """
    on_cpu = x.device.type == "cpu" and x.dtype in CPU_DTYPES
    if backend == "auto":
        onednn_lstm = mode == "LSTM" and x.dtype == torch.float32 and not varying_lengths
        return "cpu" if on_cpu and not onednn_lstm and compiled.unavailable_reason() is None else "torch"
    if backend == "cpu" and not on_cpu:
        raise RNNTypeError(
            f"backend='cpu' runs float32 and float64 tensors on the CPU, got {x.dtype} on {x.device}; "
            "use backend='auto' or 'torch'"
        )
    return backend


def rnn_stack(
    mode: str,
    backend: str,
    x: Tensor,
    hx: tuple[Tensor, ...],
    weights: list[tuple[Tensor | None, ...]],
    lengths: Tensor | None,
    *,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run a stacked (and optionally bidirectional) recurrent net.

    Args:
        mode: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``.
        backend: a concrete backend (see ``resolve_backend``).
        x: (T, B, I) padded input.
        hx: initial states, each (L*D, B, *): (h_0,) or (h_0, c_0).
        weights: L*D weight tuples in torch's order (layer-major, forward then reverse).
        lengths: (B,) int64 steps of each sequence, or None when all run T steps.
        dropout: probability of zeroing each output of every layer but the last.

    Returns:
        output (T, B, D*H_out) of the last layer, zero past each length;
        final states, each (L*D, B, *).
    """
    if backend == "torch":
        return aten.rnn_stack(
            mode, x, hx, weights, lengths, bidirectional=bidirectional, dropout=dropout, training=training
        )
    op = DIRECTION_OPS[mode, backend]
    directions = 2 if bidirectional else 1
    num_layers = len(weights) // directions
    finals: list[list[Tensor]] = [[] for _ in hx]
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            k = layer * directions + direction
            out, state = op(x, tuple(s[k] for s in hx), weights[k], lengths, reverse=direction == 1)
            outputs.append(out)
            for final, s in zip(finals, state):
                final.append(s)
        x = torch.cat(outputs, dim=2) if directions == 2 else outputs[0]
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    return x, tuple(torch.stack(f) for f in finals)


def cell_step(
    mode: str, backend: str, x: Tensor, hx: tuple[Tensor, ...], weights: tuple[Tensor | None, ...]
) -> tuple[Tensor, ...]:
    """One step of a cell: x (B, I), hx states (B, *), weights (w_ih, w_hh, b_ih, b_hh).

    Returns the new states, each (B, *).
    """
    if backend in ("torch", "cpu"):  # one step has no time loop to fuse: torch's cell kernels serve
        return aten.cell(mode, x, hx, weights)
    w_ih, w_hh, b_ih, b_hh = weights
    return NAIVE_CELLS[mode](F.linear(x, w_ih, b_ih), *hx, w_hh, b_hh)
