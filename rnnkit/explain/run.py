"""The live part of ``rnnkit.explain``: run the model on a random input, list the shape of
every tensor, and check how output, h_n and c_n relate (PASS/FAIL with the max abs difference).

Dimensions: T steps, B batch, I input_size, H hidden_size, P = proj_size or H, L layers,
D directions, G gates, N = sum(lengths) (the rows of a PackedSequence's data).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..checks import check_lengths
from ..sequences import last_valid
from .record import Recording, record, time_major
from .spec import NetSpec

# Largest |difference| accepted, relative to max(1, largest |value|), per dtype.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


@dataclass
class Shape:
    name: str  # "input", "h_0", "i_t, f_t, g_t, o_t", "output" ...
    shape: list[int]
    dims: str  # the shape in symbols: "(T, B, I)"
    note: str


@dataclass
class Packed:
    """What pack_padded_sequence makes of the padded input, and what torch.nn returns for it."""

    lengths: list[int]
    sorted_indices: list[int]  # the batch order inside the packed data: longest first
    batch_sizes: list[int]  # batch_sizes[t]: how many sequences are still running at step t
    data_shape: list[int]  # (N, I)
    output_data_shape: list[int]  # (N, D*P)
    note: str


@dataclass
class Relation:
    statement: str  # "output[-1] == h_n[-1]", in the indexing of this model's layout
    meaning: str
    max_abs_diff: float
    tolerance: float  # the largest difference that passes
    passed: bool


@dataclass
class Live:
    """The tensors of one run, in the model's own layout, and the recording of it."""

    x: Tensor
    hx: Any
    output: Tensor  # padded, even when lengths were given
    final: tuple[Tensor, ...]  # (h_n,) or (h_n, c_n); (h',) or (h', c') for a cell
    recording: Recording
    lengths: Tensor | None
    packed: PackedSequence | None  # the packed input, when lengths were given
    packed_output: PackedSequence | None
    packed_final: tuple[Tensor, ...] | None


def check_input_shape(spec: NetSpec, input_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """``input_shape`` as the model takes it (default T=5, B=3), checked against ``spec``."""
    if spec.is_cell:
        forms, default = "(B, I) or (I,)", (3, spec.input_size)
    elif spec.batch_first:
        forms, default = "(B, T, I) (batch_first) or (T, I)", (3, 5, spec.input_size)
    else:
        forms, default = "(T, B, I) or (T, I)", (5, 3, spec.input_size)
    if input_shape is None:
        return default
    shape = tuple(input_shape)
    allowed = (1, 2) if spec.is_cell else (2, 3)
    sizes_ok = all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape)
    if len(shape) not in allowed or not sizes_ok or shape[-1] != spec.input_size:
        raise ValueError(
            f"input_shape of {spec.class_name} must be {forms} with positive sizes and I = input_size = "
            f"{spec.input_size}, got {shape}"
        )
    return shape


def dims_of(spec: NetSpec, shape: tuple[int, ...], lengths: Tensor | None) -> dict[str, int]:
    """The symbols of the shapes and their values for this input."""
    batched = len(shape) == (2 if spec.is_cell else 3)
    dims = {}
    if not spec.is_cell:
        dims["T"] = shape[1] if batched and spec.batch_first else shape[0]
    if batched:
        dims["B"] = shape[0] if spec.is_cell or spec.batch_first else shape[1]
    dims |= {"I": spec.input_size, "H": spec.hidden_size, "P": spec.out_size, "G": len(spec.gates)}
    if not spec.is_cell:
        dims |= {"L": spec.num_layers, "D": spec.directions}
    if lengths is not None:
        dims["N"] = int(lengths.sum())
    return dims


@contextmanager
def _quiet_eval(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout: the replayed equations must see what the model saw), no grad, restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch's oneDNN path says it falls back for projections: true, and no concern of a report
            warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
            yield
    finally:
        module.train(was_training)


def _as_tuple(result: Any) -> tuple[Tensor, ...]:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def run(module: nn.Module, spec: NetSpec, shape: tuple[int, ...], lengths: Any, seed: int) -> Live:
    """Run ``module`` on a random input of ``shape`` and random initial states, recording it.

    With ``lengths`` the padded batch goes in with ``lengths=`` (rnnkit) or packed and
    unpacked again (torch.nn's only way to take lengths), and once more packed, outside
    the recording, for the PackedSequence part of the report.
    """
    dims = dims_of(spec, shape, None)
    if lengths is not None:
        if "B" not in dims or spec.is_cell:
            raise ValueError(f"lengths need a batched sequence input (T, B, I) or (B, T, I), got input_shape {shape}")
        full = torch.full((dims["B"],), dims["T"], dtype=torch.int64)  # every sequence runs all T steps
        checked = check_lengths(lengths, dims["B"], dims["T"])
        lengths = full if checked is None else checked
    reference = next(module.parameters())
    generator = torch.Generator().manual_seed(seed)

    def randn(*size: int) -> Tensor:
        return torch.randn(size, generator=generator, dtype=reference.dtype).to(reference.device)

    x = randn(*shape)
    # initial states: (L*D, B, *) for a module, (B, *) for a cell, without B when unbatched
    leading = (() if spec.is_cell else (spec.num_layers * spec.directions,)) + ((dims["B"],) if "B" in dims else ())
    states = [randn(*leading, spec.out_size)] + ([randn(*leading, spec.hidden_size)] if spec.mode == "LSTM" else [])
    hx = tuple(states) if spec.mode == "LSTM" else states[0]

    def packed_run() -> tuple[PackedSequence, PackedSequence, tuple[Tensor, ...]]:
        packed = pack_padded_sequence(x, lengths, batch_first=spec.batch_first, enforce_sorted=False)
        packed_output, result = module(packed, hx)
        return packed, packed_output, _as_tuple(result)

    with _quiet_eval(module):
        with record(module) as recording:
            if spec.is_cell:
                result = _as_tuple(module(x, hx))
                output = result[0]
            elif lengths is None:
                output, result = module(x, hx)
            elif spec.library == "rnnkit":
                output, result = module(x, hx, lengths=lengths)
            else:
                _, packed_output, result = packed_run()
                output, _ = pad_packed_sequence(packed_output, spec.batch_first, total_length=dims["T"])
        packed = packed_run() if lengths is not None else (None, None, None)
    return Live(x, hx, output, _as_tuple(result), recording, lengths, *packed)


