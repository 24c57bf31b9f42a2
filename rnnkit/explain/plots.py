"""Pictures of a recurrent module: its parameter blocks, and its gates over time on a real input.

Each function returns a matplotlib Figure drawn on the Agg canvas, without pyplot (no
window, no global state); ``fig.savefig("file.png")`` writes it. matplotlib is imported
on the first picture only: it adds about 0.3 s to start-up and most uses draw nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .params import Block, parameter_report
from .record import Recording
from .spec import find_recurrent, spec_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_MAX_TICKS = 60  # more time steps than this get every k-th label only


def new_figure(width: float, height: float) -> Figure:
    """A bare matplotlib Figure: it renders with Agg and leaves pyplot's global state (and any display) alone."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _image(
    figure: Figure, ax: Axes, values: Tensor, cmap: str, vmin: float, vmax: float, colorbar: bool = True
) -> None:
    """``values`` (rows, columns) as a heatmap; NaN (no step ran) stays blank."""
    image = ax.imshow(
        values.detach().cpu().double().numpy(), aspect="auto", interpolation="nearest", cmap=cmap, vmin=vmin, vmax=vmax
    )
    if colorbar:
        figure.colorbar(image, ax=ax, fraction=0.05, pad=0.02)


def _block_axis(ax: Axes, blocks: list[Block]) -> None:
    """Label the row axis with the gate blocks and draw a line between them."""
    ax.set_yticks(
        [(b.rows[0] + b.rows[1] - 1) / 2 for b in blocks], [f"{b.symbol}\n{b.rows[0]}:{b.rows[1]}" for b in blocks]
    )
    for b in blocks[1:]:
        ax.axhline(b.rows[0] - 0.5, color="black", linewidth=1)


def parameters(model: nn.Module) -> Figure:
    """Every weight matrix of a recurrent module as an image, split into its labelled gate blocks.

    Args:
        model: rnnkit's or torch.nn's LSTM, GRU, RNN or cell, or a module holding one.

    Returns:
        A Figure with one row of panels per layer and direction: weight_ih (G*H, I),
        weight_hh (G*H, P), the biases as two columns b_ih | b_hh (G*H, 2), and weight_hr
        (P, H) with a projection. All share one colour scale, symmetric about zero.
    """
    _, module = find_recurrent(model)
    spec = spec_of(module)
    report = parameter_report(module, spec)
    params = dict(module.named_parameters())
    limit = max(float(p.detach().abs().max()) for p in params.values())
    groups = len(report.groups)
    columns = 2 + spec.bias + bool(spec.proj_size)  # weight_ih, weight_hh, biases, weight_hr
    figure = new_figure(3.2 * columns + 1, 3.2 * groups + 0.5)
    axes = figure.subplots(groups, columns, squeeze=False)
    for row, group in enumerate(report.groups):
        tensors = [t for t in report.tensors if (t.layer, t.direction) == (group.layer, group.direction)]
        weights = [t for t in tensors if t.name.startswith("weight")]
        biases = [t for t in tensors if t.name.startswith("bias")]
        panels = [(t.name, params[t.name], t.blocks) for t in weights if not t.name.startswith("weight_hr")]
        if biases:
            stacked = torch.stack([params[t.name] for t in biases], dim=1)  # (G*H, 2): b_ih | b_hh
            panels.append((" | ".join(t.name for t in biases), stacked, biases[0].blocks))
        panels += [(t.name, params[t.name], t.blocks) for t in weights if t.name.startswith("weight_hr")]
        for ax, (name, values, blocks) in zip(axes[row], panels):
            _image(figure, ax, values, "RdBu_r", -limit, limit, colorbar=False)
            ax.set_title(f"{name} {tuple(values.shape)}", fontsize=9)
            _block_axis(ax, blocks)
            if name.startswith("bias"):
                ax.set_xticks([0, 1], ["b_ih", "b_hh"])
            else:
                ax.set_xlabel("input feature" if "_ih" in name else "hidden unit")
        axes[row][0].set_ylabel(group.label)
    mappable = axes[0][0].images[0]
    figure.colorbar(mappable, ax=axes, fraction=0.02, pad=0.01, label="parameter value")
    figure.suptitle(f"{spec.qualname}: {report.total:,} parameters, gate blocks along the rows")
    return figure


def _token_axis(ax: Axes, tokens: Sequence[str] | None, steps: int) -> None:
    every = max(1, math.ceil(steps / _MAX_TICKS))
    ticks = list(range(0, steps, every))
    if tokens is None:
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("time step t")
        return
    shown = [repr(tokens[t])[1:-1] if tokens[t].strip() else "␣" for t in ticks]
    ax.set_xticks(ticks, shown, fontsize=8)
    ax.set_xlabel("token")


_GATE_COLOURS = {"sigmoid": ("viridis", 0.0, 1.0), "tanh": ("RdBu_r", -1.0, 1.0)}


def gates(rec: Recording, sample: int = 0, tokens: Sequence[str] | None = None, layer: int | None = None) -> Figure:
    """Heatmaps of every gate, c_t and h_t over time for one sample of a recording.

    Args:
        rec: from ``with rnnkit.record(model) as rec: model(x)``.
        sample: which sequence of the batch (0 for unbatched input).
        tokens: T labels for the time axis (e.g. the characters of a text), or None for step numbers.
        layer: draw only this layer (negative counts from the last); None for all.

    Returns:
        A Figure with one column per layer and direction and one row per recorded
        quantity (i, f, g, o / r, z, n; c for an LSTM; h). Each panel is units (y) by
        time (x), shows ``trace.<quantity>[:, sample, :].T`` with its own colorbar:
        sigmoid gates over [0, 1], tanh ones over [-1, 1], c and h symmetric about zero.
        Steps past the sample's length are blank.
    """
    spec = rec.spec
    steps, batch = rec.valid.shape
    if not 0 <= sample < batch:
        raise IndexError(f"sample must be in [0, {batch - 1}] (the recorded batch has B={batch}), got {sample}")
    if tokens is not None and len(tokens) != steps:
        raise ValueError(f"tokens must label the T={steps} recorded steps, got {len(tokens)}")
    traces = rec.traces if layer is None else [rec.trace(layer, d) for d in range(spec.directions)]
    activation = {g.name: g.activation for g in spec.gates}
    meanings = {g.name: g.meaning for g in spec.gates} | {"c": "cell state", "h": "hidden state"}
    names = [*rec.gate_names, *(["c"] if spec.mode == "LSTM" else []), "h"]
    units = max(spec.hidden_size, spec.out_size)
    figure = new_figure(
        len(traces) * max(4.0, 0.18 * min(steps, _MAX_TICKS) + 2.5), len(names) * (1.2 + min(units, 64) / 32)
    )
    axes = figure.subplots(len(names), len(traces), squeeze=False)
    for column, trace in enumerate(traces):
        for row, name in enumerate(names):
            values = (trace.gates[name] if name in trace.gates else getattr(trace, name))[:, sample, :].T  # (units, T)
            if name in trace.gates and activation[name] in _GATE_COLOURS:
                cmap, vmin, vmax = _GATE_COLOURS[activation[name]]
            else:
                bound = float(values.nan_to_num().abs().max()) or 1.0
                cmap, vmin, vmax = "RdBu_r", -bound, bound
            ax = axes[row][column]
            _image(figure, ax, values, cmap, vmin, vmax)
            ax.set_title(f"{trace.label}: {name}_t {meanings[name]}", fontsize=9)
            ax.set_ylabel("unit")
            _token_axis(ax, tokens, steps)
    figure.suptitle(f"{spec.qualname}: gates and states over time, sample {sample}")
    return figure
