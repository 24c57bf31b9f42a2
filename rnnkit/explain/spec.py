"""What a recurrent module is: its cell type, sizes, gates and weights, read alike from
rnnkit's and torch.nn's LSTM/GRU/RNN and their cells.

Dimensions: I input_size, H hidden_size, P = proj_size or H, L num_layers,
D = 2 if bidirectional else 1, G gates (LSTM 4, GRU 3, RNN 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn

from ..cells import RNNCellBase
from ..modules import RNNBase
from ..ops.gates import GATES, Gate
from ..ops.variant import Extras, Variant
from ..variants import extra_shapes

# Parameter slots of one layer and direction, in torch.nn's order.
SLOTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


@dataclass(frozen=True)
class NetSpec:
    """The constructor arguments of a recurrent module or cell, whichever library built it."""

    mode: str  # "LSTM", "GRU", "RNN_TANH" or "RNN_RELU", as torch.nn's RNNBase.mode
    is_cell: bool
    library: str  # "rnnkit" or "torch.nn"
    class_name: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    bidirectional: bool = False
    proj_size: int = 0
    dropout: float = 0.0
    variant: Variant = field(default_factory=Variant)  # rnnkit's variant keywords (all off: torch.nn's cell)

    @property
    def gates(self) -> tuple[Gate, ...]:
        return GATES[self.mode]

    @property
    def directions(self) -> int:
        """D: 2 for a bidirectional net, else 1."""
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """P: the size of h_t, proj_size when projecting, else H."""
        return self.proj_size or self.hidden_size

    @property
    def qualname(self) -> str:
        return f"{self.library}.{self.class_name}"

    def layer_input(self, layer: int) -> int:
        """Features of layer ``layer``'s x_t: I for layer 0, D*P (both directions of the layer below) above."""
        return self.input_size if layer == 0 else self.directions * self.out_size

    def parameter_names(self, layer: int, direction: int) -> dict[str, str]:
        """Slot (``weight_ih``, ..., then a variant's ``ln_ih_weight``, ...) -> parameter name of one layer
        and direction, for the slots it has."""
        slots = [s for s in SLOTS if (self.bias or not s.startswith("bias")) and (self.proj_size or s != "weight_hr")]
        suffix = "" if self.is_cell else f"_l{layer}{'_reverse' if direction else ''}"
        names = {s: s + suffix for s in slots}
        return names | {stem: stem + suffix for stem in extra_shapes(self.mode, self.variant, self.hidden_size)}


def _mode_of(module: nn.Module) -> str:
    if isinstance(module, (RNNBase, nn.RNNBase, RNNCellBase)):
        return module.mode
    if isinstance(module, nn.LSTMCell):
        return "LSTM"
    if isinstance(module, nn.GRUCell):
        return "GRU"
    return f"RNN_{module.nonlinearity.upper()}"


def is_recurrent(module: nn.Module) -> bool:
    """Whether ``module`` is one of rnnkit's or torch.nn's LSTM/GRU/RNN or cells (or a subclass)."""
    return isinstance(module, (RNNBase, RNNCellBase, nn.RNNBase, nn.RNNCellBase))


def find_recurrent(model: nn.Module) -> tuple[str, nn.Module]:
    """The recurrent module in ``model``: ``model`` itself, or its only recurrent submodule.

    Returns:
        (its name inside ``model``, "" for ``model`` itself; the module).
    """
    if is_recurrent(model):
        return "", model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module holding an LSTM, GRU or RNN, got {type(model).__name__}")
    found = [(name, m) for name, m in model.named_modules() if is_recurrent(m)]
    if len(found) != 1:
        names = ", ".join(f"{name} ({type(m).__name__})" for name, m in found) or "none"
        raise ValueError(
            f"expected a {type(model).__name__} holding exactly one LSTM, GRU, RNN or cell, found {names}; "
            "pass the recurrent submodule itself"
        )
    return found[0]


def spec_of(module: nn.Module) -> NetSpec:
    """The NetSpec of a recurrent module or cell (see ``is_recurrent``)."""
    if not is_recurrent(module):
        raise TypeError(
            f"expected rnnkit's or torch.nn's LSTM, GRU, RNN, LSTMCell, GRUCell or RNNCell, got {type(module).__name__}"
        )
    is_cell = isinstance(module, (RNNCellBase, nn.RNNCellBase))
    library = "rnnkit" if isinstance(module, (RNNBase, RNNCellBase)) else "torch.nn"
    return NetSpec(
        mode=_mode_of(module),
        is_cell=is_cell,
        library=library,
        class_name=type(module).__name__,
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=1 if is_cell else module.num_layers,
        bias=bool(module.bias),
        batch_first=False if is_cell else module.batch_first,
        bidirectional=False if is_cell else module.bidirectional,
        proj_size=0 if is_cell else module.proj_size,
        dropout=0.0 if is_cell else float(module.dropout),
        variant=module.variant if isinstance(module, (RNNBase, RNNCellBase)) else Variant(),
    )


def weights_of(module: nn.Module, spec: NetSpec) -> list[tuple[Tensor | None, ...]]:
    """Per layer and direction (index l*D + d), the tuple the naive ops take:
    (w_ih, w_hh, b_ih, b_hh, w_hr) for an LSTM, (w_ih, w_hh, b_ih, b_hh) otherwise; None where absent."""
    slots = SLOTS if spec.mode == "LSTM" else SLOTS[:4]
    weights = []
    for layer in range(spec.num_layers):
        for direction in range(spec.directions):
            names = spec.parameter_names(layer, direction)
            weights.append(tuple(getattr(module, names[s]) if s in names else None for s in slots))
    return weights


def extras_of(module: nn.Module, spec: NetSpec) -> list[Extras] | None:
    """Per layer and direction, the variant's parameters of an rnnkit module (``ops/variant.py``'s
    Extras), or None where there is no variant."""
    return module._extras() if isinstance(module, (RNNBase, RNNCellBase)) and spec.variant != Variant() else None
