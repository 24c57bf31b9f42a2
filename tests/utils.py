"""Shared test helpers: one tolerance table, one comparison helper, random configurations."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import math
import random
import struct
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils._python_dispatch import TorchDispatchMode

import rnnkit
from rnnkit import cli
from rnnkit.ops import masks

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``rnnkit ARGS`` in this process: ``rnnkit.cli.main``, which ``python -m rnnkit`` calls, with stdout
    and stderr captured as a subprocess's, without its interpreter and torch start-up (seconds a call)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(list(args))
    return subprocess.CompletedProcess(["rnnkit", *args], code, stdout.getvalue(), stderr.getvalue())


def idx_bytes(shape: tuple[int, ...], values: bytes) -> bytes:
    """An IDX file of unsigned bytes: the header for ``shape``, then ``values``."""
    return b"\0\0\x08" + bytes([len(shape)]) + b"".join(struct.pack(">I", n) for n in shape) + values


def write_idx_images(folder: Path, images: int, gz: bool) -> None:
    """MNIST's four files in ``folder``: ``images`` train and 2 test images of 28x28, labels 0, 1, 2, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", images), ("t10k", 2)):
        pixels = bytes(range(256)) * 3 * count + bytes(16 * count)
        files = {
            f"{prefix}-images-idx3-ubyte": idx_bytes((count, 28, 28), pixels),
            f"{prefix}-labels-idx1-ubyte": idx_bytes((count,), bytes(i % 10 for i in range(count))),
        }
        for name, raw in files.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)


def benchmark_module(name: str) -> Any:
    """``benchmarks/<name>.py`` imported as ``benchmarks_<name>``: the folder holds scripts, not a package."""
    module_name = f"benchmarks_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[module_name]


# Absolute and relative tolerance per dtype, against torch.nn or the naive oracle.
TOLERANCES = {
    torch.float64: dict(atol=1e-9, rtol=0.0),
    torch.float32: dict(atol=2e-5, rtol=1e-4),
}


def hashed_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype) -> Tensor:
    """``rnnkit.ops.masks``' rule written out from its docstring, the key drawn from torch's generator
    as ``masks.bernoulli`` draws it: 1 where the hashed word of the element is below round(p 2^32)."""
    key = torch.randint(0, 2**32, (2,), dtype=torch.int64)
    return (masks.hashed_bits(math.prod(shape), key) < masks.threshold(p)).to(dtype).view(shape)


