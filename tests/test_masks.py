"""The variants' Bernoulli masks (``rnnkit/ops/masks.py``): the compiled kernel against the hash
written in torch ops, bit for bit, and the masks' statistics."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.ops import compiled, masks

from .utils import hashed_mask

CPU_READY = compiled.unavailable_reason() is None


def spec(shape: tuple[int, ...], p: float, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """``masks.bernoulli``'s mask after ``torch.manual_seed(seed)``, by the rule written out."""
    torch.manual_seed(seed)
    return hashed_mask(shape, p, dtype)


def test_the_hash_is_lowbias32_on_32_bit_words():
    """mix by hand in Python integers for a few words, against the int64 tensor code (no overflow)."""

    def mix(x: int) -> int:
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    key = torch.tensor([0xFFFFFFFF, 0x9E3779B9])
    expected = [mix(mix((i + 0xFFFFFFFF) & 0xFFFFFFFF) ^ 0x9E3779B9) for i in range(6)]
    assert masks.hashed_bits(6, key).tolist() == expected


@pytest.mark.cpu_kernels
@pytest.mark.skipif(not CPU_READY, reason=f"compiled CPU backend: {compiled.unavailable_reason()}")
@pytest.mark.parametrize(
    ("shape", "p", "dtype"),
    [
        ((7,), 0.3, torch.float32),
        ((33, 2, 129), 0.1, torch.float32),  # several threads' chunks, a ragged last one
        ((3, 5, 11), 0.999, torch.float64),
        ((4, 4), 1.0, torch.float32),
        ((4, 4), 0.0, torch.float64),
        ((0, 3), 0.5, torch.float32),
        ((5, 3), 0.6, torch.bfloat16),  # the specification itself, where the kernel makes no masks
    ],
)
@pytest.mark.parametrize("value", [1.0, 1 / 0.7])
def test_kernel_gives_the_specifications_masks(shape, p, dtype, value):
    """The kernel's masks are the specification's bit for bit, of ones or of dropout's scaled ``value``."""
    torch.manual_seed(5)
    actual = masks.bernoulli(shape, p, torch.empty(0, dtype=dtype), value)
    assert actual.dtype == dtype and actual.shape == shape
    assert torch.equal(actual, spec(shape, p, dtype, seed=5) * torch.tensor(value, dtype=dtype))


def test_elements_are_one_with_probability_p_and_independent():
    """Over 2^20 elements, the share of ones within 5 standard deviations of p, for p near 0 and 1 too;
    neighbours (i, i + 1) and elements a row apart agree as often as independent draws would."""
    n = 1 << 20
    for p in (1e-3, 0.1, 0.5, 0.97):
        torch.manual_seed(0)
        mask = masks.bernoulli((n,), p, torch.empty(0, dtype=torch.float64))
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(mask.mean().item() - p) < 5 * sigma, p
        for lag in (1, 256):
            both = (mask[:-lag] * mask[lag:]).mean().item()
            assert abs(both - p * p) < 5 * math.sqrt(p * p * (1 - p * p) / n) + 1e-12, (p, lag)


def test_a_seed_gives_one_mask_and_each_call_a_new_one():
    like = torch.empty(0)
    torch.manual_seed(3)
    first, second = masks.bernoulli((64, 32), 0.5, like), masks.bernoulli((64, 32), 0.5, like)
    torch.manual_seed(3)
    assert torch.equal(masks.bernoulli((64, 32), 0.5, like), first)
    assert not torch.equal(first, second)


def test_drop_connect_scales_the_kept_weights():
    weight = torch.randn(40, 30, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(9)
    dropped = masks.drop_connect(weight, 0.25)
    kept = spec((40, 30), 0.75, torch.float64, seed=9)
    torch.testing.assert_close(dropped, weight * (kept / 0.75), rtol=0, atol=0)
    dropped.sum().backward()
    torch.testing.assert_close(weight.grad, kept / 0.75, rtol=0, atol=0)
