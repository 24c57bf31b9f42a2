"""rnnkit.onnx.export: ONNX's LSTM, GRU and RNN operators, run in onnxruntime against rnnkit.

Every export is checked by the ONNX checker and run at batch sizes and lengths other than the
traced example's. The random sweep exports one model holding many configurations, since each
export costs seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.data import timemachine
from rnnkit.ops import compiled
from rnnkit.train import CharLMConfig, checkpoint, train
from rnnkit.train.models import CharLM, Classifier

from .utils import run_cli

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import rnnkit.onnx  # noqa: E402

pytestmark = pytest.mark.skipif(
    compiled.unavailable_reason() is not None, reason=f"compiled CPU backend: {compiled.unavailable_reason()}"
)
TOLERANCE = 1e-5  # float32, the largest difference relative to the largest value of each result
CELLS = {
    "LSTM": (rnnkit.LSTM, {}),
    "GRU": (rnnkit.GRU, {}),
    "RNN_TANH": (rnnkit.RNN, {}),
    "RNN_RELU": (rnnkit.RNN, {"nonlinearity": "relu"}),
}


@dataclass
class Case:
    """One recurrent module of the sweep and how it is called: with ``lengths``, with initial states."""

    module: rnnkit.modules.RNNBase
    lengths: bool
    hx: bool

    def inputs(self, batch: int, steps: int, rng: random.Random) -> list[Tensor]:
        m = self.module
        x = torch.randn((batch, steps, m.input_size) if m.batch_first else (steps, batch, m.input_size))
        tensors = [x]
        if self.hx:
            layers = m.num_layers * (2 if m.bidirectional else 1)
            tensors.append(torch.randn(layers, batch, m.hidden_size))
            if m.mode == "LSTM":
                tensors.append(torch.randn(layers, batch, m.hidden_size))
        if self.lengths:
            lengths = [rng.randint(1, steps) for _ in range(batch)]
            lengths[rng.randrange(batch)] = steps
            lengths[rng.randrange(batch)] = 1
            tensors.append(torch.tensor(lengths))
        return tensors

    def __call__(self, tensors: list[Tensor]) -> list[Tensor]:
        x, rest = tensors[0], list(tensors[1:])
        lengths = rest.pop() if self.lengths else None
        hx = None
        if self.hx:
            hx = (rest[0], rest[1]) if self.module.mode == "LSTM" else rest[0]
        output, state = self.module(x, hx, lengths=lengths)
        return [output, *(state if isinstance(state, tuple) else (state,))]


def random_cases(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for number in range(count):
        mode = list(CELLS)[number % len(CELLS)]
        cls, kwargs = CELLS[mode]
        module = cls(
            rng.choice([1, rng.randint(1, 12)]),
            rng.choice([1, rng.randint(1, 24)]),
            num_layers=rng.randint(1, 3),
            bidirectional=rng.random() < 0.5,
            bias=rng.random() < 0.8,
            batch_first=rng.random() < 0.5,
            **kwargs,
        )
        cases.append(Case(module, lengths=rng.random() < 0.6, hx=rng.random() < 0.5))
    return cases


class Sweep(nn.Module):
    """Many cases in one model: its inputs and results are the cases' in turn."""

    def __init__(self, cases: list[Case], counts: list[int]):
        super().__init__()
        self.cases, self.counts = cases, counts
        self.modules_ = nn.ModuleList(case.module for case in cases)

    def forward(self, tensors: list[Tensor]) -> list[Tensor]:
        results, start = [], 0
        for case, count in zip(self.cases, self.counts):
            results += case(list(tensors[start : start + count]))
            start += count
        return results


def max_relative_error(actual, expected: Tensor) -> float:
    """The largest difference over the largest value of ``expected`` (tests/utils.py's relative_error is
    the norms' ratio, which a few bad elements barely move)."""
    scale = expected.abs().max().item()
    difference = (torch.as_tensor(actual) - expected).abs().max().item()
    return difference / scale if scale > 0 else difference


