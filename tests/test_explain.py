"""rnnkit.explain: parameter counts, equations, shapes and live relations, on rnnkit's and torch.nn's modules."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.explain import SCHEMA, Report

from .utils import MODES, Config, make_pair, random_configs

GATE_COUNT = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
CONFIGS = [c for i, mode in enumerate(MODES) for c in random_configs(mode, 12, seed=100 + i)]


def input_shape(config: Config) -> tuple[int, ...]:
    if config.unbatched:
        return (config.steps, config.input_size)
    if config.batch_first:
        return (config.batch, config.steps, config.input_size)
    return (config.steps, config.batch, config.input_size)


def check_counts(report: Report, module: nn.Module, gates: int, hidden: int, bias: bool) -> None:
    parameters = report.parameters
    assert parameters.total == sum(p.numel() for p in module.parameters())
    assert sum(t.count for t in parameters.tensors) == parameters.total
    assert sum(g.count for g in parameters.groups) == parameters.total
    for group in parameters.groups:
        assert group.formula_count == group.count, group
    extra = gates * hidden * (1 if bias else -1)  # two biases per gate against the textbook's one
    assert parameters.difference == extra * len(parameters.groups)
    for tensor in parameters.tensors:
        rows = [r for b in tensor.blocks for r in b.rows]
        assert rows[0] == 0 and rows[-1] == tensor.shape[0] and sum(b.count for b in tensor.blocks) == tensor.count


@pytest.mark.parametrize("library", ["torch.nn", "rnnkit-naive", "rnnkit-torch"])
@pytest.mark.parametrize("config", CONFIGS, ids=[c.id for c in CONFIGS])
def test_counts_and_relations_on_a_random_sweep(config: Config, library: str) -> None:
    reference, ours = make_pair(config, library.removeprefix("rnnkit-") if library != "torch.nn" else "naive")
    model = reference if library == "torch.nn" else ours
    report = rnnkit.explain(model, input_shape(config), lengths=None if config.unbatched else config.lengths)
    check_counts(report, model, GATE_COUNT[config.mode], config.hidden_size, config.bias)
    assert report.passed, "\n".join(f"{r.statement}: {r.max_abs_diff:.2e}" for r in report.relations if not r.passed)
    shapes = {s.name: s.shape for s in report.shapes}
    assert shapes["input"] == list(input_shape(config))
    directions = 2 if config.bidirectional else 1
    out = config.proj_size or config.hidden_size
    assert shapes["output"][-1] == directions * out
    assert shapes["h_n"][0] == config.num_layers * directions


def test_sweep_covers_every_option() -> None:
    for flag in ("bidirectional", "batch_first", "unbatched", "lengths", "proj_size"):
        assert any(getattr(c, flag) for c in CONFIGS), flag
    assert not all(c.bias for c in CONFIGS) and {c.num_layers for c in CONFIGS} == {1, 2, 3}


CELLS = [
    (cls, kwargs)
    for cls in (nn.LSTMCell, nn.GRUCell, nn.RNNCell, rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.RNNCell)
    for kwargs in ({}, {"bias": False}, *([{"nonlinearity": "relu"}] if cls in (nn.RNNCell, rnnkit.RNNCell) else []))
]


@pytest.mark.parametrize(
    ("cls", "kwargs"), CELLS, ids=[f"{c.__module__.split('.')[0]}-{c.__name__}-{k}" for c, k in CELLS]
)
def test_cells(cls, kwargs) -> None:
    rng = random.Random(str((cls, kwargs)))
    cell = cls(rng.randint(1, 20), rng.randint(1, 20), **kwargs)
    for shape in [None, (cell.input_size,)]:
        report = rnnkit.explain(cell, shape)
        gates = {"LSTMCell": 4, "GRUCell": 3, "RNNCell": 1}[cls.__name__]
        check_counts(report, cell, gates, cell.hidden_size, kwargs.get("bias", True))
        assert report.passed and report.model.is_cell
        assert [g.label for g in report.parameters.groups] == ["cell"]


@pytest.mark.parametrize("lstm", [nn.LSTM, rnnkit.LSTM], ids=["torch.nn", "rnnkit"])
def test_seed_000_counts(lstm) -> None:
    """nn.LSTM(100, 100) is 80,800, not the textbook 80,400; two layers bidirectional read 200 features above."""
    report = rnnkit.explain(lstm(100, 100))
    assert (report.parameters.total, report.parameters.textbook_total, report.parameters.difference) == (
        80_800,
        80_400,
        400,
    )
    group = report.parameters.groups[0]
    assert (group.formula, group.filled) == ("4(H*I + H*H + 2H)", "4*(100*100 + 100*100 + 2*100)")
    assert group.textbook_formula == "4(H*I + H*H + H)"
    blocks = report.parameters.tensors[0].blocks
    assert [(b.symbol, b.rows) for b in blocks] == [
        ("W_ii", [0, 100]),
        ("W_if", [100, 200]),
        ("W_ig", [200, 300]),
        ("W_io", [300, 400]),
    ]

    report = rnnkit.explain(lstm(100, 100, num_layers=2, bidirectional=True))
    assert [g.count for g in report.parameters.groups] == [80_800, 80_800, 120_800, 120_800]
    assert report.parameters.groups[2].filled == "4*(100*200 + 100*100 + 2*100)"
    assert report.parameters.total == 403_200
    text = str(report)
    assert "120,800  = 4*(100*200 + 100*100 + 2*100)" in text and "403,200" in text


def test_projection_formula() -> None:
    report = rnnkit.explain(nn.LSTM(10, 20, proj_size=5, num_layers=2))
    first, second = report.parameters.groups
    assert first.formula == "4(H*I + H*P + 2H) + P*H"
    assert first.filled == "4*(20*10 + 20*5 + 2*20) + 5*20" and first.count == 1_460
    assert second.filled == "4*(20*5 + 20*5 + 2*20) + 5*20"  # layer 1 reads the projected h: I = P
    assert report.parameters.tensors[4].blocks[0].symbol == "W_hr"


def test_seed_001_bidirectional_relations_batch_first() -> None:
    """The post's check: output[4, 2, :20] == hn[2, 4] and output[4, 0, 20:] == hn[3, 4], for every sample."""
    report = rnnkit.explain(nn.LSTM(10, 20, num_layers=2, bidirectional=True, batch_first=True), (5, 3, 10))
    statements = [r.statement for r in report.relations]
    assert statements[:2] == ["output[:, -1, :20] == h_n[-2]", "output[:, 0, 20:] == h_n[-1]"]
    assert all(r.passed and r.max_abs_diff == 0 for r in report.relations[:2])
    shapes = {s.name: (s.shape, s.dims) for s in report.shapes}
    assert shapes["output"] == ([5, 3, 40], "(B, T, D*P)")
    assert shapes["h_n"] == ([4, 5, 20], "(L*D, B, P)") and shapes["c_n"] == ([4, 5, 20], "(L*D, B, H)")


