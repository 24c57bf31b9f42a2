"""Argument checks shared by the modules. Every message names the argument,
what was expected and what came, and where it helps, the fix."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import RNNInputError, RNNTypeError


def check_size(name: str, value: object, minimum: int = 1) -> None:
    """A constructor size: an int (not bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        bound = "greater than zero" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def check_flag(name: str, value: object) -> None:
    """A constructor switch: a bool."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")


def check_dropout(dropout: object) -> None:
    """A probability in [0, 1]."""
    if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError(
            f"dropout should be a number in [0, 1], the probability of zeroing an element, got {dropout!r}"
        )


def check_tensor_like(owner: str, name: str, value: object, reference: Tensor) -> None:
    """``value`` is a floating tensor with the dtype and device of ``reference`` (the parameters)."""
    if not isinstance(value, Tensor):
        raise RNNTypeError(f"{owner} expected {name} to be a Tensor, got {type(value).__name__}")
    if value.dtype != reference.dtype:
        raise RNNTypeError(
            f"{owner} expected {name} of dtype {reference.dtype} (the parameters' dtype), got {value.dtype}; "
            f"convert the input with .to({reference.dtype}) or the model with .to({value.dtype})"
        )
    if value.device != reference.device:
        raise RNNTypeError(
            f"{owner} expected {name} on {reference.device} (the parameters' device), got {value.device}; "
            f"move the input with .to('{reference.device}') or the model with .to('{value.device}')"
        )


def check_state_shape(owner: str, name: str, state: Tensor, expected: tuple[int, ...], batch_dim: int | None) -> None:
    """``state`` has shape ``expected``; ``batch_dim`` is where the batch sits (None when unbatched)."""
    if tuple(state.shape) == expected:
        return
    message = f"{owner} expected {name} of shape {expected}, got {tuple(state.shape)}"
    if batch_dim is not None and state.dim() == len(expected) and state.shape[batch_dim] != expected[batch_dim]:
        message += (
            f": the batch dimension (dim {batch_dim}) of {name} must match the input's batch size "
            f"{expected[batch_dim]} (a state built for a fixed batch size fails on a smaller last batch; "
            "build it from the input's size, or pass hx=None for zeros)"
        )
    raise RNNInputError(message)


def check_lengths(lengths: object, batch: int, steps: int) -> Tensor | None:
    """Validate ``lengths`` for a padded batch of ``batch`` sequences of ``steps`` steps.

    Args:
        lengths: a sequence of ints or a 1-D integer tensor on any device.

    Returns:
        (B,) int64 tensor on the CPU, or None when every sequence runs all ``steps``.
        Under torch.compile a tensor's values are not inspected (that would break the graph).
    """
    if isinstance(lengths, Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise RNNInputError(f"lengths must hold integers, got a tensor of dtype {lengths.dtype}")
        if lengths.dim() != 1:
            raise RNNInputError(f"lengths must be 1-D with one entry per sequence, got shape {tuple(lengths.shape)}")
        values = lengths.detach().to("cpu", torch.int64)
        if len(values) != batch:
            raise RNNInputError(f"lengths must have one entry per sequence: expected {batch}, got {len(values)}")
        if torch.compiler.is_compiling():
            return values
        low, high = int(values.min()), int(values.max())
    elif isinstance(lengths, Sequence) and not isinstance(lengths, str):
        bad = [v for v in lengths if not isinstance(v, numbers.Integral) or isinstance(v, bool)]
        if bad:
            raise RNNInputError(f"lengths must hold integers, got {bad[0]!r} of type {type(bad[0]).__name__}")
        if len(lengths) != batch:
            raise RNNInputError(f"lengths must have one entry per sequence: expected {batch}, got {len(lengths)}")
        low, high = min(lengths), max(lengths)
        values = torch.tensor([int(v) for v in lengths], dtype=torch.int64)
    else:
        raise RNNInputError(f"lengths must be a list of ints or a 1-D integer tensor, got {type(lengths).__name__}")
    if low < 1 or high > steps:
        raise RNNInputError(
            f"lengths must lie in [1, {steps}] (1 to the padded sequence length), got values from {low} to {high}"
        )
    return None if low == steps else values


def check_input_features(owner: str, features: int, input_size: int) -> None:
    """The last dimension of the input equals ``input_size``."""
    if features != input_size:
        raise RNNInputError(
            f"{owner} expected input with {input_size} features (input_size={input_size}), got {features}"
        )


def check_not_empty(owner: str, shape: torch.Size, what: str) -> None:
    """No dimension of the input is zero (``what`` says which dimensions mean what)."""
    if 0 in shape:
        raise RNNInputError(f"{owner} expected a non-empty input, got shape {tuple(shape)} ({what})")


def check_input_dims(owner: str, input: Tensor, batched_dims: int) -> bool:
    """``input`` has ``batched_dims`` (batched) or one fewer (unbatched) dimensions; returns whether batched."""
    if input.dim() not in (batched_dims - 1, batched_dims):
        raise RNNInputError(
            f"{owner} expected a {batched_dims}-D (batched) or {batched_dims - 1}-D (unbatched) input, "
            f"got {input.dim()}-D of shape {tuple(input.shape)}"
        )
    return input.dim() == batched_dims
