"""CPU benchmark: rnnkit's LSTM and GRU against torch.nn's, with the same weights and inputs, side by side.

For every configuration of DESIGN.md's CPU performance targets, plus one batch of variable-length
sequences, and for both LSTM and GRU, this builds a float32 ``torch.nn`` module and, for every rnnkit
backend usable here, its twin ``rnnkit.<cell>.from_torch(module, backend=b)``. It then

1. checks that each twin computes what torch.nn computes: output and final states within 1e-4
   (max abs difference), gradients within 1e-4 of their scale. A twin that fails shows MISMATCH and
   is not timed, so no speedup is ever reported for a wrong result;
2. times, on one input tensor, the forward pass under ``torch.no_grad()`` and forward + backward of
   ``output.sum() + sum of the final states' sums`` (gradients set to None between repeats). Each
   timed run follows one untimed run of the same contender, and is reported as the best (minimum)
   of ``--repeats`` runs. torch.nn and every backend take turns within each repeat, so machine noise
   falls on all of them alike, and none is timed cold after another's run.

The variable-length row draws lengths uniformly from [T/4, T] (seeded). There torch.nn runs
``pack_padded_sequence(enforce_sorted=False)`` -> module -> ``pad_packed_sequence``, all timed, as a
torch.nn user would; rnnkit runs ``model(x, lengths=lengths)``. The last row is one step of one
sequence, as ``rnnkit generate`` feeds the character model a token at a time: the fixed cost of a
call (timed as the mean of 20 calls in a row), left out of the geometric mean, which is over whole
sequences.

Reading the ratio: it is torch.nn's time / rnnkit's time. Above 1 rnnkit is faster (2.00x: twice as
fast), below 1 slower. The summary gives each backend's geometric mean of the forward+backward ratios
over the sequences.
The results, with the versions and CPU they were measured on, go to ``benchmarks/results/cpu.json``.

Usage::

    python benchmarks/cpu.py                        # every available backend on every configuration
    python benchmarks/cpu.py --quick                # fewer repeats, naive backend on small configurations
    python benchmarks/cpu.py --threads 1 --repeats 10 --out /tmp/cpu.json
    python benchmarks/cpu.py --isa avx2 --out benchmarks/results/cpu-avx2.json   # as on an AVX2-only CPU
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit import ops

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import add_isa_argument, device_info, measured_on, run_as_isa, write_json

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "cpu.json"
DEFAULT_REPEATS = 5
QUICK_REPEATS = 2
# With --quick, the naive backend (a Python loop over time steps) only runs where the net takes at
# most this many sequential steps (T x layers x directions).
QUICK_NAIVE_MAX_STEPS = 100
TOLERANCE = 1e-4
CELLS: dict[str, tuple[type[nn.Module], type[rnnkit.LSTM | rnnkit.GRU | rnnkit.RNN]]] = {
    "LSTM": (nn.LSTM, rnnkit.LSTM),
    "GRU": (nn.GRU, rnnkit.GRU),
    "RNN": (nn.RNN, rnnkit.RNN),
}
# The mode rnnkit's dispatch calls each cell (RNN: its default nonlinearity, tanh).
MODES = {"LSTM": "LSTM", "GRU": "GRU", "RNN": "RNN_TANH"}
TORCH_NN = "torch.nn"
COLUMNS = (
    ("config", 26),
    ("cell", 4),
    ("backend", 12),
    ("torch fwd ms", 12),
    ("rnnkit fwd ms", 13),
    ("fwd ratio", 9),
    ("torch fwd+bwd ms", 16),
    ("rnnkit fwd+bwd ms", 17),
    ("fwd+bwd ratio", 13),
)

Run = Callable[[], tuple[Tensor, tuple[Tensor, ...]]]


@dataclass(frozen=True)
class Config:
    """The sizes of one benchmarked net and of its (T, B, I) input."""

    input_size: int
    hidden_size: int
    num_layers: int
    batch: int
    steps: int
    bidirectional: bool = False
    variable_lengths: bool = False
    calls: int = 1  # timed back to back, each measurement their mean: for a call too short to time alone

    @property
    def name(self) -> str:
        """A short label such as ``I100 H100 L2 bi B32 T50``."""
        parts = [f"I{self.input_size}", f"H{self.hidden_size}", f"L{self.num_layers}"]
        parts += ["bi"] * self.bidirectional + [f"B{self.batch}", f"T{self.steps}"]
        parts += ["var"] * self.variable_lengths
        return " ".join(parts)

    @property
    def sequential_steps(self) -> int:
        """Time steps the net runs one after another: T x layers x directions."""
        return self.steps * self.num_layers * (2 if self.bidirectional else 1)

    def lengths(self) -> Tensor | None:
        """Seeded lengths uniform in [T/4, T] for the variable-length configuration, else None."""
        if not self.variable_lengths:
            return None
        generator = torch.Generator().manual_seed(0)
        return torch.randint(self.steps // 4, self.steps + 1, (self.batch,), generator=generator)


CONFIGS = (
    Config(28, 10, 2, batch=128, steps=28),
    Config(100, 100, 2, batch=32, steps=50, bidirectional=True),
    Config(28, 256, 1, batch=32, steps=35),
    Config(256, 256, 1, batch=64, steps=100),
    Config(32, 64, 1, batch=1, steps=300),
    Config(100, 100, 1, batch=32, steps=50, variable_lengths=True),
    # One step of one sequence, as the character model calls it to generate text a token at a time:
    # the cost of a call rather than of a sequence, so it stays out of the geometric mean.
    Config(28, 256, 1, batch=1, steps=1, calls=20),
)


@dataclass
class Contender:
    """One module under test and the call that runs it on the benchmark input."""

    module: nn.Module
    run: Run


def as_states(hx: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The final states as a tuple: (h_n, c_n) for LSTM, (h_n,) for GRU."""
    return tuple(hx) if isinstance(hx, tuple) else (hx,)


