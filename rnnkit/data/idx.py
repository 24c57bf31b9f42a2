"""IDX files (MNIST's format, gzipped or not) read from a local folder; nothing is ever downloaded."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .errors import DataError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_UBYTE = 0x08


@dataclass(frozen=True)
class Source:
    """Where one data set's four IDX files are found, and what to tell a user who lacks them."""

    title: str
    torchvision_folder: str
    default_dir: Path | None
    how_to_get: str


SOURCES = {
    "mnist": Source(
        "MNIST", "MNIST", None, "put the four IDX files from http://yann.lecun.com/exdb/mnist/ there, gzipped or not"
    ),
    "fashion-mnist": Source(
        "Fashion-MNIST",
        "FashionMNIST",
        Path("/usr/share/datasets/fashion-mnist"),
        "apt-get install dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist, or give --data-dir",
    ),
}


def find(folder: str | Path, source: Source = SOURCES["mnist"]) -> dict[str, Path]:
    """The four files of ``source`` in ``folder`` (or torchvision's ``folder/<name>/raw``), each plain or ``.gz``."""
    folder = Path(folder)
    places = (folder, folder / source.torchvision_folder / "raw")
    found, missing = {}, []
    for key, name in FILES.items():
        candidates = [place / (name + ext) for place in places for ext in ("", ".gz")]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(name + "[.gz]")
        else:
            found[key] = path
    if missing:
        raise DataError(
            f"{source.title} not found in {folder}: missing {', '.join(missing)}; {source.how_to_get}; "
            "rnnkit does not download them"
        )
    return found


def read(path: Path) -> Tensor:
    """An IDX file of unsigned bytes -> uint8 tensor of the shape in its header, e.g. (60000, 28, 28)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataError(f"{path} is not a readable gzip file: {error}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _UBYTE:
        raise DataError(f"{path} is not an IDX file of unsigned bytes: header {raw[:4].hex()}, expected 000008xx")
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    start, count = 4 + 4 * dims, 1
    for size in shape:
        count *= size
    if len(raw) != start + count:
        raise DataError(f"{path} holds {len(raw) - start} bytes of data, its header {tuple(shape)} says {count}")
    return torch.frombuffer(bytearray(raw[start:]), dtype=torch.uint8).view(shape)
