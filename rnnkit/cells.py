"""LSTMCell, GRUCell and RNNCell: one time step, drop-ins for torch.nn's cells.

Dimensions: B batch, I input_size, H hidden_size, G gates (LSTM 4, GRU 3, RNN 1).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from . import ops
from .amp import run_autocast
from .checks import (
    check_input_dims,
    check_input_features,
    check_not_empty,
    check_size,
    check_state_shape,
    check_tensor_like,
)
from .errors import RNNTypeError
from .interop import TorchTwin
from .modules import GATES
from .ops import variant as variant_ops
from .variants import Extras, VariantKeywords, is_recurrence


class RNNCellBase(VariantKeywords, TorchTwin, nn.Module):
    """Shared machinery of the cells: parameters ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H),
    ``bias_ih`` and ``bias_hh`` (G*H,), all drawn from U(-1/sqrt(H), 1/sqrt(H)) as in torch.nn.

    Variant keywords (off by default; as the modules', README "Variants"): ``layer_norm`` (the
    parameters ``ln_ih_weight``, ``ln_hh_weight``, LSTM ``ln_c_weight``, ``ln_c_bias``), ``peephole``
    (LSTM, ``weight_ch``), ``zoneout`` (a fresh mask each call in training, the expectation in
    evaluation), ``forget_bias`` and ``chrono_init`` (LSTM). ``recurrent_dropout`` and
    ``weight_dropout`` draw one mask per sequence, which a cell, called once a step, cannot tell
    apart: the modules take them.
    """

    _state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        **variant: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        per_sequence = [key for key in ("recurrent_dropout", "weight_dropout") if variant.get(key)]
        if per_sequence:
            raise ValueError(
                f"{name}: {per_sequence[0]} draws one mask per sequence, and a cell is called once a step; "
                f"rnnkit.{name.removesuffix('Cell')} runs the sequence and takes it"
            )
        self._set_variant(mode, bool(bias), variant)
        check_size("input_size", input_size)
        check_size("hidden_size", hidden_size)
        ops.check_backend(backend)
        self._check_variant_backend(mode, backend, all_states=False)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias  # like torch.nn's cells, any truthy value means True
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        gate_size = GATES[mode] * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gate_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(gate_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gate_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(gate_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self._register_extras([""], factory)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw torch.nn's parameters from U(-1/sqrt(H), 1/sqrt(H)) in torch.nn's order, then the variant's."""
        names = ["weight_ih", "weight_hh", *(["bias_ih", "bias_hh"] if self.bias else [])]
        self._reset_parameters(names, [("bias_ih", "bias_hh")] if self.bias else [])

    def _states_from_hx(self, hx: Any) -> tuple[Tensor, ...] | None:
        if isinstance(hx, (tuple, list)):
            raise RNNTypeError(f"{type(self).__name__} expects hx as a single tensor h, got a {type(hx).__name__}")
        return None if hx is None else (hx,)

    def _hx_from_states(self, states: tuple[Tensor, ...]) -> Any:
        return states[0]

    def forward(self, input: Tensor, hx: Any = None) -> Any:
        """One step: input (B, I) or (I,) unbatched; states (B, H) or (H,); zeros when hx is None."""
        states = self._states_from_hx(hx)
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        extras = self._extras()[0] if is_recurrence(self.variant) else None
        return run_autocast(self.weight_ih, self.backend, self._step, input, states, weights, extras)

    def _step(
        self,
        input: Tensor,
        states: tuple[Tensor, ...] | None,
        weights: tuple[Tensor | None, ...],
        extras: Extras | None,
    ) -> Any:
        name = type(self).__name__
        reference = weights[0]
        check_tensor_like(name, "input", input, reference)
        batched = check_input_dims(name, input, 2)
        check_input_features(name, input.shape[-1], self.input_size)
        check_not_empty(name, input.shape, "(B, I)")
        x = input if batched else input.unsqueeze(0)
        if states is None:
            states = tuple(x.new_zeros(x.shape[0], self.hidden_size) for _ in self._state_names)
        else:
            expected = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            for state, state_name in zip(states, self._state_names):
                check_tensor_like(name, state_name, state, reference)
                check_state_shape(name, state_name, state, expected, 0 if batched else None)
            if not batched:
                states = tuple(s.unsqueeze(0) for s in states)
        if extras is None:
            new = ops.cell_step(self.mode, ops.resolve_backend(self.backend, x, self.mode), x, states, weights)
        else:  # one step of the variant's equations (ops/variant.py), zoneout's mask fresh each call
            self._check_variant_backend(self.mode, self.backend, all_states=False)
            sizes = tuple(s.shape[-1] for s in states)
            _, zone = variant_ops.noise(self.variant, self.training, 1, x.shape[0], sizes, x)
            run = ops.variant_direction(self.mode, ops.resolve_variant_backend(self.backend, x, self.mode))
            _, new = run(self.mode, x.unsqueeze(0), states, weights, extras, None, zone)
        if not batched:
            new = tuple(s.squeeze(0) for s in new)
        return self._hx_from_states(new)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s + self._variant_repr()


