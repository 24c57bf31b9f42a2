"""GPU benchmark: rnnkit's Triton kernels (``backend="triton"``) against cuDNN's torch.nn.LSTM and GRU.

For every configuration below and every dtype asked for, this builds a seeded ``torch.nn`` module on the
GPU (input size = hidden size) and its twin ``rnnkit.<cell>.from_torch(module, backend="triton")``, with
the same weights and one seeded input (T, B, I). torch.nn runs on cuDNN there; the table's ``torch``
column says ``cuDNN`` only where torch.nn's autograd graph holds cuDNN's RNN node, else ``torch native``
(torch.nn's own GPU kernels, which torch falls back to where its cuDNN path does not take the dtype, e.g.
bfloat16 with an older cuDNN). It then

1. checks that each side computes what a float64 torch.nn run of the float32 module computes, for the
   output, each final state and each parameter's gradient: error = max abs difference / the float64
   value's max magnitude. rnnkit passes where its error on every one of these is at most 4x cuDNN's own
   error on it + 8 unit roundoffs of the dtype (2^-24 fp32, 2^-11 TF32 and fp16, 2^-8 bf16). A twin that
   fails shows MISMATCH (ERROR if it raised) and is not timed, so no speedup is reported for a wrong result.
   An rnnkit that multiplied fp32 in TF32 would fail this: fp32 means TF32 off on both sides;
2. times, on that input, the forward pass under ``torch.no_grad()`` and forward + backward of
   ``output.sum() + sum of the final states' sums`` (gradients set to None between repeats, untimed). Each
   call is timed alone with CUDA events after a ``torch.cuda.synchronize()``, so it includes the host's
   launch overhead wherever the GPU waits for it. Before timing, the check and one more untimed call of
   each measurement have run: Triton's compilation (first call of each kernel variant) is excluded. The
   reported time is the MEDIAN of ``--repeats`` calls; cuDNN and rnnkit take turns within each repeat, so
   clock and thermal drift fall on both alike. The L2 cache is not flushed between calls.

dtypes: "fp32-tf32" and "fp32" are float32 with ``torch.backends.cudnn.allow_tf32`` (which cuDNN's RNNs
and rnnkit's kernels follow) and ``torch.backends.cuda.matmul.allow_tf32`` both True, resp. both False,
for the whole measurement; "bf16" and "fp16" are the module and input cast to that dtype.

Configurations (1 layer, input size = H, unless said):

* the grid B x H x T: ``--grid full`` B {1, 8, 32, 64, 256} x H {128, 256, 512, 1024} x T {128, 512, 1024}
  (60 points); ``--grid corners`` (default) B {1, 32, 256} x H {128, 512, 1024} x T {128, 1024} (18 points);
* GRU: the corners grid with ``--grid full``; its T = 1024 slice (9 points) with ``--grid corners``;
* variable lengths, LSTM B {32, 256} H 512 T 1024: lengths uniform in [T/4, T] (seeded). rnnkit runs
  ``model(x, lengths=lengths)``; it is compared with cuDNN packed (``pack_padded_sequence(enforce_sorted=
  False)`` -> module -> ``pad_packed_sequence``, all timed: the same result) and with cuDNN on the padded
  batch without lengths (``cuDNN padded``: a different, longer computation, shown for scale and left out
  of the summary). ``var/pad`` is rnnkit's time with lengths over rnnkit's own time on the padded batch
  (target: <= 1.1x);
* a 2-layer bidirectional LSTM, B 32 H 512 T 1024.

Reading the ratio: it is torch.nn (cuDNN) time / rnnkit time. Above 1 rnnkit is faster (2.00x: twice as
fast), below 1 slower. ``us/step`` is rnnkit's forward time / T / layers in microseconds (target: <= 2 at
B <= 32, H <= 512). The summary gives, per dtype, the geometric mean of the forward+backward ratios, how
many are below 1x, and how many of the points with B <= 32 and H <= 512 in fp32-tf32, fp32 and bf16 are
below 4x. The results, with the GPU and the versions they were measured on, go to
``benchmarks/results/gpu-<device>.json`` (written after every configuration, so a run cut short keeps
what it measured; ``"complete"`` says whether it ended), and a plot of the LSTM grid's forward+backward
ratios to the .png of the same name.

Without a CUDA device the script stops, except with ``--smoke``: a tiny run (B2 H16 T4, fp32) of every
kind of row on whatever device there is, to test this script. Without CUDA, rnnkit's kernels then run in
Triton's interpreter (``TRITON_INTERPRET=1``, set here before rnnkit loads) and torch.nn on its CPU kernels
(one thread): its times mean nothing. A smoke run writes JSON (and the plot) only to ``--out``.

Usage::

    PYTHONPATH=. python benchmarks/gpu.py                            # corners grid, every dtype, LSTM and GRU
    PYTHONPATH=. python benchmarks/gpu.py --grid full --dtypes fp32 --merge   # one dtype of the full grid,
    PYTHONPATH=. python benchmarks/gpu.py --grid full --dtypes bf16 --merge   # added to the same JSON
    TRITON_INTERPRET=1 python benchmarks/gpu.py --smoke --out /tmp/gpu-smoke.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def _interpret_for_smoke(argv: Sequence[str]) -> None:
    """With ``--smoke`` and no CUDA, run rnnkit's Triton kernels in Triton's interpreter.

    Triton reads ``TRITON_INTERPRET`` when rnnkit's kernels are defined, so this runs before rnnkit loads.
    """
    if "--smoke" in argv and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


if __name__ == "__main__":
    _interpret_for_smoke(sys.argv[1:])

# The CPU benchmark's helpers, from this script's folder (on sys.path already when run as a script).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import (  # noqa: E402
    CELLS,
    Config,
    Contender,
    forward_results,
    gradients,
    json_float,
    positive_int,
    rnnkit_contender,
    torch_contender,
    write_json,
)

import rnnkit  # noqa: E402
from rnnkit import ops  # noqa: E402
from rnnkit.explain.plots import new_figure  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_REPEATS = 10
SMOKE_REPEATS = 2
# label: (dtype, TF32 allowed for cuDNN and matmuls)
DTYPES: dict[str, tuple[torch.dtype, bool]] = {
    "fp32-tf32": (torch.float32, True),
    "fp32": (torch.float32, False),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
}
# Unit roundoff of each dtype's products.
ROUNDOFF = {"fp32-tf32": 2.0**-11, "fp32": 2.0**-24, "bf16": 2.0**-8, "fp16": 2.0**-11}
ERROR_FACTOR = 4  # rnnkit's error may be this many times torch.nn's ...
ERROR_ROUNDOFFS = 8  # ... plus this many unit roundoffs
GRIDS: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {  # B, H, T
    "full": ((1, 8, 32, 64, 256), (128, 256, 512, 1024), (128, 512, 1024)),
    "corners": ((1, 32, 256), (128, 512, 1024), (128, 1024)),
}
VARIABLE_BATCHES = (32, 256)
EXTRA_HIDDEN = 512
EXTRA_STEPS = 1024
SMALL_BATCH = 32  # the 4x and 2 us/step targets hold at B <= SMALL_BATCH and H <= SMALL_HIDDEN
SMALL_HIDDEN = 512
FOUR_X_DTYPES = ("fp32-tf32", "fp32", "bf16")
TARGET_RATIO = 4.0
TARGET_US_PER_STEP = 2.0
TARGET_VAR_OVER_PAD = 1.1
COLUMNS = (
    ("config", 26),
    ("cell", 4),
    ("dtype", 9),
    ("torch", 19),
    ("torch fwd ms", 12),
    ("rnnkit fwd ms", 13),
    ("fwd ratio", 9),
    ("torch fwd+bwd ms", 16),
    ("rnnkit fwd+bwd ms", 17),
    ("fwd+bwd ratio", 13),
    ("us/step", 8),
    ("var/pad fwd", 11),
    ("var/pad f+b", 11),
)
# Contenders of a case: each side on the padded batch and, with lengths, rnnkit with them and torch.nn packed.
TORCH, RNNKIT_PADDED, TORCH_PACKED, RNNKIT = "torch", "rnnkit padded", "torch packed", "rnnkit"


def grid_cases(grid: str, cells: Sequence[str]) -> list[tuple[str, Config]]:
    """The (cell, configuration) pairs of a grid: LSTM grid, variable lengths, bidirectional, GRU."""
    batches, hiddens, steps = GRIDS[grid]

    def points(batches: Sequence[int], hiddens: Sequence[int], steps: Sequence[int]) -> list[Config]:
        return [Config(h, h, 1, batch=b, steps=t) for h in hiddens for t in steps for b in batches]

    h, t = EXTRA_HIDDEN, EXTRA_STEPS
    lstm = points(batches, hiddens, steps)
    lstm += [Config(h, h, 1, batch=b, steps=t, variable_lengths=True) for b in VARIABLE_BATCHES]
    lstm += [Config(h, h, 2, batch=SMALL_BATCH, steps=t, bidirectional=True)]
    gru = points(*GRIDS["corners"]) if grid == "full" else points(*GRIDS["corners"][:2], (EXTRA_STEPS,))
    return [("LSTM", c) for c in lstm if "LSTM" in cells] + [("GRU", c) for c in gru if "GRU" in cells]


def smoke_cases(cells: Sequence[str]) -> list[tuple[str, Config]]:
    """One tiny configuration of each kind of row, for testing this script (in Triton's interpreter)."""
    lstm = [
        Config(16, 16, 1, batch=2, steps=4),
        Config(16, 16, 1, batch=2, steps=4, variable_lengths=True),
        Config(16, 16, 2, batch=2, steps=4, bidirectional=True),
    ]
    gru = [Config(16, 16, 1, batch=2, steps=4)]
    return [("LSTM", c) for c in lstm if "LSTM" in cells] + [("GRU", c) for c in gru if "GRU" in cells]


def kind_of(config: Config) -> str:
    """The row's kind: ``grid``, ``variable lengths`` or ``bidirectional``."""
    if config.variable_lengths:
        return "variable lengths"
    return "bidirectional" if config.bidirectional else "grid"


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Allow TF32 (or not) in cuDNN (its RNNs, and so rnnkit's kernels) and in matmuls; restore on exit."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def build(config: Config, cell: str, device: torch.device) -> tuple[nn.Module, Tensor, Tensor | None]:
    """The seeded float32 torch.nn module on ``device``, its seeded input (T, B, I) and lengths (CPU) or None."""
    torch.manual_seed(0)
    module = CELLS[cell][0](
        config.input_size, config.hidden_size, config.num_layers, bidirectional=config.bidirectional
    ).to(device)
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(config.steps, config.batch, config.input_size, device=device, generator=generator)
    return module, x, config.lengths()


def results_of(contender: Contender) -> dict[str, Tensor]:
    """Output, final states and every parameter's gradient of one contender, by name (the check's quantities)."""
    output, *states = forward_results(contender)
    named = {"output": output} | {name: s for name, s in zip(("h_n", "c_n"), states)}
    return named | {f"grad {name}": grad for name, grad in gradients(contender).items()}


def reference_results(module: nn.Module, x: Tensor, lengths: Tensor | None) -> dict[str, Tensor]:
    """What torch.nn computes in float64 from the float32 module and input (packed where there are lengths)."""
    return results_of(torch_contender(copy.deepcopy(module).double(), x.double(), lengths))


def scaled_error(actual: Tensor | None, expected: Tensor) -> float:
    """max |actual - expected| / max |expected| (inf for a missing tensor, NaN where actual holds NaN)."""
    if actual is None:
        return math.inf
    difference = (actual.double() - expected).abs().max().item()
    scale = expected.abs().max().item()
    return difference / scale if scale > 0 else difference


def errors(results: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, float]:
    """Each quantity's scaled error against the float64 reference."""
    return {name: scaled_error(results.get(name), expected) for name, expected in reference.items()}


def verdict(torch_errors: dict[str, float], rnnkit_errors: dict[str, float], dtype: str) -> dict[str, Any]:
    """Whether rnnkit's error on every quantity is within the bound set by torch.nn's, and the tightest one.

    The bound is ``ERROR_FACTOR`` x torch.nn's error + ``ERROR_ROUNDOFFS`` unit roundoffs of ``dtype``.
    NaN errors never pass.
    """
    bounds = {q: ERROR_FACTOR * e + ERROR_ROUNDOFFS * ROUNDOFF[dtype] for q, e in torch_errors.items()}
    passed = all(rnnkit_errors[q] <= bounds[q] for q in bounds)

    def excess(q: str) -> float:  # error over bound: NaN first, then the largest
        error = rnnkit_errors[q]
        return math.inf if math.isnan(error) else error / bounds[q] if bounds[q] > 0 else math.inf * (error > 0)

    worst = max(bounds, key=excess)
    return {
        "passed": passed,
        "torch_max_error": json_float(max(torch_errors.values())),
        "rnnkit_max_error": json_float(max(rnnkit_errors.values())),
        "worst_quantity": worst,
        "worst_rnnkit_error": json_float(rnnkit_errors[worst]),
        "worst_torch_error": json_float(torch_errors[worst]),
        "worst_bound": json_float(bounds[worst]),
    }


def elapsed(run: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``run`` takes: CUDA events after a synchronize on a GPU, the wall clock elsewhere."""
    if device.type != "cuda":
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def forward_call(contender: Contender) -> Callable[[], Any]:
    """One forward pass under ``torch.no_grad()``."""

    def call() -> None:
        with torch.no_grad():
            contender.run()

    return call


def forward_backward_call(contender: Contender) -> Callable[[], Any]:
    """One forward+backward of the benchmark loss (gradients must be None before it)."""

    def call() -> None:
        output, states = contender.run()
        (output.sum() + sum(state.sum() for state in states)).backward()

    return call


def median_times(
    contenders: dict[str, Contender], repeats: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """Median (forward, forward+backward) seconds of each contender, all timed in turn within each repeat.

    One untimed call of each measurement comes first (with the check before it, Triton has compiled).
    """
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in contenders}
    for repeat in range(repeats + 1):
        for name, contender in contenders.items():
            forward = elapsed(forward_call(contender), device)
            contender.module.zero_grad(set_to_none=True)
            forward_backward = elapsed(forward_backward_call(contender), device)
            contender.module.zero_grad(set_to_none=True)
            if repeat > 0:  # the first round is the warm-up
                samples[name][0].append(forward)
                samples[name][1].append(forward_backward)
    return {name: (statistics.median(f), statistics.median(fb)) for name, (f, fb) in samples.items()}


def baseline_label(contender: Contender) -> str:
    """What torch.nn ran on, read off its autograd graph: ``cuDNN`` where it holds cuDNN's RNN node.

    Elsewhere ``torch native`` on a GPU (torch.nn's own kernels, e.g. where torch's cuDNN takes no bfloat16)
    and ``torch.nn cpu`` on the CPU.
    """
    output, _ = contender.run()
    nodes, seen = [output.grad_fn], set()
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        if "cudnn" in type(node).__name__.lower():
            return "cuDNN"
        seen.add(node)
        nodes += [parent for parent, _ in node.next_functions]
    return "torch native" if output.is_cuda else "torch.nn cpu"


def first_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def bench_case(
    config: Config,
    cell: str,
    dtype: str,
    module: nn.Module,
    x: Tensor,
    lengths: Tensor | None,
    references: dict[str, dict[str, Tensor]],
    repeats: int,
) -> list[dict[str, Any]]:
    """Check, then time, rnnkit against torch.nn on one configuration, cell and dtype.

    ``module`` and ``x`` are float32; ``references`` holds the float64 results, under ``"padded"`` and, with
    lengths, ``"packed"``. Returns one row, or with lengths two: against torch.nn packed (the same result)
    and against torch.nn on the padded batch.
    """
    torch_dtype, allow_tf32 = DTYPES[dtype]
    with tf32(allow_tf32):
        module = copy.deepcopy(module).to(torch_dtype)
        twin = CELLS[cell][1].from_torch(module, backend="triton")
        x = x.to(torch_dtype)
        contenders = {TORCH: torch_contender(module, x, None), RNNKIT_PADDED: rnnkit_contender(twin, x, None)}
        pairs = {RNNKIT_PADDED: (TORCH, "padded")}  # rnnkit: (torch.nn computing the same, float64 reference)
        if lengths is not None:
            contenders |= {
                TORCH_PACKED: torch_contender(module, x, lengths),
                RNNKIT: rnnkit_contender(twin, x, lengths),
            }
            pairs[RNNKIT] = (TORCH_PACKED, "packed")
        checks: dict[str, dict[str, Any]] = {}
        for ours, (theirs, reference) in pairs.items():
            torch_errors = errors(results_of(contenders[theirs]), references[reference])
            try:
                rnnkit_errors = errors(results_of(contenders[ours]), references[reference])
            except Exception as error:  # a kernel that does not compile or launch: reported, not timed
                checks[ours] = {"passed": False, "error": first_line(error)}
                continue
            checks[ours] = verdict(torch_errors, rnnkit_errors, dtype)
        timed = [name for name in contenders if name not in checks or checks[name]["passed"]]
        times = median_times({name: contenders[name] for name in timed}, repeats, x.device)
        labels = {name: baseline_label(contenders[name]) for name in (TORCH, TORCH_PACKED) if name in contenders}
    if lengths is None:
        row = make_row(config, cell, dtype, labels[TORCH], times[TORCH], times.get(RNNKIT_PADDED))
        return [row | status_of(checks[RNNKIT_PADDED])]
    rows = [
        make_row(config, cell, dtype, f"{labels[TORCH_PACKED]} packed", times[TORCH_PACKED], times.get(RNNKIT)),
        make_row(config, cell, dtype, f"{labels[TORCH]} padded", times[TORCH], times.get(RNNKIT)),
    ]
    padded_status = status_of(checks[RNNKIT_PADDED])
    for row in rows:
        row |= status_of(checks[RNNKIT])
        row |= {"rnnkit_padded_status": padded_status["status"], "rnnkit_padded_check": padded_status["check"]}
        add_var_over_padded(row, times.get(RNNKIT), times.get(RNNKIT_PADDED))
    return rows


def status_of(check: dict[str, Any]) -> dict[str, Any]:
    """A row's ``status`` (ok, mismatch or error) and ``check`` from a check's result."""
    status = "error" if "error" in check else "ok" if check["passed"] else "mismatch"
    return {"status": status, "check": {key: value for key, value in check.items() if key != "passed"}}


def make_row(
    config: Config,
    cell: str,
    dtype: str,
    baseline: str,
    torch_times: tuple[float, float] | None,
    rnnkit_times: tuple[float, float] | None,
) -> dict[str, Any]:
    """One result row; times in ms, ratios torch.nn / rnnkit, None where a side was not timed."""
    row: dict[str, Any] = {
        "config": {"name": config.name, **asdict(config)},
        "kind": kind_of(config),
        "cell": cell,
        "dtype": dtype,
        "baseline": baseline,
    }
    for key, index in (("fwd", 0), ("fwd_bwd", 1)):
        row[f"torch_{key}_ms"] = None if torch_times is None else torch_times[index] * 1e3
        row[f"rnnkit_{key}_ms"] = None if rnnkit_times is None else rnnkit_times[index] * 1e3
        both = torch_times is not None and rnnkit_times is not None
        row[f"{key}_ratio"] = torch_times[index] / rnnkit_times[index] if both else None
    layers = config.num_layers
    row["rnnkit_us_per_step"] = None if rnnkit_times is None else rnnkit_times[0] * 1e6 / config.steps / layers
    row["launch"] = launch_plans(config, cell, dtype)
    return row


def launch_plans(config: Config, cell: str, dtype: str) -> dict[str, dict[str, Any]]:
    """How the first layer's forward and backward kernels slice the work (``persistent.plan``) on this machine."""
    from rnnkit.ops import persistent

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    directions = 2 if config.bidirectional else 1
    sizes = (config.hidden_size, None, ops.GATE_COUNTS[cell], config.batch, directions)
    return {
        name: asdict(persistent.plan(*sizes, DTYPES[dtype][0], device, backward=name == "backward"))
        for name in ("forward", "backward")
    }


def add_var_over_padded(
    row: dict[str, Any], lengths_times: tuple[float, float] | None, padded_times: tuple[float, float] | None
) -> None:
    """rnnkit's own padded times (ms) and its times with lengths over them, where both were timed."""
    for key, index in (("fwd", 0), ("fwd_bwd", 1)):
        row[f"rnnkit_padded_{key}_ms"] = None if padded_times is None else padded_times[index] * 1e3
        both = lengths_times is not None and padded_times is not None
        row[f"var_over_padded_{key}"] = lengths_times[index] / padded_times[index] if both else None


def error_row(config: Config, cell: str, dtype: str, error: BaseException) -> dict[str, Any]:
    """A row for a case that could not run at all (e.g. out of memory), with the error's first line."""
    return make_row(config, cell, dtype, "-", None, None) | {"status": "error", "check": {"error": first_line(error)}}


def format_line(cells: Sequence[str]) -> str:
    """One table line, each cell padded to its column's width."""
    return " | ".join(cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True)).rstrip()


def ratio_text(value: float) -> str:
    """``1.23x``; two significant digits below 0.1 (``0.0052x``), where two decimals would read 0.00x."""
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def format_row(row: dict[str, Any]) -> str:
    """A result row as a table line; MISMATCH or ERROR in place of rnnkit's ratios where it was not timed."""

    def number(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def ratio(value: float | None) -> str:
        return row["status"].upper() if value is None else ratio_text(value)

    def own(key: str) -> str:
        value = row.get(key)
        return "-" if value is None else ratio_text(value)

    return format_line(
        [
            row["config"]["name"],
            row["cell"],
            row["dtype"],
            row["baseline"],
            number(row["torch_fwd_ms"]),
            number(row["rnnkit_fwd_ms"]),
            ratio(row["fwd_ratio"]),
            number(row["torch_fwd_bwd_ms"]),
            number(row["rnnkit_fwd_bwd_ms"]),
            ratio(row["fwd_bwd_ratio"]),
            number(row["rnnkit_us_per_step"], 2 if (row["rnnkit_us_per_step"] or 0) < 1000 else 0),
            own("var_over_padded_fwd"),
            own("var_over_padded_fwd_bwd"),
        ]
    )


def explain_failure(row: dict[str, Any]) -> str | None:
    """For a row whose rnnkit was not timed, one indented line saying why."""
    check = row["check"]
    if row["status"] == "ok":
        return None
    if "error" in check:
        return f"    {row['status'].upper()}: {check['error']}"
    return (
        f"    MISMATCH: {check['worst_quantity']} error {check['worst_rnnkit_error']:.2e} > bound "
        f"{check['worst_bound']:.2e} ({ERROR_FACTOR} x torch.nn's {check['worst_torch_error']:.2e} + "
        f"{ERROR_ROUNDOFFS} roundoffs)"
    )


def is_small(row: dict[str, Any]) -> bool:
    """Whether the row's configuration is in the region of the 4x and us/step targets (B <= 32, H <= 512)."""
    return row["config"]["batch"] <= SMALL_BATCH and row["config"]["hidden_size"] <= SMALL_HIDDEN


def like_for_like(row: dict[str, Any]) -> bool:
    """Whether torch.nn computed the same result as rnnkit (not the padded batch against lengths)."""
    return not row["baseline"].endswith(" padded")


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per dtype: geometric mean of the like-for-like fwd+bwd ratios, counts below 1x and 4x; the other targets."""
    summary: dict[str, Any] = {"dtypes": {}}
    timed = [row for row in rows if row["status"] == "ok" and like_for_like(row)]
    for dtype in DTYPES:
        chosen = [row for row in rows if row["dtype"] == dtype and like_for_like(row)]
        if not chosen:
            continue
        ratios = [row["fwd_bwd_ratio"] for row in timed if row["dtype"] == dtype]
        small = [row["fwd_bwd_ratio"] for row in timed if row["dtype"] == dtype and is_small(row)]
        four_x = dtype in FOUR_X_DTYPES
        summary["dtypes"][dtype] = {
            "fwd_bwd_ratio_geomean": math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None,
            "rows": len(ratios),
            "not_timed": len(chosen) - len(ratios),
            "below_1x": sum(r < 1 for r in ratios),
            "small_rows": len(small) if four_x else None,
            "small_below_4x": sum(r < TARGET_RATIO for r in small) if four_x else None,
        }
    entries = summary["dtypes"].values()
    summary["below_1x"] = sum(e["below_1x"] for e in entries)
    summary["small_rows"] = sum(e["small_rows"] or 0 for e in entries)
    summary["small_below_4x"] = sum(e["small_below_4x"] or 0 for e in entries)
    steps = [row["rnnkit_us_per_step"] for row in timed if is_small(row)]
    summary["small_us_per_step_rows"] = len(steps)
    summary["small_above_2us_per_step"] = sum(s > TARGET_US_PER_STEP for s in steps)
    summary["small_us_per_step_max"] = max(steps, default=None)
    var = [row["var_over_padded_fwd_bwd"] for row in timed if row.get("var_over_padded_fwd_bwd") is not None]
    summary["var_over_padded_fwd_bwd_max"] = max(var, default=None)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """The summary lines: per dtype, then the targets."""
    print("\nfwd+bwd ratios (torch.nn time / rnnkit time, >1 means rnnkit faster; like-for-like rows only):")
    for dtype, entry in summary["dtypes"].items():
        geomean = entry["fwd_bwd_ratio_geomean"]
        text = f"  {dtype:<9} geomean {'-' if geomean is None else ratio_text(geomean):>6} over {entry['rows']} rows"
        text += f", {entry['below_1x']} below 1x"
        if entry["small_rows"] is not None:
            text += f", {entry['small_below_4x']} of {entry['small_rows']} small (B<={SMALL_BATCH}, "
            text += f"H<={SMALL_HIDDEN}) below {TARGET_RATIO:g}x"
        if entry["not_timed"]:
            text += f", {entry['not_timed']} MISMATCH/ERROR not timed"
        print(text)
    steps, var = summary["small_us_per_step_max"], summary["var_over_padded_fwd_bwd_max"]
    small = f"B<={SMALL_BATCH}, H<={SMALL_HIDDEN}"
    print(
        f"  all: {summary['below_1x']} below 1x, {summary['small_below_4x']} of {summary['small_rows']} "
        f"small fp32-tf32/fp32/bf16 ({small}) below {TARGET_RATIO:g}x"
    )
    print(
        f"  forward us/step at {small}: {summary['small_above_2us_per_step']} of {summary['small_us_per_step_rows']} "
        f"above the {TARGET_US_PER_STEP:g} target" + ("" if steps is None else f", max {steps:.2f}")
    )
    print(
        f"  var/pad fwd+bwd (rnnkit with lengths / rnnkit padded): max {'-' if var is None else ratio_text(var)}, "
        f"target <= {TARGET_VAR_OVER_PAD}x"
    )


def plot(rows: Sequence[dict[str, Any]], path: Path, device_name: str) -> Path | None:
    """The LSTM grid's fwd+bwd ratios against B, a line per H and T, a panel per dtype; None without data/matplotlib."""
    grid = [r for r in rows if r["kind"] == "grid" and r["cell"] == "LSTM" and r["status"] == "ok"]
    dtypes = [d for d in DTYPES if any(r["dtype"] == d for r in grid)]
    if not dtypes or importlib.util.find_spec("matplotlib") is None:
        return None
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    batches = sorted({r["config"]["batch"] for r in grid})
    hiddens = sorted({r["config"]["hidden_size"] for r in grid})
    steps = sorted({r["config"]["steps"] for r in grid})
    figure = new_figure(3.6 * len(dtypes) + 2.0, 4.4)
    axes = figure.subplots(1, len(dtypes), squeeze=False, sharey=True)[0]
    for ax, dtype in zip(axes, dtypes):
        for i, hidden in enumerate(hiddens):
            for j, t in enumerate(steps):
                points = sorted(
                    (r["config"]["batch"], r["fwd_bwd_ratio"])
                    for r in grid
                    if (r["dtype"], r["config"]["hidden_size"], r["config"]["steps"]) == (dtype, hidden, t)
                )
                if points:
                    style = ("-", "--", ":", "-.")[j % 4]
                    ax.plot(*zip(*points), marker="o", color=f"C{i}", linestyle=style, label=f"H{hidden} T{t}")
        ax.axhline(1.0, color="black", linewidth=1, label="1x: as fast")
        ax.axhline(TARGET_RATIO, color="grey", linestyle="--", linewidth=1, label=f"{TARGET_RATIO:g}x: target")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=2))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("batch B")
        ax.set_title(dtype)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].set_ylabel("fwd+bwd: torch.nn time / rnnkit time")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle(
        f"rnnkit triton vs torch.nn LSTM, 1 layer, I = H, forward+backward; above 1x rnnkit is faster\n{device_name}",
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def device_info(device: torch.device) -> dict[str, Any]:
    """The device the numbers were measured on."""
    if device.type != "cuda":
        return {"type": "cpu", "name": f"CPU ({platform.machine()}), no CUDA: rnnkit in Triton's interpreter"}
    properties = torch.cuda.get_device_properties(device)
    return {
        "type": "cuda",
        "name": properties.name,
        "capability": f"{properties.major}.{properties.minor}",
        "multiprocessors": properties.multi_processor_count,
        "memory_gib": round(properties.total_memory / 2**30, 1),
    }


def versions() -> dict[str, Any]:
    """The software the numbers were measured with."""
    import triton

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda": torch.version.cuda,
        "rnnkit": rnnkit.__version__,
        "triton_interpret": ops.triton_interpreting(),
    }


