"""Elman RNN on the CPU: the fused C++ recurrence of ``rnn_cpu.cpp`` as a torch op with autograd.

See ``lstm/cpu.py``: the same arrangement, with the RNN's saved tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fused import fused_backward
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
    w_ih, w_hh, b_ih, b_hh = weights
    xw = F.linear(x, w_ih, b_ih)  # (T, B, H)
    output, h_n, _ = torch.ops.rnnkit.rnn_forward(xw, state[0], w_hh, b_hh, lengths, reverse, nonlinearity == "relu")
    return output, (h_n,)


def _fake_forward(xw, h0, w_hh, b_hh, lengths, reverse, relu):
    return torch.empty_like(xw), torch.empty_like(h0), torch.empty_like(xw)


def _fake_backward(grad_output, grad_h_n, w_hh, lengths, reverse, relu, output, h_prev):
    return torch.empty_like(output), torch.empty_like(grad_h_n), torch.empty_like(w_hh), output.new_empty(w_hh.shape[0])


def _setup_context(ctx, inputs, output) -> None:
    xw, h0, w_hh, b_hh, lengths, reverse, relu = inputs
    ctx.save_for_backward(xw, h0, w_hh, b_hh, lengths, output[0], output[2])
    ctx.reverse, ctx.relu = reverse, relu


def _backward(ctx, grad_output, grad_h_n, _):
    xw, h0, w_hh, b_hh, lengths, output, h_prev = ctx.saved_tensors
    nonlinearity = "relu" if ctx.relu else "tanh"

    def recurrence(xw, h0, w_hh, b_hh):
        eye = torch.eye(xw.shape[2], dtype=xw.dtype, device=xw.device)  # xw enters as x with W_ih = I
        out, (h_n,) = naive_rnn(xw, (h0,), (eye, w_hh, None, b_hh), lengths, ctx.reverse, nonlinearity)
        return out, h_n

    def kernel(grad_output, grad_h_n):
        g_xw, g_h0, g_w_hh, g_b_hh = torch.ops.rnnkit.rnn_backward(
            grad_output, grad_h_n, w_hh, lengths, ctx.reverse, ctx.relu, output, h_prev
        )
        return g_xw, g_h0, g_w_hh, None if b_hh is None else g_b_hh

    grads = fused_backward(recurrence, (xw, h0, w_hh, b_hh), (grad_output, grad_h_n), (output, h0), kernel)
    return (*grads, None, None, None)


def register() -> None:
    """Attach the fake implementations and the autograd formula to the loaded ops."""
    torch.library.register_fake("rnnkit::rnn_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::rnn_backward")(_fake_backward)
    torch.library.register_autograd("rnnkit::rnn_forward", _backward, setup_context=_setup_context)
