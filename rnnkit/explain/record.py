"""Gate recording: what every gate, cell and hidden state did on a real input.

    with rnnkit.record(model) as rec:
        output, (h_n, c_n) = model(x, lengths=lengths)
    rec.trace(layer=-1, direction=0).gates["f"]    # (T, B, H): the forget gate over time

The recorder does not look inside the backend's kernels. After each forward call it
replays the naive equations (``rnnkit/ops/variant.py``, which without a variant computes
what ``rnnkit/ops/<cell>/naive.py`` and the ``"naive"`` backend compute, bit for bit) with
the model's own weights on the captured input, initial states and lengths. So it works alike
for every backend, for the variants and for torch.nn's modules, and what it records is what
the equations give: ``rec.output`` and ``rec.h_n`` match the model's output and h_n to float
rounding (``rnnkit.explain`` checks it on every report). The replay cannot reproduce random
masks, so a model with dropout between layers, recurrent or weight dropout or zoneout must be
in eval mode while recording.

Dimensions: T time steps, B batch, H hidden_size, P = proj_size or H, L layers,
D directions. Every recorded tensor is (T, B, *) whatever ``batch_first`` says
(B = 1 for unbatched input), and NaN where no step ran (t >= lengths[b]).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..checks import check_lengths
from ..ops import variant
from ..sequences import packed_to_padded
from .spec import GATES, NetSpec, extras_of, find_recurrent, spec_of, weights_of


@dataclass
class Trace:
    """One layer and direction over time; each tensor (T, B, *), NaN where no step ran."""

    layer: int
    direction: int  # 0 forward, 1 reverse
    label: str  # "layer 0 forward", "layer 1 reverse", or "cell"
    gates: dict[str, Tensor]  # gate letter (i, f, g, o / r, z, n) -> (T, B, H) after its nonlinearity; {} for RNN
    h: Tensor  # (T, B, P) hidden state h_t
    c: Tensor | None  # (T, B, H) cell state c_t, LSTM only


class Recording:
    """What a ``record`` block saw: every forward call's steps, appended along time.

    A module's call adds its T steps, a cell's call adds one step (so a Python loop over
    a cell records a sequence); every call must have the same batch size B.
    """

    def __init__(self, spec: NetSpec) -> None:
        self.spec = spec
        self._calls: list[list[Trace]] = []
        self._valid: list[Tensor] = []
        self._final: tuple[Tensor, ...] = ()

    @property
    def gate_names(self) -> tuple[str, ...]:
        """The recorded gates: ("i", "f", "g", "o"), ("r", "z", "n"), or () for an Elman RNN."""
        return () if self.spec.mode.startswith("RNN") else tuple(g.name for g in self.spec.gates)

    @property
    def valid(self) -> Tensor:
        """(T, B) bool: where a step ran (t < lengths[b])."""
        self._check_recorded()
        return torch.cat(self._valid)

    @property
    def traces(self) -> list[Trace]:
        """One Trace per layer and direction, in torch's order (index l*D + d)."""
        self._check_recorded()
        merged = []
        for parts in zip(*self._calls):
            first = parts[0]
            merged.append(
                Trace(
                    first.layer,
                    first.direction,
                    first.label,
                    {g: torch.cat([p.gates[g] for p in parts]) for g in first.gates},
                    torch.cat([p.h for p in parts]),
                    None if first.c is None else torch.cat([p.c for p in parts]),
                )
            )
        return merged

    def trace(self, layer: int = -1, direction: int = 0) -> Trace:
        """The Trace of one layer (negative counts from the last) and direction (0 forward, 1 reverse)."""
        spec = self.spec
        if not -spec.num_layers <= layer < spec.num_layers:
            raise IndexError(f"layer must be in [{-spec.num_layers}, {spec.num_layers - 1}], got {layer}")
        if direction not in range(spec.directions):
            raise IndexError(f"direction must be 0{' or 1' if spec.bidirectional else ''}, got {direction}")
        return self.traces[(layer % spec.num_layers) * spec.directions + direction]

    @property
    def output(self) -> Tensor:
        """(T, B, D*P): the last layer's h_t, both directions concatenated, zero where no step ran
        (the model's ``output`` in (T, B, *) layout)."""
        last = self.traces[-self.spec.directions :]
        output = torch.cat([t.h for t in last], dim=2)
        return torch.where(self.valid.unsqueeze(2), output, torch.zeros_like(output))

    @property
    def h_n(self) -> Tensor:
        """(L*D, B, P): the final hidden state of the last call (the model's h_n)."""
        self._check_recorded()
        return self._final[0]

    @property
    def c_n(self) -> Tensor | None:
        """(L*D, B, H): the final cell state of the last call (LSTM only, else None)."""
        self._check_recorded()
        return self._final[1] if len(self._final) > 1 else None

    def _check_recorded(self) -> None:
        if not self._calls:
            raise RuntimeError("nothing recorded: call the model inside the `with rnnkit.record(model)` block")

    def _add(self, traces: list[Trace], valid: Tensor, final: tuple[Tensor, ...]) -> None:
        if self._valid and self._valid[0].shape[1] != valid.shape[1]:
            raise ValueError(
                f"record stacks the calls of one block along time, so their batch sizes must match: "
                f"expected B={self._valid[0].shape[1]}, got B={valid.shape[1]}; record each in its own block"
            )
        self._calls.append(traces)
        self._valid.append(valid)
        self._final = final

    def __repr__(self) -> str:
        if not self._calls:
            return f"Recording({self.spec.qualname}, empty)"
        steps, batch = self.valid.shape
        return f"Recording({self.spec.qualname}, {len(self._calls)} call(s), T={steps}, B={batch})"


