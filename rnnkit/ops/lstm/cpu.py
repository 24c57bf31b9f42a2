"""LSTM on the CPU: the fused C++ recurrence of ``lstm_cpu.cpp`` as a torch op with autograd.

``torch.ops.rnnkit.lstm_forward`` runs one direction of a layer: the input projection as
one product, then the time loop, keeping what the backward reads only when a gradient is wanted;
``lstm_backward`` is the hand-written backward through time. Both carry a
fake (meta) implementation, registered here; the forward's autograd formula is C++
(``LstmFunction``, ``csrc/autograd.h``), so torch.compile and torch.export see one op. Double
backward replays the naive recurrence given here (``..fused``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import call, gradient_wanted, input_like, register_recurrence
from .naive import lstm as naive_lstm


def lstm(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One direction of one LSTM layer; the signature and result of ``naive.lstm``."""
    tensors = (x, *state, *weights)
    wanted = gradient_wanted(*tensors)
    op = torch.ops.rnnkit.lstm_forward
    output, h_n, c_n, *_ = call(op, *tensors, lengths, reverse, wanted, differentiable=wanted)
    return output, (h_n, c_n)


def _fake_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse, save=True):
    steps, batch = x.shape[:2]
    gates, out = w_hh.shape[0], h0.shape[-1]
    hidden = gates // 4
    kept = steps if save else min(steps, 1)
    return (
        x.new_empty(steps, batch, out),  # output
        h0.new_empty(h0.shape),  # h_n
        c0.new_empty(c0.shape),  # c_n
        x.new_empty(kept, batch, gates),  # gates
        x.new_empty(steps, batch, out + x.shape[2]),  # h_prev: [h_{t-1} | x_t]
        x.new_empty(kept, batch, hidden),  # c_prev
    )


def _fake_backward(
    grad_output,
    grad_h_n,
    grad_c_n,
    x,
    w_ih,
    w_hh,
    w_hr,
    lengths,
    reverse,
    gates,
    h_prev,
    c_prev,
    input_grad,
    state_grad,
):
    grad_w_hr = gates.new_empty(0) if w_hr is None else torch.empty_like(w_hr)
    return (
        input_like(x, input_grad),
        input_like(grad_h_n, state_grad),
        torch.empty_like(grad_c_n),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        gates.new_empty(gates.shape[2]),
        grad_w_hr,
    )


def _recurrence_of(others: list[Tensor | None], flags: list[int]):
    """The naive recurrence ``lstm_forward`` fuses, of (x, h0, c0, *weights), for double backward."""
    (lengths,), (reverse,) = others, flags

    def recurrence(x, h0, c0, *weights):
        output, (h_n, c_n) = naive_lstm(x, (h0, c0), weights, lengths, bool(reverse))
        return output, h_n, c_n

    return recurrence


def register() -> None:
    """Attach the fake implementations and the naive recurrence (double backward) to the loaded ops."""
    torch.library.register_fake("rnnkit::lstm_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::lstm_backward")(_fake_backward)
    register_recurrence("lstm_forward", _recurrence_of)
