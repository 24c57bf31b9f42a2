"""Fashion-MNIST read row by row (28 steps of 28 pixels): rnnkit's LSTM and GRU, plain and with
variants, against the best recurrent entry of Fashion-MNIST's own benchmark table (GRU+SVM with
dropout, 89.7%).

The images come from Debian's ``dataset-fashion-mnist`` package (``apt-get install
dataset-fashion-mnist``), which ``--data fashion-mnist`` reads by default. Every model trains with
one recipe (Adam 2e-3, batch 128, cosine decay over ``--epochs``, 30 by default)::

    rnnkit train classify --data fashion-mnist --lr 2e-3 --batch-size 128 --epochs 30 MODEL-FLAGS

Each model of ``--models`` runs in its own process on one thread, up to ``--parallel`` at a time.
The final and best test accuracies, the training seconds and every epoch's metrics go to
``benchmarks/results/train-fashion-mnist.json`` (``--out``).

Usage::

    python benchmarks/fashion_mnist.py --parallel 2
    python benchmarks/fashion_mnist.py --models lstm-layer-norm --epochs 15 --out results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_runs import run_all

RECIPE = ["--data", "fashion-mnist", "--lr", "2e-3", "--batch-size", "128", "--no-progress"]
MODELS = {
    "lstm": ["--cell", "lstm", "--hidden-size", "128"],
    "gru": ["--cell", "gru", "--hidden-size", "128"],
    "lstm-2x128-bi": ["--cell", "lstm", "--hidden-size", "128", "--num-layers", "2", "--bidirectional"],
    "gru-2x128-bi": ["--cell", "gru", "--hidden-size", "128", "--num-layers", "2", "--bidirectional"],
    "lstm-layer-norm": ["--cell", "lstm", "--hidden-size", "128", "--layer-norm"],
    "lstm-zoneout": ["--cell", "lstm", "--hidden-size", "128", "--zoneout", "0.1"],
    "gru-layer-norm": ["--cell", "gru", "--hidden-size", "128", "--layer-norm"],
}
OUT = Path(__file__).resolve().parent / "results" / "train-fashion-mnist.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["lstm", "gru"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--dropout", type=float, default=0.0, help="before the output layer (and between layers)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (each on one thread)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    recipe = [*RECIPE, "--epochs", str(args.epochs), "--dropout", str(args.dropout)]
    jobs = [
        (["train", "classify", *recipe, "--seed", str(seed), *MODELS[model]], {"model": model, "seed": seed})
        for model in args.models
        for seed in range(args.seeds)
    ]
    run_all(jobs, args.parallel, args.out)


if __name__ == "__main__":
    main()
