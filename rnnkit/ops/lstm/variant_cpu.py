"""LSTM variants on the CPU: the fused C++ recurrence of ``lstm_variant_cpu.cpp`` as a torch op with autograd.

``direction`` has the signature and result of ``ops/variant.py``'s ``direction``.
``torch.ops.rnnkit.lstm_variant_forward`` makes the input projection a_t = LN(W_ih x_t) + b_ih +
b_hh in one product and each row's layer norm (b_ih + b_hh summed in the op, as
``ops/variant.py``'s ``input_bias`` sums them, with no autograd node of its own), then runs the
time loop with layer norm on W_hh h_{t-1} and c_t, peepholes, recurrent dropout and zoneout;
``lstm_variant_backward`` is its hand-written backward through time, the input projection's
included. The masks are drawn before the loop as ``ops/variant.py``'s ``noise`` draws them, so a
seed gives the naive op's masks: by ``noise`` for ``direction``, by the op ``lstm_variant_drawn``
itself for ``drawn_direction`` (eager calls). Both ops carry fake implementations and the forward
an autograd formula in C++ (``LstmVariantFunction``; torch.compile, torch.export); double backward
replays the naive recurrence given here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fused import call, gradient_wanted, input_gradients_like, input_like, input_saved_like, register_recurrence
from ..scan import summed_bias
from ..variant import Extras, Recurrence, Variant, drawn_noise, projected_input, recurrence


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
    """One direction of one LSTM variant layer (``mode`` "LSTM"): x (T, B, I), state (h_0 (B, P), c_0 (B, H))
    or each with a leading 1.

    Returns every step's (h_t (T, B, P), c_t (T, B, H)), zero past each length, and the final (h_n, c_n).
    """
    keep_h, keep_c = zone or (None, None)
    tensors = _tensors(mode, x, state, weights, extras)
    wanted = gradient_wanted(*tensors)
    op = torch.ops.rnnkit.lstm_variant_forward
    output, h_n, c_n, cs, *_ = call(
        op, *tensors, dropout_mask, keep_h, keep_c, lengths, reverse, wanted, differentiable=wanted
    )
    return (output, cs), (h_n, c_n)


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
    ``training`` drawn by the op itself, the same ones from the same generator (one call, not two or three)."""
    tensors = _tensors(mode, x, state, weights, extras)
    wanted = gradient_wanted(*tensors)
    op = torch.ops.rnnkit.lstm_variant_drawn
    noise = drawn_noise(variant, training)
    output, h_n, c_n, cs = call(op, *tensors, *noise, lengths, reverse, wanted, differentiable=wanted)
    return (output, cs), (h_n, c_n)


def _tensors(
    mode: str, x: Tensor, state: tuple[Tensor, ...], weights: tuple[Tensor | None, ...], extras: Extras
) -> tuple[Tensor | None, ...]:
    """The op's tensor arguments before the masks: x, w_ih, b_ih, b_hh, gamma_ih, h0, c0, w_hh, w_hr and the extras."""
    w_ih, w_hh, b_ih, b_hh, *w_hr = weights
    return (x, w_ih, b_ih, b_hh, extras.ln_ih_weight, *state, w_hh, w_hr[0] if w_hr else None, *extras[1:])


def _fake_forward(
    x,
    w_ih,
    b_ih,
    b_hh,
    ln_ih_weight,
    h0,
    c0,
    w_hh,
    w_hr,
    ln_hh_weight,
    ln_c_weight,
    ln_c_bias,
    weight_ch,
    mask,
    keep_h,
    keep_c,
    lengths,
    reverse,
    save=True,
):
    steps, batch = x.shape[:2]
    gates, out = w_hh.shape
    hidden = c0.shape[-1]
    kept = steps if save else min(steps, 1)

    def kept_or_empty(on: bool, *shape: int) -> Tensor:
        return x.new_empty(kept, batch, *shape) if on else x.new_empty(0)

    return (
        x.new_empty(steps, batch, out),  # output
        h0.new_empty(h0.shape),  # h_n
        c0.new_empty(c0.shape),  # c_n
        x.new_empty(steps, batch, hidden),  # cs
        x.new_empty(steps if save else min(steps, 2), batch, out),  # hm
        x.new_empty(kept, batch, gates),  # gates
        x.new_empty(kept, batch, hidden),  # c_prev
        x.new_empty(kept, batch, hidden),  # c_new
        kept_or_empty(ln_hh_weight is not None, gates),  # u_hat
        kept_or_empty(ln_hh_weight is not None),  # rstd_hh
        kept_or_empty(ln_c_weight is not None, hidden),  # c_hat
        kept_or_empty(ln_c_weight is not None),  # rstd_c
        kept_or_empty(w_hr is not None, hidden),  # m
        *input_saved_like(x, w_ih, ln_ih_weight, save),  # a_hat, rstd_ih
    )


def _fake_backward(
    grad_output,
    grad_h_n,
    grad_c_n,
    grad_cs,
    x,
    w_ih,
    bias_grad,
    input_grad,
    state_grad,
    ln_ih_weight,
    w_hh,
    w_hr,
    ln_hh_weight,
    ln_c_weight,
    ln_c_bias,
    weight_ch,
    mask,
    keep_h,
    keep_c,
    lengths,
    reverse,
    hm,
    gates,
    c_prev,
    c_new,
    u_hat,
    rstd_hh,
    c_hat,
    rstd_c,
    m,
    a_hat,
    rstd_ih,
):
    def like_or_empty(t: Tensor | None) -> Tensor:
        return gates.new_empty(0) if t is None else torch.empty_like(t)

    return [
        *input_gradients_like(x, w_ih, bias_grad, input_grad, ln_ih_weight),
        input_like(grad_h_n, state_grad),
        torch.empty_like(grad_c_n),
        torch.empty_like(w_hh),
        *(like_or_empty(t) for t in (w_hr, ln_hh_weight, ln_c_weight, ln_c_bias, weight_ch)),
    ]


def _recurrence_of(others: list[Tensor | None], flags: list[int]):
    """The naive recurrence ``lstm_variant_forward`` fuses, of its 13 differentiable inputs, for double backward."""
    (mask, keep_h, keep_c, lengths), (reverse,) = others, flags
    zone = () if keep_h is None else (keep_h, keep_c)

    def naive(x, w_ih, b_ih, b_hh, ln_ih_weight, h0, c0, w_hh, w_hr, *extras):
        recurrent = Recurrence(w_hh, None, w_hr, Extras(None, *extras), mask)
        xw = projected_input(x, w_ih, summed_bias(b_ih, b_hh), ln_ih_weight)
        (output, cs), (h_n, c_n) = recurrence("LSTM", xw, (h0, c0), recurrent, zone, lengths, bool(reverse))
        return output, h_n, c_n, cs

    return naive


def register() -> None:
    """Attach the fake implementations and the naive recurrence (double backward) to the loaded ops."""
    torch.library.register_fake("rnnkit::lstm_variant_forward")(_fake_forward)
    torch.library.register_fake("rnnkit::lstm_variant_backward")(_fake_backward)
    register_recurrence("lstm_variant_forward", _recurrence_of)
