"""The variant ops (rnnkit/ops/variant.py): the plain net when every variant is off, the equations
checked by hand, gradcheck and double backward in float64, and the masks' draws."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnkit.modules import GATES
from rnnkit.ops import DIRECTION_OPS, variant
from rnnkit.ops.variant import Extras, Variant

from .test_naive import direction_inputs


def extras_for(mode: str, H: int, layer_norm: bool, peephole: bool, seed: int = 1) -> Extras:
    """Random float64 variant parameters (gains near 1) that require grad."""
    g = torch.Generator().manual_seed(seed)

    def rand(n, around=0.0):
        return (around + torch.rand(n, dtype=torch.float64, generator=g) - 0.5).requires_grad_()

    G = GATES[mode] * H
    lstm_ln = layer_norm and mode == "LSTM"
    return Extras(
        ln_ih_weight=rand(G, 1.0) if layer_norm else None,
        ln_hh_weight=rand(G, 1.0) if layer_norm else None,
        ln_c_weight=rand(H, 1.0) if lstm_ln else None,
        ln_c_bias=rand(H) if lstm_ln else None,
        weight_ch=rand(3 * H) if peephole else None,
    )


@pytest.mark.parametrize("mode", list(GATES))
@pytest.mark.parametrize("lengths", [None, [4, 1, 2]])
@pytest.mark.parametrize("reverse", [False, True])
def test_without_variants_it_is_the_naive_op(mode, lengths, reverse):
    for proj in [False, True] if mode == "LSTM" else [False]:
        x, states, weights = direction_inputs(mode, proj, True)
        lengths_ = None if lengths is None else torch.tensor(lengths)
        every, final = variant.direction(mode, x, states, weights, Extras(), lengths=lengths_, reverse=reverse)
        output, expected = DIRECTION_OPS[mode, "naive"](x, states, weights, lengths_, reverse)
        assert torch.equal(every[0], output)
        for a, e in zip(final, expected, strict=True):
            assert torch.equal(a, e)
        if lengths is not None:  # every state is zero past each length, as the output
            for b, n in enumerate(lengths):
                assert all(bool((s[n:, b] == 0).all()) for s in every)


def test_lstm_step_by_hand():
    """Layer norm, peepholes and LN on c written out for one step, with a recurrent-dropout mask."""
    x, (h, c), (w_ih, w_hh, b_ih, b_hh, _) = direction_inputs("LSTM", False, True, T=1)
    e = extras_for("LSTM", 3, layer_norm=True, peephole=True)
    mask = torch.tensor([[2.0, 0.0, 2.0]], dtype=torch.float64).expand(3, 3)

    def ln(v, gain, shift=0.0):
        mean = v.mean(-1, keepdim=True)
        var = ((v - mean) ** 2).mean(-1, keepdim=True)
        return gain * (v - mean) / torch.sqrt(var + 1e-5) + shift

    pre = ln(x[0] @ w_ih.T, e.ln_ih_weight) + b_ih + ln((h * mask) @ w_hh.T, e.ln_hh_weight) + b_hh
    i, f, g, o = pre.chunk(4, dim=1)
    w_ci, w_cf, w_co = e.weight_ch.chunk(3)
    c_new = torch.sigmoid(f + w_cf * c) * c + torch.sigmoid(i + w_ci * c) * torch.tanh(g)
    h_new = torch.sigmoid(o + w_co * c_new) * torch.tanh(ln(c_new, e.ln_c_weight, e.ln_c_bias))

    _, (h_n, c_n) = variant.direction("LSTM", x, (h, c), (w_ih, w_hh, b_ih, b_hh, None), e, mask)
    torch.testing.assert_close(h_n, h_new, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(c_n, c_new, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["GRU", "RNN_TANH", "RNN_RELU"])
def test_layer_norm_step_by_hand(mode):
    x, (h,), (w_ih, w_hh, b_ih, b_hh) = direction_inputs(mode, False, True, T=1)
    e = extras_for(mode, 3, layer_norm=True, peephole=False)
    a = F.layer_norm(x[0] @ w_ih.T, (w_ih.shape[0],), e.ln_ih_weight, eps=1e-5) + b_ih
    u = F.layer_norm(h @ w_hh.T, (w_hh.shape[0],), e.ln_hh_weight, eps=1e-5) + b_hh
    if mode == "GRU":
        (a_r, a_z, a_n), (u_r, u_z, u_n) = a.chunk(3, dim=1), u.chunk(3, dim=1)
        r, z = torch.sigmoid(a_r + u_r), torch.sigmoid(a_z + u_z)
        expected = (1 - z) * torch.tanh(a_n + r * u_n) + z * h
    else:
        expected = torch.tanh(a + u) if mode == "RNN_TANH" else torch.relu(a + u)
    _, (h_n,) = variant.direction(mode, x, (h,), (w_ih, w_hh, b_ih, b_hh), e)
    torch.testing.assert_close(h_n, expected, rtol=1e-12, atol=1e-14)


def test_recurrent_dropout_of_one_sequence_drops_columns_of_w_hh():
    """One sequence's mask m on h_{t-1} is W_hh with its columns scaled by m, at every step."""
    x, states, (w_ih, w_hh, b_ih, b_hh, w_hr) = direction_inputs("LSTM", True, True, B=1)
    mask = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    _, final = variant.direction("LSTM", x, states, (w_ih, w_hh, b_ih, b_hh, w_hr), Extras(), mask)
    _, expected = DIRECTION_OPS["LSTM", "naive"](x, states, (w_ih, w_hh * mask, b_ih, b_hh, w_hr))
    for a, e in zip(final, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", list(GATES))
def test_zoneout_keeps_the_masked_units(mode):
    """keep = 1: the state never moves; keep = 0: the plain step; eval's keep = z: z*prev + (1-z)*new."""
    x, states, weights = direction_inputs(mode, False, True, T=1)
    ones = tuple(torch.ones(1, *s.shape, dtype=torch.float64) for s in states)
    _, kept = variant.direction(mode, x, states, weights, Extras(), zone=ones)
    _, plain = DIRECTION_OPS[mode, "naive"](x, states, weights)
    _, fresh = variant.direction(mode, x, states, weights, Extras(), zone=tuple(0 * k for k in ones))
    _, half = variant.direction(mode, x, states, weights, Extras(), zone=tuple(0.25 * k for k in ones))
    for s, k, p, f, q in zip(states, kept, plain, fresh, half, strict=True):
        assert torch.equal(k, s) and torch.equal(f, p)
        torch.testing.assert_close(q, 0.25 * s + 0.75 * p, rtol=1e-12, atol=1e-14)


CASES = [
    pytest.param(mode, proj, ln, peep, zone, drop, id=f"{mode}{'-proj' * proj}{'-ln' * ln}{'-peep' * peep}{zone}{drop}")
    for mode, proj, ln, peep, zone, drop in [
        ("LSTM", False, True, False, "", ""),
        ("LSTM", True, True, True, "-zone", "-drop"),
        ("LSTM", False, False, True, "-zone", ""),
        ("GRU", False, True, False, "-zone", "-drop"),
        ("RNN_TANH", False, True, False, "", "-drop"),
        ("RNN_RELU", False, True, False, "-zone", ""),
    ]
]


@pytest.mark.parametrize(("mode", "proj", "ln", "peep", "zone", "drop"), CASES)
def test_gradcheck_and_gradgradcheck(mode, proj, ln, peep, zone, drop):
    x, states, weights = direction_inputs(mode, proj, True)
    extras = extras_for(mode, 3, ln, peep)
    g = torch.Generator().manual_seed(2)
    mask = torch.bernoulli(torch.full(states[0].shape, 0.7, dtype=torch.float64), generator=g) / 0.7 if drop else None
    keep = tuple(torch.bernoulli(torch.full((4, *s.shape), 0.3, dtype=torch.float64), generator=g) for s in states)
    lengths = torch.tensor([4, 1, 2])
    present = [w for w in (*weights, *extras) if w is not None]

    def fn(x, *rest):
        state, rest = rest[: len(states)], list(rest[len(states) :])
        full = [None if w is None else rest.pop(0) for w in (*weights, *extras)]
        every, final = variant.direction(
            mode, x, state, tuple(full[: len(weights)]), Extras(*full[len(weights) :]), mask,
            keep if zone else (), lengths, reverse=True,
        )  # fmt: skip
        return (*every, *final)

    tensors = [x, *states, *present]
    assert torch.autograd.gradcheck(fn, tensors)
    assert torch.autograd.gradgradcheck(fn, tensors, fast_mode=True)


def test_masks_come_from_the_generator_and_have_their_laws():
    like = torch.empty(0)
    v = Variant(recurrent_dropout=0.25, zoneout=(0.1, 0.4))
    torch.manual_seed(3)
    mask, (keep_h, keep_c) = variant.noise(v, True, 200, 64, (32, 48), like)
    torch.manual_seed(3)
    again, zone = variant.noise(v, True, 200, 64, (32, 48), like)
    assert torch.equal(mask, again) and all(torch.equal(a, b) for a, b in zip(zone, (keep_h, keep_c)))
    assert mask.shape == (64, 32) and set(mask.unique().tolist()) == {0.0, torch.tensor(1 / 0.75).item()}
    assert abs((mask == 0).double().mean().item() - 0.25) < 0.03
    assert keep_h.shape == (200, 64, 32) and keep_c.shape == (200, 64, 48)
    assert abs(keep_h.mean().item() - 0.4) < 0.01 and abs(keep_c.mean().item() - 0.1) < 0.01
    assert not torch.equal(keep_h[0], keep_h[1])  # a fresh zoneout mask each step
    none, (eval_h, eval_c) = variant.noise(v, False, 5, 2, (3, 4), like)
    assert none is None and bool((eval_h == 0.4).all()) and bool((eval_c == 0.1).all())
    assert variant.noise(Variant(recurrent_dropout=0.5), True, 5, 2, (3,), like)[1] == ()


def test_layer_runs_both_directions_with_their_own_masks():
    x, states, weights = direction_inputs("GRU", False, True)
    extras = extras_for("GRU", 3, layer_norm=True, peephole=False)
    two = tuple(torch.stack([s, s.flip(0)]) for s in states)
    v = Variant(layer_norm=True, recurrent_dropout=0.5, zoneout=(0.0, 0.3))
    torch.manual_seed(0)
    output, final, every = variant.layer("GRU", v, True, x, two, [weights, weights], [extras, extras])
    torch.manual_seed(0)
    masks = [variant.noise(v, True, 4, 3, (3,), x) for _ in range(2)]
    for d in range(2):
        expected, expected_final = variant.direction(
            "GRU", x, tuple(s[d] for s in two), weights, extras, *masks[d], reverse=d == 1
        )
        assert torch.equal(every[0][d], expected[0]) and torch.equal(final[0][d], expected_final[0])
        assert torch.equal(output[..., 3 * d : 3 * d + 3], expected[0])
    assert not torch.equal(masks[0][0], masks[1][0])
