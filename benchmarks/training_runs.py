"""Runs of ``rnnkit train classify`` in fresh processes, one thread each, and their results as JSON.

Shared by the scripts that train a recipe over seeds and models (``mnist1d_lstm.py``,
``fashion_mnist.py``): each run's command, final and best test accuracy, training seconds and every
epoch's metrics, with the machine they ran on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from machine import measured_on, write_json


def metrics_history(out_dir: Path) -> list[dict[str, Any]]:
    """Every epoch's metrics of the run that wrote ``out_dir``, from its metrics.jsonl."""
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def run(args: list[str], out_dir: Path, **labels: Any) -> dict[str, Any]:
    """``rnnkit ARGS --out-dir OUT_DIR`` in a fresh process on one thread; ``labels`` go into the result."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rnnkit", *args, "--out-dir", str(out_dir)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rnnkit {' '.join(args)} failed: {done.stderr.strip()}")
    history = metrics_history(out_dir)
    return {
        "command": "rnnkit " + " ".join(args),
        **labels,
        "final_test_acc": history[-1]["test_acc"],
        "best_test_acc": max(epoch["test_acc"] for epoch in history),
        "train_seconds": round(sum(epoch["seconds"] for epoch in history), 1),
        "history": history,
    }


def run_all(jobs: list[tuple[list[str], dict[str, Any]]], parallel: int, out: Path) -> list[dict[str, Any]]:
    """Every (args, labels) job, ``parallel`` at a time; prints a table and writes ``out``."""
    with tempfile.TemporaryDirectory() as root, ThreadPoolExecutor(parallel) as pool:
        folders = [Path(root) / str(number) for number in range(len(jobs))]
        runs = list(pool.map(lambda job, folder: run(job[0], folder, **job[1]), jobs, folders))
    keys = list(jobs[0][1])
    print(" ".join(f"{key:<16}" for key in keys) + f" {'final test acc':>14} {'best':>7} {'seconds':>8}")
    for r in runs:
        print(
            " ".join(f"{r[key]!s:<16}" for key in keys)
            + f" {100 * r['final_test_acc']:>13.2f}% {100 * r['best_test_acc']:>6.2f}% {r['train_seconds']:>8.0f}"
        )
    report = {
        **measured_on(),
        "parallel": parallel,
        "runs": runs,
    }
    write_json(out, report)
    print(f"wrote {out}")
    return runs
