"""What the persistent Triton kernels of ``ops/*/triton.py`` share: launch plan, grid barrier, tiles.

One kernel launch runs a whole layer, both directions at once: program ``(i_u, i_d)``
owns a slice of ``BLOCK_U`` hidden units of direction ``i_d`` for every time step.
Each step multiplies the previous hidden state (read back from global memory, where
every program wrote its slice) with the program's slice of ``W_hh``, applies the cell,
writes its slice of the new state and waits at a grid barrier for the other programs
of its direction. ``W_hh``'s slice stays in registers across the sequence when it fits
(``resident``); otherwise it is read tile by tile every step (from L2), so any size runs.

The forward product of an LSTM or GRU program has its units' gates side by side
(``gate_columns``): its 16 columns, the least a product tile takes, are 4 units' 4 gates
rather than 16 units' one gate. So four times as many programs share ``W_hh``, and
each holds a quarter of what it would: an LSTM's slice stays resident up to H = 512 in
float32 (1024 in bfloat16) where it would up to 256 (512). The backward's program
multiplies its own gates' gradients by the same slice: its share of every column of
dh_{t-1}, written to a buffer; after the barrier each program sums the shares of its own
columns, in a fixed order, so the sum is the same every run (``split``). Where those
shares would outgrow L2 (``SHARE_BYTES``), with a projection, or where the split would not
spread W_hh over more programs (H above 8 units per multiprocessor of a direction), a
backward program instead owns 16 or more columns of dh_{t-1} and multiplies every gate's
gradients, read back from global memory, by W_hh's slice of those columns (``previous_dh``).

The barrier needs every program of a direction resident at once: the grid never
exceeds the multiprocessor count, and under ``TRITON_INTERPRET=1`` (programs run one
after another) each direction is one program.

Dimensions: T steps, B batch, H hidden units, P = proj_size or H, G gates, D directions.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import triton_interpreting
from .scan import layer

# Bytes of weights one program may keep in registers (8 warps: 64 registers a thread).
RESIDENT_BYTES = 64 * 1024
# Largest tiles of the batch and of a product's reduction when the weights are streamed;
# tests lower them to cover the tile loops.
MAX_BLOCK_B = 64
MAX_BLOCK_K = 64
# Bound on batch tile x reduction tile x gates, the elements of activation tiles a step may hold at
# once (the unsplit backward loads one per gate); the batch tile halves until it fits.
MAX_TILE = 16384
MIN_BLOCK = 16  # tl.dot's smallest tile side
# Product columns of one unit in an LSTM or GRU forward (and split backward): its gates side by
# side, the GRU's padded.
GATE_SLOTS = 4
# Most bytes of the programs' shares of dh a split backward keeps (two steps' worth): within L2.
SHARE_BYTES = 16 * 1024 * 1024
# Programs' shares summed at once.
SHARE_TILE = tl.constexpr(32)
# Warps per program. With 4, ptxas spilled registers in most backward kernels compiled for sm_90.
NUM_WARPS = 8
# Each step waits on the last: nothing to prefetch, and software pipelining costs registers.
NUM_STAGES = 1


@functools.cache
def multiprocessors(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _pow2(n: int) -> int:
    return max(MIN_BLOCK, triton.next_power_of_2(n))


@dataclass(frozen=True)
class Plan:
    """Block sizes and grid of one layer's launch (see the module docstring)."""

    programs: int  # per direction, each owning block_u hidden units and block_p projected ones
    block_u: int
    block_p: int
    block_b: int
    block_k: int  # tile over P: reduction of h W_hh^T and dh W_hr; columns of a split backward's share
    block_kh: int  # reduction tile over H: r W_hr^T, and each gate's dg W_hh in the backward
    resident: bool
    split: bool  # backward: programs sum their shares of dh_{t-1} (``share_product``, ``sum_shares``)
    num_warps: int


