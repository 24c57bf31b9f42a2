"""One process or several: ``torchrun --nproc_per_node N -m rnnkit train ...`` runs N copies of the
training loop, each on its share of every batch, with gradients averaged by DistributedDataParallel
(gloo on the CPU, nccl on CUDA). Process 0 alone logs and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .errors import ConfigError


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto``, ``cpu`` or ``cuda`` -> the device of this process (``cuda:<local rank>`` under torchrun)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda, but no CUDA device is available; use --device cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device(device)


@dataclass
class Process:
    """This process's place among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """True on the process that logs and writes files."""
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` itself in a single process, else in DistributedDataParallel (gradients averaged)."""
        if self.world == 1:
            return model
        return DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)

    def sum(self, stats: Tensor) -> Tensor:
        """``stats`` summed over all processes (a copy)."""
        if self.world == 1:
            return stats.clone()
        total = stats.to(self.device, copy=True)  # all_reduce works in place: keep the caller's stats
        dist.all_reduce(total)
        return total.cpu()

    def gather(self, item: Any) -> list[Any]:
        """``item`` of every process, by rank."""
        if self.world == 1:
            return [item]
        items: list[Any] = [None] * self.world
        dist.all_gather_object(items, item)
        return items


@contextmanager
def session(device: str) -> Iterator[Process]:
    """This process, joined to the others when started by torchrun (which sets WORLD_SIZE, RANK, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    process = Process(rank, world, resolve_device(device, local_rank))
    if world == 1:
        yield process
        return
    if process.device.type == "cuda":
        torch.cuda.set_device(process.device)
    dist.init_process_group("nccl" if process.device.type == "cuda" else "gloo")
    try:
        yield process
    finally:
        dist.destroy_process_group()
