"""PNG figures of a run: the training curves and a confusion matrix (matplotlib, without a display)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from ..explain.plots import new_figure

_NAMES = {"ppl": "perplexity", "acc": "accuracy"}


def curves(history: list[dict[str, float]], metric: str, held_out: str, path: Path) -> None:
    """Loss and ``metric`` ("ppl" or "acc") per epoch, for training and the ``held_out`` split."""
    figure = new_figure(10, 4)
    for axes, quantity in zip(figure.subplots(1, 2), ("loss", metric)):
        for split in ("train", held_out):
            points = [(m["epoch"], m[f"{split}_{quantity}"]) for m in history if f"{split}_{quantity}" in m]
            if points:
                epochs, values = zip(*points)
                axes.plot(epochs, values, marker="." if len(points) < 30 else None, label=split)
        axes.set(xlabel="epoch", ylabel=_NAMES.get(quantity, quantity))
        if quantity == "ppl":
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(path, dpi=100)


def confusion(matrix: Tensor, path: Path, title: str) -> None:
    """(C, C) counts, row the true class and column the predicted one, each cell labelled."""
    classes = matrix.shape[0]
    figure = new_figure(1.2 + 0.55 * classes, 0.8 + 0.55 * classes)
    axes = figure.subplots()
    axes.imshow(matrix.numpy(), cmap="Blues")
    peak = int(matrix.max())
    for (true, predicted), count in zip(((i, j) for i in range(classes) for j in range(classes)), matrix.flatten()):
        if count:
            color = "white" if count > peak / 2 else "black"
            axes.text(predicted, true, int(count), ha="center", va="center", fontsize=8, color=color)
    axes.set(xlabel="predicted", ylabel="true", title=title, xticks=range(classes), yticks=range(classes))
    figure.savefig(path, dpi=100)
