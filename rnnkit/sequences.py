"""Padded batches with lengths, and torch's PackedSequence, converted both ways.

rnnkit's recurrences run on a padded (T, B, *) batch in the caller's order with a
(B,) ``lengths`` tensor; a PackedSequence is unpacked to that form on the way in
and packed again, with the same ``batch_sizes`` and indices, on the way out.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence


def packed_to_padded(packed: PackedSequence) -> tuple[Tensor, Tensor]:
    """PackedSequence -> (padded (T, B, *) in the original batch order, lengths (B,) int64 on the CPU)."""
    return pad_packed_sequence(packed)


def padded_to_packed(padded: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (T, B, *) with the layout (batch_sizes, indices) of ``like``.

    The inverse of ``packed_to_padded`` for the same layout; differentiable.
    """
    batch_sizes = like.batch_sizes
    steps = torch.arange(len(batch_sizes))
    time_index = torch.repeat_interleave(steps, batch_sizes)  # (N,): step of each packed row
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes
    rank = torch.arange(len(time_index)) - starts[time_index]  # position in the sorted batch
    index = rank.to(padded.device)
    if like.sorted_indices is not None:
        index = like.sorted_indices[index]
    data = padded[time_index.to(padded.device), index]
    return PackedSequence(data, batch_sizes, like.sorted_indices, like.unsorted_indices)


def last_valid(output: Tensor, lengths: Tensor) -> Tensor:
    """output (T, B, F) -> (B, F): each sequence's row at its last valid step ``lengths[b] - 1``."""
    index = (lengths.to(output.device) - 1).view(1, -1, 1).expand(1, -1, output.shape[2])
    return output.gather(0, index).squeeze(0)
