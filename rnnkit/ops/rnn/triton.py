"""Elman RNN on the GPU: persistent Triton kernels for a whole layer, forward and backward through time.

Dimensions: T steps, B batch, I input features, H hidden units, D directions (both run
in one launch). ``x @ W_ih^T + b_ih`` for every step is one product before the kernel;
the kernel runs the recurrence only (``ops/persistent.py`` describes the slicing and the
barrier). The backward takes the nonlinearity's derivative from the stored states
(``1 - h^2`` for tanh, ``h > 0`` for ReLU) and writes the pre-activation gradient of
every step; the weights' gradients are then a few large products.
"""

from functools import partial
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from .. import persistent as ps
from ..fused import bias_gradients, fused_backward, gradient_wanted, input_like
from ..scan import summed_bias
from .naive import rnn as naive_rnn


@triton.jit
def _rnn_forward_kernel(
    p_xw,  # (D, T, B, H) W_ih x_t
    p_w_hh,  # (D, H, H)
    p_bias,  # (D, H) float32 b_ih + b_hh (ops.scan.summed_bias)
    p_lengths,  # (B,)
    p_h,  # (D, T+1, B, H) states, the initial one in place (ps.stack_states); (D, 2, B, H) without SAVE
    p_out,  # (T, B, D*H)
    p_sync,  # (D,) int32 zeros
    T,
    B,
    H,
    RELU: tl.constexpr,
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
    p_w = p_w_hh + i_d * H * H
    ks = tl.arange(0, BLOCK_K)
    b_w = tl.zeros([1, 1], tl.float32)  # placeholder when the weights are read every step
    if RESIDENT:  # W_hh[my units, :]^T
        b_w = ps.weight_tile(p_w, ks, ks < H, units, unit_ok, 1, H)
    b_b = tl.zeros([BLOCK_U], tl.float32)
    if HAS_BIAS:
        b_b = tl.load(p_bias + i_d * H + units, unit_ok, 0.0)
    for step in range(T):
        t = ps.time_of(step, T, i_d)
        prev, new, slots = ps.state_slots(step, t, i_d, T, SAVE)
        p_h_prev = p_h + (i_d * slots + prev) * B * H
        p_h_new = p_h + (i_d * slots + new) * B * H
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
            acc = ps.load_tile(p_xw + (i_d * T + t) * B * H, rows, row_ok, units, unit_ok, H) + b_b[None, :]
            for k0 in range(0, H, BLOCK_K):
                kk = k0 + ks
                k_ok = kk < H
                w = ps.resident_or_load(b_w, p_w, kk, k_ok, units, unit_ok, 1, H, RESIDENT)
                acc = ps.mma(acc, ps.load_tile(p_h_prev, rows, row_ok, kk, k_ok, H), w, DOT_DTYPE, PRECISION)
            if RELU:
                b_h_new = tl.maximum(acc, 0.0)
            else:
                b_h_new = ps.tanh(acc)
            tile = row_ok[:, None] & unit_ok[None, :]
            live = alive[:, None] & unit_ok[None, :]
            b_h_prev = ps.load_tile(p_h_prev, rows, row_ok, units, unit_ok, H)
            tl.store(p_h_new + rows[:, None] * H + units[None, :], tl.where(live, b_h_new, b_h_prev), tile)
            tl.store(
                p_out + (t * B + rows[:, None]) * D * H + i_d * H + units[None, :], tl.where(live, b_h_new, 0.0), tile
            )
        ps.grid_sync(p_sync + i_d, (step + 1) * n_programs)


@triton.jit
def _rnn_backward_kernel(
    p_grad_out,  # (T, B, D*H)
    p_w_hh,  # (D, H, H)
    p_lengths,  # (B,)
    p_h,  # (D, T+1, B, H) states from the forward
    p_dh,  # (D, B, H) float32: dL/dh_T in, dL/dh_0 out
    p_dpre,  # (D, T, B, H) out: gradient of the pre-activation
    p_sync,  # (D,) int32 zeros
    T,
    B,
    H,
    RELU: tl.constexpr,
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
    p_w = p_w_hh + i_d * H * H
    p_dh_d = p_dh + i_d * B * H
    b_w = tl.zeros([1, 1], tl.float32)  # placeholder when the weights are read every step
    if RESIDENT:  # W_hh[:, my units]
        b_w, _, _, _ = ps.backward_weights(p_w, units, unit_ok, H, H, 1, BLOCK_KH)
    for step in range(T):
        t = ps.time_of(T - 1 - step, T, i_d)
        _prev, new, slots = ps.state_slots(step, t, i_d, T, True)
        p_h_new = p_h + (i_d * slots + new) * B * H
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            alive = ps.alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS)
            tile = row_ok[:, None] & unit_ok[None, :]
            live = alive[:, None] & unit_ok[None, :]
            b_dh = ps.load_tile(p_dh_d, rows, row_ok, units, unit_ok, H)
            b_dh += ps.load_tile(p_grad_out + t * B * D * H + i_d * H, rows, alive, units, unit_ok, D * H)
            b_h = ps.load_tile(p_h_new, rows, row_ok, units, unit_ok, H)
            if RELU:
                d_pre = tl.where(b_h > 0.0, b_dh, 0.0)
            else:
                d_pre = b_dh * (1.0 - b_h * b_h)
            d_pre = tl.where(live, d_pre, 0.0)
            tl.store(p_dpre + ((i_d * T + t) * B + rows[:, None]) * H + units[None, :], d_pre, tile)
            tl.store(p_dh_d + rows[:, None] * H + units[None, :], tl.where(live, 0.0, b_dh), tile)
        ps.grid_sync(p_sync + i_d, (step + 1) * n_programs)
        # one gate has no side-by-side slicing to split (``ps.plan``): no shares buffer
        ps.previous_dh(
            p_dh_d, p_dh_d, step, p_dpre + (i_d * T + t) * B * H, p_w, b_w, b_w, b_w, b_w,
            units, unit_ok, B, H, H, H, 1, False, RESIDENT, BLOCK_B, BLOCK_KH, DOT_DTYPE, PRECISION,
        )  # fmt: skip


def _forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, save):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths = ps.contiguous(x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    steps, batch, _ = x.shape
    directions, hidden, _ = w_hh.shape
    plan = ps.plan(hidden, None, 1, batch, directions, x.dtype, x.device)
    xw = ps.input_projection(x, w_ih, None)
    bias = summed_bias(b_ih, b_hh, torch.float32)
    h = ps.stack_states(h0, steps, x.dtype, save)
    output = x.new_empty(steps, batch, directions * hidden)
    ps.launch(
        _rnn_forward_kernel,
        plan,
        x.dtype,
        directions,
        xw,
        w_hh,
        xw if bias is None else bias,
        xw if lengths is None else lengths,
        h,
        output,
        ps.sync_counters(directions, x.device),
        steps,
        batch,
        hidden,
        RELU=relu,
        HAS_BIAS=bias is not None,
        HAS_LENGTHS=lengths is not None,
        SAVE=save,
    )
    return output, ps.final_states(h, steps, save), h


def _backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, h, relu, input_grad):
    grad_output, x, w_ih, w_hh, lengths = ps.contiguous(grad_output, x, w_ih, w_hh, lengths)
    steps, batch, _ = x.shape
    directions, hidden, _ = w_hh.shape
    plan = ps.plan(hidden, None, 1, batch, directions, x.dtype, x.device, backward=True)
    dh = ps.float_copy(grad_h_n)  # the kernel turns it into the gradient of h0
    dpre = x.new_empty(directions, steps, batch, hidden)
    ps.launch(
        _rnn_backward_kernel,
        plan,
        x.dtype,
        directions,
        grad_output,
        w_hh,
        dpre if lengths is None else lengths,
        h,
        dh,
        dpre,
        ps.sync_counters(directions, x.device),
        steps,
        batch,
        hidden,
        RELU=relu,
        HAS_LENGTHS=lengths is not None,
    )
    dx, dw_ih, dw_hh, db, _ = ps.layer_gradients(x, w_ih, h, dpre, dpre, input_grad)
    return dx, dh.to(x.dtype), dw_ih, dw_hh, db