@contextmanager
def record(model: nn.Module) -> Iterator[Recording]:
    """Record the gates and states of every forward call of ``model`` inside the block.

    Args:
        model: rnnkit's or torch.nn's LSTM, GRU, RNN or cell, or a module holding exactly
            one of them (e.g. a character model with an embedding, an LSTM and a head).

    Yields:
        A Recording, filled as the model runs: ``rec.trace(layer, direction)`` gives the
        gates (T, B, H), ``c`` (T, B, H) and ``h`` (T, B, P) of that layer and direction.

    Example::

        >>> lstm = rnnkit.LSTM(10, 20, num_layers=2, batch_first=True)
        >>> with rnnkit.record(lstm) as rec:
        ...     output, (h_n, c_n) = lstm(torch.randn(3, 5, 10), lengths=[5, 2, 4])
        >>> rec.trace(-1).gates["i"].shape                # (T, B, H)
        torch.Size([5, 3, 20])
    """
    _, module = find_recurrent(model)
    recording = Recording(spec_of(module))
    handle = module.register_forward_hook(partial(_on_forward, recording), with_kwargs=True)
    try:
        yield recording
    finally:
        handle.remove()


def _on_forward(
    recording: Recording, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
) -> None:
    spec = recording.spec
    v = spec.variant
    masked = [f"dropout={spec.dropout}"] if spec.dropout > 0 and spec.num_layers > 1 else []
    masked += [
        f"{name}={p}"
        for name, p in (("recurrent_dropout", v.recurrent_dropout), ("weight_dropout", v.weight_dropout))
        if p
    ]
    masked += [f"zoneout={v.zoneout}"] if any(v.zoneout) else []
    if module.training and masked:
        raise RuntimeError(
            f"rnnkit.record replays the equations and cannot reproduce the random masks of "
            f"{spec.class_name}({', '.join(masked)}) in training mode; call model.eval() while recording"
        )
    input = args[0] if args else kwargs["input"]
    hx = args[1] if len(args) > 1 else kwargs.get("hx")
    x, states, lengths = time_major(spec, input, hx, kwargs.get("lengths"))
    with torch.no_grad():
        recording._add(*replay(spec, weights_of(module, spec), x, states, lengths, extras_of(module, spec)))


