"""``rnnkit.explain(model)``: what a recurrent module holds, computes and returns, checked live.

Works on rnnkit's and torch.nn's LSTM, GRU, RNN and their cells (or a module holding
exactly one of them). The report has five parts:

1. parameters: every tensor split into its gate blocks, the count per layer and direction
   with its formula filled in, and the textbook single-bias count beside it;
2. equations: the cell as computed, in Unicode text and LaTeX;
3. shapes: every tensor for the given input (batch_first, unbatched, lengths);
4. packed: with lengths, the PackedSequence's data and batch_sizes;
5. relations: output against h_n (and the replayed equations against the model), checked
   on a random input, each PASS or FAIL with its max abs difference.

``report.to_json()`` writes the schema below (``schema`` names its version; fields are only
ever added within a version). ``str(report)`` is the readable form ``rnnkit explain`` prints.

    schema       "rnnkit.explain/1"
    model        {library, class_name, mode, is_cell, path, arguments{...}, text}
    dims         {"T", "B", "I", "H", "P", "G", "L", "D", "N": int}   (those that apply)
    parameters   {tensors: [{name, layer, direction, shape, count,
                             blocks: [{symbol, gate, meaning, rows, shape, count}]}],
                  groups: [{label, layer, direction, count, formula, filled, formula_count,
                            textbook_formula, textbook, textbook_count, input_note}],
                  total, textbook_total, difference, note}
    equations    [{name, text, latex}]
    equation_notes  [str]
    latex        str (the equations as one aligned block)
    shapes       [{name, shape, dims, note}]
    packed       null | {lengths, sorted_indices, batch_sizes, data_shape, output_data_shape, note}
    relations    [{statement, meaning, max_abs_diff, tolerance, passed}]
    passed       bool (every relation passed)
    run          {seed, input_shape, lengths, dtype, mode: "eval"}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .equations import Equation, equations, latex_block, notes
from .params import ParameterReport, parameter_report
from .record import Recording
from .run import Packed, Relation, Shape, check_input_shape, dims_of, relations, run
from .shapes import packed_info, shape_table
from .spec import NetSpec, find_recurrent, spec_of
from .text import render

SCHEMA = "rnnkit.explain/1"


@dataclass
class ModelInfo:
    library: str  # "rnnkit" or "torch.nn"
    class_name: str
    mode: str  # "LSTM", "GRU", "RNN_TANH", "RNN_RELU"
    is_cell: bool
    path: str  # the module's name inside the model passed in; "" when it was the module itself
    arguments: dict[str, Any]  # the constructor arguments
    text: str  # repr of the module


@dataclass
class Report:
    """The answer of ``rnnkit.explain``; see the module docstring for the JSON schema."""

    schema: str
    model: ModelInfo
    dims: dict[str, int]
    parameters: ParameterReport
    equations: list[Equation]
    equation_notes: list[str]
    latex: str
    shapes: list[Shape]
    packed: Packed | None
    relations: list[Relation]
    passed: bool
    run: dict[str, Any]
    recording: Recording = field(repr=False, compare=False)  # the live run's gates; not part of the JSON

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types (``recording`` left out)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "recording"}

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text, in the documented schema."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def __str__(self) -> str:
        return render(self)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def explain(
    model: nn.Module, input_shape: tuple[int, ...] | None = None, *, lengths: Any = None, seed: int = 0
) -> Report:
    """Explain a recurrent module: parameters, equations, shapes and live-checked relations.

    Args:
        model: rnnkit's or torch.nn's LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, or a
            module holding exactly one of them.
        input_shape: the input to explain, as the model takes it: (T, B, I), (B, T, I)
            with ``batch_first``, (T, I) unbatched; (B, I) or (I,) for a cell. Default
            T=5, B=3.
        lengths: B valid lengths for a padded batch (any order), or None.
        seed: of the random input and initial states the relations are checked on.

    Returns:
        A Report: ``print(report)`` for text, ``report.to_json()`` for JSON,
        ``report.passed`` whether every relation held, ``report.recording`` the gates.

    The model runs once (twice with lengths) in eval mode, without gradients; its mode is
    restored after.

    Example::

        >>> report = rnnkit.explain(torch.nn.LSTM(100, 100))
        >>> report.parameters.total, report.parameters.textbook_total
        (80800, 80400)
    """
    path, module = find_recurrent(model)
    spec = spec_of(module)
    shape = check_input_shape(spec, input_shape)
    live = run(module, spec, shape, lengths, seed)
    dims = dims_of(spec, shape, live.lengths)
    checks = relations(spec, live)
    eqs = equations(spec)
    return Report(
        schema=SCHEMA,
        model=_model_info(spec, path, module),
        dims=dims,
        parameters=parameter_report(module, spec),
        equations=eqs,
        equation_notes=notes(spec),
        latex=latex_block(eqs),
        shapes=shape_table(spec, live, dims),
        packed=packed_info(spec, live),
        relations=checks,
        passed=all(c.passed for c in checks),
        run={
            "seed": seed,
            "input_shape": list(shape),
            "lengths": None if live.lengths is None else live.lengths.tolist(),
            "dtype": str(live.x.dtype).removeprefix("torch."),
            "mode": "eval",
        },
        recording=live.recording,
    )


def _model_info(spec: NetSpec, path: str, module: nn.Module) -> ModelInfo:
    arguments = {"input_size": spec.input_size, "hidden_size": spec.hidden_size, "bias": spec.bias}
    if spec.mode.startswith("RNN"):
        arguments["nonlinearity"] = spec.mode.removeprefix("RNN_").lower()
    if not spec.is_cell:
        arguments |= {
            "num_layers": spec.num_layers,
            "batch_first": spec.batch_first,
            "dropout": spec.dropout,
            "bidirectional": spec.bidirectional,
        }
        if spec.mode == "LSTM":
            arguments["proj_size"] = spec.proj_size
        arguments |= {  # a variant's keywords, those that are on
            name: value
            for name, value in dataclasses.asdict(spec.variant).items()
            if value not in (False, 0.0, (0.0, 0.0))
        }
    return ModelInfo(spec.library, spec.class_name, spec.mode, spec.is_cell, path, arguments, repr(module))