@torch.library.custom_op("rnnkit::rnn_triton", mutates_args=())
def rnn_triton(
    x: Tensor,
    h0: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Optional[Tensor],
    b_hh: Optional[Tensor],
    lengths: Optional[Tensor],
    relu: bool,
    save: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """One RNN layer, all directions: x (T, B, I), h0 (D, B, H), weights stacked (D, ...).

    Returns output (T, B, D*H), h_n (D, B, H) and the hidden states (D, T+1, B, H) the backward
    reads; two steps of them without ``save`` (no backward to come, ``ps.stack_states``).
    """
    return _forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, save)


@rnn_triton.register_fake
def _(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, relu, save=True):
    steps, batch, _ = x.shape
    directions, hidden, _ = w_hh.shape
    return (
        x.new_empty(steps, batch, directions * hidden),
        h0.new_empty(directions, batch, hidden),
        x.new_empty(ps.states_shape(directions, steps, batch, hidden, save)),
    )


@torch.library.custom_op("rnnkit::rnn_triton_backward", mutates_args=())
def rnn_triton_backward(
    grad_output: Tensor,
    grad_h_n: Tensor,
    x: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    lengths: Optional[Tensor],
    h: Tensor,
    relu: bool,
    input_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of ``rnn_triton``: x (empty without ``input_grad``), h0, w_ih, w_hh, the biases (one tensor)."""
    return _backward(grad_output, grad_h_n, x, w_ih, w_hh, lengths, h, relu, input_grad)


@rnn_triton_backward.register_fake
def _(grad_output, grad_h_n, x, w_ih, w_hh, lengths, h, relu, input_grad):
    return (
        input_like(x, input_grad),
        grad_h_n.new_empty(grad_h_n.shape),
        torch.empty_like(w_ih),
        torch.empty_like(w_hh),
        w_hh.new_empty(w_hh.shape[:2]),
    )


def _setup_context(ctx, inputs, output) -> None:
    ctx.set_materialize_grads(False)  # no zero tensors for the unused outputs the backward ignores
    *tensors, ctx.relu, ctx.saved = inputs
    ctx.save_for_backward(*tensors, output[2])


def _autograd_backward(ctx, grad_output, grad_h_n, _):
    ps.require_saved(ctx.saved, "rnnkit::rnn_triton")
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, h = ctx.saved_tensors
    wanted = ctx.needs_input_grad[0]  # x's gradient
    direction_op = partial(naive_rnn, nonlinearity="relu" if ctx.relu else "tanh")

    def recurrence(x, h0, *weights):
        return ps.naive_layer(direction_op, x, (h0,), weights, lengths)

    def kernel(grad_output, grad_h_n):
        g_x, g_h0, g_w_ih, g_w_hh, g_b = rnn_triton_backward(
            grad_output, grad_h_n, x, w_ih, w_hh, lengths, h, ctx.relu, wanted
        )
        return g_x if wanted else None, g_h0, g_w_ih, g_w_hh, *bias_gradients(g_b, b_ih, b_hh)

    inputs = (x, h0, w_ih, w_hh, b_ih, b_hh)
    likes = (ps.output_like(x, h), h0)
    return (*fused_backward(recurrence, inputs, (grad_output, grad_h_n), likes, kernel), None, None, None)


rnn_triton.register_autograd(_autograd_backward, setup_context=_setup_context)


def rnn_layer(
    x: Tensor,
    state: tuple[Tensor],
    weights: list[tuple[Optional[Tensor], ...]],
    lengths: Optional[Tensor] = None,
    nonlinearity: str = "tanh",
) -> tuple[Tensor, tuple[Tensor]]:
    """One RNN layer, both directions in one launch; the layer op of ``ops.rnn_stack``.

    Args:
        x: (T, B, I) on CUDA, float32, bfloat16 or float16; state: (h_0 (D, B, H),).
        weights: D tuples (w_ih (H, I), w_hh (H, H), b_ih (H,) | None, b_hh (H,) | None).
        lengths: (B,) steps of each sequence, or None for all T.
        nonlinearity: ``"tanh"`` or ``"relu"``.

    Returns:
        output (T, B, D*H), zero past each length; (h_n (D, B, H),).
    """
    stacked = ps.stack_weights(weights)
    lengths = None if lengths is None else lengths.to(x.device)
    save = gradient_wanted(x, *state, *stacked)
    output, h_n, _ = rnn_triton(x, state[0], *stacked, lengths, nonlinearity == "relu", save)
    return output, (h_n,)
