"""Backends and the dispatch from a module's forward to them.

Every cell type (``mode``: LSTM, GRU, RNN_TANH, RNN_RELU) has one *direction op*
per backend with one signature::

    op(x (T, B, I), state, weights, lengths=None, reverse=False) -> (output, final_state)

(see ``ops/lstm/naive.py``), or a *layer op* that runs all directions of a layer at
once (the Triton kernels)::

    layer_op(x (T, B, I), states (D, B, *), weights (D tuples), lengths=None) -> (output, final_states)

``rnn_stack`` runs the layers of a stacked net with them. The ``"torch"`` backend
instead hands the whole stack to torch's fused kernels (``ops/aten.py``). A new
backend is one more file per op folder plus its entries in ``DIRECTION_OPS`` (or
``LAYER_OPS``) and ``unavailable_reason``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RNNTypeError
from . import aten, compiled, scan, variant_cpu
from . import variant as variant_ops
from .constant import assume_constant_result
from .gates import GATES
from .gru import cpu as gru_cpu
from .gru.naive import gru, gru_cell
from .lstm import cpu as lstm_cpu
from .lstm import variant_cpu as lstm_variant_cpu
from .lstm.naive import lstm, lstm_cell
from .rnn import cpu as rnn_cpu
from .rnn.naive import rnn, rnn_cell
from .variant import Extras, Variant

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
TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# The direction ops of the variants (``ops/variant.py``'s ``direction``) by (mode, backend) where a
# backend fuses them; the naive ops run the others.
VARIANT_DIRECTION_OPS: dict[tuple[str, str], Callable] = {
    ("LSTM", "cpu"): lstm_variant_cpu.direction,
    **{(mode, "cpu"): variant_cpu.direction for mode in variant_cpu.OPS},
}
# The same, drawing the masks ``ops/variant.py``'s ``noise`` draws themselves (``variant.layer``'s ``drawn``).
VARIANT_DRAWN_OPS: dict[tuple[str, str], Callable] = {
    ("LSTM", "cpu"): lstm_variant_cpu.drawn_direction,
    **{(mode, "cpu"): variant_cpu.drawn_direction for mode in variant_cpu.OPS},
}
# Layer ops of the backends that run a whole layer at once; the Triton ones fill in when
# triton is found usable (``unavailable_reason("triton")``), so tracing never imports.
LAYER_OPS: dict[tuple[str, str], Callable] = {}

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
        return _triton_unavailable_reason()
    return None


def triton_interpreting() -> bool:
    """Whether Triton runs kernels on the CPU (``TRITON_INTERPRET=1``), as the tests do without a GPU."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _triton_unavailable_reason() -> str | None:
    if importlib.util.find_spec("triton") is None:
        return "it needs the triton package (pip install triton)"
    if not torch.cuda.is_available() and not triton_interpreting():
        return "it runs on a CUDA GPU and torch.cuda.is_available() is False"
    if ("LSTM", "triton") not in LAYER_OPS:
        try:
            from .gru.triton import gru_layer
            from .lstm.triton import lstm_layer
            from .rnn.triton import rnn_layer
        except (ImportError, RuntimeError) as error:
            return f"importing its kernels failed ({type(error).__name__}: {error})"
        LAYER_OPS["LSTM", "triton"] = lstm_layer
        LAYER_OPS["GRU", "triton"] = gru_layer
        LAYER_OPS["RNN_TANH", "triton"] = partial(rnn_layer, nonlinearity="tanh")
        LAYER_OPS["RNN_RELU", "triton"] = partial(rnn_layer, nonlinearity="relu")
    return None


def layer_op(mode: str, backend: str) -> Callable:
    """``layer_op(x, states, weights, lengths) -> (output, final_states)`` of "naive", "cpu" or "triton"."""
    if backend not in ("naive", "cpu", "triton"):
        raise ValueError(f"layer_op takes backend 'naive', 'cpu' or 'triton', got {backend!r}")
    if (mode, backend) in LAYER_OPS:
        return LAYER_OPS[mode, backend]
    if (mode, backend) not in DIRECTION_OPS:
        check_backend(backend)  # loads the layer ops of a usable backend, or says why it is not
        return LAYER_OPS[mode, backend]
    return partial(scan.layer, DIRECTION_OPS[mode, backend])


