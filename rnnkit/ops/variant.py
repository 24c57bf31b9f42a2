r"""The variants torch.nn lacks, in plain torch ops: the specification of each (autograd does the backward).

Keywords of the modules (DESIGN.md, "Variants"), and what they change in one direction of one layer:

.. math::
    a_t = LN(W_{ih} x_t; \gamma_{ih}) + b_{ih}, \qquad
    u_t = LN(W_{hh} (m \odot h_{t-1}); \gamma_{hh}) + b_{hh}

    \text{LSTM}\quad i, f, g, o = \sigma, \sigma, \tanh, \sigma
        (a_t + u_t + (w_{ci} c_{t-1}, w_{cf} c_{t-1}, 0, w_{co} c_t))
    \quad c_t = f c_{t-1} + i g \quad h_t = W_{hr}(o \tanh(LN(c_t; \gamma_c, \beta_c)))

    \text{GRU}\quad r = \sigma(a_r + u_r),\ z = \sigma(a_z + u_z),\ n = \tanh(a_n + r u_n),\ h_t = (1 - z) n + z h_{t-1}

    \text{RNN}\quad h_t = \phi(a_t + u_t)

    \text{zoneout}\quad s_t \leftarrow k_t s_{t-1} + (1 - k_t) s_t
        \quad (k_t \sim \text{Bernoulli}(z) \text{ each step in training, } k_t = z \text{ in evaluation})

- ``layer_norm``: LN(v; g, b) = g (v - mean v) / sqrt(var v + 1e-5) + b over each row's G*H (or H)
  values, biased variance, as ``torch.nn.LayerNorm``; the products' LN has no shift (the biases
  are the shift). Where its gain is None (layer norm off there), LN is the identity.
- ``peephole`` (LSTM): w_ci, w_cf, w_co, the rows of ``weight_ch`` (3H,).
- ``recurrent_dropout=p``: m (B, P) ~ Bernoulli(1 - p) / (1 - p), one mask per sequence, layer and
  direction for every step and gate, drawn each call in training; m = 1 in evaluation. Only the
  product sees the dropped h_{t-1} (GRU's h_t = ... + z h_{t-1} keeps it whole).
- ``zoneout=(z_c, z_h)``: each unit of c (z_c, LSTM) and h (z_h) keeps its previous value with
  that probability, a fresh mask each step; the layer's output is the zoned h.
- ``weight_dropout=p`` is DropConnect on ``weight_hh``: a weight the module masks before any
  backend runs, not a change to the time loop, so it is not here.

Dimensions: T steps, B batch, I input features, H hidden units, P = proj_size or H, G gates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .gru.naive import gru_gates
from .masks import bernoulli
from .rnn.naive import NONLINEARITIES
from .scan import scan, summed_bias

LN_EPS = 1e-5
# Where layer norm can act: the input product W_ih x_t, the recurrent product W_hh h_{t-1}, an LSTM's c_t.
LN_PLACES = {"LSTM": ("ih", "hh", "c"), "GRU": ("ih", "hh"), "RNN_TANH": ("ih", "hh"), "RNN_RELU": ("ih", "hh")}


@dataclass(frozen=True)
class Variant:
    """The variant keywords that change a net's computation (forget_bias and chrono_init only
    initialise it). All off: torch.nn's net."""

    layer_norm: bool | tuple[str, ...] = False  # True: everywhere; else some of LN_PLACES
    peephole: bool = False
    recurrent_dropout: float = 0.0
    zoneout: tuple[float, float] = (0.0, 0.0)  # (z_c, z_h); GRU and RNN have no c
    weight_dropout: float = 0.0

    def layer_norm_at(self, mode: str) -> tuple[str, ...]:
        """Where layer norm acts in a ``mode`` cell: some of "ih" (W_ih x_t), "hh" (W_hh h_{t-1}), "c" (c_t)."""
        return LN_PLACES[mode] if self.layer_norm is True else self.layer_norm or ()


