"""``torch.autocast`` for rnnkit's modules and cells: inside a region the whole net runs in its dtype.

torch.nn's RNNs under autocast run in a lower precision too, though not uniformly (on the
CPU its GRU and its packed LSTM stay in float32). rnnkit casts the input, the states and every
weight of a module or cell to the region's dtype, so a mixed-precision training script runs
unchanged: the outputs come in the region's dtype, and the gradients flow back through the
casts to the float32 parameters. A backend that does not take that dtype (``"cpu"``: float32
and float64) gets float32 instead, as autocast gives its float32 ops. A float64 tensor is not
cast, as autocast leaves it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.nn.utils.rnn import PackedSequence

from . import ops

Result = TypeVar("Result")


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype of the enclosing ``torch.autocast`` region on ``device_type``, or None outside one."""
    if not torch.amp.is_autocast_available(device_type) or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def cast(value: Any, dtype: torch.dtype) -> Any:
    """``value`` (a tensor, PackedSequence, None, or tuples and lists of them) with its float tensors in ``dtype``.

    float64 tensors and integer ones stay as they are, as autocast leaves them.
    """
    if isinstance(value, PackedSequence):
        return value._replace(data=cast(value.data, dtype))
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return type(value)(*(cast(v, dtype) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(cast(v, dtype) for v in value)
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64:
        return value.to(dtype)
    return value


def run_autocast(
    reference: torch.Tensor, backend: str, run: Callable[..., Result], *args: Any, **keywords: Any
) -> Result:
    """``run(*args, **keywords)``; inside an autocast region on ``reference``'s device type (a
    parameter's), with ``args`` (not ``keywords``) cast to its dtype and autocast off.

    Autocast is off inside so that every op of the recurrence sees the one dtype, as in a
    net converted with ``.to(dtype)``, whichever ops autocast would otherwise keep in float32.
    Where ``backend`` does not take the region's dtype, ``args`` are cast to float32.
    """
    if not torch._C._is_any_autocast_enabled():  # one call, where asking about a device takes three
        return run(*args, **keywords)
    device_type = reference.device.type
    dtype = autocast_dtype(device_type)
    if dtype is None:
        return run(*args, **keywords)
    if not ops.takes_dtype(backend, dtype):
        dtype = torch.float32
    with torch.autocast(device_type, enabled=False):
        return run(*cast(args, dtype), **keywords)