def torch_contender(module: nn.Module, x: Tensor, lengths: Tensor | None) -> Contender:
    """torch.nn on padded input, packing and unpacking around the module when there are lengths."""

    def run() -> tuple[Tensor, tuple[Tensor, ...]]:
        if lengths is None:
            output, hx = module(x)
            return output, as_states(hx)
        packed, hx = module(pack_padded_sequence(x, lengths, enforce_sorted=False))
        output, _ = pad_packed_sequence(packed, total_length=x.shape[0])
        return output, as_states(hx)

    return Contender(module, run)


def rnnkit_contender(module: nn.Module, x: Tensor, lengths: Tensor | None) -> Contender:
    """rnnkit on padded input, with ``lengths=``."""

    def run() -> tuple[Tensor, tuple[Tensor, ...]]:
        output, hx = module(x, lengths=lengths)
        return output, as_states(hx)

    return Contender(module, run)


def loss_of(output: Tensor, states: tuple[Tensor, ...]) -> Tensor:
    """The benchmark loss: every output and final state summed."""
    return output.sum() + sum(state.sum() for state in states)


def forward_results(contender: Contender) -> list[Tensor]:
    """Output and final states of one forward pass without autograd."""
    with torch.no_grad():
        output, states = contender.run()
    return [output, *states]


def gradients(contender: Contender) -> dict[str, Tensor]:
    """The parameters' gradients of the benchmark loss after one forward+backward."""
    contender.module.zero_grad(set_to_none=True)
    loss_of(*contender.run()).backward()
    return {name: param.grad for name, param in contender.module.named_parameters()}


def max_abs_diff(reference: Sequence[Tensor], candidate: Sequence[Tensor]) -> float:
    """Largest absolute elementwise difference over pairs of same-shaped tensors."""
    return max((r - c).abs().max().item() for r, c in zip(reference, candidate, strict=True))


def max_scaled_diff(reference: dict[str, Tensor], candidate: dict[str, Tensor]) -> float:
    """Largest absolute difference of each named pair over its reference's magnitude (taken as at least 1)."""
    return max(
        ((r - candidate[name]).abs().max() / r.abs().max().clamp(min=1.0)).item() for name, r in reference.items()
    )


def check(reference: Contender, candidate: Contender) -> tuple[float, float]:
    """Forward (max abs) and gradient (max scaled) differences of ``candidate`` from ``reference``.

    Runs each once forward and once forward+backward, which also serves as the warm-up.
    """
    forward = max_abs_diff(forward_results(reference), forward_results(candidate))
    backward = max_scaled_diff(gradients(reference), gradients(candidate))
    return forward, backward


def agrees(forward_diff: float, grad_diff: float) -> bool:
    """Whether both differences are within the tolerance (False for NaN)."""
    return forward_diff < TOLERANCE and grad_diff < TOLERANCE


def time_forward(contender: Contender, calls: int) -> float:
    """Mean seconds of ``calls`` forward passes in a row under ``torch.no_grad()``, after one untimed
    call: a contender is timed warm, not in the caches and heap another contender's run left."""
    with torch.no_grad():
        contender.run()
        start = time.perf_counter()
        for _ in range(calls):
            contender.run()
        return (time.perf_counter() - start) / calls


