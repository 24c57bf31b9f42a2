"""Builds the C++ CPU kernels (``ops/*/*_cpu.cpp``) once per machine and loads them as torch ops.

The first use compiles them with torch.utils.cpp_extension (about a minute; a line on
stderr says so) into a cache directory keyed by the sources, torch's version and the
CPU, so later processes load the cached library at once. Without a C++ compiler the
``"cpu"`` backend reports why it is unavailable and ``"auto"`` uses another backend.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
from pathlib import Path

import torch

_OPS = Path(__file__).parent
SOURCES = [_OPS / "lstm" / "lstm_cpu.cpp", _OPS / "gru" / "gru_cpu.cpp", _OPS / "rnn" / "rnn_cpu.cpp"]
HEADERS = [_OPS / "csrc" / "common.h", _OPS / "csrc" / "packed.h"]
# -march=native is safe: the library is built on, and cached for, the machine that runs it.
# -fopenmp turns on at::parallel_for: without it the header runs every loop on one thread. The
# library then shares torch's OpenMP runtime (the libgomp.so.1 that torch has loaded already).
CFLAGS = ["-O3", "-march=native", "-fopenmp"]
LDFLAGS = ["-fopenmp"]


def _cpu_flags() -> set[str]:
    """The CPU's features from /proc/cpuinfo: its ``flags`` line on x86, ``Features`` on ARM."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    lines = cpuinfo.read_text().splitlines()
    line = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


def _vector_flags() -> list[str]:
    """Select at::vec's widest implementation the CPU has: AVX-512, AVX2, or its portable default."""
    flags = _cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= flags:
        return [
            "-DCPU_CAPABILITY=AVX512",
            "-DCPU_CAPABILITY_AVX512",
            "-mavx512f",
            "-mavx512bw",
            "-mavx512vl",
            "-mavx512dq",
            "-mfma",
        ]
    if {"avx2", "fma"} <= flags:
        return ["-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mavx2", "-mfma"]
    return []


def _build_directory() -> Path:
    digest = hashlib.sha256()
    for path in SOURCES + HEADERS:
        digest.update(path.read_bytes())
    digest.update(" ".join(CFLAGS + _vector_flags()).encode() + torch.__version__.encode())
    digest.update(platform.machine().encode() + " ".join(sorted(_cpu_flags())).encode())
    root = Path(os.environ.get("RNNKIT_CACHE", Path.home() / ".cache" / "rnnkit"))
    return root / f"cpu-{digest.hexdigest()[:16]}"


def _first_error(text: str) -> str:
    """The line of a failed build that says what went wrong: the compiler's first error, else the last line."""
    lines = text.strip().splitlines()
    return next((line.strip() for line in lines if "error:" in line), lines[-1] if lines else "no output")


@torch.compiler.assume_constant_result  # torch.compile calls it, rather than tracing into the build
def unavailable_reason() -> str | None:
    """Build (once) and load the kernels; None when ``torch.ops.rnnkit`` is ready, else why not."""
    return _build_and_load()


@functools.cache  # loading the library twice would register its ops twice, which aborts
def _build_and_load() -> str | None:
    from torch.utils import cpp_extension

    path = os.environ.get("PATH", "")
    try:
        import ninja  # the pip package puts a ninja binary beside itself; cpp_extension looks on PATH

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path
    except ImportError:
        pass
    try:
        build = _build_directory()
        build.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError) as error:  # no home directory, or a cache that cannot be written
        os.environ["PATH"] = path
        return f"its build cache could not be made ({error}); set RNNKIT_CACHE to a writable directory"
    if not (build / "rnnkit_cpu.so").exists():
        print("rnnkit: compiling the CPU kernels (once per machine, about a minute)...", file=sys.stderr, flush=True)
    try:
        cpp_extension.load(
            name="rnnkit_cpu",
            sources=[str(s) for s in SOURCES],
            extra_cflags=CFLAGS + _vector_flags(),
            extra_ldflags=LDFLAGS,
            build_directory=str(build),
            is_python_module=False,
            verbose=False,
        )
    except (RuntimeError, OSError, ImportError) as error:
        return f"compiling its C++ kernels in {build} failed ({_first_error(str(error))})"
    finally:
        os.environ["PATH"] = path
    from .gru import cpu as gru_cpu
    from .lstm import cpu as lstm_cpu
    from .rnn import cpu as rnn_cpu

    for op in (lstm_cpu, gru_cpu, rnn_cpu):
        op.register()
    return None
