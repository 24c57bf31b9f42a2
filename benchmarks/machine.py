"""What a benchmark's numbers were measured on, and where they are written."""

from __future__ import annotations

import datetime
import json
import os
import platform
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


def device_info() -> dict[str, Any]:
    """The CPU (model, the CPU kernels' instruction-set paths, the one in use) and threads, without the host's name."""
    from rnnkit.ops import compiled

    return {
        "processor": cpu_model(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "isa_paths": compiled.supported_isas(),
        "isa": compiled.selected_isa(),
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
