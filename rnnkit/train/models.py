"""The two trained models: a character language model and a sequence classifier.

Dimensions: B batch, T time steps, I input features, V vocabulary, C classes,
H hidden size, D = 2 if bidirectional else 1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..modules import GRU, LSTM, RNN

_RNNKIT = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
_TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    dropout: float,
    bidirectional: bool,
    backend: str,
    variant: dict[str, Any] | None = None,
) -> nn.Module:
    """A batch-first rnnkit LSTM, GRU or RNN with the ``variant`` keywords (``rnnkit.variants``);
    ``backend="torch.nn"`` gives torch.nn's (same parameter names), which has no variants."""
    kwargs: dict[str, Any] = {
        "num_layers": num_layers,
        "batch_first": True,
        # the recurrent module's dropout acts only between its layers
        "dropout": dropout if num_layers > 1 else 0.0,
        "bidirectional": bidirectional,
    }
    if backend == "torch.nn":
        if variant:
            raise ValueError(f"torch.nn's modules have no variant {', '.join(variant)}; use an rnnkit backend")
        return _TORCH[cell](input_size, hidden_size, **kwargs)
    return _RNNKIT[cell](input_size, hidden_size, **kwargs, **(variant or {}), backend=backend)


class CharLM(nn.Module):
    """d2l's RNNModel: tokens, one-hot or embedded -> recurrent net -> a Linear layer to next-token logits."""

    def __init__(
        self,
        vocab_size: int,
        cell: str,
        hidden_size: int,
        num_layers: int,
        embedding: int,
        dropout: float,
        backend: str = "auto",
        variant: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size, embedding) if embedding else None
        self.rnn = recurrent(cell, embedding or vocab_size, hidden_size, num_layers, dropout, False, backend, variant)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size, vocab_size)

    def forward(self, tokens: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """tokens (B, T) int64, state None (zeros) or as returned -> logits (B, T, V), state."""
        if self.embedding is None:
            x = F.one_hot(tokens, self.vocab_size).float()  # (B, T, V)
        else:
            x = self.dropout(self.embedding(tokens))  # (B, T, E)
        y, state = self.rnn(x, state)  # (B, T, H)
        return self.output(self.dropout(y)), state


class Classifier(nn.Module):
    """A recurrent net over the sequence, then its last hidden state or its mean over time -> class logits."""

    def __init__(
        self,
        input_size: int,
        classes: int,
        cell: str,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        readout: str,
        dropout: float,
        backend: str = "auto",
        variant: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.readout = readout
        self.rnn = recurrent(cell, input_size, hidden_size, num_layers, dropout, bidirectional, backend, variant)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_size * (2 if bidirectional else 1), classes)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, I) -> logits (B, C)."""
        y, state = self.rnn(x)  # y (B, T, D*H); state h_n or (h_n, c_n), h_n (L*D, B, H)
        if self.readout == "mean":
            features = y.mean(dim=1)
        else:
            h_n = state[0] if isinstance(state, tuple) else state
            # the last layer: forward direction after the last step, reverse direction after the first
            features = torch.cat(list(h_n[-2:]) if self.rnn.bidirectional else [h_n[-1]], dim=1)  # (B, D*H)
        return self.output(self.dropout(features))


MODELS: dict[str, type[nn.Module]] = {"charlm": CharLM, "classify": Classifier}
