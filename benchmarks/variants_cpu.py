"""CPU benchmark of the variants torch.nn lacks: each against rnnkit's plain cell, and layer norm
against a scripted LayerNorm LSTM, with the same weights and inputs, side by side.

For every configuration of ``benchmarks/cpu.py`` (DESIGN.md's CPU targets, one batch of
variable-length sequences, one generated token) this builds a seeded rnnkit LSTM, GRU or RNN (``auto``),
the same net with one variant keyword set, and, for the layer-normalised LSTM, its twin in the
pattern of pytorch's ``custom_lstms.py`` (``benchmarks/scripted_lstm.py``, ``torch.jit.script``),
which is first checked to compute what rnnkit computes (output and states within 1e-4, gradients
within 1e-4 of their scale; a mismatch is shown and not timed). ``auto`` runs the variants on the
compiled ``cpu`` kernels where they are built (weight drop on any backend), and the naive backend
is timed beside it; where it runs the naive ops (no compiler), that is the naive op's time. All nets
are in training mode (the dropout-like variants draw their masks), forward alone under
``torch.no_grad()`` and forward + backward of the summed output and final states, each the best of
``--repeats``, every net in turn within each repeat, each timed run after an untimed one of the same
net (``cpu.py``'s ``best_times``).

Reading the ratios: ``variant/plain`` is the variant's time over the plain cell's (DESIGN.md's
targets: layer norm within 1.5x, the others within 1.2x); ``scripted/variant`` is the scripted
LN-LSTM's time over rnnkit's (the target: at least 1.5x on every row, 3x in geometric mean).
Results go to ``benchmarks/results/variants-cpu.json`` with the CPU and versions.

Usage::

    python benchmarks/variants_cpu.py
    python benchmarks/variants_cpu.py --cells LSTM --variants layer_norm --repeats 3 --out /tmp/v.json
    python benchmarks/variants_cpu.py --isa avx2 --out benchmarks/results/variants-cpu-avx2.json
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import rnnkit
from rnnkit import ops, variants

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import (
    CONFIGS,
    Config,
    Contender,
    agrees,
    as_states,
    best_times,
    forward_results,
    gradients,
    json_float,
    max_abs_diff,
    max_scaled_diff,
    positive_int,
    rnnkit_contender,
)
from machine import add_isa_argument, device_info, measured_on, run_as_isa, write_json
from scripted_lstm import scripted_twin

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "variants-cpu.json"
DEFAULT_REPEATS = 3
CELLS = {"LSTM": rnnkit.LSTM, "GRU": rnnkit.GRU, "RNN": rnnkit.RNN}
# Each variant benchmarked: its keywords, and the cells that have it.
VARIANTS = {
    "layer_norm": ({"layer_norm": True}, ("LSTM", "GRU", "RNN")),
    "peephole": ({"peephole": True}, ("LSTM",)),
    "recurrent_dropout": ({"recurrent_dropout": 0.25}, ("LSTM", "GRU", "RNN")),
    "zoneout": ({"zoneout": 0.1}, ("LSTM", "GRU", "RNN")),
    "weight_dropout": ({"weight_dropout": 0.5}, ("LSTM", "GRU", "RNN")),
}
PLAIN, VARIANT, NAIVE, SCRIPTED = "plain", "variant", "naive", "scripted"


def build(config: Config, cell: str, keywords: dict[str, Any], backend: str = "auto") -> torch.nn.Module:
    """A seeded rnnkit net of ``config``'s sizes in training mode; layer-norm gains drawn away from 1
    so that the check below would see them misplaced."""
    torch.manual_seed(0)
    module = CELLS[cell](
        config.input_size,
        config.hidden_size,
        config.num_layers,
        bidirectional=config.bidirectional,
        backend=backend,
        **keywords,
    )
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.startswith("ln_"):
                param.uniform_(0.5, 1.5)
    return module.train()


def scripted_contender(module: torch.nn.Module, x: torch.Tensor) -> tuple[Contender, dict[str, str]]:
    """The scripted twin of ``module`` on ``x`` and its parameter names mapped to ``module``'s."""
    twin, names = scripted_twin(module)

    def run() -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output, hx = twin(x)
        return output, as_states(hx)

    return Contender(twin, run), names


def check_scripted(variant: Contender, scripted: Contender, names: dict[str, str]) -> tuple[float, float]:
    """cpu.py's ``check`` of the scripted twin against ``variant``, its gradients taken under the
    variant's parameter names (``names``)."""
    forward = max_abs_diff(forward_results(variant), forward_results(scripted))
    theirs = {names[name]: grad for name, grad in gradients(scripted).items()}
    return forward, max_scaled_diff(gradients(variant), theirs)


