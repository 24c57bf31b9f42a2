"""GRU on the CPU: the fused C++ recurrence of ``gru_cpu.cpp`` as a torch op with autograd.

See ``lstm/cpu.py``: the same arrangement, with the GRU's saved tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import call, fused_backward, gradient_wanted, input_like, register_autograd
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
        h0.new_empty(batch, hidden),  # h_n
        x.new_empty(steps, batch, gates),  # gates
        x.new_empty(steps, batch, hidden),  # hn
        x.new_empty(steps, batch, hidden),  # h_prev
    )


def _fake_backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, reverse, gates, hn, h_prev, input_grad):
    bias = gates.new_empty(gates.shape[2])
    grad_x = input_like(x, input_grad)
    return grad_x, torch.empty_like(grad_h_n), torch.empty_like(w_ih), torch.empty_like(w_hh), bias, bias.clone()


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # no zero tensors for the unused outputs the backward ignores
    *tensors, lengths, reverse = inputs
    ctx.save_for_backward(*tensors, lengths, *output[2:])
    ctx.reverse = reverse


def _backward(ctx, grad_output, grad_h_n, *_):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates, hn, h_prev = ctx.saved_tensors
    wanted = ctx.needs_input_grad[0]  # x's gradient

    def recurrence(x, h0, *weights):
        output, (h_n,) = naive_gru(x, (h0,), weights, lengths, ctx.reverse)
        return output, h_n

    def kernel(grad_output, grad_h_n):
        g_x, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh = torch.ops.rnnkit.gru_backward(
            grad_output, grad_h_n, x, w_ih, w_hh, lengths, ctx.reverse, gates, hn, h_prev, wanted
        )
        g_b_ih, g_b_hh = None if b_ih is None else g_b_ih, None if b_hh is None else g_b_hh
        return g_x if wanted else None, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh

    inputs = (x, h0, w_ih, w_hh, b_ih, b_hh)
    grads = fused_backward(recurrence, inputs, (grad_output, grad_h_n), (h_prev, h0), kernel)
    return (*grads, None, None)


def register() -> None:
    """Attach the fake implementations and the autograd formula to the loaded ops."""
    torch.library.register_fake("rnnkit::gru_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::gru_backward")(_fake_backward)
    register_autograd("rnnkit::gru_forward", _backward, setup_context=_setup_context)