def device_slug(name: str) -> str:
    """``gpu-nvidia-h100-80gb-hbm3`` from ``NVIDIA H100 80GB HBM3``."""
    return "gpu-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def row_key(row: dict[str, Any]) -> tuple[str, ...]:
    """What identifies a measurement, for ``--merge``."""
    return row["cell"], row["config"]["name"], row["dtype"]


def merged_rows(path: Path, report: dict[str, Any], keys: set[tuple[str, ...]]) -> tuple[list[dict[str, Any]], list]:
    """The rows (and runs) of an earlier report at ``path`` that this run does not measure again.

    Stops the run when that report was measured on another device or with other versions.
    """
    if not path.exists():
        return [], []
    old = json.loads(path.read_text())
    for key in ("device", "versions"):
        if old.get(key) != report[key]:
            sys.exit(f"gpu.py: --merge: {path} has {key} {old.get(key)}, this run {report[key]}; use another --out")
    return [row for row in old["rows"] if row_key(row) not in keys], old.get("runs", [])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(
        description="Time rnnkit's Triton LSTM and GRU against cuDNN's torch.nn on a CUDA GPU (forward, "
        "forward+backward). Ratios are torch.nn time / rnnkit time: above 1 means rnnkit is faster.",
    )
    parser.add_argument(
        "--grid",
        choices=tuple(GRIDS),
        default="corners",
        help="full: B {1,8,32,64,256} x H {128,256,512,1024} x T {128,512,1024}; "
        "corners (default): B {1,32,256} x H {128,512,1024} x T {128,1024}",
    )
    parser.add_argument(
        "--dtypes", nargs="+", choices=tuple(DTYPES), help="which dtypes (default: all; fp32 only with --smoke)"
    )
    parser.add_argument("--cells", nargs="+", choices=tuple(CELLS), default=list(CELLS), help="default: both")
    parser.add_argument(
        "--repeats",
        type=positive_int,
        help=f"timed runs per measurement, the median reported (default {DEFAULT_REPEATS}, {SMOKE_REPEATS} "
        "with --smoke)",
    )
    parser.add_argument(
        "--out", type=Path, help="where to write the JSON results (default: benchmarks/results/gpu-<device>.json)"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the JSON already at --out that this run does not measure again "
        "(same device and versions), e.g. to run --grid full one dtype at a time",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (B2 H16 T4) on whatever device there is, to test the script; without CUDA in "
        "Triton's interpreter; writes JSON only to --out",
    )
    return parser.parse_args(argv)


