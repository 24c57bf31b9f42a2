"""GRU on the CPU: the fused C++ recurrence of ``gru_cpu.cpp`` as a torch op with autograd.

See ``lstm/cpu.py``: the same arrangement, with the GRU's saved tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fused import fused_backward
from .naive import gru as naive_gru


def gru(
    x: Tensor,
    state: tuple[Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, tuple[Tensor]]:
    """One direction of one GRU layer; the signature and result of ``naive.gru``."""
    w_ih, w_hh, b_ih, b_hh = weights
    xw = F.linear(x, w_ih, b_ih)  # (T, B, 3H)
    output, h_n, *_ = torch.ops.rnnkit.gru_forward(xw, state[0], w_hh, b_hh, lengths, reverse)
    return output, (h_n,)


def _fake_forward(xw, h0, w_hh, b_hh, lengths, reverse):
    steps, batch, gates = xw.shape
    hidden = gates // 3
    return (
        xw.new_empty(steps, batch, hidden),  # output
        h0.new_empty(batch, hidden),  # h_n
        xw.new_empty(steps, batch, gates),  # gates
        xw.new_empty(steps, batch, hidden),  # hn
        xw.new_empty(steps, batch, hidden),  # h_prev
    )


def _fake_backward(grad_output, grad_h_n, w_hh, lengths, reverse, gates, hn, h_prev):
    return torch.empty_like(gates), torch.empty_like(grad_h_n), torch.empty_like(w_hh), gates.new_empty(gates.shape[2])


def _setup_context(ctx, inputs, output) -> None:
    xw, h0, w_hh, b_hh, lengths, reverse = inputs
    ctx.save_for_backward(xw, h0, w_hh, b_hh, lengths, *output[2:])
    ctx.reverse = reverse


def _backward(ctx, grad_output, grad_h_n, *_):
    xw, h0, w_hh, b_hh, lengths, gates, hn, h_prev = ctx.saved_tensors

    def recurrence(xw, h0, w_hh, b_hh):
        eye = torch.eye(xw.shape[2], dtype=xw.dtype, device=xw.device)  # xw enters as x with W_ih = I
        output, (h_n,) = naive_gru(xw, (h0,), (eye, w_hh, None, b_hh), lengths, ctx.reverse)
        return output, h_n

    def kernel(grad_output, grad_h_n):
        g_xw, g_h0, g_w_hh, g_b_hh = torch.ops.rnnkit.gru_backward(
            grad_output, grad_h_n, w_hh, lengths, ctx.reverse, gates, hn, h_prev
        )
        return g_xw, g_h0, g_w_hh, None if b_hh is None else g_b_hh

    grads = fused_backward(recurrence, (xw, h0, w_hh, b_hh), (grad_output, grad_h_n), (h_prev, h0), kernel)
    return (*grads, None, None)


def register() -> None:
    """Attach the fake implementations and the autograd formula to the loaded ops."""
    torch.library.register_fake("rnnkit::gru_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::gru_backward")(_fake_backward)
    torch.library.register_autograd("rnnkit::gru_forward", _backward, setup_context=_setup_context)