def check_backend(backend: str) -> None:
    """Raise ValueError for an unknown backend name, RuntimeError for one not usable here."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    reason = unavailable_reason(backend)
    if reason is not None:
        usable = ", ".join(repr(b) for b in BACKENDS if unavailable_reason(b) is None)
        raise RuntimeError(f"backend={backend!r} is not available: {reason}; use one of {usable}")


# The compiled CPU kernels give each thread a block of whole sequences when it gets at least
# ROWS_PER_THREAD of them (Tiles::kMinRows in ops/csrc/packed.h); with fewer, the threads split
# the hidden units and meet after every step. There torch's oneDNN LSTM is as fast or faster on
# float32 padded input once a step's recurrent product reaches ONEDNN_STEP_MACS multiply-adds
# (B x G*H x P; benchmarks/cpu.py and its extra rows).
ROWS_PER_THREAD = 8
ONEDNN_STEP_MACS = 1 << 20
# A sequence of fewer than SHORT_STEPS steps has no time loop to fuse: torch's kernels then cost
# less per call, except for fewer than ROWS_PER_THREAD sequences (one token at a time when text is
# generated), where rnnkit's call costs less (benchmarks/cpu.py's last row).
SHORT_STEPS = 2
GATE_COUNTS = {mode: len(gates) for mode, gates in GATES.items()}


def recurrent_macs(mode: str, batch: int, hidden_size: int, proj_size: int = 0) -> int:
    """Multiply-adds of one time step's recurrent product h_{t-1} W_hh^T: B x G*H x P."""
    return batch * GATE_COUNTS[mode] * hidden_size * (proj_size or hidden_size)


def takes_dtype(backend: str, dtype: torch.dtype) -> bool:
    """Whether ``backend`` (as a module names it) runs tensors of ``dtype``: ``"cpu"`` float32 and float64 only."""
    return backend != "cpu" or dtype in CPU_DTYPES


@assume_constant_result
def _threads() -> int:
    # A constant to torch.compile, which cannot trace torch.get_num_threads() (a graph break):
    # a graph compiled before torch.set_num_threads keeps the choice of backend it made.
    return torch.get_num_threads()


def resolve_backend(
    backend: str,
    x: Tensor,
    mode: str = "LSTM",
    varying_lengths: bool = False,
    step_macs: int | None = None,
    batch: int | None = None,
    steps: int | None = None,
) -> str:
    """The concrete backend for ``backend`` on ``x``'s device and dtype.

    ``"auto"`` picks the fastest correct backend available, as ``benchmarks/cpu.py``
    measures it on the CPU: the compiled kernels, except on padded input where torch's own
    kernels are faster:

    - a float32 LSTM whose ``batch`` gives each of torch's threads fewer than
      ``ROWS_PER_THREAD`` sequences and whose step is large (``step_macs``, the multiply-adds
      of one step's recurrent product, at least ``ONEDNN_STEP_MACS``);
    - fewer than ``SHORT_STEPS`` time ``steps``, but for fewer than ``ROWS_PER_THREAD``
      sequences (one generated token).

    Elsewhere (CUDA, other dtypes) torch's fused kernels: the Triton kernels are not chosen by
    ``"auto"`` until ``benchmarks/gpu.py`` has measured them faster.
    """
    on_cpu = _cpu_tensor(x)
    if backend == "auto":
        large_steps = step_macs is not None and step_macs >= ONEDNN_STEP_MACS
        few_rows = batch is not None and batch < ROWS_PER_THREAD * _threads()
        onednn_lstm = mode == "LSTM" and x.dtype == torch.float32 and large_steps and few_rows
        short = steps is not None and steps < SHORT_STEPS
        one_token = batch is not None and batch < ROWS_PER_THREAD
        torch_faster = not varying_lengths and (onednn_lstm or (short and not one_token))
        return "cpu" if on_cpu and not torch_faster and compiled.unavailable_reason() is None else "torch"
    if backend == "cpu" and not on_cpu:
        raise RNNTypeError(
            f"backend='cpu' runs float32 and float64 tensors on the CPU, got {x.dtype} on {x.device}; "
            "use backend='auto' or 'torch'"
        )
    if backend == "triton" and not (x.dtype in TRITON_DTYPES and (x.is_cuda or triton_interpreting())):
        raise RNNTypeError(
            f"backend='triton' runs float32, bfloat16 and float16 tensors on a CUDA device, got {x.dtype} on "
            f"{x.device}; use backend='auto' or 'torch'"
        )
    return backend


def resolve_variant_backend(backend: str, x: Tensor, mode: str) -> str:
    """The concrete backend of a variant (or of every step's states) on ``x``: ``"cpu"`` where its
    fused kernels run the cell (``VARIANT_DIRECTION_OPS``) and ``backend`` is ``"auto"`` or
    ``"cpu"``, else ``"naive"``. The modules have refused other backends (``_check_variant_backend``)."""
    if backend not in ("auto", "cpu") or (mode, "cpu") not in VARIANT_DIRECTION_OPS:
        return "naive"
    if backend == "cpu":
        check_backend("cpu")  # loads the kernels, or says why they cannot run here
        return resolve_backend("cpu", x)
    return "cpu" if _cpu_tensor(x) and compiled.unavailable_reason() is None else "naive"