def time_forward_backward(contender: Contender, calls: int) -> float:
    """Mean seconds of ``calls`` forward+backward passes of the benchmark loss in a row after one
    untimed pass (gradients set to None before the first timed one; the others accumulate, as the
    calls of one batch would)."""
    loss_of(*contender.run()).backward()
    contender.module.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for _ in range(calls):
        loss_of(*contender.run()).backward()
    return (time.perf_counter() - start) / calls


def best_times(contenders: dict[str, Contender], repeats: int, calls: int) -> dict[str, tuple[float, float]]:
    """Best (forward, forward+backward) seconds of each contender, all timed in turn within each repeat."""
    forward = dict.fromkeys(contenders, math.inf)
    forward_backward = dict.fromkeys(contenders, math.inf)
    for _ in range(repeats):
        for name, contender in contenders.items():
            forward[name] = min(forward[name], time_forward(contender, calls))
            forward_backward[name] = min(forward_backward[name], time_forward_backward(contender, calls))
    return {name: (forward[name], forward_backward[name]) for name in contenders}


def is_available(backend: str) -> bool:
    """Whether rnnkit accepts ``backend`` on this machine."""
    try:
        ops.check_backend(backend)
    except RuntimeError:
        return False
    return True


def cpu_backends() -> list[str]:
    """Each rnnkit backend usable on the CPU ("triton" is GPU-only)."""
    return [b for b in ops.BACKENDS if b != "triton" and is_available(b)]


def resolve(backends: Sequence[str], config: Config, cell: str) -> dict[str, str]:
    """Each backend mapped to the concrete backend it runs on ``config`` in float32 (``auto`` depends on it)."""
    probe = torch.empty(0)
    varying = config.lengths() is not None
    mode = MODES[cell]
    macs = ops.recurrent_macs(mode, config.batch, config.hidden_size)
    return {
        b: ops.resolve_backend(
            b, probe, mode, varying_lengths=varying, step_macs=macs, batch=config.batch, steps=config.steps
        )
        for b in backends
    }


def backends_for(config: Config, backends: dict[str, str], quick: bool) -> dict[str, str]:
    """The backends to run on ``config``: with ``quick``, naive only where the net is short."""
    if not quick or config.sequential_steps <= QUICK_NAIVE_MAX_STEPS:
        return backends
    return {b: r for b, r in backends.items() if r != "naive"}


def build_contenders(config: Config, cell: str, backends: Sequence[str]) -> dict[str, Contender]:
    """A seeded torch.nn module and its rnnkit twins (one per backend), all on one seeded input."""
    torch_cls, rnnkit_cls = CELLS[cell]
    torch.manual_seed(0)
    module = torch_cls(config.input_size, config.hidden_size, config.num_layers, bidirectional=config.bidirectional)
    x = torch.randn(config.steps, config.batch, config.input_size)
    lengths = config.lengths()
    contenders = {TORCH_NN: torch_contender(module, x, lengths)}
    for backend in backends:
        contenders[backend] = rnnkit_contender(rnnkit_cls.from_torch(module, backend=backend), x, lengths)
    return contenders


def json_float(value: float) -> float | None:
    """``value``, or None where it is NaN or infinite, which JSON cannot hold."""
    return value if math.isfinite(value) else None


def make_row(
    config: Config,
    cell: str,
    backend: str,
    resolved: str,
    diffs: tuple[float, float],
    torch_times: tuple[float, float],
    rnnkit_times: tuple[float, float] | None,
) -> dict[str, Any]:
    """One result row; times in ms, ratios torch.nn / rnnkit, and None for both where rnnkit mismatched."""
    row = {
        "config": {"name": config.name, **asdict(config)},
        "cell": cell,
        "backend": backend,
        "resolved_backend": resolved,
        "status": "mismatch" if rnnkit_times is None else "ok",
        "max_abs_diff": json_float(diffs[0]),
        "max_grad_diff": json_float(diffs[1]),
    }
    for key, index in (("fwd", 0), ("fwd_bwd", 1)):
        row[f"torch_{key}_ms"] = torch_times[index] * 1e3
        row[f"rnnkit_{key}_ms"] = None if rnnkit_times is None else rnnkit_times[index] * 1e3
        row[f"{key}_ratio"] = None if rnnkit_times is None else torch_times[index] / rnnkit_times[index]
    return row


def bench_case(config: Config, cell: str, backends: dict[str, str], repeats: int) -> list[dict[str, Any]]:
    """Check, then time, every backend against torch.nn on one configuration and cell: one row per backend."""
    contenders = build_contenders(config, cell, list(backends))
    diffs = {backend: check(contenders[TORCH_NN], contenders[backend]) for backend in backends}
    correct = [backend for backend in backends if agrees(*diffs[backend])]
    times = best_times({name: contenders[name] for name in (TORCH_NN, *correct)}, repeats, config.calls)
    return [
        make_row(config, cell, backend, resolved, diffs[backend], times[TORCH_NN], times.get(backend))
        for backend, resolved in backends.items()
    ]


