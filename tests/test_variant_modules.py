"""The variant keywords of LSTM, GRU and RNN (DESIGN.md, "Variants"): parameters and their
initialisation, every combination with the modules' other arguments and input layouts, the
dropout-like variants' masks, every step's states, interop with torch.nn and the bad-input checks.
The equations themselves are checked in tests/test_variant_ops.py."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit
from rnnkit.modules import GATES
from rnnkit.ops import compiled
from rnnkit.variants import is_recurrence

from .utils import assert_close, hashed_mask

CLASSES = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN_TANH": rnnkit.RNN}
TORCH = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN_TANH": nn.RNN}
RECURRENCE = [
    dict(layer_norm=True),
    dict(recurrent_dropout=0.3),
    dict(zoneout=0.2),
    dict(layer_norm=True, recurrent_dropout=0.2, zoneout=0.1, weight_dropout=0.3),
]
LSTM_ONLY = [dict(peephole=True), dict(zoneout=(0.3, 0.1)), dict(layer_norm=True, peephole=True, zoneout=(0.1, 0.2))]
CPU_READY = compiled.unavailable_reason() is None


def variant_cases() -> list:
    cases = [(mode, kw) for mode in CLASSES for kw in RECURRENCE]
    cases += [("LSTM", kw) for kw in LSTM_ONLY]
    return [pytest.param(mode, kw, id=f"{mode}-{'-'.join(kw)}") for mode, kw in cases]


def build(mode: str, seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return CLASSES[mode](**kwargs)


@pytest.mark.parametrize(("mode", "variant"), variant_cases())
def test_torchs_weights_first_then_the_variants(mode, variant):
    """Same seed, same torch.nn weights; peepholes are the next draws, layer norm's gains 1 and shifts 0."""
    config = dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    torch.manual_seed(3)
    theirs = TORCH[mode](**config)
    after = torch.rand(1).item()
    ours = build(mode, 3, **config, **variant)
    after_ours = torch.rand(1).item()
    torch_names = [name for name, _ in theirs.named_parameters()]
    assert list(ours.state_dict())[: len(torch_names)] == torch_names
    for name, weight in theirs.named_parameters():
        assert torch.equal(getattr(ours, name), weight), name
    added = {name: p for name, p in ours.named_parameters() if name not in torch_names}
    H, G = 6, GATES[mode] * 6
    expected_shapes = {"ln_ih_weight": G, "ln_hh_weight": G, "ln_c_weight": H, "ln_c_bias": H, "weight_ch": 3 * H}
    for name, p in added.items():
        assert p.shape == (expected_shapes[name.split("_l")[0]],), name
        if name.startswith("ln_c_bias"):
            assert torch.equal(p, torch.zeros_like(p))
        elif name.startswith("ln_"):
            assert torch.equal(p, torch.ones_like(p))
    suffixes = ["_l0", "_l0_reverse", "_l1", "_l1_reverse"]
    if variant.get("peephole"):
        torch.manual_seed(3)
        TORCH[mode](**config)
        bound = 1 / math.sqrt(H)
        for suffix in suffixes:
            assert torch.equal(added[f"weight_ch{suffix}"], torch.empty(3 * H).uniform_(-bound, bound))
    else:  # nothing else drawn: the generator is where torch.nn's construction left it
        assert after_ours == after
    if variant.get("layer_norm"):
        stems = ["ln_ih_weight", "ln_hh_weight"] + (["ln_c_weight", "ln_c_bias"] if mode == "LSTM" else [])
        assert set(added) >= {stem + s for stem in stems for s in suffixes}


