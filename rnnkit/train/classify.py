"""The sequence classification task: its data set, batches, loss, accuracy and confusion matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Batches, load, shuffled
from . import plots
from .config import ClassifyConfig, variant_args

_EVAL_BATCH = 1000


class ClassifyTask:
    """One label per sequence; accuracy on the test split."""

    name = "classify"
    metric = "acc"
    unit = "samples"
    held_out = "test"

    def __init__(self, config: ClassifyConfig) -> None:
        self.config = config
        self.data = load(config.data, config.data_dir)

    def describe(self) -> str:
        """The data in a few words, for the first line of a run."""
        d = self.data
        steps, features = d.x_train.shape[1:]
        return (
            f"{d.name}: {len(d.y_train):,} train / {len(d.y_test):,} test sequences "
            f"of {steps} steps x {features} features, {d.classes} classes"
        )

    @property
    def model_args(self) -> dict[str, Any]:
        """Arguments of ``Classifier`` for this run (the backend aside)."""
        c = self.config
        return {
            "input_size": self.data.x_train.shape[2],
            "classes": self.data.classes,
            "cell": c.cell,
            "hidden_size": c.hidden_size,
            "num_layers": c.num_layers,
            "bidirectional": c.bidirectional,
            "readout": c.readout,
            "dropout": c.dropout,
            # only when set: a plain run's arguments stay those of checkpoints from before the variants
            **({"variant": variant_args(c)} if variant_args(c) else {}),
        }

    def batches(self, epoch: int, rank: int, world: int) -> Batches:
        """This process's share of the epoch's batches: x (batch_size // world, T, I), y (batch_size // world,)."""
        c = self.config
        return shuffled(
            self.data.x_train, self.data.y_train, c.batch_size, seed=c.seed, epoch=epoch, rank=rank, world=world
        )

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[Tensor, Tensor, None]:
        """x (B, T, I), y (B,) -> mean loss, statistics (loss sum, samples, correct), no state."""
        logits = model(x)  # (B, C)
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(1) == y).sum()
        return loss, torch.tensor([loss.item() * len(y), len(y), correct.item()], dtype=torch.float64), None

    @torch.no_grad()
    def predict(self, model: nn.Module, device: torch.device) -> tuple[Tensor, Tensor]:
        """Logits (N, C) of the test set, on the CPU, and its labels (N,)."""
        x = self.data.x_test
        logits = [model(x[i : i + _EVAL_BATCH].to(device)).cpu() for i in range(0, len(x), _EVAL_BATCH)]
        return torch.cat(logits), self.data.y_test

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Loss and accuracy on the test set."""
        logits, y = self.predict(model, device)
        loss = F.cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(1) == y).sum()
        return self.summary(self.held_out, torch.tensor([float(loss), len(y), float(correct)], dtype=torch.float64))

    def confusion(self, model: nn.Module, device: torch.device) -> Tensor:
        """(C, C) counts of the test set: row the true class, column the predicted one."""
        logits, y = self.predict(model, device)
        classes = self.data.classes
        return torch.bincount(y * classes + logits.argmax(1), minlength=classes * classes).view(classes, classes)

    def figures(self, model: nn.Module, device: torch.device, out_dir: Path) -> list[Path]:
        """The confusion matrix of the test set, as confusion.png."""
        matrix = self.confusion(model, device)
        accuracy = float(matrix.diag().sum() / matrix.sum())
        path = out_dir / "confusion.png"
        plots.confusion(matrix, path, f"{self.data.name}, test accuracy {100 * accuracy:.2f}%")
        return [path]

    def summary(self, split: str, stats: Tensor) -> dict[str, float]:
        """Statistics (loss sum, samples, correct) -> {split_loss, split_acc}."""
        return {f"{split}_loss": float(stats[0] / stats[1]), f"{split}_acc": float(stats[2] / stats[1])}
