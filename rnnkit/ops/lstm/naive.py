r"""LSTM in plain torch ops: the specification every fast LSTM path is tested against.

.. math::
    i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi})
    f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf})
    g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg})
    o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho})
    c_t = f_t \odot c_{t-1} + i_t \odot g_t
    h_t = W_{hr} (o_t \odot \tanh(c_t))          (W_{hr} only with proj_size > 0)

Dimensions: T steps, B batch, I input features, H hidden units, P = proj_size or H.
Gate blocks are stacked i, f, g, o along the rows of W_ih (4H, I) and W_hh (4H, P).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..scan import scan, summed_bias


def lstm_gates(xw: Tensor, hw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four gates of one LSTM step, after their nonlinearities.

    Args:
        xw: (B, 4H) input projection ``W_ih x_t + b_ih``.
        hw: (B, 4H) recurrent projection ``W_hh h_{t-1} (+ b_hh)``.

    Returns:
        i_t, f_t, g_t, o_t, each (B, H).
    """
    i, f, g, o = (xw + hw).chunk(4, dim=1)
    return i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()


def lstm_cell(
    xw: Tensor,
    h: Tensor,
    c: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step.

    Args:
        xw: (B, 4H) input projection ``W_ih x_t + b_ih``.
        h: (B, P) previous hidden state; c: (B, H) previous cell state.
        w_hh: (4H, P); b_hh: (4H,) or None; w_hr: (P, H) or None.

    Returns:
        h_t (B, P), c_t (B, H).
    """
    i, f, g, o = lstm_gates(xw, F.linear(h, w_hh, b_hh))
    c = f * c + i * g
    h = o * c.tanh()
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


def lstm(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weights: tuple[Tensor | None, ...],
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One direction of one LSTM layer over a padded batch.

    Args:
        x: (T, B, I) input.
        state: (h_0 (B, P), c_0 (B, H)), or each with a leading 1, as ``scan`` takes them.
        weights: (w_ih (4H, I), w_hh (4H, P), b_ih (4H,) | None, b_hh (4H,) | None,
            w_hr (P, H) | None).
        lengths: (B,) steps of each sequence, or None for all T.
        reverse: run from the last valid step back to the first.

    Returns:
        output (T, B, P), zero past each length; (h_n (B, P), c_n (B, H)), shaped as the states given.
    """
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    xw = F.linear(x, w_ih, summed_bias(b_ih, b_hh))  # (T, B, 4H): all input projections in one GEMM
    return scan(
        lambda xw_t, h, c: lstm_cell(xw_t, h, c, w_hh, None, w_hr),
        xw,
        state,
        lengths,
        reverse,
    )