def random_configs(count: int, seed: int) -> list:
    """Random variant keywords with random sizes, layers, directions, proj_size, batch_first and dtype."""
    rng = random.Random(seed)
    configs = []
    for index in range(count):
        mode = rng.choice(["LSTM", "LSTM", "GRU", "RNN_TANH"])
        keywords = dict(
            layer_norm=rng.random() < 0.5,
            recurrent_dropout=rng.choice([0.0, 0.25]),
            zoneout=rng.choice([0.0, 0.3] + ([(0.2, 0.0), (0.1, 0.4)] if mode == "LSTM" else [])),
            weight_dropout=rng.choice([0.0, 0.4]),
        )
        if mode == "LSTM":
            keywords["peephole"] = rng.random() < 0.5
        config = dict(
            input_size=rng.randint(2 if keywords["layer_norm"] else 1, 6),  # LN of one feature warns
            hidden_size=rng.randint(2, 7),
            num_layers=rng.randint(1, 3),
            bidirectional=rng.random() < 0.5,
        )
        config["dropout"] = rng.choice([0.0, 0.3]) if config["num_layers"] > 1 else 0.0
        if mode == "LSTM" and rng.random() < 0.4:
            config["proj_size"] = rng.randint(1, config["hidden_size"] - 1)
        dtype = rng.choice([torch.float32, torch.float64])
        configs.append(pytest.param(mode, config, keywords, dtype, id=f"{index}-{mode}"))
    return configs


def same_seed(module: nn.Module, *args, seed: int = 11, **kwargs):
    torch.manual_seed(seed)
    return module(*args, **kwargs)


@pytest.mark.parametrize(("mode", "config", "keywords", "dtype"), random_configs(16, seed=5))
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_every_layout_gives_the_same_numbers(mode, config, keywords, dtype, training):
    """batch_first, lengths=, PackedSequence and unbatched input against the (T, B, I) padded run, with
    the same masks from the same seed; every step's states agree with the output and final states,
    and a run without them gives the same output and final states."""
    net = build(mode, **config, **keywords).to(dtype).train(training)
    T, B = 5, 3
    x = torch.randn(T, B, config["input_size"], dtype=dtype)
    lengths = torch.tensor([5, 2, 4])
    output, final, every = same_seed(net, x, lengths=lengths, all_states=True)
    finals = final if mode == "LSTM" else (final,)
    everys = every if mode == "LSTM" else (every,)
    D, L = 1 + config["bidirectional"], config["num_layers"]
    P = config.get("proj_size") or config["hidden_size"]
    assert everys[0].shape == (L * D, T, B, P)
    for e, f in zip(everys, finals, strict=True):
        for b, n in enumerate(lengths.tolist()):
            assert torch.equal(e[0::D, n - 1, b], f[0::D, b])  # forward: the last valid step
            assert D == 1 or torch.equal(e[1::2, 0, b], f[1::2, b])  # reverse: the first step
            assert bool((e[:, n:, b] == 0).all())
    assert torch.equal(output, torch.cat(tuple(everys[0][-D:]), dim=2))
    if is_recurrence(net.variant):  # else the plain kernels run it, and agree within rounding only
        alone, final_alone = same_seed(net, x, lengths=lengths)  # every step's states neither kept nor joined
        assert torch.equal(alone, output)
        for a, f in zip(final_alone if mode == "LSTM" else (final_alone,), finals, strict=True):
            assert torch.equal(a, f)

    net.batch_first = True
    first = same_seed(net, x.transpose(0, 1), lengths=lengths, all_states=True)
    assert torch.equal(first[0].transpose(0, 1), output)
    for a, e in zip(first[2] if mode == "LSTM" else (first[2],), everys):
        assert torch.equal(a.transpose(1, 2), e)
    net.batch_first = False

    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_packed, final_packed, _ = same_seed(net, packed, all_states=True)
    assert torch.equal(out_packed.data, pack_padded_sequence(output, lengths, enforce_sorted=False).data)
    for a, e in zip(final_packed if mode == "LSTM" else (final_packed,), finals):
        assert torch.equal(a, e)

    one = x[:, :1]
    batched = same_seed(net, one, all_states=True)
    unbatched = same_seed(net, one[:, 0], all_states=True)
    assert torch.equal(unbatched[0], batched[0][:, 0])
    for a, e in zip(
        unbatched[2] if mode == "LSTM" else (unbatched[2],), batched[2] if mode == "LSTM" else (batched[2],)
    ):
        assert torch.equal(a, e[:, :, 0])


