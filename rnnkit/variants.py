"""The variant keywords of the modules (DESIGN.md, "Variants"): their checks, the parameters they
add beside torch.nn's, and the initialisations ``forget_bias`` and ``chrono_init``.

The equations live in ``ops/variant.py``; this file is what a module needs around them.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from .ops import GATE_COUNTS, VARIANT_DIRECTION_OPS
from .ops.variant import LN_PLACES, Extras, Variant

# What changes the time loop, so that only the naive ops and the fused variant kernels run it
# (weight_dropout masks a weight before any backend runs, so every backend takes it).
RECURRENCE_KEYWORDS = ("layer_norm", "peephole", "recurrent_dropout", "zoneout")
KEYWORDS = (*RECURRENCE_KEYWORDS, "weight_dropout", "forget_bias", "chrono_init")


def _probability(owner: str, name: str, value: object, what: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(f"{owner}: {name} should be a number in [0, 1), the probability {what}, got {value!r}")
    return float(value)


def variant_of(mode: str, owner: str, keywords: dict[str, Any]) -> Variant:
    """Check the variant keywords a module got (``keywords``: the names in ``KEYWORDS`` given) and
    return the ``Variant`` they describe. ``owner`` is the class name for the messages."""
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise TypeError(
            f"{owner}.__init__() got an unexpected keyword argument {unknown[0]!r}; "
            f"the variant keywords are {', '.join(KEYWORDS)}"
        )
    lstm = mode == "LSTM"
    if not isinstance(keywords.get("peephole", False), bool):
        raise TypeError(f"{owner}: peephole should be of type bool, got: {type(keywords['peephole']).__name__}")
    for name in ("peephole", "forget_bias", "chrono_init"):
        if not lstm and keywords.get(name) not in (None, False):
            raise ValueError(f"{owner}: {name} is an LSTM keyword (it acts on c_t or the forget gate), not {owner}'s")
    zoneout = keywords.get("zoneout", 0.0)
    if isinstance(zoneout, (tuple, list)):
        if not lstm or len(zoneout) != 2:
            expected = "(z_c, z_h), one probability for c and one for h" if lstm else "one probability (h only)"
            raise ValueError(f"{owner}: zoneout should be {expected}, got {zoneout!r}")
        zoneout = tuple(_probability(owner, "zoneout", z, "that a unit keeps its previous value") for z in zoneout)
    else:
        z = _probability(owner, "zoneout", zoneout, "that a unit keeps its previous value")
        zoneout = (z, z)  # a GRU or RNN reads z_h only
    return Variant(
        layer_norm=_layer_norm(mode, owner, keywords.get("layer_norm", False)),
        peephole=keywords.get("peephole", False),
        recurrent_dropout=_probability(
            owner, "recurrent_dropout", keywords.get("recurrent_dropout", 0.0), "of dropping a unit of h_{t-1}"
        ),
        zoneout=zoneout,
        weight_dropout=_probability(
            owner, "weight_dropout", keywords.get("weight_dropout", 0.0), "of dropping an element of weight_hh"
        ),
    )


def _layer_norm(mode: str, owner: str, value: object) -> bool | tuple[str, ...]:
    """True or False, or the places (some of LN_PLACES[mode], in that order; True when all of them)."""
    if isinstance(value, bool):
        return value
    every = LN_PLACES[mode]
    what = f"True, False, or some of {every}: where to normalise (ih: W_ih x_t, hh: W_hh h_{{t-1}}, c: c_t)"
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (tuple, list, set, frozenset)):
        raise TypeError(f"{owner}: layer_norm should be {what}, got: {type(value).__name__}")
    if not value or any(place not in every for place in value):
        raise ValueError(f"{owner}: layer_norm should be {what}, got {value!r}")
    places = tuple(place for place in every if place in value)
    return True if places == every else places


def check_initialisation(owner: str, bias: bool, forget_bias: object, chrono_init: object) -> None:
    """``forget_bias`` a real number or None, ``chrono_init`` a number of at least 2 or None, not both, and biases."""
    given = [name for name, value in (("forget_bias", forget_bias), ("chrono_init", chrono_init)) if value is not None]
    if len(given) == 2:
        raise ValueError(f"{owner}: forget_bias and chrono_init both set the forget gate's bias; give one of them")
    if given and not bias:
        raise ValueError(f"{owner}: {given[0]} initialises the biases, and bias=False has none")
    for name, value in (("forget_bias", forget_bias), ("chrono_init", chrono_init)):
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool)):
            raise TypeError(f"{owner}: {name} should be a number, got: {type(value).__name__}")
    if chrono_init is not None and not chrono_init >= 2:
        raise ValueError(
            f"{owner}: chrono_init should be T_max >= 2, the longest dependency in steps "
            f"(b_f = log U[1, T_max - 1]), got {chrono_init!r}"
        )


def is_recurrence(variant: Variant) -> bool:
    """Whether ``variant`` changes the time loop (then the variant ops run it, ``ops.variant_stack``)."""
    return bool(variant.layer_norm or variant.peephole or variant.recurrent_dropout > 0 or any(variant.zoneout))


def _set_keywords(variant: Variant) -> list[tuple[str, object]]:
    """(name, value) of each keyword of ``variant`` that is on, as the user would write it."""
    z_c, z_h = variant.zoneout
    named = [
        ("layer_norm", variant.layer_norm),
        ("peephole", variant.peephole),
        ("recurrent_dropout", variant.recurrent_dropout),
        ("zoneout", variant.zoneout if z_c != z_h else z_h),
        ("weight_dropout", variant.weight_dropout),
    ]
    return [(name, value) for name, value in named if value]


def features(variant: Variant, names: tuple[str, ...] = KEYWORDS) -> list[str]:
    """The keywords of ``variant`` (among ``names``) that torch.nn lacks, as ``name=value``; empty for
    torch.nn's net."""
    return [f"{name}={value}" for name, value in _set_keywords(variant) if name in names]