def bench_case(config: Config, cell: str, name: str, repeats: int) -> dict[str, Any]:
    """Time the plain net, the variant (and its naive op where ``auto`` runs something else) and, for
    the layer-normalised LSTM, the scripted twin once it agrees: one row."""
    keywords = VARIANTS[name][0]
    x = torch.randn(config.steps, config.batch, config.input_size, generator=torch.Generator().manual_seed(1))
    lengths = config.lengths()
    variant = build(config, cell, keywords)
    fused = ops.resolve_variant_backend("auto", x, variant.mode) != "naive"
    on_naive = variants.is_recurrence(variant.variant) and not fused
    contenders = {
        PLAIN: rnnkit_contender(build(config, cell, {}), x, lengths),
        VARIANT: rnnkit_contender(variant, x, lengths),
    }
    if not on_naive:
        contenders[NAIVE] = rnnkit_contender(build(config, cell, keywords, backend="naive"), x, lengths)
    row: dict[str, Any] = {"config": config.name, "cell": cell, "variant": name, "on_naive": on_naive}
    if name == "layer_norm" and cell == "LSTM" and lengths is None:
        scripted, names = scripted_contender(variant, x)
        diffs = check_scripted(contenders[VARIANT], scripted, names)
        row["max_abs_diff"], row["max_grad_diff"] = map(json_float, diffs)
        if agrees(*diffs):
            contenders[SCRIPTED] = scripted
        else:
            row["scripted"] = "mismatch"
    for contender in contenders.values():  # warm-up
        forward_results(contender)
    times = best_times(contenders, repeats, config.calls)
    for key, index in (("fwd", 0), ("fwd_bwd", 1)):
        row[f"{key}_ms"] = {label: seconds[index] * 1e3 for label, seconds in times.items()}
        row[f"{key}_variant_over_plain"] = times[VARIANT][index] / times[PLAIN][index]
        if SCRIPTED in times:
            row[f"{key}_scripted_over_variant"] = times[SCRIPTED][index] / times[VARIANT][index]
    return row


COLUMNS = (("config", 26), ("cell", 4), ("variant", 17), ("runs", 7))
TIMED = (PLAIN, VARIANT, NAIVE, SCRIPTED)


def format_row(row: dict[str, Any]) -> str:
    """One printed line: the times (fwd / fwd+bwd, ms) and the two ratios of forward+backward."""
    runs = "naive" if row["on_naive"] else "auto"
    cells = [row["config"], row["cell"], row["variant"], runs]
    text = "  ".join(value.ljust(width) for value, (_, width) in zip(cells, COLUMNS))
    for label in TIMED:
        if label in row["fwd_ms"]:
            text += f"  {label} {row['fwd_ms'][label]:.2f}/{row['fwd_bwd_ms'][label]:.2f}"
    text += f"  variant/plain {row['fwd_bwd_variant_over_plain']:.2f}x (fwd {row['fwd_variant_over_plain']:.2f}x)"
    if "fwd_bwd_scripted_over_variant" in row:
        text += f"  scripted/variant {row['fwd_bwd_scripted_over_variant']:.2f}x"
    return text + ("  scripted MISMATCH" if row.get("scripted") == "mismatch" else "")


def geometric_mean(values: Sequence[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


RATIOS = ("fwd_bwd_variant_over_plain", "fwd_variant_over_plain", "fwd_bwd_scripted_over_variant")


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per variant and cell, the geometric means of variant/plain (forward+backward and forward) over
    the whole sequences (the generated token left out), and of scripted/variant where it ran."""
    means: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        if row["config"] == CONFIGS[-1].name:
            continue
        entry = means.setdefault(f"{row['cell']} {row['variant']}", {ratio: [] for ratio in RATIOS})
        for ratio in RATIOS:
            if ratio in row:
                entry[ratio].append(row[ratio])
    return {key: {ratio: geometric_mean(values) for ratio, values in entry.items()} for key, entry in means.items()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description="rnnkit's variants against its plain cells and a scripted LN-LSTM.")
    parser.add_argument("--repeats", type=positive_int, default=DEFAULT_REPEATS, help="best of N (default %(default)s)")
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=list(CELLS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--configs", nargs="+", type=int, help="indices into cpu.py's CONFIGS (default: all)")
    parser.add_argument("--threads", type=positive_int, help="torch.set_num_threads(N) (default: torch's own choice)")
    add_isa_argument(parser)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON results (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every configuration, cell and variant; print a line each and the summary; write the JSON."""
    args = parse_args(argv)
    run_as_isa(args.isa, __file__, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_info()
    print(
        f"torch {torch.__version__}, {device['cpu_count']} CPUs ({device['processor']}, CPU kernels' path "
        f"{device['isa']}), {device['torch_threads']} torch threads, best of {args.repeats}; times in ms as "
        "forward/forward+backward, ratios of forward+backward\n"
    )
    configs = [CONFIGS[i] for i in args.configs] if args.configs else list(CONFIGS)
    rows = []
    for config in configs:
        for cell in args.cells:
            for name in args.variants:
                if cell in VARIANTS[name][1]:
                    rows.append(bench_case(config, cell, name, args.repeats))
                    print(format_row(rows[-1]), flush=True)
    means = summary(rows)
    print("\ngeometric means over the whole sequences (forward+backward):")
    for key, entry in means.items():
        scripted = entry["fwd_bwd_scripted_over_variant"]
        line = f"  {key:24} variant/plain {entry['fwd_bwd_variant_over_plain']:.2f}x"
        line += f" (forward {entry['fwd_variant_over_plain']:.2f}x)"
        print(line + (f"  scripted/variant {scripted:.2f}x" if scripted else ""))
    write_json(args.out, {**measured_on(device), "repeats": args.repeats, "summary": means, "rows": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
