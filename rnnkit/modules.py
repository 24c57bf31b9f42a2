"""LSTM, GRU and RNN modules: torch.nn's constructor, parameters and outputs, plus ``lengths=``.

Dimensions used in the docstrings:

    L  = num_layers          D = 2 if bidirectional else 1
    T  = sequence length     B = batch size
    I  = input_size          H = hidden_size
    P  = proj_size if proj_size > 0 else hidden_size (LSTM; H for GRU and RNN)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import ops, variants
from .amp import run_autocast
from .checks import (
    check_dropout,
    check_flag,
    check_input_dims,
    check_input_features,
    check_lengths,
    check_not_empty,
    check_size,
    check_state_shape,
    check_tensor_like,
)
from .errors import RNNInputError, RNNTypeError
from .interop import TorchTwin
from .ops.masks import drop_connect
from .sequences import packed_to_padded, padded_to_packed

GATES = ops.GATE_COUNTS
_SLOTS = ("weight_ih_l{}{}", "weight_hh_l{}{}", "bias_ih_l{}{}", "bias_hh_l{}{}", "weight_hr_l{}{}")


class RNNBase(variants.VariantKeywords, TorchTwin, nn.Module):
    """Shared machinery of ``LSTM``, ``GRU`` and ``RNN``: parameters, checks and dispatch.

    Parameters are registered with torch.nn's names, shapes and order, so a
    ``state_dict`` moves between torch.nn and rnnkit unchanged, both ways.
    """

    _state_names: ClassVar[tuple[str, ...]] = ("h_0",)

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        **variant: Any,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self._set_variant(mode, bias, variant)
        check_size("input_size", input_size)
        check_size("hidden_size", hidden_size)
        check_size("num_layers", num_layers)
        check_size("proj_size", proj_size, minimum=0)
        check_flag("bias", bias)
        check_flag("batch_first", batch_first)
        check_flag("bidirectional", bidirectional)
        check_dropout(dropout)
        if proj_size and mode != "LSTM":
            raise ValueError(f"proj_size is only supported by LSTM, not {name}; got proj_size={proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size ({hidden_size}), got {proj_size}; use 0 for no projection"
            )
        if "ih" in self.variant.layer_norm_at(mode) and input_size == 1:
            warnings.warn(
                "layer_norm normalises W_ih x_t over its G*H values: with input_size=1 that is LN(x_t w) = "
                "x_t (w - mean w) / sqrt(x_t^2 var w + 1e-5), which keeps little more than the sign of x_t. "
                "Give the net several input features (an nn.Linear or nn.Conv1d before it), or normalise only "
                "the recurrence: layer_norm=('hh', 'c') for an LSTM, 'hh' for a GRU or RNN",
                stacklevel=3,
            )
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout acts between recurrent layers, so dropout={dropout} has no effect with num_layers=1",
                stacklevel=3,
            )
        ops.check_backend(backend)
        self._check_variant_backend(mode, backend, all_states=False)
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.backend = backend

        factory = {"device": device, "dtype": dtype}
        gate_size = GATES[mode] * hidden_size
        out_size = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        self._weight_slots: list[tuple[str | None, ...]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else out_size * directions
            for direction in range(directions):
                shapes = [
                    (gate_size, layer_input),
                    (gate_size, out_size),
                    (gate_size,) if bias else None,
                    (gate_size,) if bias else None,
                    (proj_size, hidden_size) if proj_size else None,
                ]
                slots = [
                    slot.format(layer, "_reverse" if direction else "") if shape else None
                    for slot, shape in zip(_SLOTS, shapes)
                ]
                for slot, shape in zip(slots, shapes):
                    if slot is not None:
                        setattr(self, slot, nn.Parameter(torch.empty(shape, **factory)))
                present = [s for s in slots if s is not None]
                self._flat_weights_names.extend(present)
                self._all_weights.append(present)
                self._weight_slots.append(tuple(slots if mode == "LSTM" else slots[:4]))
        self._register_extras(
            [f"_l{k}{'_reverse' if d else ''}" for k in range(num_layers) for d in range(directions)], factory
        )
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw torch.nn's parameters from U(-1/sqrt(H), 1/sqrt(H)) in torch.nn's order (same seed, same
        values), then the variant's (see ``rnnkit.variants``), then the forget gate's initialisation."""
        pairs = [(slots[2], slots[3]) for slots in self._weight_slots] if self.bias else []
        self._reset_parameters(self._flat_weights_names, pairs)

    def flatten_parameters(self) -> None:
        """Does nothing: kept so code written for torch.nn (which packs weights for cuDNN) runs unchanged."""

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters per layer and direction, in torch.nn's order."""
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def _weights(self) -> list[tuple[Tensor | None, ...]]:
        weights = [self._parameters_in(slots) for slots in self._weight_slots]
        p = self.variant.weight_dropout
        if p > 0 and self.training:  # DropConnect: a fresh mask on W_hh each call, before any backend
            weights = [(w_ih, drop_connect(w_hh, p), *rest) for w_ih, w_hh, *rest in weights]
        return weights

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """torch.nn's ``load_state_dict``; a torch.nn state dict given to a variant (strictly) says what to do."""
        absent = [n for slots in self._extra_slots for n in slots if n and n not in state_dict]
        if strict and absent and all(n in state_dict for n in self._flat_weights_names):
            name = type(self).__name__
            raise RuntimeError(
                f"{name}.load_state_dict: the state dict holds torch.nn.{name}'s parameters but not the "
                f"variant's ({', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''}). To start a variant "
                f"from a torch.nn.{name}, use rnnkit.{name}.from_torch(module, "
                f"{', '.join(variants.features(self.variant))}); or load_state_dict(state_dict, strict=False), "
                "which keeps the new parameters' initial values"
            )
        return super().load_state_dict(state_dict, strict, assign)

    def _state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def _states_from_hx(self, hx: Any) -> tuple[Tensor, ...] | None:
        if isinstance(hx, (tuple, list)):
            raise RNNTypeError(f"{type(self).__name__} expects hx as a single tensor h_0, got a {type(hx).__name__}")
        return None if hx is None else (hx,)

    def _hx_from_states(self, states: tuple[Tensor, ...]) -> Any:
        return states[0]

    def forward(
        self, input: Tensor | PackedSequence, hx: Any = None, *, lengths: Any = None, all_states: bool = False
    ) -> tuple[Any, ...]:
        """Run the net; see the class docstring for the shapes of inputs and outputs."""
        check_flag("all_states", all_states)
        states = self._states_from_hx(hx)
        weights = self._weights()
        extras = None
        if all_states or variants.is_recurrence(self.variant):
            self._check_variant_backend(self.mode, self.backend, all_states)
            extras = self._extras()
        reference = weights[0][0]
        output, final, *every = run_autocast(
            reference, self.backend, self._run, input, states, weights, extras, lengths=lengths, all_states=all_states
        )
        if all_states:
            return output, self._hx_from_states(final), self._hx_from_states(every[0])
        return output, self._hx_from_states(final)

    def _run(
        self,
        input: Tensor | PackedSequence,
        states: tuple[Tensor, ...] | None,
        weights: list[tuple[Tensor | None, ...]],
        extras: list[variants.Extras] | None,
        lengths: Any,
        all_states: bool = False,
    ) -> tuple[Any, ...]:
        """Normalise input and states to (T, B, *) form, run the backend, restore the caller's layout.

        With ``extras`` (a variant or every step's states) the variant ops run (``ops.variant_stack``:
        the fused kernels or the naive ops), and with ``all_states`` every step's states come back
        third, each (L*D, T, B, *) in the caller's layout of T and B (padded for packed input).
        """
        name = type(self).__name__
        reference = weights[0][0]
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise RNNInputError(
                    f"{name} got lengths= and a PackedSequence, which carries its own lengths; pass only one of them"
                )
            check_tensor_like(name, "input", input.data, reference)
            x, lengths = packed_to_padded(input)
            batched = True
        else:
            check_tensor_like(name, "input", input, reference)
            batched = check_input_dims(name, input, 3)
            x = input if batched else input.unsqueeze(0 if self.batch_first else 1)
            x = x.transpose(0, 1) if self.batch_first else x
            check_not_empty(name, input.shape, "batch_first: (B, T, I)" if self.batch_first else "(T, B, I)")
        check_input_features(name, x.shape[2], self.input_size)
        steps, batch = x.shape[0], x.shape[1]
        if lengths is not None:
            lengths = check_lengths(lengths, batch, steps)

        directions = 2 if self.bidirectional else 1
        if states is None:
            states = tuple([x.new_zeros(self.num_layers * directions, batch, n) for n in self._state_sizes()])
        else:
            for state, state_name, size in zip(states, self._state_names, self._state_sizes()):
                check_tensor_like(name, state_name, state, reference)
                expected = (
                    (self.num_layers * directions, batch, size) if batched else (self.num_layers * directions, size)
                )
                check_state_shape(name, state_name, state, expected, 1 if batched else None)
            if not batched:
                states = tuple(s.unsqueeze(1) for s in states)

        if extras is not None:
            output, final, every = ops.variant_stack(
                self.mode,
                self.variant,
                x,
                states,
                weights,
                extras,
                lengths,
                bidirectional=self.bidirectional,
                dropout=self.dropout,
                training=self.training,
                backend=ops.resolve_variant_backend(self.backend, x, self.mode),
                every_state=all_states,
            )
            if every and self.batch_first and batched:
                every = tuple([e.transpose(1, 2) for e in every])
            if every and not batched:
                every = tuple([e.squeeze(2) for e in every])
            return (*self._restore_layout(output, final, input, batched), every)
        output, final = ops.rnn_stack(
            self.mode,
            ops.resolve_backend(
                self.backend,
                x,
                self.mode,
                varying_lengths=lengths is not None,
                step_macs=ops.recurrent_macs(self.mode, batch, self.hidden_size, self.proj_size),
                batch=batch,
                steps=steps,
            ),
            x,
            states,
            weights,
            lengths,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            training=self.training,
        )
        return self._restore_layout(output, final, input, batched)

    def _restore_layout(
        self, output: Tensor, final: tuple[Tensor, ...], input: Tensor | PackedSequence, batched: bool
    ) -> tuple[Tensor | PackedSequence, tuple[Tensor, ...]]:
        """(T, B, *) output and (L*D, B, *) states back in the layout of the caller's ``input``."""
        if isinstance(input, PackedSequence):
            return padded_to_packed(output, input), final
        if not batched:
            return output.squeeze(1), tuple(s.squeeze(1) for s in final)
        return (output.transpose(0, 1) if self.batch_first else output), final

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s + self._variant_repr()