def variant_direction(mode: str, backend: str) -> Callable:
    """The direction op of a variant on a concrete ``backend`` (``resolve_variant_backend``'s): the
    fused kernels' where they run the cell (``VARIANT_DIRECTION_OPS``), else the naive ops'."""
    return VARIANT_DIRECTION_OPS.get((mode, backend), variant_ops.direction)


def _cpu_tensor(x: Tensor) -> bool:
    """Whether the compiled kernels take ``x``: float32 or float64 on the CPU."""
    return x.device.type == "cpu" and x.dtype in CPU_DTYPES


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
    run_layer = layer_op(mode, backend)

    def run_layers(x: Tensor, states: tuple[Tensor, ...], ks: slice, lengths: Tensor | None) -> tuple[Tensor, ...]:
        return run_layer(x, states, weights[ks], lengths)

    return _stack(run_layers, x, hx, len(weights), lengths, 2 if bidirectional else 1, dropout, training)


def variant_stack(
    mode: str,
    variant: Variant,
    x: Tensor,
    hx: tuple[Tensor, ...],
    weights: list[tuple[Tensor | None, ...]],
    extras: list[Extras],
    lengths: Tensor | None,
    *,
    bidirectional: bool,
    dropout: float,
    training: bool,
    backend: str = "naive",
    every_state: bool = True,
) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor, ...]]:
    """``rnn_stack`` for a variant (``ops/variant.py``), also returning every step's states.

    Args:
        variant: what changes the recurrence; extras: L*D directions' variant parameters.
        backend: ``"naive"``, or ``"cpu"`` where it fuses the cell (``resolve_variant_backend``).
        every_state: whether to join every step's states over the layers (a copy of them all).
        The others as ``rnn_stack``'s.

    Returns:
        output (T, B, D*P) of the last layer; final states, each (L*D, B, *); every step's
        states of every layer and direction, each (L*D, T, B, *), zero past each length (with
        ``every_state``; else ()).
    """

    def run_layer(x: Tensor, states: tuple[Tensor, ...], ks: slice, lengths: Tensor | None) -> tuple[Tensor, ...]:
        return variant_ops.layer(
            mode, variant, training, x, states, weights[ks], extras[ks], lengths, run, every_state, drawn
        )

    run, drawn = variant_direction(mode, backend), VARIANT_DRAWN_OPS.get((mode, backend))
    output, final, *every = _stack(
        run_layer, x, hx, len(weights), lengths, 2 if bidirectional else 1, dropout, training
    )
    return output, final, (every[0] if every_state else ())


def _stack(
    run_layer: Callable,
    x: Tensor,
    hx: tuple[Tensor, ...],
    layers_times_directions: int,
    lengths: Tensor | None,
    directions: int,
    dropout: float,
    training: bool,
) -> tuple[Tensor, ...]:
    """The layers of a stack with dropout between them. ``run_layer(x, states, ks, lengths)`` runs the
    directions ``ks`` (a slice of L*D) of one layer and returns (output, *groups of tensors, each
    (D, ...)); returns (output of the last layer, *groups, each joined over the layers to (L*D, ...))."""
    if lengths is not None:
        lengths = lengths.to(x.device)  # once for all layers
    num_layers = layers_times_directions // directions
    if num_layers == 1:  # nothing to join (a generated token's time is mostly such calls)
        return tuple(run_layer(x, hx, slice(0, directions), lengths))
    groups: list[tuple[tuple[Tensor, ...], ...]] = []
    for layer in range(num_layers):
        ks = slice(layer * directions, (layer + 1) * directions)
        states = hx if num_layers == 1 else tuple(s[ks] for s in hx)
        x, *rest = run_layer(x, states, ks, lengths)
        groups.append(tuple(rest))
        if dropout > 0 and training and layer < num_layers - 1:
            x = F.dropout(x, dropout, training=True)
    joined = (tuple(f[0] if len(f) == 1 else torch.cat(f) for f in zip(*group)) for group in zip(*groups))
    return (x, *joined)


def cell_step(
    mode: str, backend: str, x: Tensor, hx: tuple[Tensor, ...], weights: tuple[Tensor | None, ...]
) -> tuple[Tensor, ...]:
    """One step of a cell: x (B, I), hx states (B, *), weights (w_ih, w_hh, b_ih, b_hh).

    Returns the new states, each (B, *).
    """
    if backend != "naive":  # one step has no time loop to fuse: torch's cell kernels serve
        return aten.cell(mode, x, hx, weights)
    w_ih, w_hh, b_ih, b_hh = weights
    return NAIVE_CELLS[mode](F.linear(x, w_ih, b_ih), *hx, w_hh, b_hh)
