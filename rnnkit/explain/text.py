"""The readable text of an explain Report: what ``str(report)`` and ``rnnkit explain`` print."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from . import Report

_WIDTH = 120


def _wrap(text: str, indent: str, hang: str | None = None) -> list[str]:
    """``text`` in lines of at most _WIDTH, the first after ``indent``, the others after ``hang`` (or ``indent``)."""
    hang = indent if hang is None else hang
    return textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=hang, break_on_hyphens=False)


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _header(report: Report) -> list[str]:
    model = report.model
    where = f"{model.path}: " if model.path else ""
    dims = "  ".join(f"{k}={v}" for k, v in report.dims.items())
    return [f"{where}{model.library}.{model.text}", f"  dims: {dims}"]


def _parameters(report: Report) -> list[str]:
    p = report.parameters
    gate_blocks = p.tensors[0].blocks  # weight_ih: one block per gate
    H = report.dims["H"]
    legend = ", ".join(f"{b.gate} {b.meaning}" for b in gate_blocks)
    count = f"{len(gate_blocks)} gate blocks" if len(gate_blocks) > 1 else "one block"
    lines = ["", "PARAMETERS"]
    lines += _wrap(f"weight_ih, weight_hh, bias_ih, bias_hh stack {count} of H = {H} rows: {legend}", "  ", "    ")
    name_width = max(len(t.name) for t in p.tensors) + 2
    lines.append(f"  {'name':<{name_width}}{'shape':<13}{'count':>11}  blocks (rows)")
    for t in p.tensors:
        blocks = " | ".join(f"{b.symbol} {b.rows[0]}:{b.rows[1]}" for b in t.blocks)
        lines.append(f"  {t.name:<{name_width}}{_shape(t.shape):<13}{t.count:>11,}  {blocks}")
    lines.append("")
    label_width = max(len("difference"), *(len(g.label) for g in p.groups)) + 2
    hang = " " * (2 + label_width + 13)  # wrapped lines start under the text column
    for g in p.groups:
        lines += _wrap(
            f"  {g.label:<{label_width}}{g.count:>11,}  = {g.filled}   {g.formula}, {g.input_note}", "", hang
        )
        if g.formula_count != g.count:
            lines.append(f"{hang}(!) the formula gives {g.formula_count:,}")
    first = p.groups[0]
    per_group = f" per layer and direction ({first.label}: " if len(p.groups) > 1 else " ("
    lines.append(f"  {'total':<{label_width}}{p.total:>11,}  = sum(p.numel() for p in model.parameters())")
    textbook = (
        f"  {'textbook':<{label_width}}{p.textbook_total:>11,}  one bias per gate, {first.textbook_formula}"
        f"{per_group}{first.textbook} = {first.textbook_count:,})"
    )
    lines += _wrap(textbook, "", hang)
    lines += _wrap(f"  {'difference':<{label_width}}{p.difference:>+11,}  {p.note}", "", hang)
    return lines


def _equations(report: Report) -> list[str]:
    every = "" if report.model.is_cell else "; the same for every layer and direction"
    lines = ["", f"EQUATIONS (one step t{every})"]
    lines += [f"  {eq.text}" for eq in report.equations]
    for note in report.equation_notes:
        lines += _wrap(f"- {note}", "  ", "    ")
    lines += ["  LaTeX:", *(f"    {row}" for row in report.latex.splitlines())]
    return lines


def _shapes(report: Report) -> list[str]:
    lines = ["", "SHAPES"]
    name_width = max(len(s.name) for s in report.shapes) + 2
    shape_width = max(len(_shape(s.shape)) for s in report.shapes) + 2
    dims_width = max(len(s.dims) for s in report.shapes) + 2
    hang = " " * (2 + name_width + shape_width + dims_width)
    for s in report.shapes:
        lines += _wrap(
            f"  {s.name:<{name_width}}{_shape(s.shape):<{shape_width}}{s.dims:<{dims_width}}{s.note}", "", hang
        )
    packed = report.packed
    if packed is not None:
        lines += [
            "",
            f"  lengths {packed.lengths} -> pack_padded_sequence(input, lengths, enforce_sorted=False):",
            f"    data            {_shape(packed.data_shape)}  (N, I)",
            f"    batch_sizes     {packed.batch_sizes}",
            f"    sorted_indices  {packed.sorted_indices}",
            f"    output.data     {_shape(packed.output_data_shape)}  (N, D*P), the model's output for it",
        ]
        lines += _wrap(packed.note, "  ")
    return lines


def _relations(report: Report) -> list[str]:
    run = report.run
    lines = ["", f"RELATIONS (checked on a random input and random initial states, seed {run['seed']}, eval mode)"]
    width = max(len(r.statement) for r in report.relations) + 2
    for r in report.relations:
        status = "PASS" if r.passed else "FAIL"
        lines.append(f"  {status}  {r.statement:<{width}}max |diff| {r.max_abs_diff:.1e}")
        lines += _wrap(r.meaning, "        ")
    verdict = "all relations hold" if report.passed else "SOME RELATIONS FAIL"
    lines += ["", f"{verdict}"]
    return lines


def render(report: Report) -> str:
    """The report as text, section by section."""
    return "\n".join(_header(report) + _parameters(report) + _equations(report) + _shapes(report) + _relations(report))
