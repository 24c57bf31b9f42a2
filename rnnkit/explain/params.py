"""The parameter table of ``rnnkit.explain``: every tensor split into its gate blocks, the
count per layer and direction with its formula filled in, and the textbook count beside it.

Dimensions: I the layer's input features (input_size for layer 0, D*P above), H hidden_size,
P = proj_size or H, G gates (LSTM 4, GRU 3, RNN 1), L layers, D directions.

torch.nn (and cuDNN, and rnnkit) give every gate two bias vectors, b_i* in ``bias_ih`` and
b_h* in ``bias_hh``; the textbook cell, one weight on the concatenated [x_t, h_{t-1}], has
one. So one layer and direction holds G(H*I + H*P + 2H) parameters, G*H more than the
textbook's G(H*I + H*P + H): nn.LSTM(100, 100) has 80,800, not 80,400.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .spec import NetSpec

_SYMBOLS = {"weight_ih": ("W", "i"), "weight_hh": ("W", "h"), "bias_ih": ("b", "i"), "bias_hh": ("b", "h")}


@dataclass
class Block:
    """Rows ``rows[0]:rows[1]`` of a parameter: one gate's weights or bias (or the whole projection)."""

    symbol: str  # as in the equations: W_ii, W_hf, b_in, W_hr ...
    gate: str | None  # gate letter, None for the projection
    meaning: str  # "input gate", "projection" ...
    rows: list[int]  # [start, stop)
    shape: list[int]
    count: int


@dataclass
class ParameterTensor:
    """One parameter of the module, as ``named_parameters`` lists it."""

    name: str  # weight_ih_l0, bias_hh_l1_reverse, weight_ih (cells) ...
    layer: int | None  # None for a cell
    direction: str | None  # "forward" or "reverse"; None for a cell
    shape: list[int]
    count: int
    blocks: list[Block]


@dataclass
class ParameterGroup:
    """The parameters of one layer and direction (or of a cell), counted and explained."""

    label: str  # "layer 0 forward", "layer 1 reverse" or "cell"
    layer: int | None
    direction: str | None
    count: int  # the sum of the group's tensors
    formula: str  # e.g. "4(H*I + H*H + 2H)"
    filled: str  # e.g. "4*(100*100 + 100*100 + 2*100)"
    formula_count: int  # the formula evaluated: equals count
    textbook_formula: str  # the textbook's single-bias formula, e.g. "4(H*I + H*H + H)"
    textbook: str  # ... filled in
    textbook_count: int
    input_note: str  # what I is for this layer


@dataclass
class ParameterReport:
    tensors: list[ParameterTensor]
    groups: list[ParameterGroup]
    total: int  # sum(p.numel() for p in module.parameters())
    textbook_total: int  # the single-bias count for the same shapes
    difference: int  # total - textbook_total
    note: str  # why they differ


def _symbol(spec: NetSpec, slot: str, gate: str) -> str:
    if slot == "weight_hr":
        return "W_hr"
    letter, side = _SYMBOLS[slot]
    if spec.mode.startswith("RNN"):  # torch.nn.RNN's docstring: W_ih, W_hh, b_ih, b_hh
        return f"{letter}_{side}h"
    return f"{letter}_{side}{gate}"


# A variant's parameters: symbol (with {g} for the gate's letter where it has one block per gate), meaning.
_VARIANT_SLOTS = {
    "ln_ih_weight": ("γ_i{g}", "layer norm gain of W_ih x_t"),
    "ln_hh_weight": ("γ_h{g}", "layer norm gain of W_hh h_{t-1}"),
    "ln_c_weight": ("γ_c", "layer norm gain of c_t"),
    "ln_c_bias": ("β_c", "layer norm shift of c_t"),
    "weight_ch": ("w_c{g}", "peephole"),
}


def _variant_blocks(spec: NetSpec, slot: str, shape: list[int]) -> list[Block]:
    H = spec.hidden_size
    symbol, meaning = _VARIANT_SLOTS[slot]
    if slot in ("ln_c_weight", "ln_c_bias"):
        return [Block(symbol, None, meaning, [0, H], shape, H)]
    gates = [g for g in spec.gates if g.name != "g"] if slot == "weight_ch" else spec.gates
    letter = "h" if spec.mode.startswith("RNN") else None
    return [
        Block(
            symbol.format(g=letter or gate.name), gate.name, f"{meaning}, {gate.meaning}", [k * H, (k + 1) * H], [H], H
        )
        for k, gate in enumerate(gates)
    ]


def _blocks(spec: NetSpec, slot: str, shape: list[int]) -> list[Block]:
    H = spec.hidden_size
    if slot in _VARIANT_SLOTS:
        return _variant_blocks(spec, slot, shape)
    if slot == "weight_hr":
        return [Block("W_hr", None, "projection", [0, shape[0]], shape, shape[0] * shape[1])]
    columns = shape[1:]
    blocks = []
    for k, gate in enumerate(spec.gates):
        block_shape = [H, *columns]
        count = H * (columns[0] if columns else 1)
        blocks.append(
            Block(_symbol(spec, slot, gate.name), gate.name, gate.meaning, [k * H, (k + 1) * H], block_shape, count)
        )
    return blocks


