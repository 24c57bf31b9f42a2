"""Export to ONNX: rnnkit's LSTM, GRU and RNN as ONNX's own LSTM, GRU and RNN operators.

``torch.onnx.export`` (the ``torch.export``-based exporter) traces the model. In the trace each
direction of each layer of an rnnkit module is one op of the compiled CPU kernels
(``torch.ops.rnnkit.lstm_forward``, ``gru_forward``, ``rnn_forward``), and the translations
(``translations.py``) write each as one ONNX node; then ``graph.optimize`` merges the two
directions of a layer into one node and folds the weights:

- the gate blocks reordered: torch's LSTM (i, f, g, o) to ONNX's (i, o, f, c), torch's GRU
  (r, z, n) to ONNX's (z, r, h) with ``linear_before_reset=1``, which is torch's
  n = tanh(W_in x + b_in + r * (W_hn h + b_hn)); the reordering is folded into the weights;
- both biases kept (ONNX's B is [Wb, Rb]);
- ``lengths=`` as ``sequence_lens``: ONNX's operators stop each sequence at its length, in either
  direction, as rnnkit does (outputs past a length are zero, the final state is the last valid one);
- a bidirectional layer as one node with ``direction="bidirectional"``, its results split back into
  the two directions, which the trace concatenates as torch does: the output keeps torch's layout
  (T, B, 2H) and h_n its (layers * 2, B, H); the layers are a chain of nodes.

Whatever surrounds the recurrent modules (an embedding, a Linear head, ``rnnkit train``'s models)
is exported by torch's exporter as usual. The batch and time axes stay dynamic: every axis of
every input but the features (a float tensor's last axis) and the layers of the initial states (the
first axis of a float argument after the first). What ONNX's operators cannot express is refused
with the reason: ``proj_size`` (ONNX's LSTM has no projection) and the variants that change the
time loop (layer norm, peepholes, zoneout, recurrent dropout). Needs ``onnx`` and ``onnxscript``
(``pip install 'rnnkit[export]'``); onnxruntime runs the result.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import variants
from ..modules import LSTM, RNNBase
from ..ops import compiled
from .translations import translations

DEFAULT_OPSET = 18
PACKAGES = ("onnx", "onnxscript")
# Example sizes of the input made for a bare module: any size works, the axes stay dynamic.
EXAMPLE_STEPS, EXAMPLE_BATCH = 5, 2


def export(
    model: nn.Module,
    path: str | Path,
    *,
    example_input: Tensor | tuple[Any, ...] | None = None,
    lengths: bool | Tensor = False,
    opset: int | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
) -> Path:
    """Write ``model`` (an rnnkit ``LSTM``/``GRU``/``RNN``, or a model holding them) to ``path`` as ONNX.

    Args:
        model: the module to export, in eval mode (it is put there while exporting).
        path: the ``.onnx`` file to write.
        example_input: the positional arguments of ``model`` for tracing, a tensor or a tuple. For a
            bare recurrent module it may be left out: an input of (T, B, I) (``batch_first``: (B, T, I))
            is made; pass ``(input, hx)`` to make the initial states inputs of the graph.
        lengths: ``True`` (bare modules) or an example (B,) int64 tensor: ``model`` is also called with
            ``lengths=``, which becomes the graph input ``lengths`` and ONNX's ``sequence_lens``.
        opset: the ONNX opset, ``DEFAULT_OPSET`` by default.
        input_names, output_names: the graph's names of the (flattened) inputs and results. A bare
            module's are ``input`` (, ``h0`` (, ``c0``)) (, ``lengths``) and ``output``, ``h_n``
            (, ``c_n``), with torch's shapes, unless given.

    Returns ``path``.
    """
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"rnnkit.onnx.export needs {' and '.join(missing)}: pip install 'rnnkit[export]'")
    recurrent = [m for m in model.modules() if isinstance(m, RNNBase)]
    _check_exportable(recurrent)
    bare = isinstance(model, RNNBase)
    args = _example_args(model, example_input, bare)
    kwargs = {}
    if lengths is not False:
        kwargs["lengths"] = _example_lengths(model, args, lengths, bare)
    from . import graph

    path = Path(path)
    with _cpu_kernels(recurrent), _eval(model), torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            model,
            args,
            kwargs=kwargs,
            dynamic_shapes=_dynamic_shapes(args, kwargs),
            input_names=input_names or (_input_names(model, args, kwargs) if bare else None),
            output_names=output_names or (["output", "h_n", "c_n"][: 2 + isinstance(model, LSTM)] if bare else None),
            opset_version=opset or DEFAULT_OPSET,
            custom_translation_table=translations(),
            dynamo=True,
            verbose=False,
        )
    graph.optimize(program.model)
    program.save(str(path))
    return path


def _check_exportable(recurrent: list[RNNBase]) -> None:
    if not recurrent:
        raise ValueError("rnnkit.onnx.export: the model holds no rnnkit LSTM, GRU or RNN; use torch.onnx.export")
    reason = compiled.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"rnnkit.onnx.export traces the compiled CPU kernels, which are unavailable: {reason}")
    for module in recurrent:
        name = type(module).__name__
        device = next(module.parameters()).device
        if device.type != "cpu":
            raise ValueError(f"rnnkit.onnx.export traces on the CPU, and this {name} is on {device}; call model.cpu()")
        if module.proj_size:
            raise ValueError(
                f"rnnkit.onnx.export: ONNX's LSTM operator has no projection, and this {name} has "
                f"proj_size={module.proj_size}; export an LSTM without proj_size"
            )
        asked = variants.features(module.variant, variants.RECURRENCE_KEYWORDS)
        if asked:
            raise ValueError(
                f"rnnkit.onnx.export: ONNX's {module.mode.split('_')[0]} operator has no {', '.join(asked)}; "
                f"export a {name} without them (weight_dropout, forget_bias and chrono_init export as usual)"
            )


def _example_args(model: nn.Module, example_input: Tensor | tuple | None, bare: bool) -> tuple[Any, ...]:
    if example_input is None:
        if not bare:
            raise ValueError(
                f"rnnkit.onnx.export: give example_input, the arguments of {type(model).__name__}.forward "
                "(an input is made only for a bare LSTM, GRU or RNN)"
            )
        reference = next(model.parameters())
        shape = (EXAMPLE_STEPS, EXAMPLE_BATCH, model.input_size)
        shape = (shape[1], shape[0], shape[2]) if model.batch_first else shape
        return (torch.randn(shape, dtype=reference.dtype, device=reference.device),)
    return example_input if isinstance(example_input, tuple) else (example_input,)


def _example_lengths(model: nn.Module, args: tuple[Any, ...], lengths: bool | Tensor, bare: bool) -> Tensor:
    if isinstance(lengths, Tensor):
        return lengths
    if lengths is not True:
        raise TypeError(f"rnnkit.onnx.export: lengths should be a bool or an example (B,) tensor, got {lengths!r}")
    if not bare:
        raise ValueError(
            "rnnkit.onnx.export: for a model around the recurrent module, give lengths as an example tensor"
        )
    x = args[0]
    batch, steps = (x.shape[0], x.shape[1]) if model.batch_first else (x.shape[1], x.shape[0])
    return torch.full((batch,), steps, dtype=torch.int64)


def _input_names(model: RNNBase, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[str]:
    names = ["input"]
    if len(args) > 1 and args[1] is not None:
        names += ["h0", "c0"] if isinstance(model, LSTM) else ["h0"]
    return names + list(kwargs)


def _dynamic_shapes(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Which axes torch.export may keep dynamic: every axis but a float tensor's last (its features)
    and the first of a float argument after the first (initial states: layers times directions)."""

    def axes(value: Any, states: bool = False) -> Any:
        if isinstance(value, Tensor):
            fixed = {value.dim() - 1} if value.is_floating_point() and value.dim() > 1 else set()
            fixed |= {0} if states and value.is_floating_point() else set()
            return {axis: torch.export.Dim.AUTO for axis in range(value.dim()) if axis not in fixed} or None
        if isinstance(value, (tuple, list)):
            return type(value)(axes(v, states) for v in value)
        return None

    shapes = [axes(value, states=number > 0) for number, value in enumerate(args)]
    return (*shapes, *(axes(value) for value in kwargs.values()))


@contextlib.contextmanager
def _cpu_kernels(recurrent: list[RNNBase]) -> Iterator[None]:
    """The compiled kernels' ops are what the translations know: every module runs them while traced."""
    saved = [module.backend for module in recurrent]
    try:
        for module in recurrent:
            module.backend = "cpu"
        yield
    finally:
        for module, backend in zip(recurrent, saved):
            module.backend = backend


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Without torch's exporter's notes on what it skips (torchvision's ops) and its own deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    try:
        logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    training = model.training
    try:
        yield model.eval()
    finally:
        model.train(training)
