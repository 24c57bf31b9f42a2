"""The equations of a cell as rnnkit and torch.nn compute them, as Unicode text and LaTeX.

The notation is the modules' docstrings' and ``ops/<cell>/naive.py``'s: gate blocks
W_ii, W_hi, b_ii, b_hi ... (rows of weight_ih, weight_hh, bias_ih, bias_hh), σ the
sigmoid, ⊙ the elementwise product. Both renderings come from one description, so
they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import NetSpec


@dataclass
class Equation:
    name: str  # the left-hand side: "i_t", "c_t", "h_t" ...
    text: str  # Unicode: "i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)"
    latex: str  # r"i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi})"


@dataclass(frozen=True)
class _Notation:
    latex: bool
    sigmoid: str
    tanh: str
    relu: str
    odot: str

    def sym(self, base: str, sub: str) -> str:
        braces = len(sub) > 1 if self.latex else "-" in sub
        return f"{base}_{{{sub}}}" if braces else f"{base}_{sub}"

    def act(self, activation: str) -> str:
        return {"sigmoid": self.sigmoid, "tanh": self.tanh, "relu": self.relu}[activation]


_TEXT = _Notation(False, "σ", "tanh", "ReLU", "⊙")
_LATEX = _Notation(True, r"\sigma", r"\tanh", r"\mathrm{ReLU}", r"\odot")


def _affine(n: _Notation, spec: NetSpec, gate: str, inner: bool = False) -> str:
    """W_i* x_t + b_i* + W_h* h_{t-1} + b_h*; with ``inner`` the recurrent half in r_t ⊙ (...) (GRU's n)."""
    sub = "h" if spec.mode.startswith("RNN") else gate
    x_part = [f"{n.sym('W', 'i' + sub)} x_t"] + ([n.sym("b", "i" + sub)] if spec.bias else [])
    h_part = [f"{n.sym('W', 'h' + sub)} {n.sym('h', 't-1')}"] + ([n.sym("b", "h" + sub)] if spec.bias else [])
    if inner:
        return " + ".join(x_part) + f" + r_t {n.odot} (" + " + ".join(h_part) + ")"
    return " + ".join(x_part + h_part)


def _lines(n: _Notation, spec: NetSpec) -> list[tuple[str, str]]:
    """(left-hand side, right-hand side) of each equation, in the order they are computed."""
    lines = []
    for gate in spec.gates if not spec.mode.startswith("RNN") else ():
        inner = spec.mode == "GRU" and gate.name == "n"
        lines.append((f"{gate.name}_t", f"{n.act(gate.activation)}({_affine(n, spec, gate.name, inner)})"))
    prev_h, prev_c = n.sym("h", "t-1"), n.sym("c", "t-1")
    if spec.mode == "LSTM":
        lines.append(("c_t", f"f_t {n.odot} {prev_c} + i_t {n.odot} g_t"))
        gated = f"o_t {n.odot} {n.tanh}(c_t)"
        lines.append(("h_t", f"{n.sym('W', 'hr')}({gated})" if spec.proj_size else gated))
    elif spec.mode == "GRU":
        lines.append(("h_t", f"(1 - z_t) {n.odot} n_t + z_t {n.odot} {prev_h}"))
    else:
        lines.append(("h_t", f"{n.act(spec.gates[0].activation)}({_affine(n, spec, 'h')})"))
    return lines


def equations(spec: NetSpec) -> list[Equation]:
    """The equations of one step of ``spec``'s cell, as text and LaTeX."""
    return [
        Equation(lhs, f"{lhs} = {text}", f"{latex_lhs} = {latex}")
        for (lhs, text), (latex_lhs, latex) in zip(_lines(_TEXT, spec), _lines(_LATEX, spec))
    ]


def latex_block(eqs: list[Equation]) -> str:
    r"""The equations as one ``\begin{aligned}`` block, aligned on "="."""
    rows = [eq.latex.replace(" = ", " &= ", 1) for eq in eqs]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def notes(spec: NetSpec) -> list[str]:
    """What the equations leave implicit for this configuration: symbols, layers, directions, projection."""
    symbols = "W_* and b_* are the rows of the parameters listed under Parameters"
    out = [symbols if spec.mode.startswith("RNN") else f"σ: sigmoid, ⊙: elementwise product; {symbols}"]
    folder = "lstm" if spec.mode == "LSTM" else "gru" if spec.mode == "GRU" else "rnn"
    out.append(f'the same equations as rnnkit/ops/{folder}/naive.py, which backend="naive" runs')
    if spec.mode == "GRU":
        out.append("b_hn sits inside r_t ⊙ (...), as torch.nn and cuDNN compute it (not the paper's r_t ⊙ h_{t-1})")
    if spec.is_cell:
        state = "(h_{t-1}, c_{t-1})" if spec.mode == "LSTM" else "h_{t-1}"
        result = "(h_t, c_t)" if spec.mode == "LSTM" else "h_t"
        out.append(f"one call is one step: input is x_t, hx is {state}, the result is {result}")
        return out
    if spec.proj_size:
        out.append(
            f"proj_size={spec.proj_size}: W_hr (P, H) = ({spec.proj_size}, {spec.hidden_size}) projects "
            "o_t ⊙ tanh(c_t), so h_t and h_{t-1} have P features while c_t keeps H"
        )
    if spec.num_layers > 1:
        both = "both directions concatenated, " if spec.bidirectional else ""
        out.append(
            f"x_t is the input at step t for layer 0; layer l > 0 reads layer l-1's h_t "
            f"({both}D*P = {spec.layer_input(1)} features)"
        )
        if spec.dropout > 0:
            out.append(f"in training mode dropout (p={spec.dropout}) zeroes elements of h_t between layers")
    if spec.bidirectional:
        out.append(
            "the reverse direction (parameters *_reverse) runs the same equations from t = T-1 down to 0, "
            "with h_{t+1} in place of h_{t-1}"
        )
    return out
