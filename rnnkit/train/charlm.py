"""The character language model task: its text, batches, loss and perplexity.

A task gives the training loop what differs between jobs: ``describe``, ``model_args``,
``batches``, ``forward`` (loss and statistics of one batch), ``evaluate``, ``figures`` and
``summary``; ``ClassifyTask`` has the same methods.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import Batches, DataError, Vocab, random_windows, read_text, sequential_windows, split_tail, timemachine
from .config import CharLMConfig, variant_args

# steps per forward call when evaluating: the state is carried, so longer calls only save time
_EVAL_STEPS = 512


class CharLMTask:
    """Next-token prediction on a text; perplexity is exp of the mean cross-entropy per token."""

    name = "charlm"
    metric = "ppl"
    unit = "tokens"
    held_out = "val"

    def __init__(self, config: CharLMConfig, vocab: Vocab | None = None) -> None:
        self.config = config
        text = timemachine() if config.text is None else read_text(config.text)
        self.vocab = vocab or Vocab.build(text, config.tokenizer)
        train, self.val = split_tail(self.vocab.encode(text), config.val_fraction)
        self.train = train[: config.max_tokens] if config.max_tokens else train
        windows = (len(self.train) - config.num_steps) // config.num_steps  # after the largest offset
        if windows < config.batch_size:
            raise DataError(
                f"{len(self.train)} training tokens make {max(windows, 0)} windows of --num-steps "
                f"{config.num_steps}, fewer than one batch of --batch-size {config.batch_size}; "
                "use a longer text, a smaller --batch-size or --num-steps, or --max-tokens 0"
            )
        if config.val_fraction and len(self.val) < 2:
            raise DataError(
                f"--val-fraction {config.val_fraction} holds out {len(self.val)} tokens, expected 2 or more"
            )

    def describe(self) -> str:
        """The data in a few words, for the first line of a run."""
        source = "The Time Machine" if self.config.text is None else self.config.text
        return (
            f"{source}, {self.vocab.tokenizer} ({len(self.vocab)} tokens): "
            f"{len(self.train):,} train / {len(self.val):,} val tokens"
        )

    @property
    def model_args(self) -> dict[str, Any]:
        """Arguments of ``CharLM`` for this run (the backend aside)."""
        c = self.config
        return {
            "vocab_size": len(self.vocab),
            "cell": c.cell,
            "hidden_size": c.hidden_size,
            "num_layers": c.num_layers,
            "embedding": c.embedding,
            "dropout": c.dropout,
            # only when set: a plain run's arguments stay those of checkpoints from before the variants
            **({"variant": variant_args(c)} if variant_args(c) else {}),
        }

    def batches(self, epoch: int, rank: int, world: int) -> Batches:
        """This process's share of the epoch's batches: x, y (batch_size // world, num_steps)."""
        c = self.config
        windows = random_windows if c.partition == "random" else sequential_windows
        return windows(self.train, c.batch_size, c.num_steps, seed=c.seed, epoch=epoch, rank=rank, world=world)

    def forward(self, model: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[Tensor, Tensor, Any]:
        """x, y (B, T) -> mean loss, statistics (loss sum, tokens, 0) and the state for the next batch."""
        if self.config.partition == "random":
            state = None  # windows of a random batch do not continue the previous batch's
        logits, state = model(x, state)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        # sequential batches continue the previous ones: carry the state, but not its gradient history
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        return loss, torch.tensor([loss.item() * y.numel(), y.numel(), 0.0], dtype=torch.float64), state

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Loss and perplexity on the validation text (nothing when there is none)."""
        return perplexity(model, self.val, self.config.batch_size, device) if len(self.val) >= 2 else {}

    def figures(self, model: nn.Module, device: torch.device, out_dir: Path) -> list[Path]:
        """Figures beyond the training curves: none for a language model."""
        return []

    def summary(self, split: str, stats: Tensor) -> dict[str, float]:
        """Statistics (loss sum, tokens, _) -> {split_loss, split_ppl}."""
        return _loss_and_ppl(split, float(stats[0] / stats[1]))


@torch.no_grad()
def perplexity(model: nn.Module, ids: Tensor, rows: int, device: torch.device, split: str = "val") -> dict[str, float]:
    """Loss and perplexity of ``model`` on ``ids`` (N,), N >= 2, read as ``rows`` streams with the state carried."""
    rows = min(rows, len(ids) - 1)
    length = (len(ids) - 1) // rows
    xs = ids[: rows * length].view(rows, length).to(device)
    ys = ids[1 : rows * length + 1].view(rows, length).to(device)
    total, state = 0.0, None
    for start in range(0, length, _EVAL_STEPS):
        logits, state = model(xs[:, start : start + _EVAL_STEPS], state)  # (rows, steps, V)
        total += float(
            F.cross_entropy(logits.flatten(0, 1), ys[:, start : start + _EVAL_STEPS].flatten(), reduction="sum")
        )
    return _loss_and_ppl(split, total / (rows * length))


def _loss_and_ppl(split: str, loss: float) -> dict[str, float]:
    return {f"{split}_loss": loss, f"{split}_ppl": math.exp(min(loss, 700.0))}  # capped: exp overflows past 709