@pytest.mark.parametrize(("mode", "config", "keywords", "dtype"), random_configs(6, seed=8))
def test_dropout_like_variants_are_train_mode_only(mode, config, keywords, dtype):
    """Same seed, same output in training; another seed, other masks; evaluation ignores the seed, and
    without layer norm or peepholes it is the plain net but for zoneout's expectation."""
    keywords = {**keywords, "recurrent_dropout": 0.3}
    net = build(mode, **config, **keywords).to(dtype)
    x = torch.randn(6, 2, config["input_size"], dtype=dtype)
    assert torch.equal(same_seed(net, x)[0], same_seed(net, x)[0])
    assert not torch.equal(same_seed(net, x)[0], same_seed(net, x, seed=12)[0])
    net.eval()
    assert torch.equal(same_seed(net, x)[0], same_seed(net, x, seed=12)[0])
    if not (keywords["layer_norm"] or keywords.get("peephole") or any(net.variant.zoneout)):
        plain = build(mode, **config).to(dtype).eval()
        plain.load_state_dict(net.state_dict())
        assert_close("output", net(x)[0], plain(x)[0])


def test_recurrent_dropout_mask_is_fixed_over_time_and_zoneout_is_fresh_each_step():
    """An RNN with identity-like weights: which of h_{t-1}'s units W_hh sees, step by step."""
    H, T, p = 64, 6, 0.5
    net = build("RNN_TANH", input_size=1, hidden_size=H, bias=False, recurrent_dropout=p, backend="naive")
    with torch.no_grad():
        net.weight_ih_l0.zero_()
        net.weight_hh_l0.copy_(torch.eye(H) * 0.5)
    h0 = torch.full((1, 1, H), 0.5)
    x = torch.zeros(T, 1, 1)
    output, _ = same_seed(net, x, h0)
    dropped = [(output[t] == 0).squeeze(0) for t in range(T)]
    assert 0 < int(dropped[0].sum()) < H
    assert all(torch.equal(d, dropped[0]) for d in dropped)  # one mask for every step

    zoned = build("RNN_TANH", input_size=1, hidden_size=H, bias=False, zoneout=0.5)
    with torch.no_grad():
        zoned.weight_ih_l0.zero_()
        zoned.weight_hh_l0.zero_()  # a fresh h_t is 0: a unit is non-zero where it kept h_0 every step
    output, _ = same_seed(zoned, x, h0)
    kept = (output != 0).squeeze(1)  # (T, H)
    assert bool((kept[1:] <= kept[:-1]).all())
    assert int(kept[0].sum()) < H and int(kept[1].sum()) < int(kept[0].sum())  # fresh masks each step


def test_zoneout_in_evaluation_is_the_expectation():
    z = 0.3
    ours = build("GRU", input_size=3, hidden_size=4, zoneout=z).eval()
    theirs = nn.GRU(3, 4)
    theirs.load_state_dict(ours.state_dict())
    x, h0 = torch.randn(1, 2, 3), torch.randn(1, 2, 4)
    expected = z * h0 + (1 - z) * theirs(x, h0)[1]
    assert_close("h_1", ours(x, h0)[1], expected)


@pytest.mark.parametrize("mode", list(CLASSES))
@pytest.mark.parametrize("backend", ["naive", "torch"] + (["cpu"] if CPU_READY else []))
def test_weight_dropout_keeps_torchs_state_dict_and_masks_weight_hh(mode, backend):
    p = 0.4
    ours = build(mode, input_size=3, hidden_size=5, num_layers=2, weight_dropout=p, backend=backend).double()
    theirs = TORCH[mode](3, 5, num_layers=2).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    output = same_seed(ours, x)[0]
    torch.manual_seed(11)  # one mask per weight_hh, layer by layer: ops.masks' rule for 1 - p, scaled by 1 / (1 - p)

    def dropped(w: torch.Tensor) -> torch.Tensor:
        return w * hashed_mask(tuple(w.shape), 1 - p, torch.bool) / (1 - p)

    masked = {name: dropped(w) if "weight_hh" in name else w for name, w in theirs.named_parameters()}
    expected = torch.func.functional_call(theirs, masked, (x,))[0]
    assert_close("output", output, expected)
    output.sum().backward()
    assert ours.weight_hh_l1.grad is not None and bool(ours.weight_hh_l1.grad.ne(0).any())
    ours.eval()
    assert_close("eval output", ours(x)[0], theirs(x)[0])


