"""GRU on the GPU: persistent Triton kernels for a whole layer, forward and backward through time.

Dimensions: T steps, B batch, I input features, H hidden units, D directions (both run
in one launch). ``x @ W_ih^T + b_ih`` for every step is one product before the kernel;
the kernel runs the recurrence only (``ops/persistent.py`` describes the slicing and the
barrier). With a backward to come (``save``) the forward stores r, z, n and
``W_hn h + b_hn`` of every step; the backward writes the gradients of ``x W_ih^T`` and
``h W_hh^T`` for every step, and the weights' gradients are then a few large products.
The two differ only in the n block: ``dL/d(W_hn h + b_hn) = r * dL/d(W_in x + b_in)``.
"""

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import persistent as ps
from ..fused import fused_backward, gradient_wanted, input_like
from .naive import gru as naive_gru

GATES = 3


@triton.jit
def _gru_forward_kernel(
    p_xw,  # (D, T, B, 3H) W_ih x_t + b_ih
    p_w_hh,  # (D, 3H, H)
    p_b_hh,  # (D, 3H)
    p_lengths,  # (B,)
    p_h,  # (D, T+1, B, H) states, the initial one in place (ps.stack_states); (D, 2, B, H) without SAVE
    p_gates,  # (D, T, B, 4H) float32 r, z, n, W_hn h + b_hn (SAVE only)
    p_out,  # (T, B, D*H)
    p_sync,  # (D,) int32 zeros
    T,
    B,
    H,
    HAS_BIAS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    SAVE: tl.constexpr,
    RESIDENT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_U: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_KH: tl.constexpr,
    SPLIT: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_d, n_programs, D, units, unit_ok = ps.program_slice(H, BLOCK_U)
    p_w = p_w_hh + i_d * 3 * H * H
    ks = tl.arange(0, BLOCK_K)
    gcols, gcol_ok, gate = ps.gate_columns(H, 3, BLOCK_U)
    b_w = tl.zeros([1, 1], tl.float32)  # placeholder when the weights are read every step
    if RESIDENT:  # W_hh[gate rows of my units, :]^T
        b_w = ps.weight_tile(p_w, ks, ks < H, gcols, gcol_ok, 1, H)
    b_b = tl.zeros([4 * BLOCK_U], tl.float32)
    if HAS_BIAS:
        b_b = tl.load(p_b_hh + i_d * 3 * H + gcols, gcol_ok, 0.0).to(tl.float32)
    for step in range(T):
        t = ps.time_of(step, T, i_d)
        prev, new, slots = ps.state_slots(step, t, i_d, T, SAVE)
        p_h_prev = p_h + (i_d * slots + prev) * B * H
        p_h_new = p_h + (i_d * slots + new) * B * H
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
            p_xw_t = p_xw + (i_d * T + t) * B * 3 * H
            # r and z add x W_ih^T to the product; n keeps it apart, for r multiplies only W_hn h + b_hn
            acc = ps.load_tile(p_xw_t, rows, row_ok, gcols, gcol_ok & (gate < 2), 3 * H) + b_b[None, :]
            for k0 in range(0, H, BLOCK_K):
                kk = k0 + ks
                k_ok = kk < H
                w = ps.resident_or_load(b_w, p_w, kk, k_ok, gcols, gcol_ok, 1, H, RESIDENT)
                acc = ps.mma(acc, ps.load_tile(p_h_prev, rows, row_ok, kk, k_ok, H), w, DOT_DTYPE, PRECISION)
            acc_r, acc_z, acc_n, _ = ps.split_gates(acc, BLOCK_B, BLOCK_U)
            b_r, b_z = ps.sigmoid(acc_r), ps.sigmoid(acc_z)
            b_n = ps.tanh(ps.load_tile(p_xw_t, rows, row_ok, 2 * H + units, unit_ok, 3 * H) + b_r * acc_n)
            b_h_prev = ps.load_tile(p_h_prev, rows, row_ok, units, unit_ok, H)
            tile = row_ok[:, None] & unit_ok[None, :]
            live = alive[:, None] & unit_ok[None, :]
            b_h_new = (1.0 - b_z) * b_n + b_z * b_h_prev
            if SAVE:
                p_gates_t = p_gates + ((i_d * T + t) * B + rows[:, None]) * 4 * H + units[None, :]
                tl.store(p_gates_t, b_r, tile)
                tl.store(p_gates_t + H, b_z, tile)
                tl.store(p_gates_t + 2 * H, b_n, tile)
                tl.store(p_gates_t + 3 * H, acc_n, tile)
            tl.store(p_h_new + rows[:, None] * H + units[None, :], tl.where(live, b_h_new, b_h_prev), tile)
            tl.store(
                p_out + (t * B + rows[:, None]) * D * H + i_d * H + units[None, :], tl.where(live, b_h_new, 0.0), tile
            )
        ps.grid_sync(p_sync + i_d, (step + 1) * n_programs)


@triton.jit
def _gru_backward_kernel(
    p_grad_out,  # (T, B, D*H)
    p_w_hh,  # (D, 3H, H)
    p_lengths,  # (B,)
    p_h,  # (D, T+1, B, H) states from the forward
    p_gates,  # (D, T, B, 4H) float32 from the forward
    p_dh,  # (D, B, H) float32: dL/dh_T in, dL/dh_0 out
    p_dgates,  # (D, T, B, 4H) out: dL/d(h W_hh^T + b_hh) for r, z, n, then dL/d(x W_in^T + b_in)
    p_shares,  # (D, 2, programs, B, H) float32: the programs' shares of dL/dh_{t-1} (SPLIT only)
    p_sync,  # (D,) int32 zeros
    T,
    B,
    H,
    HAS_LENGTHS: tl.constexpr,
    RESIDENT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_U: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_KH: tl.constexpr,
    SPLIT: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_d, n_programs, D, units, unit_ok = ps.program_slice(H, BLOCK_U)
    p_w = p_w_hh + i_d * 3 * H * H
    p_dh_d = p_dh + i_d * B * H
    p_shares_d = p_shares + i_d * 2 * n_programs * B * H
    ks = tl.arange(0, BLOCK_K)
    gcols, gcol_ok, _ = ps.gate_columns(H, 3, BLOCK_U)
    b_w0 = tl.zeros([1, 1], tl.float32)  # placeholders when the weights are read every step
    b_w1 = b_w0
    b_w2 = b_w0
    if RESIDENT and SPLIT:  # W_hh[gate rows of my units, :]
        b_w0 = ps.weight_tile(p_w, gcols, gcol_ok, ks, ks < H, H, 1)
    elif RESIDENT:  # W_hh[gate rows, my units] per gate
        b_w0, b_w1, b_w2, _ = ps.backward_weights(p_w, units, unit_ok, H, H, 3, BLOCK_KH)
    for step in range(T):
        t = ps.time_of(T - 1 - step, T, i_d)
        prev, _new, slots = ps.state_slots(step, t, i_d, T, True)
        p_h_prev = p_h + (i_d * slots + prev) * B * H
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
            tile = row_ok[:, None] & unit_ok[None, :]
            live = alive[:, None] & unit_ok[None, :]
            b_dh = ps.load_tile(p_dh_d, rows, row_ok, units, unit_ok, H)
            b_dh += ps.load_tile(p_grad_out + t * B * D * H + i_d * H, rows, alive, units, unit_ok, D * H)
            p_gates_t = p_gates + ((i_d * T + t) * B + rows[:, None]) * 4 * H + units[None, :]
            b_r = tl.load(p_gates_t, tile, 0.0)
            b_z = tl.load(p_gates_t + H, tile, 0.0)
            b_n = tl.load(p_gates_t + 2 * H, tile, 0.0)
            b_hn = tl.load(p_gates_t + 3 * H, tile, 0.0)
            b_h_prev = ps.load_tile(p_h_prev, rows, row_ok, units, unit_ok, H)
            d_n = tl.where(live, b_dh * (1.0 - b_z) * (1.0 - b_n * b_n), 0.0)
            d_z = tl.where(live, b_dh * (b_h_prev - b_n) * b_z * (1.0 - b_z), 0.0)
            d_r = d_n * b_hn * b_r * (1.0 - b_r)
            p_dg_t = p_dgates + ((i_d * T + t) * B + rows[:, None]) * 4 * H + units[None, :]
            tl.store(p_dg_t, d_r, tile)
            tl.store(p_dg_t + H, d_z, tile)
            tl.store(p_dg_t + 2 * H, d_n * b_r, tile)
            tl.store(p_dg_t + 3 * H, d_n, tile)
            tl.store(p_dh_d + rows[:, None] * H + units[None, :], tl.where(live, b_dh * b_z, b_dh), tile)
            if SPLIT:
                b_dg = ps.join_gates(d_r, d_z, d_n * b_r, tl.zeros_like(d_r), BLOCK_B, BLOCK_U)
                ps.share_product(
                    p_shares_d, step, b_dg, b_w0, p_w, gcols, gcol_ok, rows, row_ok, B, H, RESIDENT, BLOCK_K,
                    DOT_DTYPE, PRECISION,
                )  # fmt: skip
        ps.grid_sync(p_sync + i_d, (step + 1) * n_programs)
        ps.previous_dh(
            p_dh_d, p_shares_d, step, p_dgates + (i_d * T + t) * B * 4 * H, p_w, b_w0, b_w1, b_w2, b_w2,
            units, unit_ok, B, H, H, 4 * H, 3, SPLIT, RESIDENT, BLOCK_B, BLOCK_KH, DOT_DTYPE, PRECISION,
        )  # fmt: skip


def _forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, save):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = ps.contiguous(x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    steps, batch, _ = x.shape
    directions, _, hidden = w_hh.shape
    plan = ps.plan(hidden, None, GATES, batch, directions, x.dtype, x.device)
    xw = ps.input_projection(x, w_ih, b_ih)
    h = ps.stack_states(h0, steps, x.dtype, save)
    gates = x.new_empty(*ps.saved_shape(directions, steps, batch, 4 * hidden, save), dtype=torch.float32)
    output = x.new_empty(steps, batch, directions * hidden)
    ps.launch(
        _gru_forward_kernel,
        plan,
        x.dtype,
        directions,
        xw,
        w_hh,
        xw if b_hh is None else b_hh,
        xw if lengths is None else lengths,
        h,
        gates,
        output,
        ps.sync_counters(directions, x.device),
        steps,
        batch,
        hidden,
        HAS_BIAS=b_hh is not None,
        HAS_LENGTHS=lengths is not None,
        SAVE=save,
    )
    return output, ps.final_states(h, steps, save), gates, h


def _backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, gates, h, input_grad):
    grad_output, x, w_ih, w_hh, lengths = ps.contiguous(grad_output, x, w_ih, w_hh, lengths)
    steps, batch, _ = x.shape
    directions, _, hidden = w_hh.shape
    plan = ps.plan(hidden, None, GATES, batch, directions, x.dtype, x.device, backward=True)
    dh = ps.float_copy(grad_h_n)  # the kernel turns it into the gradient of h0
    dgates = x.new_empty(directions, steps, batch, 4 * hidden)
    ps.launch(
        _gru_backward_kernel,
        plan,
        x.dtype,
        directions,
        grad_output,
        w_hh,
        dgates if lengths is None else lengths,
        h,
        gates,
        dh,
        dgates,
        ps.share_buffer(plan, directions, batch, hidden, x.device),
        ps.sync_counters(directions, x.device),
        steps,
        batch,
        hidden,
        HAS_LENGTHS=lengths is not None,
    )
    d_hw = dgates[..., : 3 * hidden]
    d_xw = torch.cat([dgates[..., : 2 * hidden], dgates[..., 3 * hidden :]], dim=-1)
    dx, dw_ih, dw_hh, db_ih, db_hh = ps.layer_gradients(x, w_ih, h, d_xw, d_hw, input_grad)
    return dx, dh.to(x.dtype), dw_ih, dw_hh, db_ih, db_hh


@torch.library.custom_op("rnnkit::gru_triton", mutates_args=())
def gru_triton(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    lengths: Optional[Tensor],
    save: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One GRU layer, all directions: x (T, B, I), h0 (D, B, H), weights stacked (D, ...).

    Returns output (T, B, D*H), h_n (D, B, H) and what the backward reads:
    r, z, n, W_hn h + b_hn (D, T, B, 4H) and the hidden states (D, T+1, B, H). Without
    ``save`` (no backward to come) the gates are empty and the states buffer holds two steps.
    """
    return _forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, save)


@gru_triton.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, save=True):
    steps, batch, _ = x.shape
    directions, _, hidden = w_hh.shape
    return (
        x.new_empty(steps, batch, directions * hidden),
        h0.new_empty(directions, batch, hidden),
        x.new_empty(*ps.saved_shape(directions, steps, batch, 4 * hidden, save), dtype=torch.float32),
        x.new_empty(ps.states_shape(directions, steps, batch, hidden, save)),
    )


@torch.library.custom_op("rnnkit::gru_triton_backward", mutates_args=())
def gru_triton_backward(
    grad_output: Tensor,
    grad_h_n: Tensor,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    lengths: Optional[Tensor],
    gates: Tensor,
    h: Tensor,
    input_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``gru_triton``: x (empty without ``input_grad``), h0, w_ih, w_hh, b_ih, b_hh."""
    return _backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, gates, h, input_grad)


@gru_triton_backward.register_fake
def _(grad_output, grad_h_n, x, w_ih, w_hh, lengths, gates, h, input_grad):
    return (
        input_like(x, input_grad),
        grad_h_n.new_empty(grad_h_n.shape),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(w_hh.shape[:2]),
        w_hh.new_empty(w_hh.shape[:2]),
    )


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # no zero tensors for the unused outputs the backward ignores
    *tensors, ctx.saved = inputs
    ctx.save_for_backward(*tensors, *output[2:])


def _autograd_backward(ctx, grad_output, grad_h_n, *_):
    ps.require_saved(ctx.saved, "rnnkit::gru_triton")
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, gates, h = ctx.saved_tensors
    wanted = ctx.needs_input_grad[0]  # x's gradient

    def recurrence(x, h0, *weights):
        return ps.naive_layer(naive_gru, x, (h0,), weights, lengths)

    def kernel(grad_output, grad_h_n):
        g_x, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh = gru_triton_backward(
            grad_output, grad_h_n, x, w_ih, w_hh, lengths, gates, h, wanted
        )
        g_b_ih, g_b_hh = None if b_ih is None else g_b_ih, None if b_hh is None else g_b_hh
        return g_x if wanted else None, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh

    inputs = (x, h0, w_ih, w_hh, b_ih, b_hh)
    likes = (ps.output_like(x, h), h0)
    return (*fused_backward(recurrence, inputs, (grad_output, grad_h_n), likes, kernel), None, None)


gru_triton.register_autograd(_autograd_backward, setup_context=_setup_context)


def gru_layer(
    x: Tensor,
    state: tuple[Tensor],
    weights: list[tuple[Optional[Tensor], ...]],
    lengths: Optional[Tensor] = None,
) -> tuple[Tensor, tuple[Tensor]]:
    """One GRU layer, both directions in one launch; the layer op of ``ops.rnn_stack``.

    Args:
        x: (T, B, I) on CUDA, float32, bfloat16 or float16; state: (h_0 (D, B, H),).
        weights: D tuples (w_ih (3H, I), w_hh (3H, H), b_ih (3H,) | None, b_hh (3H,) | None).
        lengths: (B,) steps of each sequence, or None for all T.

    Returns:
        output (T, B, D*H), zero past each length; (h_n (D, B, H),).
    """
    lengths = None if lengths is None else lengths.to(x.device)
    stacked = ps.stack_weights(weights)
    output, h_n, *_ = gru_triton(x, state[0], *stacked, lengths, gradient_wanted(x, state[0], *stacked))
    return output, (h_n,)
