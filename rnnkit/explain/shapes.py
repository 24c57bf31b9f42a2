"""The shape table of ``rnnkit.explain``: every tensor of a forward call, in numbers and in symbols.

What the caller sees (input, states, output, h_n, c_n, the PackedSequence) is measured on
the live run; what happens inside one step (x_t, the gate pre-activations, c_t, h_t) is
computed from the sizes, as ``ops/<cell>/naive.py`` shapes it.

Dimensions: T steps, B batch, I input_size, H hidden_size, P = proj_size or H, L layers,
D directions, G gates, N = sum(lengths).
"""

from __future__ import annotations

import math

from torch import Tensor

from .run import Live, Packed, Shape
from .spec import NetSpec


def _row(name: str, terms: tuple[str, ...], dims: dict[str, int], note: str, tensor: Tensor | None = None) -> Shape:
    """A Shape from symbolic ``terms`` like ("L*D", "B", "P"); "B" is dropped for unbatched input."""
    terms = tuple(t for t in terms if t != "B" or "B" in dims)
    if tensor is not None:
        shape = list(tensor.shape)
    else:
        shape = [math.prod(dims[factor] for factor in term.split("*")) for term in terms]
    return Shape(name, shape, "(" + ", ".join(terms) + (",)" if len(terms) == 1 else ")"), note)


def _step_rows(spec: NetSpec, dims: dict[str, int]) -> list[Shape]:
    """Inside one step: the gate pre-activations, the gates and, for an LSTM, c_t (each (B, *))."""
    recurrent = "P" if spec.proj_size else "H"
    bias_ih, bias_hh = (" + b_ih", " + b_hh") if spec.bias else ("", "")
    rows = [
        _row(f"W_ih x_t{bias_ih}", ("B", "G*H"), dims, "x_t @ weight_ih.T: the input half of every gate at once"),
        _row(f"W_hh h_{{t-1}}{bias_hh}", ("B", "G*H"), dims, f"the recurrent half; weight_hh is (G*H, {recurrent})"),
    ]
    if spec.mode.startswith("RNN"):
        return rows
    gates = ", ".join(f"{g.name}_t" for g in spec.gates)
    rows.append(_row(gates, ("B", "H"), dims, "each gate: its H rows of the two sums, then its nonlinearity"))
    if spec.mode == "LSTM":
        rows.append(_row("c_t", ("B", "H"), dims, "cell state"))
        if spec.proj_size:
            rows.append(_row("o_t ⊙ tanh(c_t)", ("B", "H"), dims, "before the projection W_hr (P, H)"))
    return rows


def _cell_rows(spec: NetSpec, live: Live, dims: dict[str, int]) -> list[Shape]:
    """A cell's call: x_t and hx in, one step, (h_t, c_t) out."""
    lstm = spec.mode == "LSTM"
    h, c = (live.hx[0], live.hx[1]) if lstm else (live.hx, None)
    rows = [
        _row("input (x_t)", ("B", "I"), dims, "one step of input", live.x),
        _row("h (h_{t-1})", ("B", "H"), dims, "hx[0]" if lstm else "hx", h),
    ]
    if lstm:
        rows.append(_row("c (c_{t-1})", ("B", "H"), dims, "hx[1]", c))
    rows += _step_rows(spec, dims)
    rows.append(_row("h' (h_t)", ("B", "H"), dims, "returned", live.final[0]))
    if lstm:
        rows.append(_row("c' (c_t)", ("B", "H"), dims, "returned", live.final[1]))
    return rows


def shape_table(spec: NetSpec, live: Live, dims: dict[str, int]) -> list[Shape]:
    """Every tensor of the live run and of one step inside it, in the model's layout."""
    if spec.is_cell:
        return _cell_rows(spec, live, dims)
    time_batch = ("B", "T") if spec.batch_first else ("T", "B")
    states = ("L*D", "B")
    hx = live.hx if spec.mode == "LSTM" else (live.hx,)
    layout = "batch_first=True: (B, T, I)" if spec.batch_first else "time-major (batch_first=False)"
    batch = "; the batch is dim 1 whatever batch_first says: build it from the input's size" if "B" in dims else ""
    rows = [
        _row("input", (*time_batch, "I"), dims, layout, live.x),
        _row("h_0", (*states, "P"), dims, f"zeros if hx is None{batch}", hx[0]),
    ]
    if spec.mode == "LSTM":
        rows.append(_row("c_0", (*states, "H"), dims, "cell state: H even with a projection", hx[1]))
    rows.append(_row("x_t (layer 0)", ("B", "I"), dims, "one step of the input"))
    if spec.num_layers > 1:
        both = ", both directions concatenated" if spec.bidirectional else ""
        rows.append(_row("x_t (layer l > 0)", ("B", "D*P"), dims, f"layer l-1's h_t{both}"))
    rows += _step_rows(spec, dims)
    rows.append(_row("h_t", ("B", "P"), dims, "the hidden state, also this layer's output at step t"))
    halves = f"; [..., :{spec.out_size}] forward, [..., {spec.out_size}:] reverse" if spec.bidirectional else ""
    zero = "; zero past each length" if live.lengths is not None else ""
    output = f"the last layer's h_t at every step{halves}{zero}"
    rows.append(_row("output", (*time_batch, "D*P"), dims, output, live.output))
    if spec.bidirectional:
        last = "h_n[-2] is the last layer's forward, h_n[-1] its reverse"
    else:
        last = "h_n[-1] is the last layer's"
    h_n = f"the final h of every layer and direction (index l*D + d); {last}"
    rows.append(_row("h_n", (*states, "P"), dims, h_n, live.final[0]))
    if spec.mode == "LSTM":
        rows.append(_row("c_n", (*states, "H"), dims, "every layer's final c; output has no c", live.final[1]))
    return rows


def packed_info(spec: NetSpec, live: Live) -> Packed | None:
    """The PackedSequence that pack_padded_sequence(input, lengths) makes, or None without lengths."""
    if live.packed is None:
        return None
    lengths = live.lengths.tolist()
    steps = len(live.packed.batch_sizes)
    other = (
        "rnnkit's lengths= gives the same output and final states on the padded batch"
        if spec.library == "rnnkit"
        else "rnnkit's modules take lengths= on the padded batch instead"
    )
    note = (
        f"pack_padded_sequence drops the padding: data holds the N = sum(lengths) = {sum(lengths)} valid steps, "
        f"step by step, longest sequence first (sorted_indices); batch_sizes[t] is how many sequences are still "
        f"running at step t (of {steps}). torch.nn needs it (with enforce_sorted=False or sorted input) so that "
        "padding does not run through the cell, and pad_packed_sequence after, which pads to the longest length "
        f"in the batch unless given total_length=T; {other}"
    )
    return Packed(
        lengths,
        live.packed.sorted_indices.tolist(),
        live.packed.batch_sizes.tolist(),
        list(live.packed.data.shape),
        list(live.packed_output.data.shape),
        note,
    )