@pytest.mark.parametrize("mode", list(CLASSES))
def test_auto_runs_the_compiled_kernels_and_torch_says_it_cannot(mode):
    """``auto`` (and ``cpu``) run a variant and every step's states on the compiled kernels in float32
    and float64 on the CPU, on the naive ops elsewhere; ``torch`` refuses them, naming what it lacks."""
    x = torch.randn(5, 2, 3)
    auto = build(mode, input_size=3, hidden_size=4, layer_norm=True)
    naive = build(mode, input_size=3, hidden_size=4, layer_norm=True, backend="naive")
    for dtype in (torch.float32, torch.float64):
        assert rnnkit.ops.resolve_variant_backend("auto", x.to(dtype), mode) == ("cpu" if CPU_READY else "naive")
    assert rnnkit.ops.resolve_variant_backend("auto", x.bfloat16(), mode) == "naive"
    assert_close("output", auto(x)[0], naive(x)[0])
    if CPU_READY:
        plain = CLASSES[mode](3, 4, backend="cpu")
        every = plain(x, all_states=True)[2]
        assert_close("every step's h", (every[0] if mode == "LSTM" else every)[0], plain(x)[0])
        zoned = build(mode, input_size=3, hidden_size=4, zoneout=0.1, backend="cpu").eval()
        assert_close("zoneout", zoned(x)[0], build(mode, input_size=3, hidden_size=4, zoneout=0.1).eval()(x)[0])
    owner = CLASSES[mode].__name__
    with pytest.raises(ValueError, match=f"{owner}: backend='torch' does not run layer_norm=True yet"):
        CLASSES[mode](3, 4, layer_norm=True, backend="torch")
    with pytest.raises(ValueError, match=r"does not run all_states=True yet.*use backend='auto' or 'naive'"):
        CLASSES[mode](3, 4, backend="torch")(x, all_states=True)
    zoned = CLASSES[mode](3, 4, zoneout=0.1)
    zoned.backend = "torch"
    with pytest.raises(ValueError, match=r"does not run zoneout=0\.1"):
        zoned(x)


@pytest.mark.parametrize("mode", list(CLASSES))
def test_all_states_of_the_plain_net_are_torchs(mode):
    ours = build(mode, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    theirs = TORCH[mode](3, 4, num_layers=2, bidirectional=True)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 2, 3)
    output, _, every = ours(x, all_states=True)
    expected_output, expected_final = theirs(x)
    assert_close("output", output, expected_output)
    h_all = every[0] if mode == "LSTM" else every
    assert_close("h_n of the first layer", h_all[0, -1], (expected_final[0] if mode == "LSTM" else expected_final)[0])
    assert_close("last layer, forward", h_all[2], expected_output[:, :, :4])
    assert_close("last layer, reverse", h_all[3], expected_output[:, :, 4:])


def test_gradcheck_of_a_full_variant_module():
    net = build(
        "LSTM", input_size=2, hidden_size=3, num_layers=2, bidirectional=True, proj_size=2, layer_norm=True,
        peephole=True, zoneout=(0.2, 0.3), recurrent_dropout=0.2, weight_dropout=0.2, dropout=0.3,
    ).double()  # fmt: skip
    names = [name for name, _ in net.named_parameters()]
    params = tuple(p.detach().requires_grad_() for p in net.parameters())
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)

    def run(x, *weights):
        output, (h, c), (h_all, c_all) = same_seed(
            torch.func.functional_call, net, dict(zip(names, weights)), (x,), dict(lengths=[4, 2], all_states=True)
        )
        return output, h, c, h_all, c_all

    # fast mode: the Jacobian against random directions (the ops' own tests take it entry by entry)
    assert torch.autograd.gradcheck(run, (x, *params), fast_mode=True)
    net.eval()
    assert torch.autograd.gradgradcheck(run, (x, *params), fast_mode=True)