def unusable(args: argparse.Namespace) -> str | None:
    """Why this run cannot measure anything meaningful here, in one line; None when it can."""
    if not torch.cuda.is_available() and not args.smoke:
        return (
            "gpu.py: no CUDA device (torch.cuda.is_available() is False): this benchmark times GPU kernels; "
            "--smoke runs a tiny configuration on the CPU to test the script"
        )
    if ops.triton_interpreting() and not args.smoke:
        return "gpu.py: TRITON_INTERPRET=1 runs Triton's kernels in its interpreter, whose times mean nothing; unset it"
    reason = ops.unavailable_reason("triton")
    if reason is not None:
        return f"gpu.py: rnnkit's triton backend is not available: {reason}"
    return None


def bench_config(
    config: Config, cell: str, dtypes: Sequence[str], repeats: int, device: torch.device
) -> list[dict[str, Any]]:
    """Every dtype of one configuration and cell, each one's rows printed as they come.

    A case that raises (e.g. out of memory) becomes an ERROR row and the run goes on.
    """
    rows: list[dict[str, Any]] = []
    try:
        module, x, lengths = build(config, cell, device)
        references = {"padded": reference_results(module, x, None)}
        if lengths is not None:
            references["packed"] = reference_results(module, x, lengths)
    except Exception as error:
        references, problem = None, error
    for dtype in dtypes:
        if references is None:
            new = [error_row(config, cell, dtype, problem)]
        else:
            try:
                new = bench_case(config, cell, dtype, module, x, lengths, references, repeats)
            except Exception as error:
                new = [error_row(config, cell, dtype, error)]
        for row in new:
            print(format_row(row), flush=True)
            reason = explain_failure(row)
            if reason:
                print(reason, flush=True)
        rows += new
    references = module = x = None
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Run every configuration, cell and dtype; print the table and summary; write the JSON and plot."""
    args = parse_args(argv)
    problem = unusable(args)
    if problem:
        sys.exit(problem)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":  # a smoke run: one thread, so other work on the machine stalls no thread pool
        torch.set_num_threads(1)
    dtypes = [d for d in DTYPES if d in (args.dtypes or (["fp32"] if args.smoke else DTYPES))]
    repeats = args.repeats or (SMOKE_REPEATS if args.smoke else DEFAULT_REPEATS)
    cases = smoke_cases(args.cells) if args.smoke else grid_cases(args.grid, args.cells)
    info = device_info(device)
    out = args.out
    if out is None and not args.smoke:
        out = RESULTS / f"{device_slug(info['name'])}.json"
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": info,
        "versions": versions(),
        "grid": "smoke" if args.smoke else args.grid,
        "dtypes": dtypes,
        "cells": args.cells,
        "repeats": repeats,
        "statistic": "median",
        "check": {"error_factor": ERROR_FACTOR, "roundoffs": ERROR_ROUNDOFFS, "roundoff": ROUNDOFF},
        "complete": False,
    }
    run = {"date": report["date"], "argv": list(sys.argv[1:] if argv is None else argv)}
    kept, runs = [], []
    if args.merge and out is not None:
        keys = {(cell, config.name, dtype) for cell, config in cases for dtype in dtypes}
        kept, runs = merged_rows(out, report, keys)
    report["runs"] = [*runs, run]
    v = report["versions"]
    print(
        f"{info['name']}: torch {v['torch']}, triton {v['triton']}, cuDNN {v['cudnn']}, CUDA {v['cuda']}, "
        f"rnnkit {v['rnnkit']}; median of {repeats}"
    )
    if args.smoke:
        where = " (rnnkit in Triton's interpreter)" if ops.triton_interpreting() else ""
        print(f"smoke run{where}: tiny sizes to test the script; its times mean nothing")
    print()
    print(format_line([title for title, _ in COLUMNS]))
    print(format_line(["-" * width for _, width in COLUMNS]).replace(" ", "-"))
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for cell, config in cases:
        rows += bench_config(config, cell, dtypes, repeats, device)
        report |= {"summary": summarize(kept + rows), "rows": kept + rows}
        if out is not None:
            write_json(out, report)
    summary = summarize(kept + rows)
    print_summary(summary)
    report |= {"summary": summary, "rows": kept + rows, "complete": True, "seconds": round(time.perf_counter() - start)}
    if out is not None:
        write_json(out, report)
        print(f"\nwrote {out}")
        figure = plot(kept + rows, out.with_suffix(".png"), info["name"])
        print(f"wrote {figure}" if figure else "no plot (no timed LSTM grid rows, or no matplotlib)")


if __name__ == "__main__":
    main()