def extra_shapes(mode: str, variant: Variant, hidden_size: int) -> dict[str, tuple[int, ...]]:
    """The parameters a direction of ``variant`` adds, in registration order, by the name's stem."""
    gate_width = GATE_COUNTS[mode] * hidden_size
    places = variant.layer_norm_at(mode)
    shapes: dict[str, tuple[int, ...]] = {}
    for place in ("ih", "hh"):
        if place in places:
            shapes[f"ln_{place}_weight"] = (gate_width,)
    if "c" in places:
        shapes["ln_c_weight"] = shapes["ln_c_bias"] = (hidden_size,)
    if variant.peephole:
        shapes["weight_ch"] = (3 * hidden_size,)
    return shapes


def register_extras(
    module: nn.Module, mode: str, variant: Variant, hidden_size: int, suffixes: list[str], factory: dict[str, Any]
) -> list[tuple[str | None, ...]]:
    """Register the variant's parameters of every direction (``suffixes``: ``_l0``, ``_l0_reverse``, ...)
    after torch.nn's, so that torch.nn's are drawn first from the same seed.

    Returns each direction's parameter names in ``Extras``' order, None where absent.
    """
    shapes = extra_shapes(mode, variant, hidden_size)
    slots = []
    for suffix in suffixes:
        for stem, shape in shapes.items():
            setattr(module, stem + suffix, nn.Parameter(torch.empty(shape, **factory)))
        slots.append(tuple(stem + suffix if stem in shapes else None for stem in Extras._fields))
    return slots


@torch.no_grad()
def reset_extras(module: nn.Module, slots: list[tuple[str | None, ...]], hidden_size: int) -> None:
    """Layer-norm gains 1 and shifts 0; peepholes from U(-1/sqrt(H), 1/sqrt(H)), as torch.nn's weights."""
    bound = 1.0 / math.sqrt(hidden_size)
    for names in slots:
        for stem, name in zip(Extras._fields, names):
            if name is None:
                continue
            weight = getattr(module, name)
            if stem == "weight_ch":
                nn.init.uniform_(weight, -bound, bound)
            elif stem == "ln_c_bias":
                nn.init.zeros_(weight)
            else:
                nn.init.ones_(weight)


@torch.no_grad()
def initialise_forget_gate(
    biases: list[tuple[Tensor, Tensor]], hidden_size: int, forget_bias: float | None, chrono_init: float | None
) -> None:
    """Set each LSTM direction's (bias_ih, bias_hh) for ``forget_bias`` or ``chrono_init`` (None: leave them).

    ``forget_bias=b``: bias_ih's forget slice b, bias_hh's 0, so the gate's bias (their sum) is b.
    ``chrono_init=T_max`` (Tallec & Ollivier 2018): b_f = log(u), u ~ U[1, T_max - 1] per unit, and
    b_i = -b_f, in bias_ih; bias_hh's input and forget slices 0.
    """
    if forget_bias is None and chrono_init is None:
        return
    H = hidden_size
    for bias_ih, bias_hh in biases:
        if chrono_init is None:
            bias_ih[H : 2 * H] = forget_bias
            bias_hh[H : 2 * H] = 0
            continue
        forget = torch.empty_like(bias_ih[H : 2 * H]).uniform_(1, chrono_init - 1).log_()
        bias_ih[H : 2 * H] = forget
        bias_ih[:H] = -forget
        bias_hh[: 2 * H] = 0