_SHAPES_DOC = """
    Inputs: input, hx, lengths
        * **input**: (T, B, I), or (B, T, I) with ``batch_first=True``, or (T, I)
          unbatched, or a :class:`torch.nn.utils.rnn.PackedSequence`.
        * **{hx}**: {hx_shapes}; zeros when not given. Its batch dimension must
          match the input's (dim 1, whatever ``batch_first`` says).
        * **lengths** (keyword only): the number of valid steps of each sequence
          of a padded batch, a list or a 1-D integer tensor of B values in
          [1, T], in any order. Each sequence stops at its length: output is
          zero past it and the final states come from its last valid step
          (the first step for the reverse direction), as pack_padded_sequence
          -> torch.nn -> pad_packed_sequence gives, without sorting or packing.

    Outputs: output, {hn}
        * **output**: (T, B, D*{out}), or (B, T, D*{out}) with ``batch_first``, or
          (T, D*{out}) unbatched, or a PackedSequence when the input was one. It
          holds the last layer's h_t for every t; for a bidirectional net the
          forward direction's in ``[..., :{out}]`` and the reverse's in ``[..., {out}:]``.
        * **{hn}**: {hn_shapes} (L*D -> L*D without the batch dimension when
          unbatched). Layer l's direction d sits at index ``l*D + d``, so
          ``h_n[-2]`` is the last layer's forward direction and ``h_n[-1]`` its
          reverse: ``output[-1, :, :{out}] == h_n[-2]`` and
          ``output[0, :, {out}:] == h_n[-1]``.
        * with ``all_states=True`` (keyword of forward), a third output: {every},
          (L*D, B, T, *) with ``batch_first``, without B unbatched, padded for a
          PackedSequence; every step's states of every layer and direction (the zoned
          states with zoneout), zero past each length.
"""