def session_of(path) -> ort.InferenceSession:
    """onnxruntime on one thread, as torch runs in the tests (tests/conftest.py)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path, inputs: list[Tensor]) -> list:
    session = session_of(path)
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(inputs)
    return session.run(None, {name: tensor.numpy() for name, tensor in zip(names, inputs)})


def assert_declared_shapes_hold(path, results: list) -> None:
    """The graph's declared output shapes (fixed sizes; named ones are dynamic) fit what it returned."""
    for declared, result in zip(onnx.load(str(path)).graph.output, results):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in declared.type.tensor_type.shape.dim]
        assert len(dims) == result.ndim and all(d in (None, n) for d, n in zip(dims, result.shape)), (
            declared.name,
            dims,
            result.shape,
        )


def check_model(path) -> list[str]:
    """The ONNX checker's verdict (raises on an invalid model) and the graph's operator types."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return [node.op_type for node in model.graph.node]


def recurrent_nodes(path) -> list[tuple[str, str]]:
    """The graph's LSTM, GRU and RNN nodes as (operator, direction)."""
    nodes = [node for node in onnx.load(str(path)).graph.node if node.op_type in ("LSTM", "GRU", "RNN")]
    directions = [next((a.s.decode() for a in node.attribute if a.name == "direction"), "forward") for node in nodes]
    return [(node.op_type, direction) for node, direction in zip(nodes, directions)]


@pytest.mark.long
def test_random_sweep_matches_rnnkit_in_onnxruntime(tmp_path):
    torch.manual_seed(0)
    rng = random.Random(0)
    cases = random_cases(12, seed=0)
    example = [case.inputs(3, 4, rng) for case in cases]
    model = Sweep(cases, [len(inputs) for inputs in example]).eval()
    path = rnnkit.onnx.export(model, tmp_path / "sweep.onnx", example_input=([t for ts in example for t in ts],))
    check_model(path)
    modules = [case.module for case in cases]
    assert sorted(recurrent_nodes(path)) == sorted(
        (m.mode.split("_")[0], "bidirectional" if m.bidirectional else "forward")
        for m in modules
        for _ in range(m.num_layers)
    )
    assert any(m.bidirectional for m in modules) and not all(m.bidirectional for m in modules)
    for batch, steps in ((1, 1), (5, 9), (2, 3)):
        inputs = [t for case in cases for t in case.inputs(batch, steps, rng)]
        with torch.no_grad():
            expected = model(inputs)
        actual = run_onnx(path, inputs)
        assert_declared_shapes_hold(path, actual)
        for number, (a, e) in enumerate(zip(actual, expected)):
            assert a.shape == tuple(e.shape), (number, a.shape, e.shape)
            assert max_relative_error(a, e) <= TOLERANCE, (number, batch, steps, max_relative_error(a, e))


def test_bare_module_names_its_inputs_and_outputs_and_keeps_its_mode(tmp_path):
    """weight_dropout and forget_bias change no equation of the eval-mode net, which is what is exported."""
    module = rnnkit.LSTM(4, 6, num_layers=2, bidirectional=True, batch_first=True, weight_dropout=0.5, forget_bias=1.0)
    path = rnnkit.onnx.export(module.train(), tmp_path / "m.onnx", lengths=True)
    assert module.training
    session = session_of(path)
    assert [i.name for i in session.get_inputs()] == ["input", "lengths"]
    assert [o.name for o in session.get_outputs()] == ["output", "h_n", "c_n"]
    assert recurrent_nodes(path) == [("LSTM", "bidirectional")] * 2
    x, lengths = torch.randn(7, 10, 4), torch.tensor([10, 1, 4, 10, 2, 9, 3])
    with torch.no_grad():
        output, (h_n, c_n) = module.eval()(x, lengths=lengths)
    results = session.run(None, {"input": x.numpy(), "lengths": lengths.numpy()})
    assert_declared_shapes_hold(path, results)
    for a, e in zip(results, (output, h_n, c_n)):
        assert max_relative_error(a, e) <= TOLERANCE


