"""GRU and Elman RNN variants on the CPU: the fused C++ recurrences of ``gru/gru_variant_cpu.cpp``
and ``rnn/rnn_variant_cpu.cpp`` (one loop, ``csrc/variant.h``) as torch ops with autograd.

``direction`` has the signature and result of ``ops/variant.py``'s ``direction``: the input
projection a_t = LN(W_ih x_t) + b_ih runs in torch ops (autograd differentiates it), and
``torch.ops.rnnkit.{gru,rnn}_variant_forward`` runs the time loop with layer norm on
W_hh h_{t-1}, b_hh after it, recurrent dropout and zoneout; ``*_variant_backward`` is its
hand-written backward through time. The masks are drawn by ``ops/variant.py``'s ``noise`` before
the loop, so a seed gives the naive op's masks. Both ops carry fake implementations and the forward
an autograd formula (torch.compile, torch.export); double backward replays the naive ops.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fused import call, fused_backward, gradient_wanted, register_autograd
from .variant import Extras, Recurrence, input_projection, recurrence

# The op of each mode and the flags it takes after ``reverse``.
OPS = {"GRU": ("gru_variant", ()), "RNN_TANH": ("rnn_variant", (False,)), "RNN_RELU": ("rnn_variant", (True,))}


def direction(
    mode: str,
    x: Tensor,
    state: tuple[Tensor, ...],
    weights: tuple[Tensor | None, ...],
    extras: Extras,
    dropout_mask: Tensor | None = None,
    zone: tuple[Tensor, ...] = (),
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """One direction of one GRU or RNN variant layer: x (T, B, I), state (h_0 (B, H),).

    Returns every step's (h_t (T, B, H),), zero past each length, and the final (h_n,).
    """
    _, w_hh, _, b_hh = weights
    xw = input_projection(mode, x, weights, extras)
    tensors = (xw, *state, w_hh, b_hh, extras.ln_hh_weight)
    wanted = gradient_wanted(*tensors)
    name, flags = OPS[mode]
    op = getattr(torch.ops.rnnkit, f"{name}_forward")
    keep_h = zone[0] if zone else None
    output, h_n, *_ = call(op, *tensors, dropout_mask, keep_h, lengths, reverse, *flags, wanted, differentiable=wanted)
    return (output,), (h_n,)


def _fake_results(xw: Tensor, h0: Tensor, ln_hh_weight: Tensor | None, save: bool) -> tuple[Tensor, ...]:
    steps, batch, width = xw.shape
    hidden = h0.shape[1]
    kept = steps if save else min(steps, 1)
    layer_norm = ln_hh_weight is not None
    return (
        xw.new_empty(steps, batch, hidden),  # output
        h0.new_empty(batch, hidden),  # h_n
        xw.new_empty(steps if save else min(steps, 2), batch, hidden),  # hm
        xw.new_empty(kept, batch, width),  # gates
        xw.new_empty(kept, batch, hidden),  # h_prev
        xw.new_empty(kept, batch, hidden) if width == 3 * hidden else xw.new_empty(0),  # u_n, GRU
        xw.new_empty(kept, batch, width) if layer_norm else xw.new_empty(0),  # v_hat
        xw.new_empty(kept, batch) if layer_norm else xw.new_empty(0),  # rstd
    )


def _fake_gru_forward(xw, h0, w_hh, b_hh, ln_hh_weight, mask, keep_h, lengths, reverse, save=True):
    return _fake_results(xw, h0, ln_hh_weight, save)


def _fake_rnn_forward(xw, h0, w_hh, b_hh, ln_hh_weight, mask, keep_h, lengths, reverse, relu, save=True):
    return _fake_results(xw, h0, ln_hh_weight, save)


def _fake_backward(grad_output, grad_h_n, w_hh, b_hh, ln_hh_weight, mask, keep_h, lengths, reverse, *flags_and_saved):
    gates = flags_and_saved[-5]  # before h_prev, u_n, v_hat, rstd
    return [
        torch.empty_like(gates, memory_format=torch.contiguous_format),  # d xw
        torch.empty_like(grad_h_n),
        torch.empty_like(w_hh),
        *(gates.new_empty(0) if t is None else torch.empty_like(t) for t in (b_hh, ln_hh_weight)),
    ]


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)
    *tensors, mask, keep_h, lengths, reverse = inputs[:9]
    ctx.save_for_backward(*tensors, mask, keep_h, lengths, *output[2:])
    ctx.reverse, ctx.flags = reverse, tuple(inputs[9:-1])  # the RNN's relu


def _autograd(mode_of: dict[tuple[bool, ...], str], name: str):
    """The autograd formula of ``name``_forward; ``mode_of`` its flags' mode, for the naive replay."""

    def backward(ctx, grad_output, grad_h_n, *_):
        saved = ctx.saved_tensors
        inputs, (mask, keep_h, lengths), kept = saved[:5], saved[5:8], saved[8:]
        h0 = inputs[1]
        zone = () if keep_h is None else (keep_h,)
        mode = mode_of[ctx.flags]

        def naive(xw, h0, w_hh, b_hh, ln_hh_weight):
            recurrent = Recurrence(w_hh, b_hh, None, Extras(ln_hh_weight=ln_hh_weight), mask)
            (output,), (h_n,) = recurrence(mode, xw, (h0,), recurrent, zone, lengths, ctx.reverse)
            return output, h_n

        def kernel(grad_output, grad_h_n):
            grads = getattr(torch.ops.rnnkit, f"{name}_backward")(
                grad_output, grad_h_n, *inputs[2:], mask, keep_h, lengths, ctx.reverse, *ctx.flags, *kept
            )
            return [None if given is None else grad for given, grad in zip(inputs, grads)]  # none where absent

        likes = (kept[0], h0)  # hm is shaped as output
        grads = fused_backward(naive, inputs, (grad_output, grad_h_n), likes, kernel)
        return (*grads, None, None, None, None, *(None for _ in ctx.flags), None)  # masks, lengths, flags, save

    return backward


def register() -> None:
    """Attach the fake implementations and the autograd formulas to the loaded ops."""
    for name, fake, modes in (
        ("gru_variant", _fake_gru_forward, {(): "GRU"}),
        ("rnn_variant", _fake_rnn_forward, {(False,): "RNN_TANH", (True,): "RNN_RELU"}),
    ):
        torch.library.register_fake(f"rnnkit::{name}_forward")(fake)
        torch.library.register_fake(f"rnnkit::{name}_backward")(_fake_backward)
        register_autograd(f"rnnkit::{name}_forward", _autograd(modes, name), setup_context=_setup_context)