_ARGS_DOC = """
    Args:
        input_size: I, the features of each input step.
        hidden_size: H, the features of the hidden state.
        num_layers: L, recurrent layers stacked; layer l > 0 takes layer l-1's output. Default 1.
{extra}        bias: if False, no b_ih and b_hh. Default True.
        batch_first: input and output are (B, T, feature) instead of (T, B, feature); the states
            are not affected. Default False.
        dropout: probability of zeroing each output of every layer but the last, in training
            mode. Default 0.
        bidirectional: add a reverse direction to each layer. Default False.
        device, dtype: of the parameters.
        backend: ``"auto"`` (the fastest correct path available), ``"naive"`` (the equations in
            plain torch ops), ``"cpu"`` (compiled fused kernels with a hand-written backward,
            float32/float64 on the CPU; built on first use), ``"triton"`` (persistent GPU kernels
            with a hand-written backward, float32/bfloat16/float16 on CUDA) or ``"torch"``
            (torch's fused kernels).
            Every backend supports backward in eval mode and double backward (the fused ones by
            recomputing with the naive ops).

    Variant keywords (keyword only, all off by default; equations in ``rnnkit/ops/variant.py``):
        layer_norm: layer normalisation of W_ih x_t and W_hh h_{{t-1}} (and, LSTM, of c_t inside
            tanh); adds ``ln_ih_weight_l[k]``, ``ln_hh_weight_l[k]`` (G*H, gains from 1) and, LSTM,
            ``ln_c_weight_l[k]``, ``ln_c_bias_l[k]`` (H, from 1 and 0). Or some of the places
            ``"ih"``, ``"hh"``, ``"c"`` only, e.g. ``("hh", "c")`` where an input of one feature
            would be normalised to about its sign.
        peephole: (LSTM) i and f see c_{{t-1}}, o sees c_t; adds ``weight_ch_l[k]`` (3H: i, f, o).
        recurrent_dropout: p, one mask per sequence, layer and direction on h_{{t-1}} before W_hh,
            training only.
        zoneout: z, each unit keeps its previous value with probability z, a fresh mask each
            step in training, the expectation in evaluation; ``(z_c, z_h)`` for an LSTM's c and h.
        weight_dropout: p, DropConnect on ``weight_hh_l[k]``, a fresh mask each call in training;
            the parameters and state_dict stay torch.nn's, and every backend runs it.
        forget_bias: (LSTM) initialise the forget gate's bias (bias_ih + bias_hh) to this value.
        chrono_init: (LSTM) T_max, Tallec and Ollivier's initialisation b_f = log U[1, T_max - 1],
            b_i = -b_f.
        Parameters added are drawn after torch.nn's, so the same seed gives torch.nn's weights.
        Layer norm, peepholes, recurrent dropout, zoneout and ``all_states`` run on the compiled
        ``"cpu"`` kernels (``"auto"`` picks them on the CPU in float32 and float64) or the naive ops
        (elsewhere, or ``backend="naive"``); other backends say they cannot.
"""


