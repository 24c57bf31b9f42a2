r"""GRU in plain torch ops: the specification every fast GRU path is tested against.

.. math::
    r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr})
    z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz})
    n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
    h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}

Dimensions: T steps, B batch, I input features, H hidden units.
Gate blocks are stacked r, z, n along the rows of W_ih (3H, I) and W_hh (3H, H).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..scan import scan


def gru_gates(xw: Tensor, hw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The three gates of one GRU step, after their nonlinearities.

    Args:
        xw: (B, 3H) input projection ``W_ih x_t + b_ih``.
        hw: (B, 3H) recurrent projection ``W_hh h_{t-1} + b_hh``.

    Returns:
        r_t, z_t, n_t, each (B, H).
    """
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    h_r, h_z, h_n = hw.chunk(3, dim=1)
    r = (x_r + h_r).sigmoid()
    z = (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()  # b_hn sits inside r * (...), as in torch and cuDNN
    return r, z, n


def gru_cell(xw: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None = None) -> tuple[Tensor]:
    """One GRU step.

    Args:
        xw: (B, 3H) input projection ``W_ih x_t + b_ih``; h: (B, H).
        w_hh: (3H, H); b_hh: (3H,) or None.

    Returns:
        (h_t (B, H),)
    """
    _, z, n = gru_gates(xw, F.linear(h, w_hh, b_hh))
    # (1 - z) n + z h as torch's kernels compute it: the gradient in z is then (h - n), exact where h ~ n.
    return (n + z * (h - n),)


def gru(
    x: Tensor,
    state: tuple[Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, tuple[Tensor]]:
    """One direction of one GRU layer over a padded batch.

    Args:
        x: (T, B, I) input; state: (h_0 (B, H),), or (1, B, H) as ``scan`` takes it.
        weights: (w_ih (3H, I), w_hh (3H, H), b_ih (3H,) | None, b_hh (3H,) | None).
        lengths: (B,) steps of each sequence, or None for all T.
        reverse: run from the last valid step back to the first.

    Returns:
        output (T, B, H), zero past each length; (h_n (B, H),), shaped as h_0.
    """
    w_ih, w_hh, b_ih, b_hh = weights
    xw = F.linear(x, w_ih, b_ih)  # (T, B, 3H)
    return scan(lambda xw_t, h: gru_cell(xw_t, h, w_hh, b_hh), xw, state, lengths, reverse)