def plan(
    hidden: int,
    proj: int | None,
    gates: int,
    batch: int,
    directions: int,
    dtype: torch.dtype,
    device,
    backward: bool = False,
) -> Plan:
    """Choose the slicing of ``hidden`` units over programs and whether the weights stay in registers.

    ``proj`` is the LSTM's proj_size, or None without a projection (then P = H); the
    kernels decide the same way, from whether W_hr is given, whatever its size.

    Programs own as few units as a product tile allows, so the weights spread over as many
    multiprocessors as there are. An LSTM or GRU program's product has its units' gates side
    by side (``gate_columns``), so it may own 16 / ``GATE_SLOTS`` units, and holds a
    (P, slots * block_u) slice of W_hh. Its backward then multiplies its own gates' gradients
    by the same slice, and the programs sum their shares of dh_{t-1} (``split``); unless
    there is a projection, the shares outgrow ``SHARE_BYTES``, or owning 16 units each the
    programs fill the multiprocessors as well (H > 8 * multiprocessors / D): then a backward program
    owns 16 or more columns of dh and holds an (H, block_p) slice of W_hh per gate. W_hr's
    slices come on top with a projection. The weights stay in registers when they fit
    ``RESIDENT_BYTES``; the reduction then runs in one tile, and the batch tile shrinks so
    that the activation tile stays within ``MAX_TILE``.
    """
    on_gpu = device.type == "cuda" and not triton_interpreting()
    most = max(1, multiprocessors(device) // directions) if on_gpu else 1
    projection = proj is not None
    proj = hidden if proj is None else proj
    side_by_side = gates > 1 and not (backward and projection)
    block_u, programs = _slicing(hidden, most, GATE_SLOTS if side_by_side else 1)
    if side_by_side and backward:
        unsplit = _slicing(hidden, most, 1)
        # Spreading W_hh no wider, the split would only add the shares' sum tile (registers,
        # spills). The interpreter's one program splits, as a GPU's do at small H, so CI runs it.
        wider = programs > unsplit[1] or not on_gpu
        if not wider or directions * 2 * programs * batch * proj * 4 > SHARE_BYTES:
            side_by_side = False
            block_u, programs = unsplit
    # without a projection a program's columns of h are its units: the backward relies on it
    block_p = block_u if not projection else _pow2(-(-proj // programs))
    full_k, full_kh = _pow2(proj), _pow2(hidden)
    size = torch.empty((), dtype=dtype).element_size()
    if backward and not side_by_side:
        weights = gates * full_kh * block_p + projection * full_k * block_u
    else:
        weights = (GATE_SLOTS if side_by_side else 1) * block_u * full_k + projection * full_kh * block_p
    resident = weights * size <= RESIDENT_BYTES
    block_k, block_kh = (full_k, full_kh) if resident else (min(MAX_BLOCK_K, full_k), min(MAX_BLOCK_K, full_kh))
    block_b = min(MAX_BLOCK_B, _pow2(batch))
    while block_b > MIN_BLOCK and block_b * max(block_k, block_kh) * gates > MAX_TILE:
        block_b //= 2
    split = backward and side_by_side
    return Plan(programs, block_u, block_p, block_b, block_k, block_kh, resident, split, NUM_WARPS)


def _slicing(hidden: int, most: int, slots: int) -> tuple[int, int]:
    """Units per program (a power of two, ``slots`` of them at least 16) and programs, at most ``most``."""
    block_u = max(MIN_BLOCK // slots, triton.next_power_of_2(-(-hidden // most)))
    return block_u, -(-hidden // block_u)


def constants(plan: Plan, dtype: torch.dtype) -> dict:
    """The constexprs every kernel takes last, used or not: the plan's block sizes and the product's types."""
    dot_dtype, precision = dot_types(dtype)
    return dict(
        RESIDENT=plan.resident,
        BLOCK_B=plan.block_b,
        BLOCK_U=plan.block_u,
        BLOCK_P=plan.block_p,
        BLOCK_K=plan.block_k,
        BLOCK_KH=plan.block_kh,
        SPLIT=plan.split,
        DOT_DTYPE=dot_dtype,
        PRECISION=precision,
    )


def launch(kernel, plan: Plan, dtype: torch.dtype, directions: int, *args, **flags) -> None:
    """Launch a persistent kernel on grid (programs, directions) with the plan's ``constants``, on the tensors' GPU."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    if not all(t.is_contiguous() for t in tensors):
        raise ValueError("the Triton kernels read and write dense row-major tensors only")
    largest = max(t.numel() for t in tensors)
    if largest >= 2**31:
        raise ValueError(
            f"the Triton kernels index with 32-bit offsets and a buffer of this layer holds {largest} elements; "
            "split the batch or the sequence, or use backend='torch'"
        )
    device = tensors[0].device
    # A cooperative launch makes the driver refuse a grid whose programs cannot all be resident
    # (another process holding SMs, say) instead of letting the barrier wait forever.
    cooperative = {} if triton_interpreting() else {"launch_cooperative_grid": True}
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        kernel[(plan.programs, directions)](
            *args,
            **flags,
            **constants(plan, dtype),
            num_warps=plan.num_warps,
            num_stages=NUM_STAGES,
            **cooperative,
        )


def dot_types(dtype: torch.dtype) -> tuple[tl.dtype, str]:
    """The operand type and precision of the kernels' products for inputs of ``dtype``.

    float32 follows cuDNN's RNN TF32 setting, as torch.nn's cuDNN RNNs do (``rnn_allows_tf32``);
    the products before and after the loop are ordinary torch matmuls and follow
    ``torch.backends.cuda.matmul``. The interpreter's bfloat16 product is wrong (numpy has no
    bfloat16), so there it multiplies in float32.
    """
    if dtype == torch.float32:
        return tl.float32, "tf32" if rnn_allows_tf32() else "ieee"
    if dtype == torch.bfloat16:
        return (tl.float32 if triton_interpreting() else tl.bfloat16), "ieee"
    return tl.float16, "ieee"


def rnn_allows_tf32() -> bool:
    """Whether cuDNN's RNNs may multiply float32 in TF32.

    torch's per-operator setting (``torch.backends.cudnn.rnn.fp32_precision``, then cuDNN's
    and the global one) where one says "tf32" or "ieee", else ``torch.backends.cudnn.allow_tf32``
    (which torch refuses to read once the two styles of setting disagree: then no TF32).
    """
    cudnn = torch.backends.cudnn
    for owner in (getattr(cudnn, "rnn", None), cudnn, torch.backends):
        precision = getattr(owner, "fp32_precision", None)
        if precision in ("tf32", "ieee"):
            return precision == "tf32"
    try:
        return bool(cudnn.allow_tf32)
    except RuntimeError:
        return False


def contiguous(*tensors: Tensor | None) -> tuple[Tensor | None, ...]:
    """The kernels' inputs in the dense row-major layout their offsets assume (None stays None)."""
    return tuple(None if t is None else t.contiguous() for t in tensors)


def float_copy(t: Tensor) -> Tensor:
    """A contiguous float32 copy of ``t`` that a kernel may overwrite."""
    return t.to(torch.float32, memory_format=torch.contiguous_format, copy=True)


def sync_counters(directions: int, device) -> Tensor:
    """One zeroed barrier counter per direction."""
    return torch.zeros(directions, dtype=torch.int32, device=device)


def share_buffer(plan: Plan, directions: int, batch: int, columns: int, device) -> Tensor:
    """(D, 2, programs, B, columns) float32 room for the programs' shares of dh (``shares``); empty unless split."""
    if not plan.split:
        return torch.empty(0, device=device)
    return torch.empty(directions, 2, plan.programs, batch, columns, dtype=torch.float32, device=device)


def saved_shape(directions: int, steps: int, batch: int, columns: int, save: bool) -> tuple[int, ...]:
    """Shape of the activations a forward keeps for its backward: every step's, or none without ``save``."""
    return (directions, steps, batch, columns) if save else (0,)


def require_saved(save: bool, op: str) -> None:
    """Raise if the forward of ``op`` kept nothing for a backward (``save=False``) and one is asked for."""
    if not save:
        raise RuntimeError(f"{op} ran with save=False, which keeps nothing for a backward; pass save=True")


def states_shape(directions: int, steps: int, batch: int, columns: int, save: bool) -> tuple[int, ...]:
    """Shape of a ``stack_states`` buffer: every step's state with ``save``, else two in turn."""
    return (directions, steps + 1 if save else 2, batch, columns)


def stack_states(states: Tensor, steps: int, dtype: torch.dtype, save: bool) -> Tensor:
    """(D, T+1, B, *) buffer of every step's state, the initial ones in place; (D, 2, B, *) without ``save``.

    With ``save`` time t reads its previous state from slot t + d and writes slot t + 1 - d,
    so the forward direction starts at slot 0 and the reverse one at slot T. Without, step s
    of either direction reads slot s % 2 and writes the other (``state_slots``): what a
    forward with no backward to come needs, where T+1 float32 cell states of a long batch
    could take gigabytes.
    """
    directions = states.shape[0]
    buffer = states.new_empty(states_shape(directions, steps, *states.shape[1:], save), dtype=dtype)
    buffer[0, 0] = states[0]
    if directions == 2:
        buffer[1, steps if save else 0] = states[1]
    return buffer


def final_states(buffer: Tensor, steps: int, save: bool) -> Tensor:
    """(D, B, *) last states of a ``stack_states`` buffer: slot T forward, slot 0 reverse; T % 2 without ``save``."""
    if not save:
        return buffer[:, steps % 2].clone()  # a custom op's outputs may not alias each other
    finals = [buffer[0, -1]] + ([buffer[1, 0]] if buffer.shape[0] == 2 else [])
    return torch.stack(finals)


def output_like(x: Tensor, buffer: Tensor) -> Tensor:
    """An empty (T, B, D*P) tensor, the shape of the layer's output, from x (T, B, I) and its states buffer."""
    return x.new_empty(*x.shape[:2], buffer.shape[0] * buffer.shape[-1])


def previous_states(buffer: Tensor, direction: int) -> Tensor:
    """(T, B, *) the state each time step started from, in time order."""
    return buffer[direction, :-1] if direction == 0 else buffer[direction, 1:]


def stack_weights(weights: list[tuple[Tensor | None, ...]]) -> tuple[Tensor | None, ...]:
    """The D directions' weight tuples of a layer as one tuple of (D, ...) tensors (None stays None).

    One direction is a view; two are copied side by side (a few microseconds against the recurrence).
    """
    if len(weights) == 1:
        return tuple(None if w is None else w.unsqueeze(0).contiguous() for w in weights[0])
    return tuple(None if ws[0] is None else torch.stack(ws) for ws in zip(*weights))


def naive_layer(op, x: Tensor, state: tuple[Tensor, ...], weights: tuple[Tensor | None, ...], lengths) -> tuple:
    """``(output, *final_states)`` of the layer in the naive direction ``op``, on stacked (D, ...) weights.

    The forward a double backward replays (``ops/fused.py``).
    """
    per_direction = [tuple(None if w is None else w[d] for w in weights) for d in range(state[0].shape[0])]
    output, finals = layer(op, x, state, per_direction, lengths)
    return (output, *finals)


def input_projection(x: Tensor, w_ih: Tensor, b_ih: Tensor | None) -> Tensor:
    """(D, T, B, G*H) ``x_t W_ih^T + b_ih`` for every step and direction, one batched product."""
    steps, batch, features = x.shape
    flat = x.reshape(1, steps * batch, features).expand(w_ih.shape[0], -1, -1)
    if b_ih is None:
        xw = torch.bmm(flat, w_ih.transpose(1, 2))
    else:
        xw = torch.baddbmm(b_ih.unsqueeze(1), flat, w_ih.transpose(1, 2))
    return xw.view(w_ih.shape[0], steps, batch, -1)


def layer_gradients(
    x: Tensor, w_ih: Tensor, states: Tensor, d_xw: Tensor, d_hw: Tensor, input_grad: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The gradients a layer's weights and input take from the gates' gradients, as large products.

    Args:
        x: (T, B, I); w_ih: (D, G*H, I); states: (D, T+1, B, P) from ``stack_states``.
        d_xw: (D, T, B, G*H) gradient of ``x_t W_ih^T + b_ih``.
        d_hw: (D, T, B, G*H) gradient of ``h_{t-1} W_hh^T + b_hh``.
        input_grad: whether x needs its gradient (a first layer's input seldom does).

    Returns:
        dx (T, B, I), or empty without ``input_grad``; dW_ih (D, G*H, I), dW_hh (D, G*H, P),
        db_ih (D, G*H), db_hh (D, G*H).
    """
    steps, batch, features = x.shape
    d_xw_flat = d_xw.reshape(d_xw.shape[0], steps * batch, -1)
    d_hw_flat = d_hw.reshape(d_hw.shape[0], steps * batch, -1)
    dx = torch.bmm(d_xw_flat, w_ih).sum(0).view(steps, batch, features) if input_grad else x.new_empty(0)
    dw_ih = torch.matmul(d_xw_flat.transpose(1, 2), x.reshape(steps * batch, features))
    previous = torch.stack([previous_states(states, d).reshape(steps * batch, -1) for d in range(states.shape[0])])
    dw_hh = torch.bmm(d_hw_flat.transpose(1, 2), previous)
    return dx, dw_ih, dw_hh, d_xw_flat.sum(1), d_hw_flat.sum(1)


@triton.jit
def program_slice(H, BLOCK_U: tl.constexpr):
    """This program's direction i_d, the programs per direction and D, its units (BLOCK_U,) and which exist."""
    units = tl.program_id(0) * BLOCK_U + tl.arange(0, BLOCK_U)
    return tl.program_id(1), tl.num_programs(0), tl.num_programs(1), units, units < H


@triton.jit
def grid_sync(p_counter, target):
    """Wait until ``target`` arrivals at the direction's counter; this program's arrival included.

    The CTA barriers order every thread's stores before the release and every later load
    after the acquire, as a cooperative grid sync does.
    """
    tl.debug_barrier()
    tl.atomic_add(p_counter, 1, sem="release")
    while tl.atomic_add(p_counter, 0, sem="acquire") < target:
        pass
    tl.debug_barrier()


@triton.jit
def gate_columns(H, GATES: tl.constexpr, BLOCK_U: tl.constexpr):
    """The columns of this program's units in the forward's and split backward's products, gates side by side.

    Column j is gate j % 4 of unit j // 4. Returns the (4 * BLOCK_U,) rows ``gate * H + unit``
    of W_hh they multiply (the columns of ``x W_ih^T`` too), which exist (a GRU has no fourth
    gate), and their gates.
    """
    j = tl.arange(0, 4 * BLOCK_U)
    unit = tl.program_id(0) * BLOCK_U + j // 4
    gate = j % 4
    return gate * H + unit, (unit < H) & (gate < GATES), gate


@triton.jit
def split_gates(acc, BLOCK_B: tl.constexpr, BLOCK_U: tl.constexpr):
    """Gates 0, 1, 2, 3 as (BLOCK_B, BLOCK_U) tiles of a (BLOCK_B, 4 * BLOCK_U) product laid out by ``gate_columns``."""
    even, odd = tl.split(tl.reshape(acc, (BLOCK_B, BLOCK_U, 2, 2)))  # j = 4 unit + 2 (gate // 2) + gate % 2
    g0, g2 = tl.split(even)
    g1, g3 = tl.split(odd)
    return g0, g1, g2, g3


@triton.jit
def join_gates(g0, g1, g2, g3, BLOCK_B: tl.constexpr, BLOCK_U: tl.constexpr):
    """``split_gates``' inverse: one (BLOCK_B, 4 * BLOCK_U) tile laid out by ``gate_columns`` of four gates' tiles."""
    return tl.reshape(tl.join(tl.join(g0, g2), tl.join(g1, g3)), (BLOCK_B, 4 * BLOCK_U))


@triton.jit
def state_slots(step, t, i_d, T, SAVE: tl.constexpr):
    """Slots (previous, new) of step ``step`` (time t) in a ``stack_states`` buffer, and its slots per direction."""
    if SAVE:
        return t + i_d, t + 1 - i_d, T + 1
    else:
        return step % 2, (step + 1) % 2, 2


@triton.jit
def time_of(step, T, i_d):
    """The time index of processing step ``step``: forward walks 0..T-1, reverse T-1..0."""
    return step + i_d * (T - 1 - 2 * step)


@triton.jit
def alive_rows(p_lengths, rows, row_ok, t, HAS_LENGTHS: tl.constexpr):
    """(BLOCK_B,) which rows still run at time t."""
    if HAS_LENGTHS:
        b_len = tl.load(p_lengths + rows, mask=row_ok, other=0)
        return row_ok & (t < b_len)
    return row_ok


@triton.jit
def load_tile(p_base, rows, row_ok, cols, col_ok, stride):
    """(len(rows), len(cols)) float32 tile of a row-major matrix; written by other programs, so not L1-cached."""
    b = tl.load(
        p_base + rows[:, None] * stride + cols[None, :], row_ok[:, None] & col_ok[None, :], 0.0, cache_modifier=".cg"
    )
    return b.to(tl.float32)


@triton.jit
def weight_tile(p_w, ks, k_ok, cols, col_ok, stride_k, stride_n):
    """(len(ks), len(cols)) tile ``W[ks, cols]`` of a weight with strides (stride_k, stride_n).

    ``h @ W_hh^T`` reads W_hh (N, K) with strides (1, K); ``g @ W_hh`` reads it with (N, 1).
    """
    return tl.load(p_w + ks[:, None] * stride_k + cols[None, :] * stride_n, k_ok[:, None] & col_ok[None, :], 0.0)


@triton.jit
def resident_or_load(b_w, p_w, ks, k_ok, cols, col_ok, stride_k, stride_n, RESIDENT: tl.constexpr):
    """The resident tile ``b_w`` when the weights stay in registers, else ``weight_tile`` read now."""
    if RESIDENT:
        b = b_w
    else:
        b = weight_tile(p_w, ks, k_ok, cols, col_ok, stride_k, stride_n)
    return b


@triton.jit
def mma(acc, b_a, b_w, DOT_DTYPE: tl.constexpr, PRECISION: tl.constexpr):
    """acc + b_a @ b_w with float32 accumulation."""
    return tl.dot(b_a.to(DOT_DTYPE), b_w.to(DOT_DTYPE), acc, input_precision=PRECISION)


@triton.jit
def sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    # As the CPU kernels (ops/csrc/activations.h): 1 - 2 / (exp(2|x|) + 1) with x's sign saturates
    # instead of overflowing but cancels digits near 0, where Cephes' x + x^3 P(x^2) takes over.
    z = x * x
    p = (((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z
    near_zero = x + x * z * (p - 3.33332819422e-1)
    a = tl.minimum(tl.abs(x), 20.0)
    far = 1.0 - 2.0 / (tl.exp(2.0 * a) + 1.0)
    return tl.where(tl.abs(x) < 0.625, near_zero, tl.where(x < 0, -far, far))


@triton.jit
def previous_dh(
    p_dh,  # (B, N) float32: in, the part of dh_{t-1} that skips the product; out, all of it
    p_shares,  # (2, programs, B, N) float32 shares of dh_{t-1} (SPLIT), else unused
    step,
    p_dg,  # (B, *) this step's gradients of h W_hh^T, gate g at columns g*H.., row stride dg_stride
    p_w,  # (G*H, N) W_hh of this direction, row-major
    b_w0,  # resident (BLOCK_KH, BLOCK_N) slices W_hh[g*H:(g+1)*H, cols] of gates 0..G-1, or unused
    b_w1,
    b_w2,
    b_w3,
    cols,
    col_ok,
    B,
    H,
    N,
    dg_stride,
    GATES: tl.constexpr,
    SPLIT: tl.constexpr,
    RESIDENT: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_KH: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """After the step's barrier, this program's columns of dh_{t-1}: the backward's step across time.

    Split, the sum of the programs' shares (``sum_shares``); else dh_{t-1}[:, cols] += sum
    over gates g of dg_t[:, g] @ W_hh[g, cols].
    """
    if SPLIT:
        sum_shares(p_dh, p_shares, step, cols, col_ok, B, N, BLOCK_B)
    else:
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + tl.arange(0, BLOCK_B)
            row_ok = rows < B
            acc = load_tile(p_dh, rows, row_ok, cols, col_ok, N)
            for k0 in range(0, H, BLOCK_KH):
                ks = k0 + tl.arange(0, BLOCK_KH)
                k_ok = ks < H
                w = resident_or_load(b_w0, p_w, ks, k_ok, cols, col_ok, N, 1, RESIDENT)
                acc = mma(acc, load_tile(p_dg, rows, row_ok, ks, k_ok, dg_stride), w, DOT_DTYPE, PRECISION)
                if GATES > 1:
                    w = resident_or_load(b_w1, p_w + H * N, ks, k_ok, cols, col_ok, N, 1, RESIDENT)
                    acc = mma(acc, load_tile(p_dg + H, rows, row_ok, ks, k_ok, dg_stride), w, DOT_DTYPE, PRECISION)
                if GATES > 2:
                    w = resident_or_load(b_w2, p_w + 2 * H * N, ks, k_ok, cols, col_ok, N, 1, RESIDENT)
                    acc = mma(acc, load_tile(p_dg + 2 * H, rows, row_ok, ks, k_ok, dg_stride), w, DOT_DTYPE, PRECISION)
                if GATES > 3:
                    w = resident_or_load(b_w3, p_w + 3 * H * N, ks, k_ok, cols, col_ok, N, 1, RESIDENT)
                    acc = mma(acc, load_tile(p_dg + 3 * H, rows, row_ok, ks, k_ok, dg_stride), w, DOT_DTYPE, PRECISION)
            tl.store(p_dh + rows[:, None] * N + cols[None, :], acc, row_ok[:, None] & col_ok[None, :])
        tl.debug_barrier()  # the next step reads these columns of dh from other threads of the program


@triton.jit
def shares(p_shares, step, B, N):
    """(programs, B, N) buffer of step ``step``'s shares of dh_{t-1} from a (2, programs, B, N) one.

    Two steps' buffers take turns: a program writes step t + 1's shares while a slower one
    may still be summing step t's, but not step t + 2's before all have passed step t + 1's barrier.
    """
    return p_shares + (step % 2) * tl.num_programs(0) * B * N


@triton.jit
def share_product(
    p_shares,  # (2, programs, B, N) float32: the programs' shares of dh_{t-1}, two steps' in turn
    step,
    b_dg,  # (BLOCK_B, 4 * BLOCK_U) gradients of this program's columns of h W_hh^T (``gate_columns``)
    b_w,  # resident (4 * BLOCK_U, BLOCK_K) W_hh[gate rows, :], or unused
    p_w,  # (G*H, N) W_hh of this direction, row-major
    gcols,
    gcol_ok,
    rows,
    row_ok,
    B,
    N,
    RESIDENT: tl.constexpr,
    BLOCK_K: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """Write ``b_dg @ W_hh[gate rows, :]`` (rows, N): what this program's gates add to dh_{t-1}."""
    p_share = shares(p_shares, step, B, N) + tl.program_id(0) * B * N
    for n0 in range(0, N, BLOCK_K):
        cols = n0 + tl.arange(0, BLOCK_K)
        col_ok = cols < N
        w = resident_or_load(b_w, p_w, gcols, gcol_ok, cols, col_ok, N, 1, RESIDENT)
        share = mma(tl.zeros([b_dg.shape[0], BLOCK_K], tl.float32), b_dg, w, DOT_DTYPE, PRECISION)
        tl.store(p_share + rows[:, None] * N + cols[None, :], share, row_ok[:, None] & col_ok[None, :])


@triton.jit
def sum_shares(p_dh, p_shares, step, cols, col_ok, B, N, BLOCK_B: tl.constexpr):
    """dh_{t-1}[:, cols] += the programs' shares of it (``share_product``), summed in a fixed order.

    ``p_dh`` (B, N) float32 holds the part of dh_{t-1} that skips the product. ``tl.sum``
    adds SHARE_TILE programs' shares in a fixed tree, and those partial sums in program order.
    """
    p_shares = shares(p_shares, step, B, N)
    for b0 in range(0, B, BLOCK_B):
        rows = b0 + tl.arange(0, BLOCK_B)
        row_ok = rows < B
        acc = load_tile(p_dh, rows, row_ok, cols, col_ok, N)
        tile = row_ok[:, None] & col_ok[None, :]
        for p0 in range(0, tl.num_programs(0), SHARE_TILE):
            programs = p0 + tl.arange(0, SHARE_TILE)
            offsets = programs[:, None, None] * B * N + rows[None, :, None] * N + cols[None, None, :]
            mask = (programs < tl.num_programs(0))[:, None, None] & tile[None, :, :]
            acc += tl.sum(tl.load(p_shares + offsets, mask, 0.0, cache_modifier=".cg"), axis=0)
        tl.store(p_dh + rows[:, None] * N + cols[None, :], acc, tile)
    tl.debug_barrier()  # the next step reads these columns of dh from other threads of the program


@triton.jit
def backward_weights(p_w, cols, col_ok, H, N, GATES: tl.constexpr, BLOCK_KH: tl.constexpr):
    """The resident slices W_hh[g*H:(g+1)*H, cols] of an unsplit ``previous_dh``; placeholders past GATES."""
    ks = tl.arange(0, BLOCK_KH)
    b_w0 = weight_tile(p_w, ks, ks < H, cols, col_ok, N, 1)
    b_w1 = tl.zeros([1, 1], tl.float32)
    b_w2 = b_w1
    b_w3 = b_w1
    if GATES > 1:
        b_w1 = weight_tile(p_w + H * N, ks, ks < H, cols, col_ok, N, 1)
    if GATES > 2:
        b_w2 = weight_tile(p_w + 2 * H * N, ks, ks < H, cols, col_ok, N, 1)
    if GATES > 3:
        b_w3 = weight_tile(p_w + 3 * H * N, ks, ks < H, cols, col_ok, N, 1)
    return b_w0, b_w1, b_w2, b_w3
