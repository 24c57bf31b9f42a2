"""Training throughput of the variants: the same ``rnnkit train`` run on ``auto`` (the compiled
kernels), on the naive ops and, for the layer-normalised LSTM, on a scripted LayerNorm LSTM; beside
them, ``plain``: the run without the variant's flags, on ``auto``.

Each run is ``rnnkit train ...`` called in this process (``rnnkit.cli.main``) on torch's threads, a
few epochs of the README's recipes: the MNIST-1D LSTM with layer norm of the recurrence and forget
bias 1, and The Time Machine's 2-layer, 384-unit LSTM with layer norm, recurrent dropout or
zoneout. ``scripted`` swaps the training model's recurrent module for its twin in the pattern of
pytorch's ``custom_lstms.py`` (``benchmarks/scripted_lstm.py``: the same weights and equations,
dropout between layers, batch-first through a transpose). Backends alternate over ``--rounds``
rounds; a run's rate is its best epoch's, and the table gives the median over the rounds. Results go
to ``benchmarks/results/train-speed-variants.json`` with the machine.

Usage::

    python benchmarks/train_speed.py
    python benchmarks/train_speed.py --runs mnist1d-layer-norm --rounds 1 --out /tmp/speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import rnnkit.cli
from rnnkit.train import models

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import positive_int
from machine import measured_on, write_json
from scripted_lstm import scripted_twin
from training_runs import metrics_history

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "train-speed-variants.json"
TIME_MACHINE = (
    "train charlm --max-tokens 0 --num-layers 2 --hidden-size 384 --embedding 64 --dropout 0.2 --optimizer adam "
    "--lr 4e-3 --clip 1 --schedule cosine --partition sequential --num-steps 64 --epochs 1"
)
MNIST1D = "train classify --data mnist1d --cell lstm --lr 2e-3 --batch-size 64 --schedule constant --epochs 3"
# name: (the plain command, the variant's flags, the backends it runs on)
RUNS = {
    "mnist1d-layer-norm": (MNIST1D, "--layer-norm --layer-norm-at hh,c --forget-bias 1", ("auto", "naive", "plain")),
    "timemachine-layer-norm": (TIME_MACHINE, "--layer-norm", ("auto", "naive", "scripted", "plain")),
    "timemachine-recurrent-dropout": (TIME_MACHINE, "--recurrent-dropout 0.1", ("auto", "naive", "plain")),
    "timemachine-zoneout": (TIME_MACHINE, "--zoneout 0.1", ("auto", "naive", "plain")),
}


class ScriptedRecurrent(nn.Module):
    """An rnnkit ``LSTM(layer_norm=True)`` as its scripted twin runs it, with the module's call:
    x (B, T, I) batch-first or (T, B, I), state None or (h_0, c_0) -> output, (h_n, c_n)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.twin, _ = scripted_twin(module)
        self.batch_first = module.batch_first

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, state = self.twin(x.transpose(0, 1) if self.batch_first else x, state)
        return (output.transpose(0, 1) if self.batch_first else output), state


@contextlib.contextmanager
def scripted_models() -> Iterator[None]:
    """Within the block, the training models' recurrent module is the scripted twin of rnnkit's."""
    recurrent = models.recurrent

    def twin(*args: Any, **kwargs: Any) -> nn.Module:
        return ScriptedRecurrent(recurrent(*args, **kwargs))

    models.recurrent = twin
    try:
        yield
    finally:
        models.recurrent = recurrent


def rate(command: str, backend: str) -> tuple[float, dict[str, Any]]:
    """The best epoch's throughput (samples or tokens a second) of one run, and its last epoch's metrics."""
    with tempfile.TemporaryDirectory() as out_dir:
        args = [*command.split(), "--backend", "auto" if backend in ("scripted", "plain") else backend]
        args += ["--out-dir", out_dir]
        quiet = io.StringIO()  # the runs' progress lines and summaries
        scripted = scripted_models() if backend == "scripted" else contextlib.nullcontext()
        with scripted, contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            status = rnnkit.cli.main(args)
        if status != 0:
            raise RuntimeError(f"rnnkit {' '.join(args)} exited with {status}: {quiet.getvalue()[-2000:]}")
        history = metrics_history(Path(out_dir))
    unit = next(key for key in history[-1] if key.endswith("_per_s"))
    return max(epoch[unit] for epoch in history), {"unit": unit, **history[-1]}


def bench_run(name: str, rounds: int) -> dict[str, Any]:
    """One row: every backend of run ``name``, alternating, ``rounds`` times."""
    plain, flags, backends = RUNS[name]
    command = f"{plain} {flags}"
    rates: dict[str, list[float]] = {backend: [] for backend in backends}
    last: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for backend in backends:
            value, last[backend] = rate(plain if backend == "plain" else command, backend)
            rates[backend].append(value)
    medians = {backend: statistics.median(values) for backend, values in rates.items()}
    return {
        "command": f"rnnkit {command} --backend B",
        "unit": last[backends[0]]["unit"],
        f"median_of_{rounds}": medians,
        "rates": rates,
        "auto_over": {backend: medians["auto"] / medians[backend] for backend in backends if backend != "auto"},
        "last_epoch": last,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description="Training throughput of the variants on each backend.")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON results (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every chosen row; print its medians and ratios; write the JSON."""
    args = parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.rounds} rounds\n")
    rows = {}
    for name in args.runs:
        row = rows[name] = bench_run(name, args.rounds)
        medians = row[f"median_of_{args.rounds}"]
        rates = "  ".join(f"{backend} {value:,.0f}" for backend, value in medians.items())
        ratios = "  ".join(f"auto/{backend} {ratio:.2f}x" for backend, ratio in row["auto_over"].items())
        print(f"{name:30} {row['unit']}: {rates}  {ratios}", flush=True)
    write_json(args.out, {**measured_on(), "rounds": args.rounds, "runs": rows})
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
