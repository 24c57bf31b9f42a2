"""``assume_constant_result`` for torch.compile, without loading torch.compile's frontend at import.

``torch.compiler.assume_constant_result`` imports ``torch._dynamo``, and with it sympy, only to set
one marker on the function: 6 of the 10 s that ``import rnnkit`` took, paid by every process that
never compiles (the command line, each test's subprocess). Here the marker is set directly unless
``torch._dynamo`` is loaded already. The fullgraph tests (tests/test_ops_cpu.py, test_ops_triton.py)
fail if torch.compile stops reading it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def assume_constant_result(fn: F) -> F:
    """``fn``, which torch.compile calls while tracing and takes its result as a constant."""
    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True  # what torch._dynamo.decorators.assume_constant_result sets
    return fn