def test_models_around_the_recurrent_module_export_with_it(tmp_path):
    torch.manual_seed(0)
    charlm = CharLM(vocab_size=28, cell="lstm", hidden_size=16, num_layers=2, embedding=8, dropout=0.0)
    tokens = torch.randint(0, 28, (2, 5))
    path = rnnkit.onnx.export(charlm, tmp_path / "charlm.onnx", example_input=(tokens,))
    assert "LSTM" in check_model(path) and "Gather" in check_model(path)
    tokens = torch.randint(0, 28, (3, 11))
    with torch.no_grad():
        logits, (h_n, c_n) = charlm(tokens)
    for a, e in zip(run_onnx(path, [tokens]), (logits, h_n, c_n)):
        assert max_relative_error(a, e) <= TOLERANCE

    classifier = Classifier(6, 4, "gru", hidden_size=12, num_layers=1, bidirectional=True, readout="last", dropout=0.0)
    path = rnnkit.onnx.export(classifier, tmp_path / "classifier.onnx", example_input=torch.randn(2, 5, 6))
    x = torch.randn(4, 8, 6)
    with torch.no_grad():
        expected = classifier(x)
    assert max_relative_error(run_onnx(path, [x])[0], expected) <= TOLERANCE


def test_torch_onnx_export_with_the_translations_runs_the_same_operators(tmp_path):
    """The same nodes and results; without rnnkit.onnx.export's dynamic axes, at the example's sizes."""
    module = rnnkit.GRU(3, 4, num_layers=2, bidirectional=True, backend="cpu").eval()
    x = torch.randn(5, 2, 3)
    ours = rnnkit.onnx.export(module, tmp_path / "ours.onnx", example_input=x)
    program = torch.onnx.export(module, (x,), dynamo=True, custom_translation_table=rnnkit.onnx.translations())
    rnnkit.onnx.graph.optimize(program.model)
    program.save(str(tmp_path / "torch.onnx"))
    for path in (ours, tmp_path / "torch.onnx"):
        check_model(path)
        assert recurrent_nodes(path) == [("GRU", "bidirectional")] * 2
    for a, b in zip(run_onnx(ours, [x]), run_onnx(tmp_path / "torch.onnx", [x])):
        assert (a == b).all()


class Encoded(nn.Module):
    """A bidirectional LSTM started from the final states of a forward LSTM over the same input."""

    def __init__(self):
        super().__init__()
        self.first = rnnkit.LSTM(3, 4)
        self.second = rnnkit.LSTM(3, 4, bidirectional=True)

    def forward(self, x: Tensor) -> Tensor:
        _, (h, c) = self.first(x)
        return self.second(x, (h.repeat(2, 1, 1), c.repeat(2, 1, 1)))[0]


def test_directions_merge_only_where_neither_reads_the_other(tmp_path):
    """The first LSTM's node reads x with the second's reverse one, but feeds it: merging them would
    make a node that reads its own result."""
    torch.manual_seed(0)
    model = Encoded().eval()
    path = rnnkit.onnx.export(model, tmp_path / "encoded.onnx", example_input=torch.randn(5, 2, 3))
    check_model(path)
    assert sorted(recurrent_nodes(path)) == [("LSTM", "bidirectional"), ("LSTM", "forward")]
    x = torch.randn(7, 3, 3)
    with torch.no_grad():
        expected = model(x)
    assert max_relative_error(run_onnx(path, [x])[0], expected) <= TOLERANCE


def test_weights_of_every_size_are_folded_into_initializers(tmp_path):
    """Gate reordering and the directions' stacking are done once at export, not at every inference,
    also for weights above torch's exporter's folding limit (8192 elements; here 4 * 48 * 48)."""
    path = rnnkit.onnx.export(rnnkit.LSTM(40, 48, bidirectional=True), tmp_path / "big.onnx")
    graph = onnx.load(str(path)).graph
    initializers = {tensor.name: tuple(tensor.dims) for tensor in graph.initializer}
    (node,) = [node for node in graph.node if node.op_type == "LSTM"]
    assert [initializers.get(name) for name in node.input[1:4]] == [(2, 192, 40), (2, 192, 48), (2, 384)]


