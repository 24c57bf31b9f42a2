"""Data for training: The Time Machine and any UTF-8 text for the character language model;
digits, MNIST-1D, MNIST and Fashion-MNIST (local IDX files) for sequence classification. Nothing is
downloaded."""

from .batches import Batches, random_windows, sequential_windows, shuffled, split_tail
from .classification import DATASETS, LabelledSequences, load
from .errors import DataError
from .text import TOKENIZERS, Vocab, normalize, read_text, timemachine

__all__ = [
    "DATASETS",
    "TOKENIZERS",
    "Batches",
    "DataError",
    "LabelledSequences",
    "Vocab",
    "load",
    "normalize",
    "random_windows",
    "read_text",
    "sequential_windows",
    "shuffled",
    "split_tail",
    "timemachine",
]