class LSTM(RNNBase):
    __doc__ = (
        r"""Multi-layer long short-term memory (LSTM), a drop-in for :class:`torch.nn.LSTM`.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`h_t` is the hidden state, :math:`c_t` the cell state, :math:`x_t` the
    input (layer l > 0: the previous layer's :math:`h_t`, after dropout in training),
    :math:`i_t, f_t, g_t, o_t` the input, forget, cell and output gates, :math:`\sigma`
    the sigmoid and :math:`\odot` the elementwise product. With ``proj_size > 0``,
    :math:`h_t = W_{hr}(o_t \odot \tanh(c_t))`, of size P.

    Each gate has two biases, :math:`b_{i*}` and :math:`b_{h*}` (as torch.nn and
    cuDNN), so one direction of layer 0 has 4(H*I + H*P + 2H) parameters
    (+ P*H with projection): ``LSTM(100, 100)`` has 80,800, not the textbook 80,400.
"""
        + _ARGS_DOC.format(extra="        proj_size: P, the size h_t is projected to by W_hr; 0 (default) for none.\n")
        + _SHAPES_DOC.format(
            hx="hx",
            hx_shapes="a tuple (h_0, c_0) of (L*D, B, P) and (L*D, B, H)",
            hn="(h_n, c_n)",
            every="(h_all, c_all) of (L*D, T, B, P) and (L*D, T, B, H)",
            hn_shapes="h_n (L*D, B, P) and c_n (L*D, B, H), the final states",
            out="P",
        )
        + r"""
    Attributes (per layer k, ``_reverse`` appended for the reverse direction):
        weight_ih_l[k]: (4H, I) for k = 0, else (4H, D*P): :math:`(W_{ii}|W_{if}|W_{ig}|W_{io})`.
        weight_hh_l[k]: (4H, P): :math:`(W_{hi}|W_{hf}|W_{hg}|W_{ho})`.
        bias_ih_l[k], bias_hh_l[k]: (4H,).
        weight_hr_l[k]: (P, H), only with ``proj_size > 0``.
        All drawn from U(-1/sqrt(H), 1/sqrt(H)) in the order above (same seed, same values as torch.nn).

    Example::

        >>> lstm = rnnkit.LSTM(10, 20, num_layers=2)
        >>> x = torch.randn(5, 3, 10)                     # (T, B, I)
        >>> output, (h_n, c_n) = lstm(x, lengths=[5, 2, 4])
        >>> output.shape, h_n.shape                       # (T, B, H), (L, B, H)
        (torch.Size([5, 3, 20]), torch.Size([2, 3, 20]))
"""
    )

    _torch_class = nn.LSTM
    _state_names = ("h_0", "c_0")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        **variant: Any,
    ) -> None:
        super().__init__(
            "LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
            device, dtype, backend, **variant,
        )  # fmt: skip

    def _state_sizes(self) -> tuple[int, ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def _states_from_hx(self, hx: Any) -> tuple[Tensor, ...] | None:
        if hx is None:
            return None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            got = f"a {type(hx).__name__}" if not isinstance(hx, (tuple, list)) else f"{len(hx)} elements"
            raise RNNTypeError(f"LSTM expects hx as a pair (h_0, c_0), got {got}")
        return tuple(hx)

    def _hx_from_states(self, states: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        return states[0], states[1]


class GRU(RNNBase):
    __doc__ = (
        r"""Multi-layer gated recurrent unit (GRU), a drop-in for :class:`torch.nn.GRU`.

    For each element of the input sequence, each layer computes

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`r_t, z_t, n_t` are the reset, update and new gates. Note
    :math:`b_{hn}` inside :math:`r_t \odot (\dots)`, as torch.nn and cuDNN compute it.
"""
        + _ARGS_DOC.format(extra="")
        + _SHAPES_DOC.format(
            hx="hx",
            hx_shapes="h_0 of shape (L*D, B, H)",
            hn="h_n",
            every="h_all of (L*D, T, B, H)",
            hn_shapes="(L*D, B, H), the final hidden state",
            out="H",
        )
        + """
    Attributes (per layer k, ``_reverse`` appended for the reverse direction):
        weight_ih_l[k]: (3H, I) for k = 0, else (3H, D*H): (W_ir|W_iz|W_in).
        weight_hh_l[k]: (3H, H): (W_hr|W_hz|W_hn).
        bias_ih_l[k], bias_hh_l[k]: (3H,).
        All drawn from U(-1/sqrt(H), 1/sqrt(H)).
"""
    )

    _torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        *,
        proj_size: int = 0,
        **variant: Any,
    ) -> None:
        super().__init__(
            "GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
            device, dtype, backend, **variant,
        )  # fmt: skip


class RNN(RNNBase):
    __doc__ = (
        r"""Multi-layer Elman RNN with tanh or ReLU, a drop-in for :class:`torch.nn.RNN`.

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh}), \quad \phi = \tanh \text{ or ReLU}
"""
        + _ARGS_DOC.format(extra='        nonlinearity: ``"tanh"`` (default) or ``"relu"``.\n')
        + _SHAPES_DOC.format(
            hx="hx",
            hx_shapes="h_0 of shape (L*D, B, H)",
            hn="h_n",
            every="h_all of (L*D, T, B, H)",
            hn_shapes="(L*D, B, H), the final hidden state",
            out="H",
        )
    )

    _torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        backend: str = "auto",
        *,
        proj_size: int = 0,
        **variant: Any,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            f"RNN_{nonlinearity.upper()}", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, proj_size, device, dtype, backend, **variant,
        )  # fmt: skip
