"""rnnkit.plots: the PNGs are valid and every panel shows exactly the recorded (or stored) array."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch
from torch import nn

import rnnkit

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def panels(figure) -> dict[str, np.ndarray]:
    """Title -> the array drawn in that panel (NaN where blank)."""
    return {ax.get_title(): np.ma.filled(ax.images[0].get_array(), np.nan) for ax in figure.axes if ax.images}


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


def test_gates_heatmaps_are_the_recorded_arrays(tmp_path) -> None:
    torch.manual_seed(0)
    lstm = rnnkit.LSTM(3, 4, bidirectional=True, batch_first=True, backend="naive")
    text = "hi there"
    with rnnkit.record(lstm) as rec:
        lstm(torch.randn(2, len(text), 3), lengths=[8, 5])
    figure = rnnkit.plots.gates(rec, sample=1, tokens=list(text))
    drawn = panels(figure)
    assert len(drawn) == 2 * 6  # 2 directions; i, f, g, o, c, h
    for trace in rec.traces:
        for name in ("i", "f", "g", "o", "c", "h"):
            recorded = trace.gates[name] if name in trace.gates else getattr(trace, name)
            title = next(t for t in drawn if t.startswith(f"{trace.label}: {name}_t"))
            np.testing.assert_array_equal(drawn[title], recorded[:, 1].T.double().numpy())
    blank = drawn["layer 0 forward: f_t forget gate"]
    assert np.isnan(blank[:, 5:]).all() and not np.isnan(blank[:, :5]).any()  # sample 1 has 5 steps
    ax = figure.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["h", "i", "␣", "t", "h", "e", "r", "e"]
    assert ax.get_xlabel() == "token" and ax.get_ylabel() == "unit"
    assert len(figure.axes) == 2 * 12  # every heatmap has its colorbar
    figure.savefig(tmp_path / "gates.png", dpi=50)
    assert_png(tmp_path / "gates.png")


def test_gates_of_one_layer_of_a_gru_and_an_rnn() -> None:
    gru = nn.GRU(3, 4, num_layers=2)
    with rnnkit.record(gru) as rec:
        gru(torch.randn(6, 1, 3))
    drawn = panels(rnnkit.plots.gates(rec, layer=-1))
    assert sorted(drawn) == [
        "layer 1 forward: " + t for t in ("h_t hidden state", "n_t new gate", "r_t reset gate", "z_t update gate")
    ]
    rnn = nn.RNN(3, 4)
    with rnnkit.record(rnn) as rec:
        rnn(torch.randn(6, 3))
    drawn = panels(rnnkit.plots.gates(rec))
    np.testing.assert_array_equal(drawn["layer 0 forward: h_t hidden state"], rec.trace().h[:, 0].T.double().numpy())


def test_gates_bad_arguments() -> None:
    lstm = nn.LSTM(3, 4)
    with rnnkit.record(lstm) as rec:
        lstm(torch.randn(5, 2, 3))
    with pytest.raises(IndexError, match=r"sample must be in \[0, 1\]"):
        rnnkit.plots.gates(rec, sample=2)
    with pytest.raises(ValueError, match="tokens must label the T=5 recorded steps, got 3"):
        rnnkit.plots.gates(rec, tokens=["a", "b", "c"])


def test_parameter_blocks_are_the_weights(tmp_path) -> None:
    lstm = nn.LSTM(3, 4, num_layers=2, proj_size=2)
    figure = rnnkit.plots.parameters(lstm)
    drawn = panels(figure)
    for name in ("weight_ih_l0", "weight_hh_l1", "weight_hr_l1"):
        weight = getattr(lstm, name)
        np.testing.assert_array_equal(drawn[f"{name} {tuple(weight.shape)}"], weight.detach().double().numpy())
    biases = torch.stack([lstm.bias_ih_l1, lstm.bias_hh_l1], dim=1)
    np.testing.assert_array_equal(drawn["bias_ih_l1 | bias_hh_l1 (16, 2)"], biases.detach().double().numpy())
    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels == ["W_ii\n0:4", "W_if\n4:8", "W_ig\n8:12", "W_io\n12:16"]
    figure.savefig(tmp_path / "params.png", dpi=50)
    assert_png(tmp_path / "params.png")
