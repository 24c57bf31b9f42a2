"""The ``"torch"`` backend: torch's own RNN kernels (oneDNN on the CPU, cuDNN on CUDA).

Kept as the baseline for parity tests and benchmarks. ``lengths`` are handled the
way a torch.nn user would: pack, run the packed kernel, unpack.
"""

from __future__ import annotations

from torch import _VF, Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

_STACKS = {"LSTM": _VF.lstm, "GRU": _VF.gru, "RNN_TANH": _VF.rnn_tanh, "RNN_RELU": _VF.rnn_relu}
_CELLS = {
    "LSTM": _VF.lstm_cell,
    "GRU": _VF.gru_cell,
    "RNN_TANH": _VF.rnn_tanh_cell,
    "RNN_RELU": _VF.rnn_relu_cell,
}


def rnn_stack(
    mode: str,
    x: Tensor,
    hx: tuple[Tensor, ...],
    weights: list[tuple[Tensor | None, ...]],
    lengths: Tensor | None,
    *,
    bidirectional: bool,
    dropout: float,
    training: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """All layers and directions in one call to torch's fused RNN.

    Args:
        x: (T, B, I); hx: states, each (L*D, B, *), in the batch order of ``x``.
        weights: per layer and direction, in torch's order, the tuple
            (w_ih, w_hh, b_ih, b_hh[, w_hr]) with None for absent tensors.
        lengths: (B,) int64 on the CPU, or None.

    Returns:
        output (T, B, D*H_out); final states, each (L*D, B, *).
    """
    flat = [w for layer in weights for w in layer if w is not None]
    has_bias = weights[0][2] is not None
    num_layers = len(weights) // (2 if bidirectional else 1)
    run = _STACKS[mode]
    state = hx if mode == "LSTM" else hx[0]
    if lengths is None:
        out, *final = run(x, state, flat, has_bias, num_layers, dropout, training, bidirectional, False)
        return out, tuple(final)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    order = packed.sorted_indices
    state = tuple(s.index_select(1, order) for s in hx) if mode == "LSTM" else hx[0].index_select(1, order)
    data, *final = run(
        packed.data, packed.batch_sizes, state, flat, has_bias, num_layers, dropout, training, bidirectional
    )
    out, _ = pad_packed_sequence(packed._replace(data=data), total_length=x.shape[0])
    return out, tuple(s.index_select(1, packed.unsorted_indices) for s in final)


def cell(mode: str, x: Tensor, hx: tuple[Tensor, ...], weights: tuple[Tensor | None, ...]) -> tuple[Tensor, ...]:
    """One step of torch's fused cell: x (B, I), hx states (B, *) -> new states (B, *)."""
    w_ih, w_hh, b_ih, b_hh = weights
    if mode == "LSTM":
        return tuple(_CELLS[mode](x, hx, w_ih, w_hh, b_ih, b_hh))
    return (_CELLS[mode](x, hx[0], w_ih, w_hh, b_ih, b_hh),)
