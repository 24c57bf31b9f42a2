"""Inference benchmark: an rnnkit module exported to ONNX and run by onnxruntime, against the same
module in rnnkit (``auto``) and torch.nn's twin, side by side.

For every configuration of ``benchmarks/cpu.py`` (DESIGN.md's CPU targets, one batch of
variable-length sequences, and one step of one sequence as a generated token) and each cell, this
builds a seeded torch.nn module, its rnnkit twin (``from_torch``) and the twin's export
(``rnnkit.onnx.export``, with ``lengths`` where the row has them). It checks onnxruntime's output
and final states against rnnkit's (max abs difference, a mismatch above 1e-4 is shown and not
timed), then times the forward pass of each, in turn within each repeat, and reports the best of
``--repeats`` (each the mean of the row's ``calls``). onnxruntime runs on as many threads as torch.

Reading the ratio: rnnkit's time / onnxruntime's (or torch.nn's / onnxruntime's); above 1
onnxruntime is faster. Results go to ``benchmarks/results/onnx.json`` with the CPU and versions.
(The script is not named ``onnx.py``: run as a script, its folder comes first on ``sys.path``, where
that name would stand for the ``onnx`` package.)

Usage::

    python benchmarks/onnx_export.py
    python benchmarks/onnx_export.py --cells lstm --threads 1 --repeats 10 --out /tmp/onnx.json
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime
import torch

import rnnkit.onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import (
    CELLS,
    CONFIGS,
    TORCH_NN,
    Config,
    Contender,
    as_states,
    json_float,
    max_abs_diff,
    rnnkit_contender,
    time_forward,
    torch_contender,
)
from machine import measured_on, write_json

OUT = Path(__file__).resolve().parent / "results" / "onnx.json"
TOLERANCE = 1e-4
ORT = "onnxruntime"


def ort_runner(module: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor | None, folder: Path) -> Callable:
    """A call of onnxruntime on ``module``'s export, fed ``x`` (and ``lengths``); returns its results."""
    path = rnnkit.onnx.export(module, folder / "model.onnx", example_input=(x,), lengths=lengths is not None)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input": x.numpy()} | ({} if lengths is None else {"lengths": lengths.numpy()})
    return lambda: session.run(None, feed)


def bench(config: Config, cell: str, repeats: int, folder: Path) -> dict[str, Any]:
    """One row: the agreement of onnxruntime with rnnkit, and each runner's best forward seconds."""
    torch_cls, rnnkit_cls = CELLS[cell]
    torch.manual_seed(0)
    module = torch_cls(config.input_size, config.hidden_size, config.num_layers, bidirectional=config.bidirectional)
    twin = rnnkit_cls.from_torch(module).eval()
    x = torch.randn(config.steps, config.batch, config.input_size)
    lengths = config.lengths()
    contenders = {
        TORCH_NN: torch_contender(module, x, lengths),
        "rnnkit": rnnkit_contender(twin, x, lengths),
        ORT: Contender(twin, ort_runner(twin, x, lengths, folder)),
    }
    with torch.no_grad():
        output, states = contenders["rnnkit"].run()
    onnx_results = [torch.from_numpy(result) for result in contenders[ORT].run()]
    difference = max_abs_diff((output, *as_states(states)), onnx_results)
    best = dict.fromkeys(contenders, math.inf)
    if difference <= TOLERANCE:
        for contender in contenders.values():
            time_forward(contender, 1)  # warm up
        for _ in range(repeats):
            for name, contender in contenders.items():
                best[name] = min(best[name], time_forward(contender, config.calls))
    return {"config": config.name, "cell": cell, "max_abs_diff": difference, "seconds": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", nargs="+", choices=list(CELLS), default=["LSTM", "GRU"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'config':<26} {'cell':<5} {'rnnkit ms':>10} {'torch.nn ms':>12} {'ORT ms':>8} {'rnnkit/ORT':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for config in CONFIGS:
            for cell in args.cells:
                row = bench(config, cell, args.repeats, Path(folder))
                rows.append(row)
                ms = {name: 1e3 * seconds for name, seconds in row["seconds"].items()}
                if math.isinf(ms[ORT]):
                    print(f"{row['config']:<26} {cell:<5} MISMATCH: max abs difference {row['max_abs_diff']:.1e}")
                    continue
                print(
                    f"{row['config']:<26} {cell:<5} {ms['rnnkit']:>10.3f} {ms[TORCH_NN]:>12.3f} {ms[ORT]:>8.3f} "
                    f"{ms['rnnkit'] / ms[ORT]:>10.2f}x"
                )
    report = {
        **measured_on(),
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": [{**row, "seconds": {k: json_float(v) for k, v in row["seconds"].items()}} for row in rows],
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
