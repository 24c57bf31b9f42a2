"""rnnkit.record: the recorded gates and states are what the model computed, on every backend and with lengths."""

from __future__ import annotations

import zlib

import pytest
import torch
from torch import nn

import rnnkit

from .utils import MODES, Config, assert_close, make_inputs, make_pair, random_configs, run_ours, run_torch

CONFIGS = [c for i, mode in enumerate(MODES) for c in random_configs(mode, 10, seed=200 + i)]


def time_major(config: Config, output: torch.Tensor) -> torch.Tensor:
    """The model's padded output as (T, B, *), the recording's layout."""
    if config.unbatched:
        return output.unsqueeze(1)
    return output.transpose(0, 1) if config.batch_first else output


# "auto" is the compiled CPU backend where it builds, torch's kernels elsewhere
@pytest.mark.parametrize("library", ["torch.nn", "rnnkit-naive", "rnnkit-torch", "rnnkit-auto"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_recording_reproduces_the_model(config: Config, library: str) -> None:
    reference, ours = make_pair(config, "naive" if library == "torch.nn" else library.removeprefix("rnnkit-"))
    model, runner = (reference, run_torch) if library == "torch.nn" else (ours, run_ours)
    x, states = make_inputs(config, torch.Generator().manual_seed(zlib.crc32(config.id.encode())))
    with rnnkit.record(model) as rec:
        output, final = runner(model, config, x, states)
    assert_close("output", rec.output, time_major(config, output.detach()))
    batched = [s if not config.unbatched else s.unsqueeze(1) for s in final]
    assert_close("h_n", rec.h_n, batched[0].detach())
    if config.mode == "LSTM":
        assert_close("c_n", rec.c_n, batched[1].detach())
    directions = 2 if config.bidirectional else 1
    assert len(rec.traces) == config.num_layers * directions
    steps = config.steps
    batch = 1 if config.unbatched else config.batch
    lengths = torch.tensor(config.lengths or [steps] * batch)
    valid = torch.arange(steps).unsqueeze(1) < lengths
    assert torch.equal(rec.valid, valid)
    for trace in rec.traces:
        assert list(trace.gates) == list(rec.gate_names)
        for name, values in [*trace.gates.items(), ("h", trace.h)]:
            assert values.shape[:2] == (steps, batch), name
            assert not values[valid].isnan().any() and values[~valid].isnan().all(), name


def test_sweep_covers_every_input_form() -> None:
    for flag in ("bidirectional", "batch_first", "unbatched", "packed", "with_hx"):
        assert any(getattr(c, flag) for c in CONFIGS), flag
    assert any(c.lengths and not c.packed for c in CONFIGS) and any(c.proj_size for c in CONFIGS)


def test_gates_are_the_equations() -> None:
    """Step 0 of layer 0 by hand from the weight blocks: LSTM i, f, g, o and GRU r, z, n (b_hn inside r)."""
    torch.manual_seed(0)
    x, H = torch.randn(4, 2, 3), 5
    lstm = nn.LSTM(3, H)
    with rnnkit.record(lstm) as rec:
        lstm(x)
    pre = x[0] @ lstm.weight_ih_l0.T + lstm.bias_ih_l0 + lstm.bias_hh_l0  # h_0 = 0
    blocks = pre.split(H, dim=1)
    expected = {"i": blocks[0].sigmoid(), "f": blocks[1].sigmoid(), "g": blocks[2].tanh(), "o": blocks[3].sigmoid()}
    for name, value in expected.items():
        torch.testing.assert_close(rec.trace().gates[name][0], value.detach())
    torch.testing.assert_close(rec.trace().c[0], (expected["i"] * expected["g"]).detach())

    gru = nn.GRU(3, H)
    h0 = torch.randn(1, 2, H)
    with rnnkit.record(gru) as rec:
        gru(x, h0)
    x_r, x_z, x_n = (x[0] @ gru.weight_ih_l0.T + gru.bias_ih_l0).split(H, dim=1)
    h_r, h_z, h_n = (h0[0] @ gru.weight_hh_l0.T + gru.bias_hh_l0).split(H, dim=1)
    r = (x_r + h_r).sigmoid()
    torch.testing.assert_close(rec.trace().gates["r"][0], r.detach())
    torch.testing.assert_close(rec.trace().gates["z"][0], (x_z + h_z).sigmoid().detach())
    torch.testing.assert_close(rec.trace().gates["n"][0], (x_n + r * h_n).tanh().detach())


def test_a_cell_called_in_a_loop_records_a_sequence() -> None:
    cell = rnnkit.LSTMCell(3, 4, backend="torch")
    hx, hs = None, []
    with rnnkit.record(cell) as rec:
        for x_t in torch.randn(6, 2, 3):
            hx = cell(x_t, hx)
            hs.append(hx[0].detach())
    assert rec.trace().gates["f"].shape == (6, 2, 4)
    assert_close("h", rec.trace().h, torch.stack(hs))
    assert_close("c_n", rec.c_n[0], hx[1].detach())


def test_calls_stack_along_time_and_the_hook_goes_away() -> None:
    gru = rnnkit.GRU(3, 4, backend="naive")
    with rnnkit.record(gru) as rec:
        _, h = gru(torch.randn(5, 2, 3))
        gru(torch.randn(2, 2, 3), h)
    assert rec.valid.shape == (7, 2) and rec.trace().gates["z"].shape == (7, 2, 4)
    gru(torch.randn(5, 2, 3))  # outside the block: not recorded
    assert rec.valid.shape == (7, 2)
    assert not gru._forward_hooks
    with pytest.raises(ValueError, match="expected B=2, got B=3"), rnnkit.record(gru) as rec:
        gru(torch.randn(5, 2, 3))
        gru(torch.randn(5, 3, 3))


def test_a_model_holding_the_rnn_is_recorded() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.GRU(3, 4, batch_first=True))
    with rnnkit.record(model) as rec:
        output, _ = model(torch.randn(2, 6, 3))
    assert_close("output", rec.output, output.transpose(0, 1).detach())


def test_dropout_in_training_mode_is_refused() -> None:
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.3)
    with pytest.raises(RuntimeError, match=r"call model.eval\(\)"), rnnkit.record(lstm):
        lstm(torch.randn(5, 2, 3))
    with rnnkit.record(lstm.eval()) as rec:
        output, _ = lstm(torch.randn(5, 2, 3))
    assert_close("output", rec.output, output.detach())


