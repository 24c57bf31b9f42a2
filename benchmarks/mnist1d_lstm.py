"""MNIST-1D, an LSTM trained with the GRU's recipe: rnnkit's compiled kernels against torch.nn's module,
and the layer-normalised LSTM.

The recipe is the one that takes a GRU 128 to 98% (Adam 2e-3, batch 64, 100 epochs, constant rate,
no gradient clipping)::

    rnnkit train classify --data mnist1d --cell lstm --lr 2e-3 --batch-size 64 --epochs 100 \\
        --schedule constant --seed S --backend B

Each seed runs once per model of ``--models``: ``cpu`` (``--backend cpu``), ``torch.nn``
(``--backend torch.nn``: the same initial weights and batches, only the kernels differ),
``layer-norm`` (``--layer-norm``) and ``layer-norm-hh-c`` (layer norm of the recurrence only:
MNIST-1D has one input feature, which LN(W_ih x_t) reduces to about its sign), each in its own
process with one thread, up to ``--parallel`` at a time. The final and best test accuracies, the
training seconds and every epoch's metrics go to
``benchmarks/results/train-mnist1d-lstm-gru-recipe.json`` (``--out``).

Usage::

    python benchmarks/mnist1d_lstm.py --seeds 3 --parallel 2
    python benchmarks/mnist1d_lstm.py --models layer-norm-hh-c --parallel 2 \\
        --out benchmarks/results/train-mnist1d-lstm-layer-norm.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

RECIPE = ["--data", "mnist1d", "--cell", "lstm", "--lr", "2e-3", "--batch-size", "64", "--epochs", "100"]
RECIPE += ["--schedule", "constant", "--no-progress"]
MODELS = {
    "cpu": ["--backend", "cpu"],
    "torch.nn": ["--backend", "torch.nn"],
    "layer-norm": ["--layer-norm"],
    "layer-norm-hh-c": ["--layer-norm", "--layer-norm-at", "hh,c"],
}
OUT = Path(__file__).resolve().parent / "results" / "train-mnist1d-lstm-gru-recipe.json"


def run(seed: int, model: str, root: Path) -> dict[str, Any]:
    """One training run in a fresh process; its command, final and best test accuracy, seconds and history."""
    out_dir = root / f"{model}-{seed}"
    args = ["train", "classify", *RECIPE, "--seed", str(seed), *MODELS[model]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rnnkit", *args, "--out-dir", str(out_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rnnkit {' '.join(args)} failed: {done.stderr.strip()}")
    history = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "command": "rnnkit " + " ".join(args),
        "seed": seed,
        "model": model,
        "final_test_acc": history[-1]["test_acc"],
        "best_test_acc": max(epoch["test_acc"] for epoch in history),
        "train_seconds": round(sum(epoch["seconds"] for epoch in history), 1),
        "history": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (each on one thread)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["cpu", "torch.nn"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import device_info, write_json

    with tempfile.TemporaryDirectory() as root, ThreadPoolExecutor(args.parallel) as pool:
        jobs = [(seed, model) for seed in range(args.seeds) for model in args.models]
        runs = list(pool.map(lambda job: run(*job, Path(root)), jobs))
    print(f"{'seed':>4} {'model':<10} {'final test acc':>14} {'best':>7} {'seconds':>8}")
    for r in runs:
        print(
            f"{r['seed']:>4} {r['model']:<10} {100 * r['final_test_acc']:>13.2f}% "
            f"{100 * r['best_test_acc']:>6.2f}% {r['train_seconds']:>8.0f}"
        )
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "parallel": args.parallel,
        "runs": runs,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
