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
    ln: str
    gamma: str
    beta: str
    becomes: str

    def sym(self, base: str, sub: str) -> str:
        braces = len(sub) > 1 if self.latex else "-" in sub
        return f"{base}_{{{sub}}}" if braces else f"{base}_{sub}"

    def act(self, activation: str) -> str:
        return {"sigmoid": self.sigmoid, "tanh": self.tanh, "relu": self.relu}[activation]


_TEXT = _Notation(False, "σ", "tanh", "ReLU", "⊙", "LN", "γ", "β", "←")
_LATEX = _Notation(
    True, r"\sigma", r"\tanh", r"\mathrm{ReLU}", r"\odot", r"\mathrm{LN}", r"\gamma", r"\beta", r"\leftarrow"
)


def _recurrent_input(n: _Notation, spec: NetSpec) -> str:
    """h_{t-1}, or (m ⊙ h_{t-1}) with recurrent dropout's mask m."""
    h = n.sym("h", "t-1")
    return f"(m {n.odot} {h})" if spec.variant.recurrent_dropout else h


def _affine(n: _Notation, spec: NetSpec, gate: str, inner: bool = False) -> str:
    """W_i* x_t + b_i* + W_h* h_{t-1} + b_h* (with layer norm a_* + b_i* + u_* + b_h*); with ``inner``
    the recurrent half in r_t ⊙ (...) (GRU's n)."""
    rnn = spec.mode.startswith("RNN")
    sub = "h" if rnn else gate
    places = spec.variant.layer_norm_at(spec.mode)  # with layer norm, the gate's rows of a_t and u_t
    x_term = ("a_t" if rnn else n.sym("a", sub)) if "ih" in places else f"{n.sym('W', 'i' + sub)} x_t"
    h_term = f"{n.sym('W', 'h' + sub)} {_recurrent_input(n, spec)}"
    h_term = ("u_t" if rnn else n.sym("u", sub)) if "hh" in places else h_term
    x_part = [x_term] + ([n.sym("b", "i" + sub)] if spec.bias else [])
    h_part = [h_term] + ([n.sym("b", "h" + sub)] if spec.bias else [])
    if inner:
        return " + ".join(x_part) + f" + r_t {n.odot} (" + " + ".join(h_part) + ")"
    return " + ".join(x_part + h_part)


def _lines(n: _Notation, spec: NetSpec) -> list[tuple[str, str, str]]:
    """(left-hand side, "=" or "←", right-hand side) of each equation, in the order they are computed."""
    v = spec.variant
    places = v.layer_norm_at(spec.mode)
    lines = []
    if "ih" in places:
        lines.append(("a_t", f"{n.ln}({n.sym('W', 'ih')} x_t; {n.sym(n.gamma, 'ih')})"))
    if "hh" in places:
        lines.append(("u_t", f"{n.ln}({n.sym('W', 'hh')} {_recurrent_input(n, spec)}; {n.sym(n.gamma, 'hh')})"))
    prev_h, prev_c = n.sym("h", "t-1"), n.sym("c", "t-1")
    for gate in spec.gates if not spec.mode.startswith("RNN") else ():
        inner = spec.mode == "GRU" and gate.name == "n"
        affine = _affine(n, spec, gate.name, inner)
        if v.peephole and gate.name in "if":
            affine += f" + {n.sym('w', 'c' + gate.name)} {n.odot} {prev_c}"
        if v.peephole and gate.name == "o":  # o sees c_t: it follows c_t's line
            lines.append(("c_t", f"f_t {n.odot} {prev_c} + i_t {n.odot} g_t"))
            affine += f" + {n.sym('w', 'co')} {n.odot} c_t"
        lines.append((f"{gate.name}_t", f"{n.act(gate.activation)}({affine})"))
    if spec.mode == "LSTM":
        if not v.peephole:
            lines.append(("c_t", f"f_t {n.odot} {prev_c} + i_t {n.odot} g_t"))
        cell = f"{n.ln}(c_t; {n.sym(n.gamma, 'c')}, {n.sym(n.beta, 'c')})" if "c" in places else "c_t"
        gated = f"o_t {n.odot} {n.tanh}({cell})"
        lines.append(("h_t", f"{n.sym('W', 'hr')}({gated})" if spec.proj_size else gated))
    elif spec.mode == "GRU":
        lines.append(("h_t", f"(1 - z_t) {n.odot} n_t + z_t {n.odot} {prev_h}"))
    else:
        lines.append(("h_t", f"{n.act(spec.gates[0].activation)}({_affine(n, spec, 'h')})"))
    lines = [(lhs, "=", rhs) for lhs, rhs in lines]
    for state in _zoned_states(spec):
        keep = n.sym("k", state)
        zoned = f"{keep} {n.odot} {n.sym(state, 't-1')} + (1 - {keep}) {n.odot} {state}_t"
        lines.append((f"{state}_t", n.becomes, zoned))
    return lines


