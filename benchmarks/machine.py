"""What a benchmark's numbers were measured on, and where they are written."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` is often empty on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# What stands for a CPU with fewer instructions in torch's own code: oneDNN (torch.nn's CPU LSTM and
# GRU), MKL (its matrix products) and ATen's vectorised kernels each read one variable as they load.
TORCH_ISA_LIMITS = {
    "avx512": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    "default": {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"},
}


def add_isa_argument(parser: argparse.ArgumentParser) -> None:
    """``--isa``: run as a CPU with only that instruction-set path would (see ``run_as_isa``)."""
    parser.add_argument(
        "--isa",
        choices=list(TORCH_ISA_LIMITS),
        help="limit rnnkit's kernels ($RNNKIT_CPU_ISA) and torch's oneDNN, MKL and ATen kernels to this path, "
        "as on a CPU without the wider ones (default: the widest this CPU runs, for both)",
    )


def run_as_isa(isa: str | None, script: str, argv: Sequence[str] | None) -> None:
    """Replace this process by ``script`` run with ``argv`` (None: this process's arguments) and with
    rnnkit's and torch's CPU code limited to ``isa``; nothing for None, or where the limits are set.

    torch reads its limits when it loads, before any argument is parsed, hence a fresh process. Limiting
    rnnkit alone would set its AVX2 kernels against torch's AVX-512 ones, which no CPU runs.
    """
    if isa is None:
        return
    wanted = {"RNNKIT_CPU_ISA": isa, **TORCH_ISA_LIMITS[isa]}
    if any(os.environ.get(name) != value for name, value in wanted.items()):
        arguments = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, script, *arguments], {**os.environ, **wanted})


def device_info() -> dict[str, Any]:
    """The CPU (model, the CPU kernels' instruction-set paths, the one in use, torch's) and threads, without the
    host's name."""
    from rnnkit.ops import compiled

    limits = {name for limit in TORCH_ISA_LIMITS.values() for name in limit}
    return {
        "processor": cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa_paths": compiled.supported_isas(),
        "isa": compiled.selected_isa(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_isa_limits": {name: os.environ[name] for name in sorted(limits) if name in os.environ},
    }


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` to ``path``, creating its folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def measured_on(device: dict[str, Any] | None = None) -> dict[str, Any]:
    """The head of a results file: when, on what (``device_info()`` unless given), with which Python and torch."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device or device_info(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