@pytest.mark.parametrize("mode", ["LSTM"])
def test_forget_bias_and_chrono_init(mode):
    net = build(mode, input_size=3, hidden_size=5, num_layers=2, bidirectional=True, forget_bias=1.5)
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        total = getattr(net, f"bias_ih{suffix}") + getattr(net, f"bias_hh{suffix}")
        assert torch.equal(total[5:10], torch.full((5,), 1.5))
    t_max = 40
    net = build(mode, input_size=3, hidden_size=500, chrono_init=t_max)
    forget = net.bias_ih_l0[500:1000]
    assert torch.equal(net.bias_ih_l0[:500], -forget)
    assert bool((net.bias_hh_l0[:1000] == 0).all())
    forget = forget.detach()
    assert float(forget.min()) >= 0 and float(forget.max()) <= math.log(t_max - 1)
    # log U[1, T_max - 1]: the median unit's time scale is about T_max / 2
    assert abs(float(forget.exp().median()) - t_max / 2) < 3
    plain = build(mode, input_size=3, hidden_size=500)
    assert torch.equal(net.weight_hh_l0, plain.weight_hh_l0)  # the initialisation draws after torch's weights


def test_from_torch_load_state_dict_and_to_torch():
    theirs = nn.LSTM(3, 4, num_layers=2)
    ours = rnnkit.LSTM.from_torch(theirs, layer_norm=True, zoneout=0.1)
    for name, weight in theirs.named_parameters():
        assert torch.equal(getattr(ours, name), weight)
    assert torch.equal(ours.ln_c_weight_l1, torch.ones(4))
    with pytest.raises(ValueError, match=r"torch.nn.LSTM has no layer_norm=True, zoneout=0.1"):
        ours.to_torch()
    fresh = rnnkit.LSTM(3, 4, num_layers=2, layer_norm=True)
    with pytest.raises(RuntimeError, match=r"rnnkit.LSTM.from_torch\(module, layer_norm=True\)"):
        fresh.load_state_dict(theirs.state_dict())
    result = fresh.load_state_dict(theirs.state_dict(), strict=False)
    assert set(result.missing_keys) == {
        f"ln_{k}_l{n}" for k in ("ih_weight", "hh_weight", "c_weight", "c_bias") for n in (0, 1)
    }
    fresh.load_state_dict(ours.state_dict())  # a variant's own state dict loads strictly
    with pytest.raises(ValueError, match=r"forget_bias \(an initialisation\) does not apply"):
        rnnkit.LSTM.from_torch(theirs, forget_bias=1.0)
    dropped = rnnkit.GRU(3, 4, weight_dropout=0.5)
    with pytest.raises(ValueError, match=r"torch\.nn\.GRU has no weight_dropout=0\.5"):
        dropped.to_torch()


BAD = [
    ("GRU", dict(peephole=True), ValueError, "peephole is an LSTM keyword"),
    ("RNN_TANH", dict(forget_bias=1.0), ValueError, "forget_bias is an LSTM keyword"),
    ("GRU", dict(chrono_init=10), ValueError, "chrono_init is an LSTM keyword"),
    ("GRU", dict(zoneout=(0.1, 0.2)), ValueError, r"zoneout should be one probability \(h only\)"),
    ("LSTM", dict(zoneout=(0.1, 0.2, 0.3)), ValueError, r"zoneout should be \(z_c, z_h\)"),
    ("LSTM", dict(zoneout=1.0), ValueError, r"zoneout should be a number in \[0, 1\)"),
    ("LSTM", dict(recurrent_dropout=-0.1), ValueError, r"recurrent_dropout should be a number in \[0, 1\)"),
    ("LSTM", dict(weight_dropout=True), ValueError, r"weight_dropout should be a number in \[0, 1\)"),
    ("LSTM", dict(layer_norm=1), TypeError, "layer_norm should be True, False, or some of .*got: int"),
    ("GRU", dict(layer_norm=("hh", "c")), ValueError, r"some of \('ih', 'hh'\).*got \('hh', 'c'\)"),
    ("LSTM", dict(layer_norm=()), ValueError, r"layer_norm should be True, False, or some of \('ih', 'hh', 'c'\)"),
    ("LSTM", dict(peephole="yes"), TypeError, "peephole should be of type bool, got: str"),
    ("LSTM", dict(chrono_init=1.5), ValueError, r"chrono_init should be T_max >= 2"),
    ("LSTM", dict(chrono_init="10"), TypeError, "chrono_init should be a number, got: str"),
    ("LSTM", dict(forget_bias=1.0, chrono_init=10), ValueError, "give one of them"),
    ("LSTM", dict(forget_bias=1.0, bias=False), ValueError, "bias=False has none"),
    ("LSTM", dict(layernorm=True), TypeError, "unexpected keyword argument 'layernorm'; the variant keywords are"),
]


