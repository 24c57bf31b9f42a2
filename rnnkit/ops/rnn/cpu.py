"""Elman RNN on the CPU: the fused C++ recurrence of ``rnn_cpu.cpp`` as a torch op with autograd.

See ``lstm/cpu.py``: the same arrangement, with the RNN's saved tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import call, gradient_wanted, input_like, register_recurrence
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


def _fake_backward(
    grad_output, grad_h_n, x, w_ih, w_hh, lengths, reverse, relu, output, h_prev, input_grad, state_grad
):
    bias = output.new_empty(w_hh.shape[0])
    grad_h0 = input_like(grad_h_n, state_grad)
    return input_like(x, input_grad), grad_h0, torch.empty_like(w_ih), torch.empty_like(w_hh), bias


def _recurrence_of(others: list[Tensor | None], flags: list[int]):
    """The naive recurrence ``rnn_forward`` fuses, of (x, h0, w_ih, w_hh, b_ih, b_hh), for double backward."""
    (lengths,), (reverse, relu) = others, flags

    def recurrence(x, h0, *weights):
        out, (h_n,) = naive_rnn(x, (h0,), weights, lengths, bool(reverse), "relu" if relu else "tanh")
        return out, h_n

    return recurrence


def register() -> None:
    """Attach the fake implementations and the naive recurrence (double backward) to the loaded ops."""
    torch.library.register_fake("rnnkit::rnn_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::rnn_backward")(_fake_backward)
    register_recurrence("rnn_forward", _recurrence_of)