class VariantKeywords:
    """What a module or cell with variant keywords has: ``variant``, ``forget_bias``, ``chrono_init``, the
    variant's parameters after torch.nn's, and the checks, initialisation and repr that go with them.

    The class using it sets ``mode`` and ``hidden_size``, calls ``_set_variant`` and
    ``_check_variant_backend`` when it checks its arguments, and ``_register_extras`` after it has
    registered torch.nn's parameters.
    """

    mode: str
    hidden_size: int
    _extra_slots: list[tuple[str | None, ...]]

    def _set_variant(self, mode: str, bias: bool, keywords: dict[str, Any]) -> None:
        owner = type(self).__name__
        self.variant = variant_of(mode, owner, keywords)
        self.forget_bias = keywords.get("forget_bias")
        self.chrono_init = keywords.get("chrono_init")
        check_initialisation(owner, bias, self.forget_bias, self.chrono_init)

    def _register_extras(self, suffixes: list[str], factory: dict[str, Any]) -> None:
        self._extra_slots = register_extras(self, self.mode, self.variant, self.hidden_size, suffixes, factory)

    def _reset_parameters(self, torch_names: list[str], bias_pairs: list[tuple[str, str]]) -> None:
        """torch.nn's parameters from U(-1/sqrt(H), 1/sqrt(H)) in torch.nn's order (same seed, same values),
        then the variant's, then the forget gate's initialisation of each (bias_ih, bias_hh) pair."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in torch_names:
            nn.init.uniform_(getattr(self, name), -bound, bound)
        reset_extras(self, self._extra_slots, self.hidden_size)
        if self.mode == "LSTM" and bias_pairs:
            biases = [(getattr(self, b_ih), getattr(self, b_hh)) for b_ih, b_hh in bias_pairs]
            initialise_forget_gate(biases, self.hidden_size, self.forget_bias, self.chrono_init)

    def _extras(self) -> list[Extras]:
        """Each layer and direction's (or the cell's) variant parameters."""
        return [Extras(*self._parameters_in(slots)) for slots in self._extra_slots]

    def _parameters_in(self, slots: tuple[str | None, ...]) -> tuple[Tensor | None, ...]:
        """The parameters named in ``slots`` (None where a slot is None): from the module's own dict where
        they are there (getattr's route through Module.__getattr__ is a good part of one generated
        token's time), else by getattr (a parametrized weight, say)."""
        found = self._parameters
        return tuple([None if s is None else found[s] if s in found else getattr(self, s) for s in slots])

    def _torch_lacks(self) -> list[str]:
        return features(self.variant)

    def _check_variant_backend(self, mode: str, backend: str, all_states: bool) -> None:
        """A variant that changes the time loop, and every step's states, run on the naive ops, and on
        a backend that fuses the cell's time loop (``ops.VARIANT_DIRECTION_OPS``)."""
        if backend in ("auto", "naive") or (mode, backend) in VARIANT_DIRECTION_OPS:
            return
        asked = features(self.variant, RECURRENCE_KEYWORDS)
        asked += ["all_states=True"] if all_states else []
        if asked:
            fused = [b for m, b in VARIANT_DIRECTION_OPS if m == mode]
            raise ValueError(
                f"{type(self).__name__}: backend={backend!r} does not run {', '.join(asked)} yet; "
                "use backend='auto' or 'naive' (the equations in plain torch ops)"
                + "".join(f", or {b!r}" for b in fused)
            )

    def _variant_repr(self) -> str:
        """What ``extra_repr`` ends with: ", layer_norm=True, ..." for the keywords that are set."""
        given = features(self.variant)
        given += [
            f"{name}={getattr(self, name)}"
            for name in ("forget_bias", "chrono_init")
            if getattr(self, name) is not None
        ]
        return "".join(f", {g}" for g in given)
