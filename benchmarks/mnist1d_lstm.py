"""MNIST-1D, an LSTM trained with the GRU's recipe: rnnkit's compiled kernels against torch.nn's module,
and the layer-normalised LSTM.

The recipe is the one that takes a GRU 128 to 98% (Adam 2e-3, batch 64, 100 epochs, constant rate,
no gradient clipping)::

    rnnkit train classify --data mnist1d --cell lstm --lr 2e-3 --batch-size 64 --epochs 100 \\
        --schedule constant --seed S --backend B

Each seed runs once per model of ``--models``: ``cpu`` (``--backend cpu``), ``torch.nn``
(``--backend torch.nn``: the same initial weights and batches, only the kernels differ),
``layer-norm`` (``--layer-norm``) and ``layer-norm-hh-c`` (layer norm of the recurrence only:
MNIST-1D has one input feature, which LN(W_ih x_t) reduces to about its sign), ``layer-norm-hh``
(of W_hh h_{t-1} only), and with ``--forget-bias 1``: ``cpu-forget-bias`` and
``layer-norm-hh-c-forget-bias``; each in its own process with one thread, up to ``--parallel`` at
a time. The final and best test accuracies, the
training seconds and every epoch's metrics go to
``benchmarks/results/train-mnist1d-lstm-gru-recipe.json`` (``--out``).

Usage::

    python benchmarks/mnist1d_lstm.py --seeds 3 --parallel 2
    python benchmarks/mnist1d_lstm.py --models layer-norm-hh-c --parallel 2 \\
        --out benchmarks/results/train-mnist1d-lstm-layer-norm.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_runs import run_all

RECIPE = ["--data", "mnist1d", "--cell", "lstm", "--lr", "2e-3", "--batch-size", "64", "--epochs", "100"]
RECIPE += ["--schedule", "constant", "--no-progress"]
MODELS = {
    "cpu": ["--backend", "cpu"],
    "cpu-forget-bias": ["--backend", "cpu", "--forget-bias", "1"],
    "torch.nn": ["--backend", "torch.nn"],
    "layer-norm": ["--layer-norm"],
    "layer-norm-hh-c": ["--layer-norm", "--layer-norm-at", "hh,c"],
    "layer-norm-hh": ["--layer-norm", "--layer-norm-at", "hh"],
    "layer-norm-hh-c-forget-bias": ["--layer-norm", "--layer-norm-at", "hh,c", "--forget-bias", "1"],
}
OUT = Path(__file__).resolve().parent / "results" / "train-mnist1d-lstm-gru-recipe.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (each on one thread)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["cpu", "torch.nn"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    jobs = [
        (["train", "classify", *RECIPE, "--seed", str(seed), *MODELS[model]], {"seed": seed, "model": model})
        for seed in range(args.seeds)
        for model in args.models
    ]
    run_all(jobs, args.parallel, args.out)


if __name__ == "__main__":
    main()