def equations(spec: NetSpec) -> list[Equation]:
    """The equations of one step of ``spec``'s cell, as text and LaTeX (zoneout's lines assign with ←)."""
    return [
        Equation(lhs, f"{lhs} {op} {text}", f"{latex_lhs} {latex_op} {latex}")
        for (lhs, op, text), (latex_lhs, latex_op, latex) in zip(_lines(_TEXT, spec), _lines(_LATEX, spec))
    ]


def latex_block(eqs: list[Equation]) -> str:
    r"""The equations as one ``\begin{aligned}`` block, aligned on "="."""
    rows = [eq.latex.replace(" = ", " &= ", 1).replace(r" \leftarrow ", r" &\leftarrow ", 1) for eq in eqs]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def notes(spec: NetSpec) -> list[str]:
    """What the equations leave implicit for this configuration: symbols, layers, directions, projection."""
    symbols = "W_* and b_* are the rows of the parameters listed under Parameters"
    out = [symbols if spec.mode.startswith("RNN") else f"σ: sigmoid, ⊙: elementwise product; {symbols}"]
    folder = "lstm" if spec.mode == "LSTM" else "gru" if spec.mode == "GRU" else "rnn"
    if spec.variant == type(spec.variant)():
        out.append(f'the same equations as rnnkit/ops/{folder}/naive.py, which backend="naive" runs')
    else:
        out.append('the same equations as rnnkit/ops/variant.py, which backend="naive" (and "auto") runs')
    if spec.mode == "GRU":
        out.append("b_hn sits inside r_t ⊙ (...), as torch.nn and cuDNN compute it (not the paper's r_t ⊙ h_{t-1})")
    out += _variant_notes(spec)
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


def _zoned_states(spec: NetSpec) -> list[str]:
    """The states zoneout acts on: "c" (LSTM) and "h", each where its probability is not 0."""
    z_c, z_h = spec.variant.zoneout
    return (["c"] if z_c and spec.mode == "LSTM" else []) + (["h"] if z_h else [])


def _variant_notes(spec: NetSpec) -> list[str]:
    """What the variant's symbols mean (``rnnkit/ops/variant.py`` runs these equations)."""
    v = spec.variant
    out = []
    products = [name for name, place in (("a_t", "ih"), ("u_t", "hh")) if place in v.layer_norm_at(spec.mode)]
    if v.layer_norm:
        gated = not spec.mode.startswith("RNN")
        rows = f"each row of {', '.join(products)} (B, {'G*H' if gated else 'H'}), β = 0: the biases shift them"
        cell = "c_t (B, H), with γ_c and β_c"
        where = "; ".join(([rows] if products else []) + ([cell] if "c" in v.layer_norm_at(spec.mode) else []))
        out.append(
            f"layer_norm: LN(v; γ, β) = γ ⊙ (v - mean v) / sqrt(var v + 1e-5) + β over {where}"
            + (
                f"; {', '.join(p[0] + '_*' for p in products)}: a gate's H rows of {', '.join(products)}"
                if gated and products
                else ""
            )
        )
    if v.peephole:
        out.append("peephole: w_ci, w_cf, w_co are the rows of weight_ch; i_t and f_t see c_{t-1}, o_t sees c_t")
    if v.recurrent_dropout:
        p = v.recurrent_dropout
        out.append(
            f"recurrent_dropout={p}: m (B, P) ~ Bernoulli({1 - p:g}) / {1 - p:g}, one mask per sequence for every "
            "step and gate in training; m = 1 in evaluation"
        )
    for state in _zoned_states(spec):
        z = v.zoneout[0 if state == "c" else 1]
        out.append(
            f"zoneout: k_{state} ~ Bernoulli({z:g}), a fresh mask each step in training, so each unit keeps "
            f"{state}_{{t-1}} with probability {z:g}; k_{state} = {z:g} in evaluation (the expectation)"
        )
    if v.weight_dropout:
        p = v.weight_dropout
        out.append(
            f"weight_dropout={p}: in training W_hh is weight_hh ⊙ M / {1 - p:g}, M ~ Bernoulli({1 - p:g}) drawn "
            "each call; weight_hh itself in evaluation"
        )
    return out
