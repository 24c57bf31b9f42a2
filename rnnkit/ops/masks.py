r"""Bernoulli masks for the variants (recurrent dropout, zoneout, weight drop), from a counter-based hash.

Element i of a mask (in row-major order) is 1 where

.. math::
    \text{mix}(\text{mix}((i + k_0) \bmod 2^{32}) \oplus k_1) < \text{round}(p\, 2^{32})

and 0 elsewhere: ``mix`` is the lowbias32 integer hash (a bijection of 32-bit words whose every
output bit depends on every input bit), and (k_0, k_1) two 32-bit words drawn from torch's generator
on the mask's device, once per mask. So a seed gives the same masks to every backend, and each mask
costs two draws of torch's generator instead of one per element: the CPU's generator is serial,
about 3 ns a draw (4.7 ms for zoneout's 1.6 million values at I256 H256 B64 T100); the hash of
every element is independent of the others, so the compiled kernels spread it over the threads
(``csrc/masks.cpp``, bit for bit the same; 0.3 ms there on two cores). ``hashed_bits`` below is
the specification.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_WORD = 0xFFFFFFFF  # the low 32 bits of an int64


def _times(x: Tensor, factor: int) -> Tensor:
    """(x * factor) mod 2^32 for the 32-bit words x holds in int64, by 16-bit halves of ``factor`` so
    that no product leaves int64's range."""
    low = x * (factor & 0xFFFF)
    high = ((x * (factor >> 16)) & 0xFFFF) << 16
    return (low + high) & _WORD


def _mix(x: Tensor) -> Tensor:
    """lowbias32 of the 32-bit words x holds in int64."""
    x = x ^ (x >> 16)
    x = _times(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _times(x, 0x846CA68B)
    return x ^ (x >> 16)


def hashed_bits(numel: int, key: Tensor) -> Tensor:
    """The 32-bit words (in int64) mix(mix(i + k_0) ^ k_1) for i < numel, key = (k_0, k_1) on the device."""
    index = torch.arange(numel, dtype=torch.int64, device=key.device)
    return _mix(_mix((index + key[0]) & _WORD) ^ key[1])


def threshold(p: float) -> int:
    """round(p 2^32): a word below it has probability p, to within 2^-33."""
    return round(min(max(p, 0.0), 1.0) * 2**32)


def bernoulli(shape: tuple[int, ...], p: float, like: Tensor, value: float = 1.0) -> Tensor:
    """A tensor of ``shape`` in ``like``'s dtype and device whose elements are ``value`` with
    probability ``p``, else 0, by the rule in this module's docstring; the key is drawn from torch's
    generator. Dropout keeping an element with probability q passes value 1 / q: the kept elements
    come scaled from the same pass."""
    if _kernel_takes(like):  # the kernel draws the key as below, one call instead of two
        return torch.ops.rnnkit.hashed_bernoulli(shape, threshold(p), like.dtype, value)
    key = torch.randint(0, 2**32, (2,), dtype=torch.int64, device=like.device)
    mask = (hashed_bits(math.prod(shape), key) < threshold(p)).to(like.dtype).view(shape)
    return mask if value == 1.0 else mask.mul_(value)


def drop_connect(weight: Tensor, p: float) -> Tensor:
    """``weight`` with each element zeroed with probability ``p`` and the rest scaled by 1 / (1 - p):
    weight drop's fresh mask (``bernoulli``), differentiable in ``weight``."""
    return weight * bernoulli(tuple(weight.shape), 1 - p, weight, 1 / (1 - p))


def _kernel_takes(like: Tensor) -> bool:
    """Whether the compiled kernels are loaded (never built from here) and make masks like ``like``;
    not while torch.compile traces (the specification traces into a fused loop as well)."""
    return (
        like.is_cpu
        and like.dtype in (torch.float32, torch.float64)
        and hasattr(torch.ops.rnnkit, "hashed_bernoulli")
        and not torch.compiler.is_compiling()
    )