def assert_close(name: str, actual: Tensor, expected: Tensor) -> None:
    """Compare with the dtype's tolerance; the message names the tensor and gives max abs and rel error."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not actual.isnan().any(), f"{name}: NaN in result"
    tol = TOLERANCES[expected.dtype]
    error = (actual.double() - expected.double()).abs()
    scale = expected.double().abs()
    limit = tol["atol"] + tol["rtol"] * scale
    if bool((error > limit).any()):
        rel = (error / scale.clamp_min(1e-30)).max().item()
        raise AssertionError(
            f"{name}: max abs error {error.max().item():.3e}, max rel error {rel:.3e} "
            f"beyond atol={tol['atol']}, rtol={tol['rtol']} ({expected.dtype})"
        )


@contextlib.contextmanager
def cudnn_tf32(allowed: bool) -> Iterator[None]:
    """Set ``torch.backends.cudnn.allow_tf32`` for a block, keeping ``enabled``, ``benchmark`` and ``deterministic``.

    Through cudnn.flags(): torch's own test utilities forbid setting the flags directly.
    """
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=allowed
    ):
        yield


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """||actual - expected|| / ||expected||, computed in float64 (0 when both are zero)."""
    difference = (actual.double() - expected.double()).norm().item()
    scale = expected.double().norm().item()
    return difference / scale if scale > 0 else difference


def assert_compiles_like_eager(model: nn.Module, x: Tensor) -> None:
    """torch.compile (aot_eager, fullgraph: no graph break) gives eager's output and input gradient, with lengths.

    x: (T >= 4, 3, I).
    """
    assert x.shape[0] >= 4 and x.shape[1] == 3, f"expected x of shape (T >= 4, 3, I), got {tuple(x.shape)}"
    # Every module's forward is one code object to Dynamo: the graphs of earlier tests in this
    # process would count against its recompile limit (8), which fullgraph turns into a failure.
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    lengths = [x.shape[0], 2, 4]
    eager_out, _ = model(x, lengths=lengths)
    compiled_out, _ = compiled(x, lengths=lengths)
    torch.testing.assert_close(compiled_out, eager_out)
    (eager_grad,) = torch.autograd.grad(eager_out.sum(), x)
    (compiled_grad,) = torch.autograd.grad(compiled_out.sum(), x)
    torch.testing.assert_close(compiled_grad, eager_grad)


def assert_accumulates_like_naive(model: nn.Module, twin: nn.Module, x: Tensor) -> None:
    """Two backward passes and a gradient clip on ``model`` give its same-weight ``twin``'s .grad on naive.

    Catches parameters whose .grad share memory (a clip or an accumulation then hits them twice).
    x: (T >= 3, 3, I).
    """
    assert x.shape[0] >= 3 and x.shape[1] == 3, f"expected x of shape (T >= 3, 3, I), got {tuple(x.shape)}"
    twin.backend = "naive"
    for m in (model, twin):
        for _ in range(2):
            output, _ = m(x, lengths=[x.shape[0], 1, 3])
            output.square().sum().backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.1)
    grads = dict(model.named_parameters())
    for name, p in twin.named_parameters():
        assert_close(f"accumulated, clipped grad {name}", grads[name].grad, p.grad)


MODES = {
    "LSTM": (rnnkit.LSTM, nn.LSTM, {}),
    "GRU": (rnnkit.GRU, nn.GRU, {}),
    "RNN_TANH": (rnnkit.RNN, nn.RNN, {"nonlinearity": "tanh"}),
    "RNN_RELU": (rnnkit.RNN, nn.RNN, {"nonlinearity": "relu"}),
}


@dataclass
class Config:
    """One random configuration of a recurrent net and its input."""

    mode: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    batch_first: bool
    proj_size: int
    batch: int
    steps: int
    dtype: torch.dtype
    unbatched: bool = False
    lengths: list[int] | None = None
    packed: bool = False
    with_hx: bool = False
    kwargs: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        parts = [
            self.mode,
            f"I{self.input_size}-H{self.hidden_size}-L{self.num_layers}",
            f"B{'u' if self.unbatched else self.batch}-T{self.steps}",
            "bi" if self.bidirectional else "",
            f"P{self.proj_size}" if self.proj_size else "",
            "nobias" if not self.bias else "",
            "bf" if self.batch_first else "",
            "len" if self.lengths else "",
            "packed" if self.packed else "",
            "hx" if self.with_hx else "",
            "f64" if self.dtype == torch.float64 else "f32",
        ]
        return "-".join(p for p in parts if p)

    def constructor_kwargs(self) -> dict:
        kwargs = dict(
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=self.batch_first,
            bidirectional=self.bidirectional,
            dtype=self.dtype,
            **MODES[self.mode][2],
        )
        if self.proj_size:
            kwargs["proj_size"] = self.proj_size
        return kwargs


def random_configs(mode: str, count: int, seed: int) -> list[Config]:
    """``count`` seeded random configurations of ``mode`` covering every option and their mixes."""
    rng = random.Random(seed)
    configs = []
    for _ in range(count):
        hidden = rng.choice([1, 2, 3, rng.randint(1, 64)])
        steps = rng.choice([1, rng.randint(1, 12)])
        batch = rng.choice([1, rng.randint(1, 9)])
        form = rng.choice(["padded", "padded", "lengths", "packed", "unbatched"])
        config = Config(
            mode=mode,
            input_size=rng.choice([1, rng.randint(1, 64)]),
            hidden_size=hidden,
            num_layers=rng.randint(1, 3),
            bidirectional=rng.random() < 0.5,
            bias=rng.random() < 0.8,
            batch_first=rng.random() < 0.5,
            proj_size=rng.randint(1, hidden - 1) if mode == "LSTM" and hidden > 1 and rng.random() < 0.4 else 0,
            batch=batch,
            steps=steps,
            dtype=rng.choice([torch.float32, torch.float64]),
            unbatched=form == "unbatched",
            with_hx=rng.random() < 0.5,
        )
        if form in ("lengths", "packed"):
            config.lengths = [rng.randint(1, steps) for _ in range(batch)]
            config.lengths[rng.randrange(batch)] = steps  # keep T the padded length
            config.packed = form == "packed"
        configs.append(config)
    return configs


def make_pair(config: Config, backend: str) -> tuple[nn.Module, nn.Module]:
    """(torch.nn module, rnnkit module) built from the same seed: identical weights."""
    ours_class, torch_class, _ = MODES[config.mode]
    torch.manual_seed(1234)
    reference = torch_class(config.input_size, config.hidden_size, **config.constructor_kwargs())
    torch.manual_seed(1234)
    ours = ours_class(config.input_size, config.hidden_size, backend=backend, **config.constructor_kwargs())
    return reference, ours


def make_inputs(config: Config, generator: torch.Generator) -> tuple[Tensor, tuple[Tensor, ...] | None]:
    """(input in the config's layout, initial states or None), requiring grad."""
    shape = (config.steps, config.input_size)
    if not config.unbatched:
        shape = (config.batch, *shape) if config.batch_first else (shape[0], config.batch, shape[1])
    x = torch.randn(shape, dtype=config.dtype, generator=generator).requires_grad_()
    if not config.with_hx:
        return x, None
    layers = config.num_layers * (2 if config.bidirectional else 1)
    batch = () if config.unbatched else (config.batch,)
    sizes = (
        [config.proj_size or config.hidden_size, config.hidden_size] if config.mode == "LSTM" else [config.hidden_size]
    )
    states = tuple(
        torch.randn((layers, *batch, n), dtype=config.dtype, generator=generator).requires_grad_() for n in sizes
    )
    return x, states


def as_tuple(hx: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return hx if isinstance(hx, tuple) else (hx,)


def run_torch(module: nn.Module, config: Config, x: Tensor, states) -> tuple[Tensor, tuple[Tensor, ...]]:
    """torch.nn's answer, padded; ``lengths`` go through pack -> module -> pad as a torch user would."""
    hx = None if states is None else (states if config.mode == "LSTM" else states[0])
    if config.lengths is None:
        output, final = module(x, hx)
        return output, as_tuple(final)
    packed = pack_padded_sequence(x, config.lengths, batch_first=config.batch_first, enforce_sorted=False)
    output, final = module(packed, hx)
    output, _ = pad_packed_sequence(output, batch_first=config.batch_first, total_length=config.steps)
    return output, as_tuple(final)


def run_ours(module: nn.Module, config: Config, x: Tensor, states) -> tuple[Tensor, tuple[Tensor, ...]]:
    """rnnkit's answer, padded: ``lengths=`` directly, or a PackedSequence in and out."""
    hx = None if states is None else (states if config.mode == "LSTM" else states[0])
    if config.packed:
        packed = pack_padded_sequence(x, config.lengths, batch_first=config.batch_first, enforce_sorted=False)
        output, final = module(packed, hx)
        output, _ = pad_packed_sequence(output, batch_first=config.batch_first, total_length=config.steps)
        return output, as_tuple(final)
    output, final = module(x, hx, lengths=config.lengths)
    return output, as_tuple(final)


class OpCalls(TorchDispatchMode):
    """Records the arguments and result of each call of the rnnkit op ``name``, whoever calls it
    (Python, or the ops' C++ autograd formulas through the dispatcher)."""

    def __init__(self, name: str):
        super().__init__()
        self.op = getattr(torch.ops.rnnkit, name)
        self.calls: list[tuple[tuple[Any, ...], Any]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func.overloadpacket == self.op:
            self.calls.append((args, result))
        return result


@contextlib.contextmanager
def function_calls(owner: Any, name: str, monkeypatch) -> Iterator[Any]:
    """``OpCalls`` for the Python function ``owner.name``: patched to record its calls while in the block."""
    spy = types.SimpleNamespace(calls=[])
    function = getattr(owner, name)

    def recorded(*args):
        result = function(*args)
        spy.calls.append((args, result))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(owner, name, recorded)
        yield spy


def assert_frozen_state_not_differentiated(
    model: nn.Module, x: Tensor, calls: contextlib.AbstractContextManager, at: int, result_at: int
) -> None:
    """Initial states that need no gradient: every backward, whose calls ``calls`` records, is asked
    for no gradient of h0 (its argument ``state_grad`` at position ``at``) and returns none (empty,
    at ``result_at`` of its result), and the weights get the same gradients as when the states need one.

    x: (T, B, I) for ``model``, a stacked net of the backend under test; the states are random.
    """
    with torch.no_grad():
        _, hx = model(x)
    states = tuple(torch.randn_like(s) for s in (hx if isinstance(hx, tuple) else (hx,)))
    grads = []
    with calls as spy:
        for needs in (True, False):
            model.zero_grad()
            given = tuple(s.detach().requires_grad_(needs) for s in states)
            output, _ = model(x, given if len(given) > 1 else given[0])
            output.sum().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
            assert all(s.grad is not None for s in given) == needs
    asked = [args[at] for args, _ in spy.calls]
    per_run = len(asked) // 2
    assert per_run > 0 and asked == [True] * per_run + [False] * per_run, asked
    for wanted, (_, result) in zip(asked, spy.calls):
        assert (result[result_at].numel() > 0) == wanted, "h0's gradient computed though not asked for, or missing"
    for with_state, without in zip(*grads, strict=True):
        assert torch.equal(with_state, without)


def assert_frozen_input_not_differentiated(
    model: nn.Module, x: Tensor, calls: contextlib.AbstractContextManager, at: int = -1
) -> None:
    """An input that needs no gradient: the first layer's backward, whose calls ``calls`` records
    (``OpCalls``, ``function_calls``), is asked for none (its argument ``input_grad``, at position
    ``at``) and computes none, and the weights get the same gradients as when it does.

    x: (T, B, I) for ``model``, a stacked net of the backend under test.
    """
    grads = []
    with calls as spy:
        for needs in (True, False):
            model.zero_grad()
            output, _ = model(x.detach().requires_grad_(needs))
            output.sum().backward()
            grads.append([p.grad.clone() for p in model.parameters()])
    asked = [args[at] for args, _ in spy.calls]
    for wanted, (_, result) in zip(asked, spy.calls):
        assert wanted or result[0].numel() == 0, "the input's gradient was computed though not asked for"
    per_run = len(asked) // 2
    first_layer = per_run // model.num_layers
    assert per_run > 0 and asked == [True] * (2 * per_run - first_layer) + [False] * first_layer, asked
    for with_input, without in zip(*grads, strict=True):
        assert torch.equal(with_input, without)