class Extras(NamedTuple):
    """A direction's variant parameters, None where the variant is off."""

    ln_ih_weight: Tensor | None = None  # (G*H,)
    ln_hh_weight: Tensor | None = None  # (G*H,)
    ln_c_weight: Tensor | None = None  # (H,), LSTM
    ln_c_bias: Tensor | None = None  # (H,), LSTM
    weight_ch: Tensor | None = None  # (3H,), LSTM peepholes i, f, o


class Recurrence(NamedTuple):
    """What one step of a variant cell reads besides its input projection and states."""

    w_hh: Tensor  # (G*H, P)
    b_hh: Tensor | None  # (G*H,); an LSTM's is summed into the input projection instead
    w_hr: Tensor | None  # (P, H), LSTM with proj_size
    extras: Extras
    dropout_mask: Tensor | None  # (B, P) recurrent dropout's mask, scaled by 1 / (1 - p)


def layer_norm(v: Tensor, gain: Tensor | None, shift: Tensor | None = None) -> Tensor:
    """LN over the last dimension of ``v`` (B, N) with gain and shift (N,); the identity when ``gain`` is None."""
    return v if gain is None else F.layer_norm(v, v.shape[-1:], gain, shift, LN_EPS)


def recurrent_product(h: Tensor, r: Recurrence) -> Tensor:
    """u_t = LN(W_hh (m * h_{t-1}); gamma_hh) + b_hh, (B, G*H), for h (B, P)."""
    h = h if r.dropout_mask is None else h * r.dropout_mask
    if r.extras.ln_hh_weight is None:  # as the plain naive cells compute it
        return F.linear(h, r.w_hh, r.b_hh)
    product = layer_norm(F.linear(h, r.w_hh), r.extras.ln_hh_weight)
    return product if r.b_hh is None else product + r.b_hh


# A step returns the new states and the gates after their nonlinearities (rnnkit.record keeps them).
Step = tuple[tuple[Tensor, ...], tuple[Tensor, ...]]


def lstm_step(xw: Tensor, h: Tensor, c: Tensor, r: Recurrence) -> Step:
    """One LSTM step with layer norm and peepholes: xw (B, 4H) = a_t + b_hh, h (B, P), c (B, H).

    Returns (h_t (B, P), c_t (B, H)) and the gates (i, f, g, o), each (B, H).
    """
    i, f, g, o = (xw + recurrent_product(h, r)).chunk(4, dim=1)
    peephole = r.extras.weight_ch
    if peephole is not None:
        w_ci, w_cf, w_co = peephole.chunk(3)
        i, f = i + w_ci * c, f + w_cf * c
    i, f, g = i.sigmoid(), f.sigmoid(), g.tanh()
    c = f * c + i * g
    if peephole is not None:
        o = o + w_co * c
    o = o.sigmoid()
    h = o * layer_norm(c, r.extras.ln_c_weight, r.extras.ln_c_bias).tanh()
    return ((h if r.w_hr is None else F.linear(h, r.w_hr)), c), (i, f, g, o)


def gru_step(xw: Tensor, h: Tensor, r: Recurrence) -> Step:
    """One GRU step with layer norm: xw (B, 3H) = a_t, h (B, H). Returns (h_t,) and the gates (r, z, n)."""
    gates = gru_gates(xw, recurrent_product(h, r))
    _, z, n = gates
    return (n + z * (h - n),), gates


def rnn_step(xw: Tensor, h: Tensor, r: Recurrence, nonlinearity: str = "tanh") -> Step:
    """One Elman step with layer norm: xw (B, H) = a_t, h (B, H). Returns (h_t,) and no gates."""
    return (NONLINEARITIES[nonlinearity](xw + recurrent_product(h, r)),), ()


STEPS = {
    "LSTM": lstm_step,
    "GRU": gru_step,
    "RNN_TANH": partial(rnn_step, nonlinearity="tanh"),
    "RNN_RELU": partial(rnn_step, nonlinearity="relu"),
}


