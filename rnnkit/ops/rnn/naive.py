r"""Elman RNN in plain torch ops: the specification every fast RNN path is tested against.

.. math::
    h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}),  \phi = \tanh or ReLU

Dimensions: T steps, B batch, I input features, H hidden units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..scan import scan

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


def rnn_cell(
    xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None = None, nonlinearity: str = "tanh"
) -> tuple[Tensor]:
    """One RNN step: xw (B, H) = ``W_ih x_t + b_ih``, h (B, H), w_hh (H, H) -> (h_t (B, H),)."""
    return (NONLINEARITIES[nonlinearity](xw + F.linear(h, w_hh, b_hh)),)


def rnn(
    x: Tensor,
    state: tuple[Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
) -> tuple[Tensor, tuple[Tensor]]:
    """One direction of one RNN layer over a padded batch.

    Args:
        x: (T, B, I) input; state: (h_0 (B, H),), or (1, B, H) as ``scan`` takes it.
        weights: (w_ih (H, I), w_hh (H, H), b_ih (H,) | None, b_hh (H,) | None).
        lengths: (B,) steps of each sequence, or None for all T.
        reverse: run from the last valid step back to the first.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        output (T, B, H), zero past each length; (h_n (B, H),), shaped as h_0.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    xw = F.linear(x, w_ih, b_ih)  # (T, B, H)
    return scan(lambda xw_t, h: rnn_cell(xw_t, h, w_hh, b_hh, nonlinearity), xw, state, lengths, reverse)
