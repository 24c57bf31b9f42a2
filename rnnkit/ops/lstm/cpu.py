"""LSTM on the CPU: the fused C++ recurrence of ``lstm_cpu.cpp`` as a torch op with autograd.

``torch.ops.rnnkit.lstm_forward`` runs one direction of a layer: the input projection as
one product, then the time loop, keeping what the backward reads only when a gradient is wanted;
``lstm_backward`` is the hand-written backward through time. Both carry a
fake (meta) implementation and the forward an autograd formula, so torch.compile and
torch.export see one op. Double backward replays the naive ops (``..fused``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import bias_gradients, call, fused_backward, gradient_wanted, input_like, register_autograd
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
    gates, out = w_hh.shape[0], h0.shape[1]
    hidden = gates // 4
    kept = steps if save else min(steps, 1)
    return (
        x.new_empty(steps, batch, out),  # output
        h0.new_empty(batch, out),  # h_n
        c0.new_empty(batch, hidden),  # c_n
        x.new_empty(kept, batch, gates),  # gates
        x.new_empty(steps, batch, out + x.shape[2]),  # h_prev: [h_{t-1} | x_t]
        x.new_empty(kept, batch, hidden),  # c_prev
    )


def _fake_backward(
    grad_output, grad_h_n, grad_c_n, x, w_ih, w_hh, w_hr, lengths, reverse, gates, h_prev, c_prev, input_grad
):
    grad_w_hr = gates.new_empty(0) if w_hr is None else torch.empty_like(w_hr)
    return (
        input_like(x, input_grad),
        torch.empty_like(grad_h_n),
        torch.empty_like(grad_c_n),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        gates.new_empty(gates.shape[2]),
        grad_w_hr,
    )


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # no zero tensors for the unused outputs the backward ignores
    *tensors, lengths, reverse, _save = inputs
    ctx.save_for_backward(*tensors, lengths, *output[3:])
    ctx.reverse = reverse


def _backward(ctx, grad_output, grad_h_n, grad_c_n, *_):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, gates, h_prev, c_prev = ctx.saved_tensors
    wanted = ctx.needs_input_grad[0]  # x's gradient

    def recurrence(x, h0, c0, *weights):
        output, (h_n, c_n) = naive_lstm(x, (h0, c0), weights, lengths, ctx.reverse)
        return output, h_n, c_n

    def kernel(grad_output, grad_h_n, grad_c_n):
        g_x, g_h0, g_c0, g_w_ih, g_w_hh, g_b, g_w_hr = torch.ops.rnnkit.lstm_backward(
            grad_output, grad_h_n, grad_c_n, x, w_ih, w_hh, w_hr, lengths, ctx.reverse, gates, h_prev, c_prev, wanted
        )
        biases = bias_gradients(g_b, b_ih, b_hh)
        return g_x if wanted else None, g_h0, g_c0, g_w_ih, g_w_hh, *biases, None if w_hr is None else g_w_hr

    inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    output_like = h_prev[..., : h0.shape[-1]]
    grads = fused_backward(recurrence, inputs, (grad_output, grad_h_n, grad_c_n), (output_like, h0, c0), kernel)
    return (*grads, None, None, None)  # lengths, reverse, save


def register() -> None:
    """Attach the fake implementations and the autograd formula to the loaded ops."""
    torch.library.register_fake("rnnkit::lstm_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::lstm_backward")(_fake_backward)
    register_autograd("rnnkit::lstm_forward", _backward, setup_context=_setup_context)