def test_empty_recording_and_bad_indices() -> None:
    lstm = nn.LSTM(3, 4, bidirectional=True)
    with rnnkit.record(lstm) as rec:
        pass
    with pytest.raises(RuntimeError, match="nothing recorded"):
        rec.trace()
    with rnnkit.record(lstm) as rec:
        lstm(torch.randn(2, 1, 3))
    assert rec.trace(0, 1).label == "layer 0 reverse"
    with pytest.raises(IndexError, match="layer must be in"):
        rec.trace(1)
    with pytest.raises(IndexError, match="direction must be 0 or 1"):
        rec.trace(0, 2)


VARIANTS = [
    (rnnkit.LSTM, dict(layer_norm=True, peephole=True, zoneout=(0.2, 0.1), recurrent_dropout=0.3, proj_size=2)),
    (rnnkit.GRU, dict(layer_norm=True, zoneout=0.2, weight_dropout=0.3)),
    (rnnkit.RNN, dict(layer_norm=True, recurrent_dropout=0.2)),
]


@pytest.mark.parametrize(("cls", "keywords"), VARIANTS, ids=[cls.__name__ for cls, _ in VARIANTS])
def test_a_variant_is_recorded_in_evaluation_and_refused_in_training(cls, keywords) -> None:
    torch.manual_seed(0)
    model = cls(3, 4, num_layers=2, bidirectional=True, **keywords).eval()
    x, lengths = torch.randn(5, 3, 3), [5, 2, 4]
    with rnnkit.record(model) as rec:
        output, final = model(x, lengths=lengths)
    torch.testing.assert_close(rec.output, output)
    torch.testing.assert_close(rec.h_n, final[0] if isinstance(final, tuple) else final)
    if cls is rnnkit.LSTM:  # the gates by hand at step 0 of layer 0 (h_0 = c_0 = 0: no peephole, u_t = LN(0) = 0)
        a = torch.nn.functional.layer_norm(x[0] @ model.weight_ih_l0.T, (16,), model.ln_ih_weight_l0, eps=1e-5)
        i, f, g, o = (a + model.bias_ih_l0 + model.bias_hh_l0).split(4, dim=1)
        c = i.sigmoid() * g.tanh()
        expected = {"i": i.sigmoid(), "f": f.sigmoid(), "g": g.tanh()}
        for name, value in expected.items():
            torch.testing.assert_close(rec.trace(0).gates[name][0], value.detach())
        o = (o + model.weight_ch_l0[8:] * c).sigmoid()
        torch.testing.assert_close(rec.trace(0).gates["o"][0], o.detach())
        torch.testing.assert_close(rec.trace(0).c[0], (0.8 * c).detach())  # zoneout's expectation, z_c = 0.2
    model.train()
    with (
        pytest.raises(RuntimeError, match=r"cannot reproduce the random masks of .*; call model\.eval"),
        rnnkit.record(model),
    ):
        model(x)