def time_major(
    spec: NetSpec, input: Tensor | PackedSequence, hx: Any, lengths: Any
) -> tuple[Tensor, tuple[Tensor, ...], Tensor | None]:
    """A call's input, states and lengths as the layer loop takes them (detached).

    Args:
        input: as the model takes it: (T, B, I), (B, T, I) with batch_first, (T, I), a
            PackedSequence; a cell's (B, I) or (I,). The model's output has the same layout.
        hx: as the model takes it (a pair for an LSTM), or None for zeros. So do its final states.
        lengths: as the model takes them, or None.

    Returns:
        x (T, B, I) (T = 1 for a cell); states, each (L*D, B, *); lengths (B,) int64 or None.
    """
    if isinstance(input, PackedSequence):
        x, lengths = packed_to_padded(input)  # original batch order, as hx is given
        batched = True
    else:
        batched = input.dim() == (2 if spec.is_cell else 3)
        x = input.unsqueeze(0) if spec.is_cell else input  # a cell's call is one step
        x = x.transpose(0, 1) if batched and spec.batch_first else x
        x = x if batched else x.unsqueeze(1)
    if hx is None:
        sizes = (spec.out_size, spec.hidden_size) if spec.mode == "LSTM" else (spec.hidden_size,)
        count = spec.num_layers * spec.directions
        states = tuple(x.new_zeros(count, x.shape[1], n) for n in sizes)
    else:
        states = tuple(hx) if spec.mode == "LSTM" else (hx,)
        states = tuple(s.unsqueeze(0) if spec.is_cell else s for s in states)
        states = tuple(s if batched else s.unsqueeze(1) for s in states)
    if lengths is not None:
        lengths = check_lengths(lengths, x.shape[1], x.shape[0])
    return x.detach(), tuple(s.detach() for s in states), lengths


def replay(
    spec: NetSpec,
    weights: list[tuple[Tensor | None, ...]],
    x: Tensor,
    states: tuple[Tensor, ...],
    lengths: Tensor | None,
    extras: list[variant.Extras] | None = None,
) -> tuple[list[Trace], Tensor, tuple[Tensor, ...]]:
    """Run the naive equations layer by layer in evaluation mode, keeping every step's gates and states.

    Args:
        weights: per layer and direction, as ``explain.spec.weights_of`` gives them; extras: the
            variant's parameters likewise (``explain.spec.extras_of``), or None without.
        x: (T, B, I) input; states: each (L*D, B, *); lengths: (B,) or None.

    Returns:
        the L*D Traces; valid (T, B) bool; the final states, each (L*D, B, *).
    """
    steps, batch = x.shape[0], x.shape[1]
    counts = torch.full((batch,), steps) if lengths is None else lengths
    valid = (torch.arange(steps).unsqueeze(1) < counts.unsqueeze(0)).to(x.device)  # (T, B)
    traces: list[Trace] = []
    finals: list[list[Tensor]] = [[] for _ in states]
    for layer in range(spec.num_layers):
        outputs = []
        for direction in range(spec.directions):
            k = layer * spec.directions + direction
            label = "cell" if spec.is_cell else f"layer {layer} {'reverse' if direction else 'forward'}"
            values, out, final = _replay_direction(
                spec,
                x,
                tuple(s[k] for s in states),
                weights[k],
                extras[k] if extras else variant.Extras(),
                lengths,
                direction == 1,
            )
            values = {name: v.masked_fill(~valid.unsqueeze(2), float("nan")) for name, v in values.items()}
            h, c = values.pop("h"), values.pop("c", None)
            traces.append(Trace(layer, direction, label, gates=values, h=h, c=c))
            outputs.append(out)
            for collected, s in zip(finals, final):
                collected.append(s)
        x = torch.cat(outputs, dim=2)
    return traces, valid, tuple(torch.stack(f) for f in finals)


def _replay_direction(
    spec: NetSpec,
    x: Tensor,
    state: tuple[Tensor, ...],
    weights: tuple[Tensor | None, ...],
    extras: variant.Extras,
    lengths: Tensor | None,
    reverse: bool,
) -> tuple[dict[str, Tensor], Tensor, tuple[Tensor, ...]]:
    """One direction of one layer, as the naive ops run it in evaluation mode, plus every step's gates.

    Returns:
        name -> (T, B, *) for each gate and "h" (and "c" for LSTM), in time order;
        output (T, B, P) zero past each length; the final states.
    """
    seen: list[tuple[Tensor, ...]] = []
    sizes = tuple(s.shape[-1] for s in state)
    _, zone = variant.noise(spec.variant, False, x.shape[0], x.shape[1], sizes, x)  # zoneout's expectation
    every, final = variant.direction(spec.mode, x, state, weights, extras, None, zone, lengths, reverse, seen)
    if reverse:
        seen.reverse()  # the steps ran t = T-1 .. 0
    gates = () if spec.mode.startswith("RNN") else tuple(g.name for g in GATES[spec.mode])
    names = (*gates, "h", "c")  # zip drops "c" where there is none
    return dict(zip(names, (torch.stack(column) for column in zip(*seen)))), every[0], final
