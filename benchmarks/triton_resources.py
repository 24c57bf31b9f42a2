"""Compile the persistent Triton kernels for a GPU without one, and print what each program costs.

For each configuration (cell, H, P, B, directions, dtype) this builds the launch plan that
``rnnkit.ops.persistent.plan`` would choose on a GPU with ``--multiprocessors`` SMs, compiles
the forward (with and without a backward to come) and backward kernels with Triton's own
ptxas for ``--arch`` (default sm_90, the H100), and prints the registers per thread and the
bytes spilled to local memory (STACK), as ``cuobjdump --dump-resource-usage`` reads them off
the binary. A kernel that does not compile shows FAILED with Triton's message and makes the
exit status 1.

Nothing runs, so nothing is timed: spills are a proxy for slow code, not a measurement.

Usage::

    python benchmarks/triton_resources.py                      # the default configurations
    python benchmarks/triton_resources.py lstm:512:0:32:1:bf16 gru:256:0:8:2:fp32
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compile real kernels, not interpreted ones

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from rnnkit.ops import persistent
from rnnkit.ops.gru.triton import _gru_backward_kernel, _gru_forward_kernel
from rnnkit.ops.lstm.triton import _lstm_backward_kernel, _lstm_forward_kernel
from rnnkit.ops.rnn.triton import _rnn_backward_kernel, _rnn_forward_kernel

KERNELS = {
    "lstm": (4, _lstm_forward_kernel, _lstm_backward_kernel),
    "gru": (3, _gru_forward_kernel, _gru_backward_kernel),
    "rnn": (1, _rnn_forward_kernel, _rnn_backward_kernel),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Pointers that are not of the input's dtype.
POINTER_TYPES = {"p_lengths": "*i64", "p_sync": "*i32", "p_gates": "*fp32", "p_c": "*fp32", "p_dh": "*fp32"}
POINTER_TYPES.update(p_dc="*fp32", p_shares="*fp32", p_bias="*fp32")
DEFAULT_CONFIGS = [
    "lstm:128:0:8:1:fp32",
    "lstm:256:0:32:1:fp32",
    "lstm:512:0:32:1:bf16",
    "lstm:512:0:32:1:fp32",
    "lstm:1024:0:64:1:fp32",
    "lstm:300:100:19:2:fp32",
    "gru:256:0:8:2:fp16",
    "gru:1024:0:32:1:bf16",
    "rnn:512:0:8:1:fp32",
]


def signature(kernel, dtype: str, constants: dict) -> dict[str, str]:
    """Triton's type string of every argument of ``kernel``."""
    types = {}
    for name in kernel.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name.startswith("p_"):
            types[name] = POINTER_TYPES.get(name, "*" + dtype)
        else:
            types[name] = "i32"
    return types


def resources(kernel, dtype: str, plan: persistent.Plan, arch: int, flags: dict) -> str:
    """Compile ``kernel`` for ``sm_<arch>`` with the plan's constants; its resource usage as printed by cuobjdump."""
    constants = {
        k: v for k, v in {**flags, **persistent.constants(plan, DTYPES[dtype])}.items() if k in kernel.arg_names
    }
    source = ASTSource(kernel, signature(kernel, dtype, constants), constants)
    options = {"num_warps": plan.num_warps, "num_stages": persistent.NUM_STAGES}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as cubin:
        cubin.write(compiled.asm["cubin"])
        cubin.flush()
        report = subprocess.run(
            [str(cuobjdump), "--dump-resource-usage", cubin.name], capture_output=True, text=True, check=True
        ).stdout
    line = next(line for line in report.splitlines() if "REG:" in line)
    return " ".join(part for part in line.split() if part.startswith(("REG:", "STACK:", "SHARED:")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", default=DEFAULT_CONFIGS, help="cell:H:P:B:directions:dtype (P 0: none)")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 for sm_90")
    parser.add_argument("--multiprocessors", type=int, default=132, help="SMs of the GPU the plan is made for")
    args = parser.parse_args(argv)
    persistent.triton_interpreting = lambda: False
    persistent.multiprocessors = lambda device: args.multiprocessors
    failures = 0
    for config in args.configs:
        cell, hidden, proj, batch, directions, dtype = config.split(":")
        gates, forward, backward = KERNELS[cell]
        hidden, batch, directions = int(hidden), int(batch), int(directions)
        proj = int(proj) or None  # 0: no projection
        flags = dict(HAS_BIAS=True, HAS_LENGTHS=True, PROJ=proj is not None, RELU=False)
        # the forward with a backward to come keeps every step (SAVE); for inference, two steps' states
        for name, kernel, save in (
            ("forward", forward, True),
            ("inference", forward, False),
            ("backward", backward, True),
        ):
            device = torch.device("cuda")
            plan = persistent.plan(hidden, proj, gates, batch, directions, DTYPES[dtype], device, name == "backward")
            shape = f"programs={plan.programs} block_u={plan.block_u} block_b={plan.block_b} resident={plan.resident}"
            shape += " split" * plan.split
            try:
                usage = resources(kernel, dtype, plan, args.arch, {**flags, "SAVE": save})
            except Exception as error:  # report every kernel, then fail
                failures += 1
                usage = f"FAILED {type(error).__name__}: {error}"
            print(f"{config:26} {name:9} {shape} | {usage}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
