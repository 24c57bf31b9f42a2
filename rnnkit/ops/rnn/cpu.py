"""Elman RNN on the CPU: the fused C++ recurrence of ``rnn_cpu.cpp`` as a torch op with autograd.

See ``lstm/cpu.py``: the same arrangement, with the RNN's saved tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import bias_gradients, call, fused_backward, gradient_wanted, input_like, register_autograd
from .naive import rnn as naive_rnn


def rnn(
    x: Tensor,
    state: tuple[Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
) -> tuple[Tensor, tuple[Tensor]]:
    """One direction of one RNN layer; the signature and result of ``naive.rnn``."""
    relu = nonlinearity == "relu"
    wanted = gradient_wanted(x, *state, *weights)
    op = torch.ops.rnnkit.rnn_forward
    output, h_n, _ = call(op, x, state[0], *weights, lengths, reverse, relu, differentiable=wanted)
    return output, (h_n,)


def _fake_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, relu):
    output = x.new_empty(x.shape[0], x.shape[1], w_hh.shape[0])
    return output, torch.empty_like(h0), torch.empty_like(output)


def _fake_backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, reverse, relu, output, h_prev, input_grad):
    bias = output.new_empty(w_hh.shape[0])
    return input_like(x, input_grad), torch.empty_like(grad_h_n), torch.empty_like(w_ih), torch.empty_like(w_hh), bias


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # no zero tensors for the unused outputs the backward ignores
    *tensors, lengths, reverse, relu = inputs
    ctx.save_for_backward(*tensors, lengths, output[0], output[2])
    ctx.reverse, ctx.relu = reverse, relu


def _backward(ctx, grad_output, grad_h_n, _):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, output, h_prev = ctx.saved_tensors
    wanted = ctx.needs_input_grad[0]  # x's gradient
    nonlinearity = "relu" if ctx.relu else "tanh"

    def recurrence(x, h0, *weights):
        out, (h_n,) = naive_rnn(x, (h0,), weights, lengths, ctx.reverse, nonlinearity)
        return out, h_n

    def kernel(grad_output, grad_h_n):
        g_x, g_h0, g_w_ih, g_w_hh, g_b = torch.ops.rnnkit.rnn_backward(
            grad_output, grad_h_n, x, w_ih, w_hh, lengths, ctx.reverse, ctx.relu, output, h_prev, wanted
        )
        return g_x if wanted else None, g_h0, g_w_ih, g_w_hh, *bias_gradients(g_b, b_ih, b_hh)

    inputs = (x, h0, w_ih, w_hh, b_ih, b_hh)
    grads = fused_backward(recurrence, inputs, (grad_output, grad_h_n), (output, h0), kernel)
    return (*grads, None, None, None)


def register() -> None:
    """Attach the fake implementations and the autograd formula to the loaded ops."""
    torch.library.register_fake("rnnkit::rnn_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::rnn_backward")(_fake_backward)
    register_autograd("rnnkit::rnn_forward", _backward, setup_context=_setup_context)
