"""Classification data sets of fixed-length sequences: an image read row by row, or a 1-D signal.

- ``digits``: scikit-learn's 8x8 digits (1797 images, shipped with scikit-learn): 8 steps of 8
  features; a fixed stratified split, 1437 train / 360 test.
- ``mnist1d``: MNIST-1D generated locally by the ``mnist1d`` package with its default arguments:
  40 steps of 1 feature, 4000 train / 1000 test.
- ``mnist``: MNIST from local IDX files: 28 steps (rows) of 28 features, 60000 train / 10000 test.
- ``fashion-mnist``: Fashion-MNIST (Zalando's clothing images), in the same format and sizes; read from
  Debian's ``dataset-fashion-mnist`` package's folder unless another folder is given.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import idx
from .errors import DataError

DATASETS = ("digits", "mnist1d", "mnist", "fashion-mnist")


@dataclass
class LabelledSequences:
    """Train and test sequences with their labels: x (N, T, I) float32, y (N,) int64 in [0, classes)."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int


def load(name: str, data_dir: str | Path | None = None) -> LabelledSequences:
    """The data set ``name`` (one of ``DATASETS``); ``data_dir`` holds the IDX files of an image set."""
    if name == "digits":
        return _digits()
    if name == "mnist1d":
        return _mnist1d()
    if name in idx.SOURCES:
        source = idx.SOURCES[name]
        folder = data_dir if data_dir is not None else source.default_dir
        if folder is None:
            raise DataError(f"--data {name} needs --data-dir DIR, the folder holding {source.title}'s four IDX files")
        return _images(name, Path(folder))
    raise DataError(f"unknown data set {name!r}, expected one of {', '.join(DATASETS)}")


def _missing(package: str, name: str) -> str:
    return f"--data {name} needs the {package} package: pip install {package} (or pip install 'rnnkit[data]')"


def _digits() -> LabelledSequences:
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError(_missing("scikit-learn", "digits")) from None
    images, labels = load_digits(return_X_y=True)
    # the split is fixed (not drawn from the training seed) so that runs with other seeds are comparable
    x_train, x_test, y_train, y_test = train_test_split(
        images.reshape(-1, 8, 8) / 16.0, labels, test_size=0.2, random_state=0, stratify=labels
    )
    return _tensors("digits", x_train, y_train, x_test, y_test)


def _mnist1d() -> LabelledSequences:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError(_missing("mnist1d", "mnist1d")) from None
    # make_dataset seeds numpy's and Python's global generators; leave them as they were
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return _tensors("mnist1d", data["x"][..., None], data["y"], data["x_test"][..., None], data["y_test"])


def _images(name: str, folder: Path) -> LabelledSequences:
    source = idx.SOURCES[name]
    files = {key: idx.read(path) for key, path in idx.find(folder, source).items()}
    for split in ("train", "test"):
        pixels, labels = files[f"{split}_images"], files[f"{split}_labels"]
        if pixels.dim() != 3 or labels.dim() != 1 or len(pixels) != len(labels):
            raise DataError(
                f"{source.title} {split} files in {folder} do not match: images {tuple(pixels.shape)}, labels "
                f"{tuple(labels.shape)}, expected (N, rows, columns) and (N,)"
            )

    def images(key: str) -> Tensor:
        return (files[key].float() / 255 - 0.5) / 0.5  # to [-1, 1], as Normalize([0.5], [0.5]) does

    return LabelledSequences(
        name,
        images("train_images"),
        files["train_labels"].long(),
        images("test_images"),
        files["test_labels"].long(),
        classes=10,
    )


def _tensors(name: str, x_train, y_train, x_test, y_test) -> LabelledSequences:
    return LabelledSequences(
        name,
        torch.as_tensor(x_train, dtype=torch.float32),
        torch.as_tensor(y_train, dtype=torch.int64),
        torch.as_tensor(x_test, dtype=torch.float32),
        torch.as_tensor(y_test, dtype=torch.int64),
        classes=int(max(y_train.max(), y_test.max())) + 1,
    )