def test_lengths_relations_and_packed_sequence() -> None:
    lengths = [6, 2, 4]
    model = rnnkit.GRU(4, 5, bidirectional=True, batch_first=True, backend="naive")
    report = rnnkit.explain(model, (3, 6, 4), lengths=lengths)
    assert report.passed
    statements = [r.statement for r in report.relations]
    assert "output[b, lengths[b]-1, :5] == h_n[-2, b]" in statements
    assert "output[b, t] == 0 for t >= lengths[b]" in statements
    assert "model(x, lengths=lengths) == pack -> model -> pad" in statements
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.zeros(3, 6, 4), lengths, batch_first=True, enforce_sorted=False
    )
    assert report.packed.batch_sizes == packed.batch_sizes.tolist() == [3, 3, 2, 2, 1, 1]
    assert report.packed.sorted_indices == packed.sorted_indices.tolist()
    assert report.packed.data_shape == [12, 4] and report.packed.output_data_shape == [12, 10]
    assert report.dims["N"] == 12


class BrokenLSTM(rnnkit.LSTM):
    """An LSTM whose h_n is off by 1e-3: explain must say FAIL."""

    def forward(self, input, hx=None, *, lengths=None):
        output, (h_n, c_n) = super().forward(input, hx, lengths=lengths)
        return output, (h_n + 1e-3, c_n)


