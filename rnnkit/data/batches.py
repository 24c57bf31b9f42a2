"""Mini-batches for training, sharded over processes.

Every batcher takes the *global* ``batch_size`` and the process's ``rank`` among
``world`` processes, and gives that process ``batch_size // world`` rows of each
batch. Shuffled indices come from ``DistributedSampler`` (shuffled with ``seed + epoch``,
handed out round-robin), sequential streams are dealt the same way, so the rows of all
processes together are the batch a single process gets with the same seed: the number
of processes changes how a batch is computed, not what it holds.

Dimensions: B = batch_size // world (rows per process), T = num_steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DistributedSampler


@dataclass
class Batches:
    """(x, y) batches built on access: ``len`` for progress bars, iteration for the training loop."""

    keys: list[Any]
    fetch: Callable[[Any], tuple[Tensor, Tensor]]

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self.fetch(key) for key in self.keys)


def split_tail(ids: Tensor, fraction: float) -> tuple[Tensor, Tensor]:
    """(N,) -> (head, tail): the last ``fraction`` of the tokens held out (for validation)."""
    held_out = round(len(ids) * fraction)
    return ids[: len(ids) - held_out], ids[len(ids) - held_out :]


def _offset(num_steps: int, seed: int, epoch: int) -> int:
    """d2l's random start in [0, num_steps): each epoch cuts the text at other places."""
    return int(torch.randint(num_steps, (1,), generator=torch.Generator().manual_seed(seed + epoch)))


def _sampler(n: int, seed: int, epoch: int, rank: int, world: int, drop_last: bool) -> DistributedSampler:
    sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    return sampler


def random_windows(
    ids: Tensor, batch_size: int, num_steps: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> Batches:
    """d2l's random partitioning: after a random offset, the text is cut into windows of ``num_steps``
    tokens, shuffled; neighbouring batches are unrelated, so no state is carried between them.

    ids: (N,) token ids. Yields x (B, T) and y (B, T), the tokens one step later.
    """
    offset = _offset(num_steps, seed, epoch)
    starts = offset + num_steps * torch.arange((len(ids) - offset - 1) // num_steps)
    # drop_last on both: every batch is full on every process, as in the single-process run
    sampler = _sampler(len(starts), seed, epoch, rank, world, drop_last=True)
    steps = torch.arange(num_steps)

    def fetch(index: list[int]) -> tuple[Tensor, Tensor]:
        positions = starts[index, None] + steps  # (B, T)
        return ids[positions], ids[positions + 1]

    return Batches(list(BatchSampler(sampler, batch_size // world, drop_last=True)), fetch)


def sequential_windows(
    ids: Tensor, batch_size: int, num_steps: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> Batches:
    """d2l's sequential partitioning: after a random offset, the text is laid out as ``batch_size``
    streams read ``num_steps`` at a time, so row b of a batch continues row b of the one before
    and the recurrent state can be carried over. Process ``rank`` reads streams rank, rank + world, ...

    ids: (N,) token ids. Yields x (B, T) and y (B, T), the tokens one step later.
    """
    offset = _offset(num_steps, seed, epoch)
    length = (len(ids) - offset - 1) // batch_size
    xs = ids[offset : offset + batch_size * length].view(batch_size, length)[rank::world]
    ys = ids[offset + 1 : offset + 1 + batch_size * length].view(batch_size, length)[rank::world]

    def fetch(k: int) -> tuple[Tensor, Tensor]:
        window = slice(k * num_steps, (k + 1) * num_steps)
        return xs[:, window], ys[:, window]

    return Batches(list(range(length // num_steps)), fetch)


def shuffled(x: Tensor, y: Tensor, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world: int = 1) -> Batches:
    """Samples in a new random order every epoch, the last batch possibly smaller.

    x: (N, ...) inputs, y: (N,) labels. Yields x (B, ...) and y (B,).
    """
    sampler = _sampler(len(y), seed, epoch, rank, world, drop_last=False)
    return Batches(list(BatchSampler(sampler, batch_size // world, drop_last=False)), lambda i: (x[i], y[i]))