def _relation(statement: str, meaning: str, actual: Tensor, expected: Tensor) -> Relation:
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    tolerance = TOLERANCES.get(expected.dtype, 1e-5) * scale
    diff = float((actual - expected).abs().max()) if expected.numel() else 0.0
    return Relation(statement, meaning, diff, tolerance, not math.isnan(diff) and diff <= tolerance)


def _index(spec: NetSpec, batched: bool, step: str, features: str, per_sequence: bool) -> str:
    """``output[...]`` in this model's layout: step and feature slice, ':' or 'b' for the batch."""
    batch = "b" if per_sequence else ":"
    parts = [step] if not batched else ([batch, step] if spec.batch_first else [step, batch])
    parts += [features] if features else []
    while parts[-1] == ":":  # output[-1, :] reads output[-1]
        parts.pop()
    return f"output[{', '.join(parts)}]"


def relations(spec: NetSpec, live: Live) -> list[Relation]:
    """How output, h_n and c_n relate, and whether the equations replayed give them, checked on ``live``."""
    batched = live.x.dim() == (2 if spec.is_cell else 3)
    final = live.final if spec.mode == "LSTM" else live.final[0]
    output, states, lengths = time_major(spec, live.output, final, live.lengths)  # (T, B, *), (L*D, B, *)
    recording = live.recording
    checks = []
    if not spec.is_cell:
        checks += _output_relations(spec, batched, output, states[0], lengths)
    final_names = (("h'", "c'") if spec.is_cell else ("h_n", "c_n"))[: len(states)]
    replayed = list(zip(final_names, (recording.h_n, recording.c_n), states))
    if not spec.is_cell:
        replayed.insert(0, ("output", recording.output, output))
    for name, ours, theirs in replayed:
        checks.append(
            _relation(
                f"equations replayed == {name}",
                f"the equations above, run step by step with this model's weights (rnnkit.record), give its {name}",
                ours,
                theirs,
            )
        )
    if live.packed_output is not None and spec.library == "rnnkit":
        steps = live.output.shape[1 if spec.batch_first else 0]
        unpacked, _ = pad_packed_sequence(live.packed_output, spec.batch_first, total_length=steps)
        pairs = [(unpacked, live.output), *zip(live.packed_final, live.final)]
        checks.append(
            _relation(
                "model(x, lengths=lengths) == pack -> model -> pad",
                "lengths= on the padded batch gives what pack_padded_sequence -> model -> pad_packed_sequence "
                f"gives: output, {', '.join(final_names)}",
                torch.cat([ours.flatten() for ours, _ in pairs]),
                torch.cat([theirs.flatten() for _, theirs in pairs]),
            )
        )
    return checks


def _output_relations(
    spec: NetSpec, batched: bool, output: Tensor, h_n: Tensor, lengths: Tensor | None
) -> list[Relation]:
    """output (T, B, D*P) against h_n (L*D, B, P): the last step (each sequence's last valid one) and step 0."""
    P = spec.out_size
    per_sequence = lengths is not None
    last = last_valid(output, lengths) if per_sequence else output[-1]  # (B, D*P)
    step = "lengths[b]-1" if per_sequence else "-1"
    at = "at each sequence's last valid step" if per_sequence else "at the last step"
    h = "h_n[-{}, b]" if per_sequence else "h_n[-{}]"
    checks = []
    if spec.bidirectional:
        checks.append(
            _relation(
                f"{_index(spec, batched, step, f':{P}', per_sequence)} == {h.format(2)}",
                f"the forward half of output {at} is the last layer's forward final state "
                f"(h_n[-2] is h_n[{h_n.shape[0] - 2}]: layer {spec.num_layers - 1} forward)",
                last[:, :P],
                h_n[-2],
            )
        )
        checks.append(
            _relation(
                f"{_index(spec, batched, '0', f'{P}:', False)} == h_n[-1]",
                "the reverse half of output at step 0 is the last layer's reverse final state "
                f"(h_n[-1] is h_n[{h_n.shape[0] - 1}]): the reverse direction ends at t = 0",
                output[0, :, P:],
                h_n[-1],
            )
        )
    else:
        checks.append(
            _relation(
                f"{_index(spec, batched, step, '', per_sequence)} == {h.format(1)}",
                f"output holds the last layer's h_t at every step; h_n[-1] is that layer's h {at}",
                last,
                h_n[-1],
            )
        )
    if per_sequence and bool((lengths < output.shape[0]).any()):
        padding = torch.arange(output.shape[0]).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
        past = output[padding.to(output.device)]
        checks.append(
            _relation(
                f"{_index(spec, batched, 't', '', True)} == 0 for t >= lengths[b]",
                "output is zero past each sequence's length (so output[-1] is not h_n for a shorter one)",
                past,
                torch.zeros_like(past),
            )
        )
    return checks