def test_a_broken_model_fails() -> None:
    report = rnnkit.explain(BrokenLSTM(3, 4, backend="naive"))
    status = {r.statement: r.passed for r in report.relations}
    assert status == {
        "output[-1] == h_n[-1]": False,
        "equations replayed == output": True,
        "equations replayed == h_n": False,
        "equations replayed == c_n": True,
    }
    assert not report.passed
    assert "FAIL  output[-1] == h_n[-1]" in str(report) and "SOME RELATIONS FAIL" in str(report)
    assert report.relations[0].max_abs_diff == pytest.approx(1e-3, rel=1e-3)


def test_equations_use_the_docstrings_notation() -> None:
    for module in (rnnkit.LSTM(2, 3), rnnkit.GRU(2, 3)):
        report = rnnkit.explain(module)
        for equation in report.equations:
            assert equation.latex in type(module).__doc__, equation.latex
    lstm = [e.text for e in rnnkit.explain(nn.LSTM(2, 3)).equations]
    assert lstm == [
        "i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)",
        "f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)",
        "g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)",
        "o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)",
        "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
        "h_t = o_t ⊙ tanh(c_t)",
    ]
    gru = {e.name: e.text for e in rnnkit.explain(nn.GRU(2, 3, bias=False)).equations}
    assert gru["n_t"] == "n_t = tanh(W_in x_t + r_t ⊙ (W_hn h_{t-1}))"
    rnn = rnnkit.explain(nn.RNN(2, 3, nonlinearity="relu")).equations
    assert [e.text for e in rnn] == ["h_t = ReLU(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)"]
    projected = rnnkit.explain(nn.LSTM(2, 3, proj_size=1)).equations[-1]
    assert projected.text == "h_t = W_hr(o_t ⊙ tanh(c_t))" and projected.latex == r"h_t = W_{hr}(o_t \odot \tanh(c_t))"


# The JSON schema "rnnkit.explain/1": the keys at every level.
SCHEMA_KEYS = {
    "": {"schema", "model", "dims", "parameters", "equations", "equation_notes", "latex", "shapes", "packed"}
    | {"relations", "passed", "run"},
    "model": {"library", "class_name", "mode", "is_cell", "path", "arguments", "text"},
    "parameters": {"tensors", "groups", "total", "textbook_total", "difference", "note"},
    "tensor": {"name", "layer", "direction", "shape", "count", "blocks"},
    "block": {"symbol", "gate", "meaning", "rows", "shape", "count"},
    "group": {"label", "layer", "direction", "count", "formula", "filled", "formula_count", "textbook_formula"}
    | {"textbook", "textbook_count", "input_note"},
    "equation": {"name", "text", "latex"},
    "shape": {"name", "shape", "dims", "note"},
    "packed": {"lengths", "sorted_indices", "batch_sizes", "data_shape", "output_data_shape", "note"},
    "relation": {"statement", "meaning", "max_abs_diff", "tolerance", "passed"},
    "run": {"seed", "input_shape", "lengths", "dtype", "mode"},
}


@pytest.mark.parametrize(
    ("model", "lengths"),
    [(nn.LSTM(3, 4, proj_size=2), [5, 1, 3]), (rnnkit.GRUCell(3, 4), None), (nn.RNN(3, 4, 2), None)],
    ids=["lstm-lengths", "grucell", "rnn"],
)
def test_json_schema_is_stable(model, lengths) -> None:
    data = json.loads(rnnkit.explain(model, lengths=lengths).to_json())
    assert data["schema"] == SCHEMA == "rnnkit.explain/1"
    assert set(data) == SCHEMA_KEYS[""]
    assert set(data["model"]) == SCHEMA_KEYS["model"]
    assert set(data["parameters"]) == SCHEMA_KEYS["parameters"]
    for tensor in data["parameters"]["tensors"]:
        assert set(tensor) == SCHEMA_KEYS["tensor"]
        assert all(set(b) == SCHEMA_KEYS["block"] for b in tensor["blocks"])
    lists = [(data["parameters"]["groups"], "group"), (data["equations"], "equation"), (data["shapes"], "shape")]
    for items, name in [*lists, (data["relations"], "relation")]:
        assert items and all(set(item) == SCHEMA_KEYS[name] for item in items)
    assert set(data["run"]) == SCHEMA_KEYS["run"]
    assert (data["packed"] is None) == (lengths is None)
    if lengths:
        assert set(data["packed"]) == SCHEMA_KEYS["packed"]
    assert data["passed"] is True and isinstance(data["relations"][0]["max_abs_diff"], float)


