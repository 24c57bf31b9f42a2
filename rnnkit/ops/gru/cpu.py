"""GRU on the CPU: the fused C++ recurrence of ``gru_cpu.cpp`` as a torch op with autograd.

See ``lstm/cpu.py``: the same arrangement, with the GRU's saved tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import call, gradient_wanted, input_like, register_recurrence
from .naive import gru as naive_gru


def gru(
    x: Tensor,
    state: tuple[Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, tuple[Tensor]]:
    """One direction of one GRU layer; the signature and result of ``naive.gru``."""
    wanted = gradient_wanted(x, *state, *weights)
    output, h_n, *_ = call(torch.ops.rnnkit.gru_forward, x, state[0], *weights, lengths, reverse, differentiable=wanted)
    return output, (h_n,)


def _fake_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse):
    steps, batch = x.shape[:2]
    gates = w_hh.shape[0]
    hidden = gates // 3
    return (
        x.new_empty(steps, batch, hidden),  # output
        h0.new_empty(h0.shape),  # h_n
        x.new_empty(steps, batch, gates),  # gates
        x.new_empty(steps, batch, hidden),  # hn
        x.new_empty(steps, batch, hidden),  # h_prev
    )


def _fake_backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, reverse, gates, hn, h_prev, input_grad, state_grad):
    bias = gates.new_empty(gates.shape[2])
    grad_x = input_like(x, input_grad)
    return grad_x, input_like(grad_h_n, state_grad), torch.empty_like(w_ih), torch.empty_like(w_hh), bias, bias.clone()


def _recurrence_of(others: list[Tensor | None], flags: list[int]):
    """The naive recurrence ``gru_forward`` fuses, of (x, h0, w_ih, w_hh, b_ih, b_hh), for double backward."""
    (lengths,), (reverse,) = others, flags

    def recurrence(x, h0, *weights):
        output, (h_n,) = naive_gru(x, (h0,), weights, lengths, bool(reverse))
        return output, h_n

    return recurrence


def register() -> None:
    """Attach the fake implementations and the naive recurrence (double backward) to the loaded ops."""
    torch.library.register_fake("rnnkit::gru_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::gru_backward")(_fake_backward)
    register_recurrence("gru_forward", _recurrence_of)