class LSTMCell(RNNCellBase):
    r"""One LSTM step, a drop-in for :class:`torch.nn.LSTMCell`.

    .. math::
        \begin{array}{ll}
        (i, f, g, o) = (W_{ih} x + b_{ih} + W_{hh} h + b_{hh}) \text{ split in four blocks of } H \\
        c' = \sigma(f) \odot c + \sigma(i) \odot \tanh(g) \\
        h' = \sigma(o) \odot \tanh(c')
        \end{array}

    Args:
        input_size: I. hidden_size: H. bias: use b_ih and b_hh (default True).
        device, dtype: of the parameters. backend: ``"auto"``, ``"naive"`` or ``"torch"`` (``"cpu"``
            is accepted and runs torch's cell: one step has no time loop to fuse; a variant's step
            runs on the compiled variant kernels, which ``"auto"`` picks on the CPU too).

    Inputs: input (B, I) or (I,); hx = (h, c), each (B, H) or (H,), zeros if None.
    Outputs: (h', c'), each (B, H) or (H,).
    Parameters: weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,); gate order i, f, g, o.
    """

    _torch_class = nn.LSTMCell
    _state_names = ("h", "c")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        **variant: Any,
    ) -> None:
        super().__init__("LSTM", input_size, hidden_size, bias, device, dtype, backend, **variant)

    def _states_from_hx(self, hx: Any) -> tuple[Tensor, ...] | None:
        if hx is None:
            return None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            got = f"a {type(hx).__name__}" if not isinstance(hx, (tuple, list)) else f"{len(hx)} elements"
            raise RNNTypeError(f"LSTMCell expects hx as a pair (h, c), got {got}")
        return tuple(hx)

    def _hx_from_states(self, states: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        return states[0], states[1]


class GRUCell(RNNCellBase):
    r"""One GRU step, a drop-in for :class:`torch.nn.GRUCell`.

    .. math::
        \begin{array}{ll}
        r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}) \\
        z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
        n = \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})) \\
        h' = (1 - z) \odot n + z \odot h
        \end{array}

    Args:
        input_size: I. hidden_size: H. bias: use b_ih and b_hh (default True).
        device, dtype: of the parameters. backend: ``"auto"``, ``"naive"`` or ``"torch"`` (``"cpu"``
            is accepted and runs torch's cell: one step has no time loop to fuse; a variant's step
            runs on the compiled variant kernels, which ``"auto"`` picks on the CPU too).

    Inputs: input (B, I) or (I,); hx (B, H) or (H,), zeros if None. Output: h' (B, H) or (H,).
    Parameters: weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,); gate order r, z, n.
    """

    _torch_class = nn.GRUCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        **variant: Any,
    ) -> None:
        super().__init__("GRU", input_size, hidden_size, bias, device, dtype, backend, **variant)


class RNNCell(RNNCellBase):
    r"""One Elman RNN step, a drop-in for :class:`torch.nn.RNNCell`.

    .. math::
        h' = \phi(W_{ih} x + b_{ih} + W_{hh} h + b_{hh}), \quad \phi = \tanh \text{ or ReLU}

    Args:
        input_size: I. hidden_size: H. bias: use b_ih and b_hh (default True).
        nonlinearity: ``"tanh"`` (default) or ``"relu"``.
        device, dtype: of the parameters. backend: ``"auto"``, ``"naive"`` or ``"torch"`` (``"cpu"``
            is accepted and runs torch's cell: one step has no time loop to fuse; a variant's step
            runs on the compiled variant kernels, which ``"auto"`` picks on the CPU too).

    Inputs: input (B, I) or (I,); hx (B, H) or (H,), zeros if None. Output: h' (B, H) or (H,).
    Parameters: weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh (H,).
    """

    _torch_class = nn.RNNCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        **variant: Any,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            f"RNN_{nonlinearity.upper()}", input_size, hidden_size, bias, device, dtype, backend, **variant
        )
