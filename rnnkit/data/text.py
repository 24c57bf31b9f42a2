"""Text for the character language model: reading a corpus, tokenising it, the vocabulary.

Two tokenisers:

- ``letters`` (d2l's): every run of non-letters becomes one space and letters are
  lowercased, so the vocabulary is ``<unk>``, space and a-z: 28 tokens.
- ``chars``: every character is a token; the vocabulary is ``<unk>`` and the
  characters of the text, sorted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from .errors import DataError

UNK = "<unk>"
TOKENIZERS = ("letters", "chars")
_LETTERS = " abcdefghijklmnopqrstuvwxyz"
_NOT_LETTERS = re.compile("[^A-Za-z]+")


def timemachine() -> str:
    """The text of H. G. Wells' The Time Machine, shipped with the package (no download)."""
    text = resources.files(__package__).joinpath("timemachine.txt").read_text(encoding="utf-8")
    return text.split("\n", 1)[1]  # the first line names the source and is not part of the book


def read_text(path: str | Path) -> str:
    """The contents of a UTF-8 text file; DataError when it is missing, unreadable, not UTF-8 or empty."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataError(f"text file {path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"text file {path} is a directory, expected a UTF-8 text file") from None
    except UnicodeDecodeError as error:
        raise DataError(
            f"text file {path} is not UTF-8: byte 0x{error.object[error.start]:02x} at offset {error.start}"
        ) from None
    except OSError as error:
        raise DataError(f"cannot read text file {path}: {error.strerror}") from None
    if not text.strip():
        raise DataError(f"text file {path} is empty, expected some text to train on")
    return text


def normalize(text: str, tokenizer: str) -> str:
    """``text`` as the tokeniser sees it: ``letters`` lowercases and turns non-letter runs into one space."""
    return _NOT_LETTERS.sub(" ", text).lower() if tokenizer == "letters" else text


@dataclass(frozen=True)
class Vocab:
    """Tokens by index (index 0 is ``<unk>``, for anything not in the vocabulary) and the tokeniser."""

    tokens: tuple[str, ...]
    tokenizer: str

    @classmethod
    def build(cls, text: str, tokenizer: str) -> Vocab:
        """The vocabulary of ``text``: fixed (28 tokens) for ``letters``, its distinct characters for ``chars``."""
        if tokenizer not in TOKENIZERS:
            raise DataError(f"tokenizer must be one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
        chars = _LETTERS if tokenizer == "letters" else sorted(set(text))
        return cls((UNK, *chars), tokenizer)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> Tensor:
        """``text`` -> (N,) int64 token ids, after ``normalize``; unknown characters map to 0 (``<unk>``)."""
        index = {token: i for i, token in enumerate(self.tokens)}
        return torch.tensor([index.get(c, 0) for c in normalize(text, self.tokenizer)], dtype=torch.int64)

    def decode(self, ids: Tensor | list[int]) -> str:
        """(N,) token ids -> text."""
        return "".join(self.tokens[i] for i in torch.as_tensor(ids).tolist())