def input_bias(mode: str, weights: tuple[Tensor | None, ...]) -> Tensor | None:
    """The input projection's bias (G*H,): b_ih, plus b_hh for an LSTM (a GRU's b_hn sits inside r * (...))."""
    _, _, b_ih, b_hh, *_ = weights
    return summed_bias(b_ih, b_hh) if mode == "LSTM" else b_ih


def input_projection(mode: str, x: Tensor, weights: tuple[Tensor | None, ...], extras: Extras) -> Tensor:
    """a_t of every step, (T, B, G*H) for x (T, B, I): LN(W_ih x_t; gamma_ih) + ``input_bias``."""
    return projected_input(*fused_input(mode, x, weights, extras))


def fused_input(
    mode: str, x: Tensor, weights: tuple[Tensor | None, ...], extras: Extras
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """What makes a_t, as the fused loops take it: (x, W_ih, ``input_bias``, gamma_ih or None)."""
    return x, weights[0], input_bias(mode, weights), extras.ln_ih_weight


def projected_input(x: Tensor, w_ih: Tensor, bias: Tensor | None, ln_ih_weight: Tensor | None) -> Tensor:
    """a_t = LN(W_ih x_t; gamma_ih) + bias from ``fused_input``'s four, in torch ops."""
    if ln_ih_weight is None:  # as the plain naive ops compute it
        return F.linear(x, w_ih, bias)
    return layer_norm(F.linear(x, w_ih), ln_ih_weight, bias)  # the bias as LN's shift: one op


def recurrence(
    mode: str,
    xw: Tensor,
    state: tuple[Tensor, ...],
    recurrent: Recurrence,
    zone: tuple[Tensor, ...] = (),
    lengths: Tensor | None = None,
    reverse: bool = False,
    seen: list[tuple[Tensor, ...]] | None = None,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The time loop of ``direction`` from the input projection ``xw`` (T, B, G*H) on; the other
    arguments and the result as ``direction``'s."""
    step = STEPS[mode]

    def zoned_step(inputs: tuple[Tensor, ...], *state: Tensor) -> tuple[Tensor, ...]:
        xw_t, *keep = inputs
        new, gates = step(xw_t, *state, recurrent)
        new = tuple(k * s + (1 - k) * n for k, s, n in zip(keep, state, new)) if keep else new
        if seen is not None:
            seen.append((*gates, *new))
        return new

    return scan(zoned_step, (xw, *zone), state, lengths, reverse, every_state=True)


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
    seen: list[tuple[Tensor, ...]] | None = None,
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """One direction of one variant layer over a padded batch.

    Args:
        mode: ``"LSTM"``, ``"GRU"``, ``"RNN_TANH"`` or ``"RNN_RELU"``.
        x: (T, B, I); state: (h_0 (B, P), c_0 (B, H)) or (h_0 (B, H),), or each with a leading 1, as
            ``scan`` takes them.
        weights: torch's (w_ih, w_hh, b_ih, b_hh[, w_hr]); extras: the variant's parameters.
        dropout_mask: (B, P) recurrent dropout's mask, or None.
        zone: zoneout's keep masks (training) or probabilities (evaluation), one (T, B, *) per
            state in the states' order, or () without zoneout.
        lengths: (B,) steps of each sequence, or None; reverse: run from the last step back.
        seen: a list that gets each step's (*gates, *states) in the order the steps run.

    Returns:
        every step's states, each (T, B, *), zero past each length; the final states.
    """
    _, w_hh, _, b_hh, *w_hr = weights
    b_hh = None if mode == "LSTM" else b_hh  # an LSTM's is in the input projection
    recurrent = Recurrence(w_hh, b_hh, w_hr[0] if w_hr else None, extras, dropout_mask)
    xw = input_projection(mode, x, weights, extras)
    return recurrence(mode, xw, state, recurrent, zone, lengths, reverse, seen)


def noise(
    variant: Variant, training: bool, steps: int, batch: int, sizes: tuple[int, ...], like: Tensor
) -> tuple[Tensor | None, tuple[Tensor, ...]]:
    """One direction's recurrent-dropout mask and zoneout's keep tensors, in that order, by
    ``masks.bernoulli`` on ``like``'s device (same seed, same masks).

    Args:
        sizes: the states' sizes, (P, H) for LSTM or (H,); like: a tensor of the dtype and device.

    Returns:
        (B, P) mask scaled by 1 / (1 - p), or None (evaluation, or no recurrent dropout);
        keep tensors (T, B, size) per state: Bernoulli(z) in training, z in evaluation, or ().
    """
    p = variant.recurrent_dropout
    mask = None
    if training and p > 0:
        mask = bernoulli((batch, sizes[0]), 1 - p, like, 1 / (1 - p))
    zone: tuple[Tensor, ...] = ()
    z_c, z_h = variant.zoneout
    if z_c > 0 or z_h > 0:
        probabilities = (z_h, z_c)[: len(sizes)]
        zone = tuple(
            bernoulli((steps, batch, size), z, like)
            if training
            else like.new_full((1, 1, 1), z).expand(steps, batch, size)
            for z, size in zip(probabilities, sizes)
        )
    return mask, zone


def drawn_noise(variant: Variant, training: bool) -> tuple[float, float, float, bool]:
    """What the fused ops that draw their own masks take to draw ``noise``'s: (p, z_h, z_c, training)."""
    z_c, z_h = variant.zoneout
    return variant.recurrent_dropout, z_h, z_c, training


def layer(
    mode: str,
    variant: Variant,
    training: bool,
    x: Tensor,
    states: tuple[Tensor, ...],
    weights: list[tuple[Tensor | None, ...]],
    extras: list[Extras],
    lengths: Tensor | None = None,
    run: Callable[..., tuple[tuple[Tensor, ...], tuple[Tensor, ...]]] = direction,
    every_state: bool = True,
    drawn: Callable[..., tuple[tuple[Tensor, ...], tuple[Tensor, ...]]] | None = None,
) -> tuple[Tensor | tuple[Tensor, ...], ...]:
    """Every direction of one variant layer.

    Args:
        x: (T, B, I); states: each (D, B, *); weights, extras: D of each, forward first.
        run: a direction op with ``direction``'s signature (``seen`` aside): it, or a fused one.
        every_state: whether every step's states come back too.
        drawn: ``run`` drawing the masks ``noise`` draws itself (``drawn(mode, variant, training,
            x, state, weights, extras, lengths, reverse)``), for eager calls; None: ``noise`` draws them.

    Returns:
        output (T, B, D*P); final states, each (D, B, *); with ``every_state``, every step's
        states, each (D, T, B, *).
    """
    if drawn is not None and torch.compiler.is_compiling():
        drawn = None  # a traced graph draws the masks by their specification (ops/masks.py)

    def one(d: int, state: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        if drawn is not None:
            return drawn(mode, variant, training, x, state, weights[d], extras[d], lengths, d == 1)
        mask, zone = noise(variant, training, x.shape[0], x.shape[1], tuple([s.shape[-1] for s in state]), x)
        return run(mode, x, state, weights[d], extras[d], mask, zone, lengths, d == 1)

    if len(weights) == 1:  # the states whole, (1, B, *) in and out; the output is the direction's own
        every, finals = one(0, states)
        kept = (tuple([e.unsqueeze(0) for e in every]),) if every_state else ()
        return (every[0], finals, *kept)
    results = [one(d, tuple([s[d] for s in states])) for d in range(len(weights))]
    finals = tuple(torch.stack(f) for f in zip(*(r[1] for r in results)))
    if not every_state:  # the directions' outputs side by side, no stack of every state first
        return torch.cat([r[0][0] for r in results], dim=2), finals
    every = tuple(torch.stack(e) for e in zip(*(r[0] for r in results)))
    return torch.cat(tuple(every[0]), dim=2), finals, every