@pytest.mark.parametrize(("mode", "keywords", "error", "message"), BAD, ids=[f"{m}-{'-'.join(k)}" for m, k, *_ in BAD])
def test_bad_variant_keywords(mode, keywords, error, message):
    with pytest.raises(error, match=message):
        CLASSES[mode](3, 4, **keywords)


def test_bad_all_states():
    with pytest.raises(TypeError, match="all_states should be of type bool, got: str"):
        rnnkit.GRU(3, 4)(torch.randn(2, 1, 3), all_states="yes")


def test_repr_names_the_variant():
    net = rnnkit.LSTM(3, 4, layer_norm=True, zoneout=(0.1, 0.2), forget_bias=1.0)
    assert repr(net) == "LSTM(3, 4, layer_norm=True, zoneout=(0.1, 0.2), forget_bias=1.0)"
    assert repr(rnnkit.GRU(3, 4, zoneout=0.1)) == "GRU(3, 4, zoneout=0.1)"


def test_autocast_runs_a_variant_in_the_regions_dtype():
    net = build("LSTM", input_size=3, hidden_size=4, layer_norm=True, peephole=True)
    x = torch.randn(5, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, (h, c) = net(x)
    assert output.dtype == h.dtype == c.dtype == torch.bfloat16
    assert (output.float() - net(x)[0]).abs().max() < 0.05


def test_every_keyword_combination_builds_and_runs():
    """Each subset of the LSTM's keywords, one layer both ways, forward and backward."""
    keywords = dict(layer_norm=True, peephole=True, recurrent_dropout=0.2, zoneout=0.1, weight_dropout=0.2)
    x = torch.randn(4, 2, 3)
    for count in range(len(keywords) + 1):
        for subset in itertools.combinations(keywords, count):
            net = build("LSTM", input_size=3, hidden_size=4, bidirectional=True, **{k: keywords[k] for k in subset})
            output, _ = net(x, lengths=[4, 1])
            output.sum().backward()
            assert all(p.grad is not None for p in net.parameters()), subset


def test_layer_norm_of_a_single_input_feature_warns():
    """LN(x w) of a scalar x is about sign(x) times a fixed vector: the amplitude is lost."""
    with pytest.warns(UserWarning, match="keeps little more than the sign of x_t"):
        net = rnnkit.LSTM(1, 64, layer_norm=True)
    x = torch.tensor([[[0.5]], [[3.0]]])  # two steps, the second six times the first
    a = F.layer_norm(x @ net.weight_ih_l0.T, (256,), net.ln_ih_weight_l0, eps=1e-5)
    assert (a[0] - a[1]).abs().max() < 0.05 * a[1].abs().max()


def test_layer_norm_at_some_places():
    """``layer_norm=("hh", "c")`` adds those gains only; an Elman step with LN on W_hh h_{t-1} alone, by hand."""
    lstm = rnnkit.LSTM(1, 4, layer_norm=("c", "hh"))  # one input feature: no warning, W_ih x_t is not normalised
    assert [n for n, _ in lstm.named_parameters()][4:] == ["ln_hh_weight_l0", "ln_c_weight_l0", "ln_c_bias_l0"]
    assert repr(lstm) == "LSTM(1, 4, layer_norm=('hh', 'c'))"
    assert rnnkit.GRU(3, 4, layer_norm=["hh", "ih"]).variant.layer_norm is True  # every place: True
    rnn = build("RNN_TANH", input_size=3, hidden_size=5, layer_norm="hh")
    with torch.no_grad():
        rnn.ln_hh_weight_l0.uniform_(0.5, 1.5)
    x, h0 = torch.randn(1, 2, 3), torch.randn(1, 2, 5)
    u = F.layer_norm(h0[0] @ rnn.weight_hh_l0.T, (5,), rnn.ln_hh_weight_l0, eps=1e-5)
    expected = (x[0] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + u + rnn.bias_hh_l0).tanh()
    assert_close("h_1", rnn(x, h0)[1][0], expected)
    report = rnnkit.explain(lstm, (5, 2, 1))
    assert report.passed and "u_t = LN(W_hh h_{t-1}; γ_hh)" in str(report) and "a_t =" not in str(report)
    assert "i_t = σ(W_ii x_t + b_ii + u_i + b_hi)" in str(report)
    assert report.parameters.groups[0].count == report.parameters.groups[0].formula_count == 4 * (4 + 16 + 8) + 16 + 8


CELL_VARIANTS = [
    (rnnkit.LSTMCell, nn.LSTMCell, rnnkit.LSTM, dict(layer_norm=True, peephole=True, zoneout=(0.2, 0.1))),
    (rnnkit.GRUCell, nn.GRUCell, rnnkit.GRU, dict(layer_norm=("hh",), zoneout=0.3)),
    (rnnkit.RNNCell, nn.RNNCell, rnnkit.RNN, dict(layer_norm=True)),
]


@pytest.mark.parametrize(("cell_class", "torch_class", "module_class", "keywords"), CELL_VARIANTS)
def test_a_variant_cell_in_a_loop_is_the_module(cell_class, torch_class, module_class, keywords):
    """torch.nn's weights from the same seed, the variant's after; stepped over a sequence in evaluation it
    gives the module's output; in training zoneout draws a fresh mask each call, the same from the same seed."""
    torch.manual_seed(4)
    theirs = torch_class(3, 5)
    torch.manual_seed(4)
    cell = cell_class(3, 5, **keywords)
    for name, weight in theirs.named_parameters():
        assert torch.equal(getattr(cell, name), weight), name
    module = module_class(3, 5, **keywords)
    module.load_state_dict({f"{name}_l0": value for name, value in cell.state_dict().items()})
    cell.eval(), module.eval()
    x = torch.randn(6, 2, 3, dtype=torch.float32)
    state = None
    outputs = []
    for t in range(6):
        state = cell(x[t], state)
        outputs.append(state[0] if isinstance(state, tuple) else state)
    assert_close("output", torch.stack(outputs), module(x)[0])
    assert rnnkit.explain(cell, (2, 3)).passed
    cell.train()
    wide = x[0].repeat(8, 1)  # 80 units: two seeds' zoneout masks all but surely differ
    assert torch.equal(same_seed(cell, wide)[0], same_seed(cell, wide)[0])
    if any(cell.variant.zoneout):
        assert not torch.equal(same_seed(cell, wide)[0], same_seed(cell, wide, seed=12)[0])


def test_cells_refuse_per_sequence_masks_and_fused_backends():
    with pytest.raises(ValueError, match=r"recurrent_dropout draws one mask per sequence.*rnnkit\.GRU runs"):
        rnnkit.GRUCell(3, 4, recurrent_dropout=0.1)
    with pytest.raises(ValueError, match=r"weight_dropout draws one mask per sequence.*rnnkit\.LSTM runs"):
        rnnkit.LSTMCell(3, 4, weight_dropout=0.1)
    with pytest.raises(ValueError, match="backend='torch' does not run layer_norm=True yet"):
        rnnkit.RNNCell(3, 4, layer_norm=True, backend="torch")
    with pytest.raises(ValueError, match="peephole is an LSTM keyword"):
        rnnkit.GRUCell(3, 4, peephole=True)
    cell = rnnkit.LSTMCell(3, 4, forget_bias=2.0)
    assert torch.equal((cell.bias_ih + cell.bias_hh)[4:8].detach(), torch.full((4,), 2.0))
