"""One process or several: ``torchrun --nproc_per_node N -m rnnkit train ...`` runs N copies of the
training loop, each on its share of every batch, with gradients averaged by DistributedDataParallel
(gloo on the CPU, nccl on CUDA). Process 0 alone logs and writes files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

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


# Every collective this module starts is kept here until the interpreter exits. Gloo's worker
# thread holds on to the last collective it ran until the process group shuts down, and were its
# reference the last one, it would then release the collective's tensors, which takes the
# interpreter's lock for tensors Python has seen. The group shuts down when its last reference
# goes (often DistributedDataParallel's), from the main thread, which holds that lock and joins the
# worker: the worker waits for the lock, the main thread for the worker, and the process never
# exits (seen once in about 25 two-process runs on a loaded 2-core machine). Kept here, a
# collective is released by the main thread alone. They hold the buffers of ``Process``, reused.
_STARTED: list[dist.Work] = []


@dataclass
class Process:
    """This process's place among ``world`` processes and its device."""

    rank: int
    world: int
    device: torch.device
    _buffers: dict[tuple[str, torch.Size, torch.dtype], Tensor] = field(default_factory=dict, repr=False)

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
        """``stats`` summed over all processes (a copy on the CPU)."""
        if self.world == 1:
            return stats.clone()
        total = self._buffer("sum", stats).copy_(stats)
        _wait(dist.all_reduce(total, async_op=True))
        return total.to("cpu", copy=True)

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """``tensor``, of the same shape and dtype on every process, from every process by rank (CPU copies)."""
        if self.world == 1:
            return [tensor.clone()]
        sent = self._buffer("sent", tensor).copy_(tensor)
        received = [self._buffer(f"from {rank}", tensor) for rank in range(self.world)]
        _wait(dist.all_gather(received, sent, async_op=True))
        return [r.to("cpu", copy=True) for r in received]

    def _buffer(self, role: str, like: Tensor) -> Tensor:
        """The buffer for ``role`` shaped like ``like`` on this device, made once: the kept collectives share it."""
        key = (role, like.shape, like.dtype)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(like.shape, dtype=like.dtype, device=self.device)
        return self._buffers[key]


def _wait(work: dist.Work) -> None:
    work.wait()
    _STARTED.append(work)


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
