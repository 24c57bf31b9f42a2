"""LSTM on the GPU: persistent Triton kernels for a whole layer, forward and backward through time.

Dimensions: T steps, B batch, I input features, H hidden units, P = proj_size or H,
D directions (both run in one launch). ``x @ W_ih^T + b_ih`` for every step is one
product before the kernel; the kernel runs the recurrence only (``ops/persistent.py``
describes the slicing and the barrier). With a backward to come (``save``) the forward
stores the gates after their nonlinearities and every cell state; the backward reads them
instead of recomputing, writes the gates' gradients for every step, and the weights'
gradients are then a few large products. With ``proj_size`` each step has a second phase,
``h_t = W_hr r_t`` with ``r_t = o_t * tanh(c_t)``, and a second barrier.
"""

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import persistent as ps
from ..fused import bias_gradients, fused_backward, gradient_wanted, input_like
from ..scan import summed_bias
from .naive import lstm as naive_lstm

GATES = 4


@triton.jit
def _lstm_forward_kernel(
    p_xw,  # (D, T, B, 4H) W_ih x_t
    p_w_hh,  # (D, 4H, P)
    p_bias,  # (D, 4H) float32 b_ih + b_hh (ops.scan.summed_bias)
    p_w_hr,  # (D, P, H)
    p_lengths,  # (B,)
    p_h,  # (D, T+1, B, P) states, the initial one in place (ps.stack_states); (D, 2, B, P) without SAVE
    p_c,  # (D, T+1, B, H) float32 cell states, likewise
    p_gates,  # (D, T, B, 4H) float32 i, f, g, o after their nonlinearities (SAVE only)
    p_r,  # (D, T, B, H) o * tanh(c), zero past each length (projection only); (D, 1, B, H) without SAVE
    p_out,  # (T, B, D*P)
    p_sync,  # (D,) int32 zeros
    T,
    B,
    H,
    P,
    HAS_BIAS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    PROJ: tl.constexpr,
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
    pcols = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pcol_ok = pcols < P
    p_w = p_w_hh + i_d * 4 * H * P
    p_wr = p_w_hr + i_d * P * H
    p_sync_d = p_sync + i_d
    ks = tl.arange(0, BLOCK_K)
    khs = tl.arange(0, BLOCK_KH)
    gcols, gcol_ok, _ = ps.gate_columns(H, 4, BLOCK_U)
    b_w = tl.zeros([1, 1], tl.float32)  # placeholders when the weights are read every step
    b_wr = b_w
    if RESIDENT:  # W_hh[gate rows of my units, :]^T, and W_hr[my columns, :]^T
        b_w = ps.weight_tile(p_w, ks, ks < P, gcols, gcol_ok, 1, P)
        if PROJ:
            b_wr = ps.weight_tile(p_wr, khs, khs < H, pcols, pcol_ok, 1, H)
    b_b = tl.zeros([4 * BLOCK_U], tl.float32)
    if HAS_BIAS:
        b_b = tl.load(p_bias + i_d * 4 * H + gcols, gcol_ok, 0.0)
    syncs = 1 + PROJ  # grid barriers per step
    for step in range(T):
        t = ps.time_of(step, T, i_d)
        prev, new, slots = ps.state_slots(step, t, i_d, T, SAVE)
        # without a backward one step of r suffices: all have read it before the next is written
        p_r_t = p_r + ((i_d * T + t) if SAVE else i_d) * B * H
        p_h_prev = p_h + (i_d * slots + prev) * B * P
        p_h_new = p_h + (i_d * slots + new) * B * P
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
            acc = ps.load_tile(p_xw + (i_d * T + t) * B * 4 * H, rows, row_ok, gcols, gcol_ok, 4 * H) + b_b[None, :]
            for k0 in range(0, P, BLOCK_K):
                kk = k0 + ks
                k_ok = kk < P
                w = ps.resident_or_load(b_w, p_w, kk, k_ok, gcols, gcol_ok, 1, P, RESIDENT)
                acc = ps.mma(acc, ps.load_tile(p_h_prev, rows, row_ok, kk, k_ok, P), w, DOT_DTYPE, PRECISION)
            acc_i, acc_f, acc_g, acc_o = ps.split_gates(acc, BLOCK_B, BLOCK_U)
            b_i, b_f, b_g, b_o = ps.sigmoid(acc_i), ps.sigmoid(acc_f), ps.tanh(acc_g), ps.sigmoid(acc_o)
            tile = row_ok[:, None] & unit_ok[None, :]
            live = alive[:, None] & unit_ok[None, :]
            if SAVE:
                p_gates_t = p_gates + ((i_d * T + t) * B + rows[:, None]) * 4 * H + units[None, :]
                tl.store(p_gates_t, b_i, tile)
                tl.store(p_gates_t + H, b_f, tile)
                tl.store(p_gates_t + 2 * H, b_g, tile)
                tl.store(p_gates_t + 3 * H, b_o, tile)
            b_c_prev = ps.load_tile(p_c + (i_d * slots + prev) * B * H, rows, row_ok, units, unit_ok, H)
            b_c = tl.where(live, b_f * b_c_prev + b_i * b_g, b_c_prev)
            tl.store(p_c + ((i_d * slots + new) * B + rows[:, None]) * H + units[None, :], b_c, tile)
            b_r = tl.where(live, b_o * ps.tanh(b_c), 0.0)
            if PROJ:
                tl.store(p_r_t + rows[:, None] * H + units[None, :], b_r, tile)
            else:
                b_h_prev = ps.load_tile(p_h_prev, rows, row_ok, units, unit_ok, P)
                tl.store(p_h_new + rows[:, None] * P + units[None, :], tl.where(live, b_r, b_h_prev), tile)
                tl.store(p_out + (t * B + rows[:, None]) * D * P + i_d * P + units[None, :], b_r, tile)
        if PROJ:
            ps.grid_sync(p_sync_d, (step * syncs + 1) * n_programs)
            for b0 in range(0, B, BLOCK_B):
                rows = b0 + tl.arange(0, BLOCK_B)
                row_ok = rows < B
                alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
                acc = tl.zeros([BLOCK_B, BLOCK_P], tl.float32)
                for k0 in range(0, H, BLOCK_KH):
                    kk = k0 + khs
                    k_ok = kk < H
                    w_r = ps.resident_or_load(b_wr, p_wr, kk, k_ok, pcols, pcol_ok, 1, H, RESIDENT)
                    acc = ps.mma(acc, ps.load_tile(p_r_t, rows, row_ok, kk, k_ok, H), w_r, DOT_DTYPE, PRECISION)
                tile = row_ok[:, None] & pcol_ok[None, :]
                b_h_prev = ps.load_tile(p_h_prev, rows, row_ok, pcols, pcol_ok, P)
                tl.store(p_h_new + rows[:, None] * P + pcols[None, :], tl.where(alive[:, None], acc, b_h_prev), tile)
                tl.store(p_out + (t * B + rows[:, None]) * D * P + i_d * P + pcols[None, :], acc, tile)
        ps.grid_sync(p_sync_d, (step + 1) * syncs * n_programs)


@triton.jit
def _lstm_backward_kernel(
    p_grad_out,  # (T, B, D*P)
    p_w_hh,  # (D, 4H, P)
    p_w_hr,  # (D, P, H)
    p_lengths,  # (B,)
    p_gates,  # (D, T, B, 4H) float32 from the forward
    p_c,  # (D, T+1, B, H) float32 from the forward
    p_dh,  # (D, B, P) float32: dL/dh_T in, dL/dh_0 out
    p_dc,  # (D, B, H) float32: dL/dc_T in, dL/dc_0 out
    p_dgates,  # (D, T, B, 4H) out: gradients of the gates before their nonlinearities
    p_dh_step,  # (D, T, B, P) out: each step's whole dL/dh_t (projection only)
    p_shares,  # (D, 2, programs, B, P) float32: the programs' shares of dL/dh_{t-1} (SPLIT only)
    p_sync,  # (D,) int32 zeros
    T,
    B,
    H,
    P,
    HAS_LENGTHS: tl.constexpr,
    PROJ: tl.constexpr,
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
    pcols = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    pcol_ok = pcols < P
    p_w = p_w_hh + i_d * 4 * H * P
    p_wr = p_w_hr + i_d * P * H
    p_dh_d = p_dh + i_d * B * P
    p_dc_d = p_dc + i_d * B * H
    p_sync_d = p_sync + i_d
    p_shares_d = p_shares + i_d * 2 * n_programs * B * P
    ks = tl.arange(0, BLOCK_K)
    gcols, gcol_ok, _ = ps.gate_columns(H, 4, BLOCK_U)
    b_w0 = tl.zeros([1, 1], tl.float32)  # placeholders when the weights are read every step
    b_w1 = b_w0
    b_w2 = b_w0
    b_w3 = b_w0
    b_wr = b_w0
    if RESIDENT and SPLIT:  # W_hh[gate rows of my units, :]
        b_w0 = ps.weight_tile(p_w, gcols, gcol_ok, ks, ks < P, P, 1)
    elif RESIDENT:  # W_hh[gate rows, my columns] per gate, and W_hr[:, my units]
        b_w0, b_w1, b_w2, b_w3 = ps.backward_weights(p_w, pcols, pcol_ok, H, P, 4, BLOCK_KH)
        if PROJ:
            b_wr = ps.weight_tile(p_wr, ks, ks < P, units, unit_ok, H, 1)
    syncs = 1 + PROJ  # grid barriers per step
    for step in range(T):
        t = ps.time_of(T - 1 - step, T, i_d)
        prev, new, slots = ps.state_slots(step, t, i_d, T, True)
        if PROJ:
            # dL/dh_t of this program's projected columns, kept whole for the products below
            for b0 in range(0, B, BLOCK_B):
                rows = b0 + tl.arange(0, BLOCK_B)
                row_ok = rows < B
                alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
                tile = row_ok[:, None] & pcol_ok[None, :]
                b_dh = ps.load_tile(p_dh_d, rows, row_ok, pcols, pcol_ok, P)
                b_dh += ps.load_tile(p_grad_out + t * B * D * P + i_d * P, rows, alive, pcols, pcol_ok, D * P)
                tl.store(p_dh_step + ((i_d * T + t) * B + rows[:, None]) * P + pcols[None, :], b_dh, tile)
                tl.store(p_dh_d + rows[:, None] * P + pcols[None, :], tl.where(alive[:, None], 0.0, b_dh), tile)
            ps.grid_sync(p_sync_d, (step * syncs + 1) * n_programs)
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
            tile = row_ok[:, None] & unit_ok[None, :]
            live = alive[:, None] & unit_ok[None, :]
            if PROJ:  # dL/dr_t = dL/dh_t W_hr
                b_dr = tl.zeros([BLOCK_B, BLOCK_U], tl.float32)
                p_dh_t = p_dh_step + (i_d * T + t) * B * P
                for k0 in range(0, P, BLOCK_K):
                    kk = k0 + ks
                    k_ok = kk < P
                    w_r = ps.resident_or_load(b_wr, p_wr, kk, k_ok, units, unit_ok, H, 1, RESIDENT)
                    b_dr = ps.mma(b_dr, ps.load_tile(p_dh_t, rows, row_ok, kk, k_ok, P), w_r, DOT_DTYPE, PRECISION)
            else:
                b_dr = ps.load_tile(p_dh_d, rows, row_ok, units, unit_ok, P)
                b_dr += ps.load_tile(p_grad_out + t * B * D * P + i_d * P, rows, alive, units, unit_ok, D * P)
                tl.store(p_dh_d + rows[:, None] * P + units[None, :], tl.where(live, 0.0, b_dr), tile)
            p_gates_t = p_gates + ((i_d * T + t) * B + rows[:, None]) * 4 * H + units[None, :]
            b_i = tl.load(p_gates_t, tile, 0.0)
            b_f = tl.load(p_gates_t + H, tile, 0.0)
            b_g = tl.load(p_gates_t + 2 * H, tile, 0.0)
            b_o = tl.load(p_gates_t + 3 * H, tile, 0.0)
            b_c = ps.load_tile(p_c + (i_d * slots + new) * B * H, rows, row_ok, units, unit_ok, H)
            b_c_prev = ps.load_tile(p_c + (i_d * slots + prev) * B * H, rows, row_ok, units, unit_ok, H)
            b_dc = ps.load_tile(p_dc_d, rows, row_ok, units, unit_ok, H)
            b_tc = ps.tanh(b_c)
            b_dc_all = b_dc + b_dr * b_o * (1.0 - b_tc * b_tc)
            d_i = tl.where(live, b_dc_all * b_g * b_i * (1.0 - b_i), 0.0)
            d_f = tl.where(live, b_dc_all * b_c_prev * b_f * (1.0 - b_f), 0.0)
            d_g = tl.where(live, b_dc_all * b_i * (1.0 - b_g * b_g), 0.0)
            d_o = tl.where(live, b_dr * b_tc * b_o * (1.0 - b_o), 0.0)
            p_dg_t = p_dgates + ((i_d * T + t) * B + rows[:, None]) * 4 * H + units[None, :]
            tl.store(p_dg_t, d_i, tile)
            tl.store(p_dg_t + H, d_f, tile)
            tl.store(p_dg_t + 2 * H, d_g, tile)
            tl.store(p_dg_t + 3 * H, d_o, tile)
            tl.store(p_dc_d + rows[:, None] * H + units[None, :], tl.where(live, b_dc_all * b_f, b_dc), tile)
            if SPLIT:
                b_dg = ps.join_gates(d_i, d_f, d_g, d_o, BLOCK_B, BLOCK_U)
                ps.share_product(
                    p_shares_d, step, b_dg, b_w0, p_w, gcols, gcol_ok, rows, row_ok, B, P, RESIDENT, BLOCK_K,
                    DOT_DTYPE, PRECISION,
                )  # fmt: skip
        ps.grid_sync(p_sync_d, (step + 1) * syncs * n_programs)
        ps.previous_dh(
            p_dh_d, p_shares_d, step, p_dgates + (i_d * T + t) * B * 4 * H, p_w, b_w0, b_w1, b_w2, b_w3,
            pcols, pcol_ok, B, H, P, 4 * H, 4, SPLIT, RESIDENT, BLOCK_B, BLOCK_KH, DOT_DTYPE, PRECISION,
        )  # fmt: skip


def _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, save):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths = ps.contiguous(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths)
    steps, batch, _ = x.shape
    directions, gate_rows, proj = w_hh.shape
    hidden = gate_rows // GATES
    plan = ps.plan(hidden, None if w_hr is None else proj, GATES, batch, directions, x.dtype, x.device)
    xw = ps.input_projection(x, w_ih, None)
    bias = summed_bias(b_ih, b_hh, torch.float32)
    h = ps.stack_states(h0, steps, x.dtype, save)
    c = ps.stack_states(c0, steps, torch.float32, save)
    gates = x.new_empty(*ps.saved_shape(directions, steps, batch, gate_rows, save), dtype=torch.float32)
    r = x.new_empty(directions, steps if save else 1, batch, hidden) if w_hr is not None else x.new_empty(0)
    output = x.new_empty(steps, batch, directions * proj)
    ps.launch(
        _lstm_forward_kernel,
        plan,
        x.dtype,
        directions,
        xw,
        w_hh,
        xw if bias is None else bias,
        xw if w_hr is None else w_hr,
        xw if lengths is None else lengths,
        h,
        c,
        gates,
        r,
        output,
        ps.sync_counters(directions, x.device),
        steps,
        batch,
        hidden,
        proj,
        HAS_BIAS=bias is not None,
        HAS_LENGTHS=lengths is not None,
        PROJ=w_hr is not None,
        SAVE=save,
    )
    h_n, c_n = ps.final_states(h, steps, save), ps.final_states(c, steps, save).to(c0.dtype)
    return output, h_n, c_n, gates, h, c, r


def _backward(grad_output, grad_h_n, grad_c_n, x, w_ih, w_hh, w_hr, lengths, gates, h, c, r, input_grad):
    grad_output, x, w_ih, w_hh, w_hr, lengths = ps.contiguous(grad_output, x, w_ih, w_hh, w_hr, lengths)
    steps, batch, _ = x.shape
    directions, gate_rows, proj = w_hh.shape
    hidden = gate_rows // GATES
    plan = ps.plan(hidden, None if w_hr is None else proj, GATES, batch, directions, x.dtype, x.device, backward=True)
    dh = ps.float_copy(grad_h_n)  # the kernel turns them into the gradients of h0 and c0
    dc = ps.float_copy(grad_c_n)
    dgates = x.new_empty(directions, steps, batch, gate_rows)
    dh_step = x.new_empty(directions, steps, batch, proj) if w_hr is not None else x.new_empty(0)
    ps.launch(
        _lstm_backward_kernel,
        plan,
        x.dtype,
        directions,
        grad_output,
        w_hh,
        dgates if w_hr is None else w_hr,
        dgates if lengths is None else lengths,
        gates,
        c,
        dh,
        dc,
        dgates,
        dh_step,
        ps.share_buffer(plan, directions, batch, proj, x.device),
        ps.sync_counters(directions, x.device),
        steps,
        batch,
        hidden,
        proj,
        HAS_LENGTHS=lengths is not None,
        PROJ=w_hr is not None,
    )
    dx, dw_ih, dw_hh, db, _ = ps.layer_gradients(x, w_ih, h, dgates, dgates, input_grad)
    dw_hr = x.new_empty(0) if w_hr is None else torch.matmul(dh_step.flatten(1, 2).transpose(1, 2), r.flatten(1, 2))
    return dx, dh.to(x.dtype), dc.to(x.dtype), dw_ih, dw_hh, db, dw_hr


@torch.library.custom_op("rnnkit::lstm_triton", mutates_args=())
def lstm_triton(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    w_hr: Optional[Tensor],
    lengths: Optional[Tensor],
    save: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One LSTM layer, all directions: x (T, B, I), h0 (D, B, P), c0 (D, B, H), weights stacked (D, ...).

    Returns output (T, B, D*P), h_n (D, B, P), c_n (D, B, H) and what the backward reads:
    gates (D, T, B, 4H), hidden states (D, T+1, B, P), cell states (D, T+1, B, H),
    r = o * tanh(c) (D, T, B, H) with proj_size, else empty. Without ``save`` (no backward
    to come) the gates are empty, the states buffers hold two steps (``ps.stack_states``)
    and r one.
    """
    return _forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, save)


@lstm_triton.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, save=True):
    steps, batch, _ = x.shape
    directions, gate_rows, proj = w_hh.shape
    hidden = gate_rows // GATES
    return (
        x.new_empty(steps, batch, directions * proj),
        h0.new_empty(directions, batch, proj),
        c0.new_empty(directions, batch, hidden),
        x.new_empty(*ps.saved_shape(directions, steps, batch, gate_rows, save), dtype=torch.float32),
        x.new_empty(ps.states_shape(directions, steps, batch, proj, save)),
        x.new_empty(ps.states_shape(directions, steps, batch, hidden, save), dtype=torch.float32),
        x.new_empty(directions, steps if save else 1, batch, hidden) if w_hr is not None else x.new_empty(0),
    )


@torch.library.custom_op("rnnkit::lstm_triton_backward", mutates_args=())
def lstm_triton_backward(
    grad_output: Tensor,
    grad_h_n: Tensor,
    grad_c_n: Tensor,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    w_hr: Optional[Tensor],
    lengths: Optional[Tensor],
    gates: Tensor,
    h: Tensor,
    c: Tensor,
    r: Tensor,
    input_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``lstm_triton``: x (empty without ``input_grad``), h0, c0, w_ih, w_hh, the biases (one
    tensor), w_hr (empty without)."""
    return _backward(grad_output, grad_h_n, grad_c_n, x, w_ih, w_hh, w_hr, lengths, gates, h, c, r, input_grad)


@lstm_triton_backward.register_fake
def _(grad_output, grad_h_n, grad_c_n, x, w_ih, w_hh, w_hr, lengths, gates, h, c, r, input_grad):
    return (
        input_like(x, input_grad),
        grad_h_n.new_empty(grad_h_n.shape),
        grad_c_n.new_empty(grad_c_n.shape),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(w_hh.shape[:2]),
        x.new_empty(0) if w_hr is None else torch.empty_like(w_hr),
    )


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # no zero tensors for the unused outputs the backward ignores
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, ctx.saved = inputs
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, *output[3:])


def _autograd_backward(ctx, grad_output, grad_h_n, grad_c_n, *_):
    ps.require_saved(ctx.saved, "rnnkit::lstm_triton")
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, gates, h, c, r = ctx.saved_tensors
    wanted = ctx.needs_input_grad[0]  # x's gradient

    def recurrence(x, h0, c0, *weights):
        return ps.naive_layer(naive_lstm, x, (h0, c0), weights, lengths)

    def kernel(grad_output, grad_h_n, grad_c_n):
        g_x, g_h0, g_c0, g_w_ih, g_w_hh, g_b, g_w_hr = lstm_triton_backward(
            grad_output, grad_h_n, grad_c_n, x, w_ih, w_hh, w_hr, lengths, gates, h, c, r, wanted
        )
        biases = bias_gradients(g_b, b_ih, b_hh)
        return g_x if wanted else None, g_h0, g_c0, g_w_ih, g_w_hh, *biases, None if w_hr is None else g_w_hr

    inputs = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    likes = (ps.output_like(x, h), h0, c0)
    return (*fused_backward(recurrence, inputs, (grad_output, grad_h_n, grad_c_n), likes, kernel), None, None)


lstm_triton.register_autograd(_autograd_backward, setup_context=_setup_context)


def lstm_layer(
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weights: list[tuple[Optional[Tensor], ...]],
    lengths: Optional[Tensor] = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """One LSTM layer, both directions in one launch; the layer op of ``ops.rnn_stack``.

    Args:
        x: (T, B, I) on CUDA, float32, bfloat16 or float16.
        state: (h_0 (D, B, P), c_0 (D, B, H)).
        weights: D tuples (w_ih (4H, I), w_hh (4H, P), b_ih | None, b_hh | None, w_hr (P, H) | None).
        lengths: (B,) steps of each sequence, or None for all T.

    Returns:
        output (T, B, D*P), zero past each length; (h_n (D, B, P), c_n (D, B, H)).
    """
    stacked = ps.stack_weights(weights)
    lengths = None if lengths is None else lengths.to(x.device)
    save = gradient_wanted(x, *state, *stacked)
    output, h_n, c_n, *_ = lstm_triton(x, *state, *stacked, lengths, save)
    return output, (h_n, c_n)
