"""The masked time loop shared by every naive op, ``layer``: a direction op run over a layer's directions,
and ``summed_bias``.

Dimensions: T time steps, B batch, G*H gate width (G gates of H units).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

State = tuple[Tensor, ...]


def scan(
    step: Callable[..., State],
    xw: Tensor | tuple[Tensor, ...],
    state: State,
    lengths: Tensor | None = None,
    reverse: bool = False,
    every_state: bool = False,
) -> tuple[Tensor | State, State]:
    """Run ``step`` over time and collect the first state of each step as output.

    Args:
        step: ``step(xw_t, *state) -> new_state``; ``new_state[0]`` is the output h_t.
        xw: (T, B, G*H) input projections ``W_ih x_t + b_ih`` of every step, or a tuple of
            (T, B, *) tensors, whose step t reaches ``step`` as the tuple of their [t].
        state: initial states, each (B, *), or (1, B, *) (``layer``'s of one direction).
        lengths: (B,) integer steps of each sequence, or None when all run T steps.
        reverse: walk t = T-1 .. 0 (the backward direction of a bidirectional layer).
        every_state: collect every state of each step, not only the first.

    Returns:
        output (T, B, *) holding ``new_state[0]`` of each step, zero at t >= lengths[b] (with
        ``every_state``, a tuple of such (T, B, *) tensors, one per state);
        the final states, taken at each sequence's last valid step, each in its initial state's shape.

    A step at t >= lengths[b] leaves sequence b's state unchanged. Going forward
    this freezes the state after the last valid step; going in reverse it keeps
    the initial state until t = lengths[b] - 1, where the sequence really starts.
    """
    given = state
    state = tuple([s[0] if s.dim() == 3 else s for s in state])
    first = xw[0] if isinstance(xw, tuple) else xw
    steps = range(first.shape[0] - 1, -1, -1) if reverse else range(first.shape[0])
    # One unbind, not xw[t] at every step: each select's backward writes a zero (T, B, G*H) tensor
    # with one step filled in, T of them in all (it was 80% of a backward at T = 100).
    columns = tuple(x.unbind(0) for x in xw) if isinstance(xw, tuple) else xw.unbind(0)
    valid = None if lengths is None else lengths.to(first.device)
    kept = len(state) if every_state else 1
    outputs: list[list[Tensor]] = [[first] * first.shape[0] for _ in range(kept)]
    for t in steps:
        new = step(tuple(column[t] for column in columns) if isinstance(xw, tuple) else columns[t], *state)
        if valid is not None:
            alive = (t < valid).unsqueeze(1)  # (B, 1)
            new = tuple(torch.where(alive, n, s) for n, s in zip(new, state))
            shown = tuple(torch.where(alive, n, torch.zeros_like(n)) for n in new[:kept])
        else:
            shown = new[:kept]
        for column, value in zip(outputs, shown):
            column[t] = value
        state = new
    stacked = tuple(torch.stack(column) for column in outputs)
    final = tuple([s.unsqueeze(0) if g.dim() == 3 else s for s, g in zip(state, given)])
    return (stacked if every_state else stacked[0]), final


def layer(
    op: Callable[..., tuple[Tensor, State]],
    x: Tensor,
    state: State,
    weights: list[tuple[Tensor | None, ...]],
    lengths: Tensor | None = None,
) -> tuple[Tensor, State]:
    """Run a direction op (``op(x, state, weights, lengths, reverse)``) over each direction of a layer.

    Args:
        x: (T, B, I); state: initial states, each (D, B, *); weights: D tuples, forward first.

    Returns:
        output (T, B, D*H_out), the directions' outputs side by side; final states, each (D, B, *).
    """
    if len(weights) == 1:  # the states whole, (1, B, *) in and out: no select, no unsqueeze, no copy
        return op(x, state, weights[0], lengths)
    outputs, finals = zip(*(op(x, tuple(s[d] for s in state), w, lengths, d == 1) for d, w in enumerate(weights)))
    return torch.cat(outputs, dim=2), tuple(torch.stack(f) for f in zip(*finals))


def summed_bias(b_ih: Tensor | None, b_hh: Tensor | None, dtype: torch.dtype | None = None) -> Tensor | None:
    """b_ih + b_hh (in ``dtype``, else theirs), for a cell that adds both to the same products (LSTM,
    Elman RNN), or None without biases.

    Summed first, as torch.nn's CPU LSTM (oneDNN) does: where they nearly cancel their sum is exact,
    while adding them to the products one at a time rounds at their size.
    """
    b_ih, b_hh = (b if b is None or dtype is None else b.to(dtype) for b in (b_ih, b_hh))
    return b_ih if b_hh is None else b_hh if b_ih is None else b_ih + b_hh