def test_what_onnx_cannot_express_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="ONNX's LSTM operator has no projection, and this LSTM has proj_size=2"):
        rnnkit.onnx.export(rnnkit.LSTM(3, 4, proj_size=2), tmp_path / "p.onnx")
    with pytest.raises(ValueError, match=r"this GRU is on meta; call model\.cpu\(\)"):
        rnnkit.onnx.export(rnnkit.GRU(3, 4, device="meta"), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="ONNX's LSTM operator has no layer_norm=True, peephole=True"):
        rnnkit.onnx.export(rnnkit.LSTM(3, 4, layer_norm=True, peephole=True), tmp_path / "v.onnx")
    with pytest.raises(ValueError, match=r"holds no rnnkit LSTM, GRU or RNN; use torch\.onnx\.export"):
        rnnkit.onnx.export(nn.Linear(2, 3), tmp_path / "l.onnx", example_input=torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"give example_input, the arguments of Classifier\.forward"):
        classifier = Classifier(
            2, 3, "lstm", hidden_size=4, num_layers=1, bidirectional=False, readout="last", dropout=0.0
        )
        rnnkit.onnx.export(classifier, tmp_path / "c.onnx")
    assert not list(tmp_path.iterdir())


def test_without_the_packages_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(rnnkit.onnx, "PACKAGES", ("onnx", "rnnkit_no_such_package"))
    with pytest.raises(ImportError, match=r"needs rnnkit_no_such_package: pip install 'rnnkit\[export\]'"):
        rnnkit.onnx.export(rnnkit.GRU(2, 3), tmp_path / "g.onnx")


def test_exported_char_lm_writes_what_rnnkit_generate_writes(tmp_path):
    """``rnnkit export`` of a trained char LM, run greedily in onnxruntime, state carried token to token."""
    (tmp_path / "text.txt").write_text(timemachine()[:3000])
    config = CharLMConfig(
        text=str(tmp_path / "text.txt"), out_dir=str(tmp_path), epochs=1, batch_size=8, num_steps=10, hidden_size=16
    )
    train(config)
    ckpt = str(tmp_path / "checkpoint.pt")
    result = run_cli("export", "--checkpoint", ckpt, "--onnx", str(tmp_path / "charlm.onnx"))
    assert result.returncode == 0 and result.stdout == f"wrote {tmp_path / 'charlm.onnx'}\n", result.stderr
    prefix, length = "time traveller", 40
    generated = run_cli(
        "generate", "--checkpoint", ckpt, "--prefix", prefix, "--length", str(length), "--temperature", "0"
    )
    assert generated.returncode == 0, generated.stderr

    session = session_of(tmp_path / "charlm.onnx")
    assert [i.name for i in session.get_inputs()] == ["tokens", "h0", "c0"] and "LSTM" in check_model(
        tmp_path / "charlm.onnx"
    )
    vocab = checkpoint.vocab_of(checkpoint.load(ckpt))
    ids = vocab.encode(prefix)
    layers, _, hidden = session.get_inputs()[1].shape
    tokens, h, c = ids[None].numpy(), *(torch.zeros(layers, 1, hidden).numpy() for _ in range(2))
    written = []
    for _ in range(length):
        logits, h, c = session.run(None, {"tokens": tokens, "h0": h, "c0": c})
        last = logits[0, -1]
        last[0] = -float("inf")  # <unk>, which generate never writes
        written.append(int(last.argmax()))
        tokens = torch.tensor([[written[-1]]]).numpy()
    assert vocab.decode(ids) + vocab.decode(written) == generated.stdout.rstrip("\n")