def _formulas(spec: NetSpec, layer: int) -> tuple[str, str, int, str, str, int]:
    """(formula, filled, value, textbook formula, textbook filled, textbook value) for one layer and direction."""
    G, H, I, P = len(spec.gates), spec.hidden_size, spec.layer_input(layer), spec.out_size
    recurrent = "H*P" if spec.proj_size else "H*H"
    bias_terms = (["2H"], [f"2*{H}"]) if spec.bias else ([], [])
    terms = ["H*I", recurrent, *bias_terms[0]]
    numbers = [f"{H}*{I}", f"{H}*{P}", *bias_terms[1]]
    value = G * (H * I + H * P + (2 * H if spec.bias else 0))
    textbook_numbers = [f"{H}*{I}", f"{H}*{P}", f"{H}"]
    textbook_value = G * (H * I + H * P + H)
    gates = f"{G}" if G > 1 else ""
    times = "*" if G > 1 else ""
    formula, filled = f"{gates}({' + '.join(terms)})", f"{gates}{times}({' + '.join(numbers)})"
    textbook_formula = f"{gates}({' + '.join([*terms[:2], 'H'])})"
    textbook = f"{gates}{times}({' + '.join(textbook_numbers)})"
    extra_terms = [("P*H", f"{P}*{H}", P * H)] if spec.proj_size else []
    places = spec.variant.layer_norm_at(spec.mode)
    products = sum(p in places for p in ("ih", "hh"))  # a gain of G*H each, and c_t's gain and shift of H
    if products:
        k = products * G
        extra_terms.append((f"{k}H" if k > 1 else "H", f"{k}*{H}", k * H))
    extra_terms += [("2H", f"2*{H}", 2 * H)] if "c" in places else []
    if spec.variant.peephole:
        extra_terms.append(("3H", f"3*{H}", 3 * H))
    for symbols, numbers, count in extra_terms:  # the textbook cell with the same additions
        formula, filled, value = formula + f" + {symbols}", filled + f" + {numbers}", value + count
        textbook_formula, textbook = textbook_formula + f" + {symbols}", textbook + f" + {numbers}"
        textbook_value += count
    return formula, filled, value, textbook_formula, textbook, textbook_value


def _input_note(spec: NetSpec, layer: int) -> str:
    if layer == 0:
        return f"I = input_size = {spec.input_size}"
    both = "both directions of " if spec.bidirectional else ""
    size = "P = proj_size" if spec.proj_size else "P = H"
    return f"I = D*P = {spec.layer_input(layer)} ({both}layer {layer - 1}'s h_t; {size})"


def parameter_report(module: nn.Module, spec: NetSpec) -> ParameterReport:
    """The parameter table of a recurrent ``module`` described by ``spec``.

    Every tensor is read from ``module.named_parameters()``, so ``total`` is
    ``sum(p.numel())``; ``formula_count`` of each group is computed from the sizes
    alone, and equals the group's ``count``.
    """
    params = dict(module.named_parameters())
    tensors: list[ParameterTensor] = []
    groups: list[ParameterGroup] = []
    for layer in range(spec.num_layers):
        for d in range(spec.directions):
            direction = None if spec.is_cell else ("reverse" if d else "forward")
            group_layer = None if spec.is_cell else layer
            count = 0
            for slot, name in spec.parameter_names(layer, d).items():
                shape = list(params[name].shape)
                numel = params[name].numel()
                tensors.append(ParameterTensor(name, group_layer, direction, shape, numel, _blocks(spec, slot, shape)))
                count += numel
            label = "cell" if spec.is_cell else f"layer {layer} {direction}"
            groups.append(
                ParameterGroup(label, group_layer, direction, count, *_formulas(spec, layer), _input_note(spec, layer))
            )
    total = sum(p.numel() for p in module.parameters())
    textbook_total = sum(g.textbook_count for g in groups)
    return ParameterReport(tensors, groups, total, textbook_total, total - textbook_total, _difference_note(spec))


def _difference_note(spec: NetSpec) -> str:
    G, H = len(spec.gates), spec.hidden_size
    groups = spec.num_layers * spec.directions
    per_group = f"{G}*H = {G * H}" if G > 1 else f"H = {H}"
    where = "per layer and direction" if not spec.is_cell else "in the cell"
    if not spec.bias:
        return f"bias=False: no bias at all, {per_group} fewer than the textbook's one bias per gate {where}"
    return (
        f"each gate has two biases, b_i* (bias_ih) and b_h* (bias_hh), where the textbook cell has one: "
        f"{per_group} more {where}"
        + (f", x {groups} = {G * H * groups:,}" if groups > 1 else "")
        + (
            "; for r and z only the sum b_i* + b_h* matters, but b_hn sits inside r_t ⊙ (...)"
            if spec.mode == "GRU"
            else "; only their sum b_i* + b_h* changes the output"
        )
    )
