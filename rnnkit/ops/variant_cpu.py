"""GRU and Elman RNN variants on the CPU: the fused C++ recurrences of ``gru/gru_variant_cpu.cpp``
and ``rnn/rnn_variant_cpu.cpp`` (one loop, ``csrc/variant.h``) as torch ops with autograd.

``direction`` has the signature and result of ``ops/variant.py``'s ``direction``.
``torch.ops.rnnkit.{gru,rnn}_variant_forward`` makes the input projection a_t = LN(W_ih x_t) + b_ih
in one product and each row's layer norm, as the plain kernels make W_ih x_t + b, then runs the
time loop with layer norm on W_hh h_{t-1}, b_hh after it, recurrent dropout and zoneout;
``*_variant_backward`` is its hand-written backward through time, the input projection's included.
The masks are drawn before the loop as ``ops/variant.py``'s ``noise`` draws them, so a seed gives
the naive op's masks: by ``noise`` for ``direction``, by the ops ``*_variant_drawn`` themselves for
``drawn_direction`` (eager calls). Both ops carry fake implementations and the forward an autograd formula in C++
(``SingleStateVariantFunction``; torch.compile, torch.export); double backward replays the naive
recurrence given here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fused import call, gradient_wanted, input_gradients_like, input_like, input_saved_like, register_recurrence
from .variant import Extras, Recurrence, Variant, drawn_noise, fused_input, projected_input, recurrence

# The ops of each mode (``<name>_forward``, ``<name>_drawn``) and the flags they take after ``reverse``.
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
    """One direction of one GRU or RNN variant layer: x (T, B, I), state (h_0 (B, H),) or
    (1, B, H).

    Returns every step's (h_t (T, B, H),), zero past each length, and the final (h_n,).
    """
    tensors = _tensors(mode, x, state, weights, extras)
    wanted = gradient_wanted(*tensors)
    name, flags = OPS[mode]
    op = getattr(torch.ops.rnnkit, f"{name}_forward")
    keep_h = zone[0] if zone else None
    output, h_n, *_ = call(op, *tensors, dropout_mask, keep_h, lengths, reverse, *flags, wanted, differentiable=wanted)
    return (output,), (h_n,)


def drawn_direction(
    mode: str,
    variant: Variant,
    training: bool,
    x: Tensor,
    state: tuple[Tensor, ...],
    weights: tuple[Tensor | None, ...],
    extras: Extras,
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """``direction`` with the masks ``ops/variant.py``'s ``noise`` would draw for ``variant`` and
    ``training`` drawn by the op itself, the same ones from the same generator (one call, not two)."""
    tensors = _tensors(mode, x, state, weights, extras)
    wanted = gradient_wanted(*tensors)
    name, flags = OPS[mode]
    op = getattr(torch.ops.rnnkit, f"{name}_drawn")
    noise = drawn_noise(variant, training)
    output, h_n = call(op, *tensors, *noise, lengths, reverse, *flags, wanted, differentiable=wanted)
    return (output,), (h_n,)


def _tensors(
    mode: str, x: Tensor, state: tuple[Tensor, ...], weights: tuple[Tensor | None, ...], extras: Extras
) -> tuple[Tensor | None, ...]:
    """The ops' tensor arguments before the masks: x, w_ih, b_ih, gamma_ih, h0, w_hh, b_hh, gamma_hh."""
    _, w_hh, _, b_hh = weights
    return (*fused_input(mode, x, weights, extras), *state, w_hh, b_hh, extras.ln_hh_weight)


def _fake_results(
    x: Tensor,
    w_ih: Tensor,
    ln_ih_weight: Tensor | None,
    h0: Tensor,
    w_hh: Tensor,
    ln_hh_weight: Tensor | None,
    save: bool,
) -> tuple[Tensor, ...]:
    steps, batch = x.shape[:2]
    width, hidden = w_hh.shape
    kept = steps if save else min(steps, 1)
    layer_norm = ln_hh_weight is not None
    gru = width == 3 * hidden  # a GRU saves h_{t-1} and u_n, an Elman cell neither
    return (
        x.new_empty(steps, batch, hidden),  # output
        h0.new_empty(h0.shape),  # h_n
        x.new_empty(steps if save else min(steps, 2), batch, hidden),  # hm
        x.new_empty(kept, batch, width),  # gates
        x.new_empty(kept, batch, hidden) if gru else x.new_empty(0),  # h_prev
        x.new_empty(kept, batch, hidden) if gru else x.new_empty(0),  # u_n
        x.new_empty(kept, batch, width) if layer_norm else x.new_empty(0),  # v_hat
        x.new_empty(kept, batch) if layer_norm else x.new_empty(0),  # rstd
        *input_saved_like(x, w_ih, ln_ih_weight, save),  # a_hat, rstd_ih
    )


def _fake_gru_forward(x, w_ih, b_ih, ln_ih, h0, w_hh, b_hh, ln_hh, mask, keep_h, lengths, reverse, save=True):
    return _fake_results(x, w_ih, ln_ih, h0, w_hh, ln_hh, save)


def _fake_rnn_forward(x, w_ih, b_ih, ln_ih, h0, w_hh, b_hh, ln_hh, mask, keep_h, lengths, reverse, relu, save=True):
    return _fake_results(x, w_ih, ln_ih, h0, w_hh, ln_hh, save)


def _fake_backward(
    grad_output,
    grad_h_n,
    x,
    w_ih,
    bias_grad,
    input_grad,
    state_grad,
    ln_ih_weight,
    w_hh,
    b_hh,
    ln_hh_weight,
    mask,
    keep_h,
    lengths,
    reverse,
    *flags_and_saved,
):
    gates = flags_and_saved[-7]  # before h_prev, u_n, v_hat, rstd, a_hat, rstd_ih
    return [
        *input_gradients_like(x, w_ih, bias_grad, input_grad, ln_ih_weight),
        input_like(grad_h_n, state_grad),
        torch.empty_like(w_hh),
        *(gates.new_empty(0) if t is None else torch.empty_like(t) for t in (b_hh, ln_hh_weight)),
    ]


def _recurrence_of(mode_of: dict[tuple[int, ...], str]):
    """The naive recurrence of a single-state variant op, for double backward; ``mode_of`` its flags' mode."""

    def recurrence_of(others: list[Tensor | None], flags: list[int]):
        (mask, keep_h, lengths), (reverse, *flags) = others, flags
        zone = () if keep_h is None else (keep_h,)
        mode = mode_of[tuple(flags)]

        def naive(x, w_ih, b_ih, ln_ih_weight, h0, w_hh, b_hh, ln_hh_weight):
            recurrent = Recurrence(w_hh, b_hh, None, Extras(ln_hh_weight=ln_hh_weight), mask)
            xw = projected_input(x, w_ih, b_ih, ln_ih_weight)
            (output,), (h_n,) = recurrence(mode, xw, (h0,), recurrent, zone, lengths, bool(reverse))
            return output, h_n

        return naive

    return recurrence_of


def register() -> None:
    """Attach the fake implementations and the naive recurrences (double backward) to the loaded ops."""
    for name, fake, modes in (
        ("gru_variant", _fake_gru_forward, {(): "GRU"}),
        ("rnn_variant", _fake_rnn_forward, {(0,): "RNN_TANH", (1,): "RNN_RELU"}),
    ):
        torch.library.register_fake(f"rnnkit::{name}_forward")(fake)
        torch.library.register_fake(f"rnnkit::{name}_backward")(_fake_backward)
        register_recurrence(f"{name}_forward", _recurrence_of(modes))
