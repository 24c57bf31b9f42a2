"""A layer-normalised LSTM as people script it today: the baseline of ``benchmarks/variants_cpu.py``.

It follows the pattern of pytorch's ``benchmarks/fastrnns/custom_lstms.py``, the file users copy
for a LayerNorm LSTM: a cell with three ``nn.LayerNorm``, a layer that loops over the steps in
TorchScript, the whole stack compiled by ``torch.jit.script``. Its equations are those of rnnkit's
``LSTM(..., layer_norm=True)`` (rnnkit/ops/variant.py), so the benchmark can check that both compute
the same before timing them:

    gates = LN(W_ih x_t; g_ih) + b_ih + LN(W_hh h_{t-1}; g_hh) + b_hh     (LN of a product: no shift)
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)
    h_t = sigmoid(o) tanh(LN(c_t; g_c, b_c))

(custom_lstms.py has no biases and carries LN(c_t) as the state; rnnkit keeps torch.nn's biases
and normalises c_t in the output only.)
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


class LayerNormLSTMCell(nn.Module):
    """One step: x (B, I), state (h (B, H), c (B, H)) -> h_t, (h_t, c_t)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))
        self.layernorm_i = nn.LayerNorm(4 * hidden_size, bias=False)
        self.layernorm_h = nn.LayerNorm(4 * hidden_size, bias=False)
        self.layernorm_c = nn.LayerNorm(hidden_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        hx, cx = state
        gates = self.layernorm_i(torch.mm(x, self.weight_ih.t())) + self.bias_ih
        gates = gates + self.layernorm_h(torch.mm(hx, self.weight_hh.t())) + self.bias_hh
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        cy = torch.sigmoid(forgetgate) * cx + torch.sigmoid(ingate) * torch.tanh(cellgate)
        hy = torch.sigmoid(outgate) * torch.tanh(self.layernorm_c(cy))
        return hy, (hy, cy)


class LayerNormLSTMDirection(nn.Module):
    """One direction of one layer: x (T, B, I) -> output (T, B, H), (h_n, c_n)."""

    def __init__(self, input_size: int, hidden_size: int, reverse: bool):
        super().__init__()
        self.cell = LayerNormLSTMCell(input_size, hidden_size)
        self.reverse = reverse

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        inputs = x.unbind(0)
        outputs: list[Tensor] = []
        for t in range(len(inputs)):
            step = len(inputs) - 1 - t if self.reverse else t
            out, state = self.cell(inputs[step], state)
            outputs += [out]
        if self.reverse:
            outputs = outputs[::-1]
        return torch.stack(outputs), state


class LayerNormLSTM(nn.Module):
    """``num_layers`` layers of one or two directions, torch.nn's layout: x (T, B, I) and initial
    states (h_0, c_0), each (L*D, B, H), or None for zeros -> output (T, B, D*H), (h_n, c_n) each
    (L*D, B, H); ``dropout`` between layers in training, as custom_lstms.py's StackedLSTMWithDropout."""

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0
    ):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.hidden_size = hidden_size
        self.directions = nn.ModuleList(
            LayerNormLSTMDirection(input_size if layer == 0 else directions * hidden_size, hidden_size, reverse)
            for layer in range(num_layers)
            for reverse in (False, True)[:directions]
        )
        self.per_layer = directions
        self.dropout = dropout

    def forward(self, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        zeros = x.new_zeros(len(self.directions), x.shape[1], self.hidden_size)
        h_0, c_0 = (zeros, zeros) if hx is None else hx
        h_n: list[Tensor] = []
        c_n: list[Tensor] = []
        layer_outputs: list[Tensor] = []
        for number, direction in enumerate(self.directions):
            out, (h, c) = direction(x, (h_0[number], c_0[number]))
            h_n += [h]
            c_n += [c]
            layer_outputs += [out]
            if len(layer_outputs) == self.per_layer:
                x = torch.cat(layer_outputs, dim=2)
                layer_outputs = []
                if self.dropout > 0 and self.training and number + 1 < len(self.directions):
                    x = torch.nn.functional.dropout(x, self.dropout, True)
        return x, (torch.stack(h_n), torch.stack(c_n))


# Each cell parameter's name in an rnnkit LSTM(layer_norm=True), before the direction's suffix.
RNNKIT_NAMES = {
    "weight_ih": "weight_ih",
    "weight_hh": "weight_hh",
    "bias_ih": "bias_ih",
    "bias_hh": "bias_hh",
    "layernorm_i.weight": "ln_ih_weight",
    "layernorm_h.weight": "ln_hh_weight",
    "layernorm_c.weight": "ln_c_weight",
    "layernorm_c.bias": "ln_c_bias",
}


def scripted_twin(module: nn.Module) -> tuple[torch.jit.ScriptModule, dict[str, str]]:
    """The scripted LayerNorm LSTM with the weights of ``module``, an rnnkit ``LSTM(layer_norm=True)``
    (sequence first, with biases), and each of its parameter names mapped to ``module``'s."""
    twin = LayerNormLSTM(module.input_size, module.hidden_size, module.num_layers, module.bidirectional, module.dropout)
    twin = twin.to(next(module.parameters()).dtype)
    per_layer = 2 if module.bidirectional else 1
    names = {}
    with torch.no_grad():
        for number, direction in enumerate(twin.directions):
            suffix = f"_l{number // per_layer}" + ("_reverse" if number % per_layer else "")
            for name, param in direction.cell.named_parameters():
                names[f"directions.{number}.cell.{name}"] = RNNKIT_NAMES[name] + suffix
                param.copy_(module.get_parameter(RNNKIT_NAMES[name] + suffix))
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript, which such copies still run on
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(twin), names