def test_a_model_holding_one_recurrent_module() -> None:
    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(6, 8, batch_first=True)
            self.head = nn.Linear(8, 2)

    report = rnnkit.explain(Classifier())
    assert report.model.path == "rnn" and report.model.class_name == "GRU"
    assert report.parameters.total == sum(p.numel() for p in Classifier().rnn.parameters())


def test_model_mode_is_restored_and_dropout_is_off_while_checking() -> None:
    model = rnnkit.LSTM(3, 4, num_layers=2, dropout=0.5, backend="naive").train()
    assert rnnkit.explain(model).passed
    assert model.training


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: rnnkit.explain(nn.Linear(3, 4)), ValueError, "found none"),
        (lambda: rnnkit.explain(nn.Sequential(nn.LSTM(3, 4), nn.GRU(4, 4))), ValueError, "0 (LSTM), 1 (GRU)"),
        (lambda: rnnkit.explain(nn.LSTM(3, 4), (5, 2, 4)), ValueError, "I = input_size = 3, got (5, 2, 4)"),
        (lambda: rnnkit.explain(nn.LSTM(3, 4), (5, 2, 0, 3)), ValueError, "(T, B, I) or (T, I)"),
        (lambda: rnnkit.explain(nn.LSTM(3, 4), (5, 3), lengths=[5]), ValueError, "lengths need a batched"),
        (lambda: rnnkit.explain(nn.LSTM(3, 4), (5, 2, 3), lengths=[5, 6]), ValueError, "lengths must lie in [1, 5]"),
        (lambda: rnnkit.explain("lstm"), TypeError, "got str"),
    ],
    ids=["no-rnn", "two-rnns", "features", "dims", "unbatched-lengths", "long-length", "not-a-module"],
)
def test_bad_arguments(call, error, message) -> None:
    with pytest.raises(error, match=None) as raised:
        call()
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("cls", "keywords", "per_direction"),
    [
        (rnnkit.LSTM, dict(layer_norm=True, peephole=True), 4 * (5 * 3 + 5 * 5 + 2 * 5) + 8 * 5 + 2 * 5 + 3 * 5),
        (rnnkit.GRU, dict(layer_norm=True, zoneout=0.1), 3 * (5 * 3 + 5 * 5 + 2 * 5) + 6 * 5),
        (rnnkit.RNN, dict(layer_norm=True, recurrent_dropout=0.5), 5 * 3 + 5 * 5 + 2 * 5 + 2 * 5),
    ],
    ids=["LSTM", "GRU", "RNN"],
)
def test_a_variants_parameters_equations_and_relations(cls, keywords, per_direction) -> None:
    model = cls(3, 5, bidirectional=True, **keywords)
    report = rnnkit.explain(model, (6, 2, 3), lengths=[6, 3])
    assert report.passed
    assert report.parameters.total == sum(p.numel() for p in model.parameters()) == 2 * per_direction
    assert all(g.count == g.formula_count == per_direction for g in report.parameters.groups)
    text = str(report)
    assert "a_t = LN(W_ih x_t; γ_ih)" in text and "ops/variant.py" in text
    if keywords.get("peephole"):
        assert "o_t = σ(a_o + b_io + u_o + b_ho + w_co ⊙ c_t)" in text and "h_t = o_t ⊙ tanh(LN(c_t; γ_c, β_c))" in text
    if keywords.get("zoneout"):
        assert "h_t ← k_h ⊙ h_{t-1} + (1 - k_h) ⊙ h_t" in text and r"h_t &\leftarrow k_h" in text
    if keywords.get("recurrent_dropout"):
        assert "u_t = LN(W_hh (m ⊙ h_{t-1}); γ_hh)" in text
