"""Shared plumbing of the fused ops: whether to keep steps, how to call them, double backward by naive replay."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor


def gradient_wanted(*tensors: Tensor | None) -> bool:
    """Whether autograd will ask for a backward of an op on ``tensors``: only then does its forward keep every step."""
    if not torch.is_grad_enabled():
        return False
    # A loop, not any() of a generator: a generated token's call counts the microseconds.
    for t in tensors:  # noqa: SIM110
        if t is not None and t.requires_grad:
            return True
    return False


# Each fused forward op's naive recurrence, for double backward: by the op's name, a function of
# the op's other tensor arguments (lengths, masks) and its flags that returns ``recurrence(*inputs)
# -> outputs`` of its differentiable inputs (``replay_backward``).
_RECURRENCES: dict[str, Callable[[list[Tensor | None], list[int]], Callable[..., tuple[Tensor, ...]]]] = {}
_LIBRARY: list[torch.library.Library] = []  # kept: a Library's registrations last as long as it does


def register_recurrence(
    name: str, recurrence_of: Callable[[list[Tensor | None], list[int]], Callable[..., tuple[Tensor, ...]]]
) -> None:
    """Give the fused op ``name`` (``"lstm_forward"``, ...) its naive recurrence for double backward."""
    _RECURRENCES[name] = recurrence_of


def _replay_kernel(
    op: str, inputs: list[Tensor | None], others: list[Tensor | None], grads: list[Tensor | None], flags: list[int]
) -> list[Tensor]:
    """rnnkit::replay_backward (``csrc/autograd.h``): the gradients of the inputs of ``op`` that need
    one, in order, by ``replay_backward``; zeros for one the outputs do not depend on."""
    found = replay_backward(_RECURRENCES[op](others, flags), inputs, grads)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, found) if t is not None and t.requires_grad]


def register_replay() -> None:
    """Attach ``_replay_kernel`` to the loaded op rnnkit::replay_backward: it runs above autograd, so
    the naive ops it calls are recorded."""
    if not _LIBRARY:
        library = torch.library.Library("rnnkit", "FRAGMENT")
        library.impl("replay_backward", _replay_kernel, "CompositeImplicitAutograd")
        _LIBRARY.append(library)


def call(op: Callable[..., Any], *args: Any, differentiable: bool) -> Any:
    """``op(*args)`` as fast as eager mode allows: where no backward follows (not ``differentiable``)
    straight to its kernel, past the Autograd key, else through its autograd formula (``csrc/autograd.h``).
    torch.compile traces the op whole."""
    if differentiable or torch.compiler.is_compiling():
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op(*args)


def replay_backward(
    recurrence: Callable[..., tuple[Tensor, ...]],
    inputs: Sequence[Tensor | None],
    grads: Sequence[Tensor | None],
) -> list[Tensor | None]:
    """Gradients of ``recurrence(*inputs)`` against ``grads``, recorded so they can be differentiated again.

    The fused backward kernels are not themselves differentiable; when autograd asks
    for a graph of the backward (``create_graph=True``) the forward is recomputed with
    the naive ops and differentiated by autograd instead. Same values, more time.
    """
    warnings.warn(
        "double backward through a fused rnnkit backend recomputes the forward with the naive ops",
        stacklevel=2,
    )
    with torch.enable_grad():
        outputs = recurrence(*inputs)
        used = [(o, g) for o, g in zip(outputs, grads) if g is not None]
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        outputs, upstream = [o for o, _ in used], [g for _, g in used]
        found = iter(torch.autograd.grad(outputs, wanted, upstream, create_graph=True, allow_unused=True))
    return [next(found) if t is not None and t.requires_grad else None for t in inputs]


def fused_backward(
    recurrence: Callable[..., tuple[Tensor, ...]],
    inputs: Sequence[Tensor | None],
    grads: Sequence[Tensor | None],
    likes: Sequence[Tensor],
    kernel: Callable[..., Sequence[Tensor | None]],
) -> Sequence[Tensor | None]:
    """The backward of a fused recurrence: ``kernel`` on the upstream gradients, or a replay.

    Args:
        recurrence: the op's forward in naive ops, ``recurrence(*inputs) -> outputs``.
        inputs: the op's differentiable inputs, as saved.
        grads: upstream gradients of the outputs, None where an output was not used.
        likes: a tensor shaped like each output, to stand in zeros for a None gradient; None where
            the kernel takes None for "no gradient".
        kernel: ``kernel(*grads)`` -> one gradient per input, the fused backward.
    """
    if torch.is_grad_enabled():  # create_graph=True: the kernels' backward has no backward itself
        return replay_backward(recurrence, inputs, grads)
    return kernel(*(torch.zeros_like(like) if g is None and like is not None else g for g, like in zip(grads, likes)))


def input_like(x: Tensor, wanted: bool) -> Tensor:
    """The fake of a backward's gradient of x (or of the state h0): like it where ``wanted``, else
    empty as the kernels return it."""
    return torch.empty_like(x, memory_format=torch.contiguous_format) if wanted else x.new_empty(0)


def bias_gradients(grad: Tensor, b_ih: Tensor | None, b_hh: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """The gradients of b_ih and b_hh, which are both ``grad`` (G*H,) where the bias is present.

    The second is a copy: autograd may keep a returned gradient as the parameter's ``.grad``,
    and two parameters sharing one would be accumulated and clipped twice.
    """
    return (None if b_ih is None else grad, None if b_hh is None else grad.clone())


def input_saved_like(x: Tensor, w_ih: Tensor, ln_ih_weight: Tensor | None, save: bool) -> tuple[Tensor, Tensor]:
    """The fakes of a variant forward's last two results: a_hat (T, B, G) and rstd_ih (T, B), kept
    with layer norm on the input projection and ``save``, else empty."""
    if ln_ih_weight is None or not save:
        return x.new_empty(0), x.new_empty(0)
    return x.new_empty(*x.shape[:2], w_ih.shape[0]), x.new_empty(*x.shape[:2])


def input_gradients_like(
    x: Tensor, w_ih: Tensor, bias_grad: bool, input_grad: bool, ln_ih_weight: Tensor | None
) -> list[Tensor]:
    """The fakes of a variant backward's first four gradients: d x, d w_ih, d bias, d gamma_ih (empty where none)."""
    return [
        input_like(x, input_grad),
        torch.empty_like(w_ih),
        x.new_empty(w_ih.shape[0] if bias_grad else 0),
        x.new_empty(0) if ln_ih_weight is None else torch.empty_like(ln_ih_weight),
    ]