def backend_label(row: dict[str, Any]) -> str:
    """The backend's name, with what it resolves to where that differs (``auto (cpu)``)."""
    if row["backend"] == row["resolved_backend"]:
        return row["backend"]
    return f"{row['backend']} ({row['resolved_backend']})"


def format_line(cells: Sequence[str]) -> str:
    """One table line, each cell padded to its column's width."""
    return " | ".join(cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)).rstrip()


def format_row(row: dict[str, Any]) -> str:
    """A result row as a table line; MISMATCH in place of the rnnkit times and ratios."""

    def ms_text(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    def ratio_text(value: float | None) -> str:
        return "MISMATCH" if value is None else f"{value:.2f}x"

    return format_line(
        [
            row["config"]["name"],
            row["cell"],
            backend_label(row),
            ms_text(row["torch_fwd_ms"]),
            ms_text(row["rnnkit_fwd_ms"]),
            ratio_text(row["fwd_ratio"]),
            ms_text(row["torch_fwd_bwd_ms"]),
            ms_text(row["rnnkit_fwd_bwd_ms"]),
            ratio_text(row["fwd_bwd_ratio"]),
        ]
    )


def geometric_means(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per backend: the geometric mean of its forward+backward ratios over the sequences (configurations
    of more than one step), over how many rows, how many mismatched."""
    summary = {}
    for backend in dict.fromkeys(row["backend"] for row in rows):
        ratios = [
            row["fwd_bwd_ratio"]
            for row in rows
            if row["backend"] == backend and row["status"] == "ok" and row["config"]["steps"] > 1
        ]
        mismatches = sum(row["backend"] == backend and row["status"] == "mismatch" for row in rows)
        geomean = math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None
        summary[backend] = {"fwd_bwd_ratio_geomean": geomean, "rows": len(ratios), "mismatches": mismatches}
    return summary


def print_summary(summary: dict[str, dict[str, Any]]) -> None:
    """Each backend's geometric mean of forward+backward ratios."""
    print("\ngeometric mean of fwd+bwd ratios over sequences (torch.nn time / rnnkit time, >1 means rnnkit faster):")
    for backend, entry in summary.items():
        geomean = entry["fwd_bwd_ratio_geomean"]
        value = "-" if geomean is None else f"{geomean:.2f}x"
        note = f", {entry['mismatches']} MISMATCH left out" if entry["mismatches"] else ""
        print(f"  {backend:<11} {value:>7} over {entry['rows']} rows{note}")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        description="Time rnnkit's LSTM and GRU backends against torch.nn on the CPU (forward, forward+backward). "
        "Ratios are torch.nn time / rnnkit time: above 1 means rnnkit is faster.",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help="timed runs per measurement, the best one reported "
        f"(default {DEFAULT_REPEATS}, {QUICK_REPEATS} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"fewer repeats, and the slow naive backend only on nets of at most {QUICK_NAIVE_MAX_STEPS} "
        "sequential steps (T x layers x directions)",
    )
    parser.add_argument("--threads", type=positive_int, help="torch.set_num_threads(N) (default: torch's own choice)")
    add_isa_argument(parser)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to write the JSON results (default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every configuration and cell, print the table and summary, write the JSON."""
    args = parse_args(argv)
    run_as_isa(args.isa, __file__, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (QUICK_REPEATS if args.quick else DEFAULT_REPEATS)
    backends = cpu_backends()
    device = device_info()
    print(
        f"torch {torch.__version__}, rnnkit {rnnkit.__version__}, {device['cpu_count']} CPUs "
        f"({device['processor']}, CPU kernels' path {device['isa']}), {device['torch_threads']} torch threads, "
        f"best of {repeats}\n"
    )
    print(format_line([title for title, _ in COLUMNS]))
    print(format_line(["-" * width for _, width in COLUMNS]).replace(" ", "-"))
    rows = []
    for config in CONFIGS:
        for cell in CELLS:
            chosen = backends_for(config, resolve(backends, config, cell), args.quick)
            for row in bench_case(config, cell, chosen, repeats):
                print(format_row(row), flush=True)
                rows.append(row)
    summary = geometric_means(rows)
    print_summary(summary)
    report = {
        **measured_on(device),
        "rnnkit": rnnkit.__version__,
        "repeats": repeats,
        "quick": args.quick,
        "tolerance": TOLERANCE,
        "summary": summary,
        "rows": rows,
    }
    write_json(args.out, report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
