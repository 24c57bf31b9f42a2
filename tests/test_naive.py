"""The naive ops: gradcheck and double backward in float64, lengths in both directions."""

from __future__ import annotations

import pytest
import torch

from rnnkit.modules import GATES
from rnnkit.ops import DIRECTION_OPS


def direction_inputs(mode: str, proj: bool, bias: bool, T: int = 4, B: int = 3, I: int = 2, H: int = 3, P: int = 2):
    """Float64 inputs for one direction op, small by default: x, states, weights (all requiring grad).

    T steps, B sequences, I input features, H hidden units, P = proj_size where ``proj``.
    """
    g = torch.Generator().manual_seed(0)
    P = P if proj else H

    def rand(*shape):
        return (torch.rand(*shape, dtype=torch.float64, generator=g) - 0.5).requires_grad_()

    x = rand(T, B, I)
    states = (rand(B, P), rand(B, H)) if mode == "LSTM" else (rand(B, H),)
    G = GATES[mode] * H
    weights = [rand(G, I), rand(G, P), rand(G) if bias else None, rand(G) if bias else None]
    if mode == "LSTM":
        weights.append(rand(P, H) if proj else None)
    return x, states, tuple(weights)


CASES = [
    pytest.param(
        mode,
        proj,
        bias,
        lengths,
        reverse,
        id=f"{mode}{'-proj' * proj}-{'bias' if bias else 'nobias'}-{'len' if lengths else 'full'}{'-rev' * reverse}",
    )
    for mode in GATES
    for proj in ([False, True] if mode == "LSTM" else [False])
    for bias in (True, False)
    for lengths in (None, [4, 1, 2])
    for reverse in (False, True)
]


@pytest.mark.parametrize(("mode", "proj", "bias", "lengths", "reverse"), CASES)
def test_gradcheck_and_gradgradcheck(mode, proj, bias, lengths, reverse):
    x, states, weights = direction_inputs(mode, proj, bias)
    op = DIRECTION_OPS[mode, "naive"]
    tensors = [x, *states, *(w for w in weights if w is not None)]
    lengths = None if lengths is None else torch.tensor(lengths)

    def fn(x, *rest):
        state, rest = rest[: len(states)], list(rest[len(states) :])
        full = tuple(None if w is None else rest.pop(0) for w in weights)
        output, final = op(x, state, full, lengths, reverse)
        return (output, *final)

    assert torch.autograd.gradcheck(fn, tensors)
    # fast mode checks the second derivatives along random directions rather than every column
    assert torch.autograd.gradgradcheck(fn, tensors, fast_mode=True)


@pytest.mark.parametrize("mode", list(GATES))
def test_lengths_freeze_state_and_zero_output(mode):
    """Forward: state frozen after each length. Reverse: each sequence starts at its own last step."""
    x, states, weights = direction_inputs(mode, False, True)
    op = DIRECTION_OPS[mode, "naive"]
    lengths = torch.tensor([4, 1, 2])
    for reverse in (False, True):
        output, final = op(x, states, weights, lengths, reverse)
        for b, n in enumerate(lengths.tolist()):
            alone, alone_final = op(x[:n, b : b + 1], tuple(s[b : b + 1] for s in states), weights, None, reverse)
            torch.testing.assert_close(output[:n, b : b + 1], alone, rtol=0, atol=1e-12)
            assert bool((output[n:, b] == 0).all())
            for f, a in zip(final, alone_final, strict=True):
                torch.testing.assert_close(f[b : b + 1], a, rtol=0, atol=1e-12)
