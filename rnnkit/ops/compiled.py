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
from dataclasses import dataclass
from pathlib import Path

import torch

from .constant import assume_constant_result

_OPS = Path(__file__).parent
SOURCES = [
    _OPS / "lstm" / "lstm_cpu.cpp",
    _OPS / "lstm" / "lstm_variant_cpu.cpp",
    _OPS / "gru" / "gru_cpu.cpp",
    _OPS / "gru" / "gru_variant_cpu.cpp",
    _OPS / "rnn" / "rnn_cpu.cpp",
    _OPS / "rnn" / "rnn_variant_cpu.cpp",
    _OPS / "csrc" / "activations.cpp",
    _OPS / "csrc" / "masks.cpp",
    _OPS / "csrc" / "autograd.cpp",
]
HEADERS = [
    _OPS / "csrc" / name
    for name in ("common.h", "packed.h", "activations.h", "variant.h", "workspace.h", "autograd.h", "masks.h")
]
# -march=native is safe: the library is built on, and cached for, the machine that runs it.
# -fopenmp turns on at::parallel_for: without it the header runs every loop on one thread. The
# library then shares torch's OpenMP runtime (the libgomp.so.1 that torch has loaded already).
# -fvisibility=hidden: the library exports nothing (its ops register themselves when it is
# loaded), so its own functions are called directly, not through the PLT as -fPIC makes every
# exported one (layer norm's row sums, a template instantiated in several places, say).
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fvisibility=hidden"]
LDFLAGS = ["-fopenmp"]


# The instruction-set paths the kernels can be built for, widest first: at::vec's implementation
# of that name and the compiler's flags for it (on top of -march=native, which may offer more).
# "default" is at::vec's portable code: without AVX on x86, what a CPU without AVX2 runs.
ISA_VARIABLE = "RNNKIT_CPU_ISA"
_X86 = platform.machine() in ("x86_64", "AMD64", "i686")


@dataclass(frozen=True)
class Isa:
    """One path: the CPU features it needs (as /proc/cpuinfo names them) and its compiler flags."""

    name: str
    needs: frozenset[str]
    flags: tuple[str, ...]


ISAS = (
    Isa(
        "avx512",
        frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"}),
        ("-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"),
    ),
    # -mno-avx512f turns off every AVX-512 extension -march=native would add.
    Isa("avx2", frozenset({"avx2", "fma"}), ("-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2", "-mno-avx512f")),
    Isa("default", frozenset(), ("-DCPU_CAPABILITY=DEFAULT", "-DCPU_CAPABILITY_DEFAULT", *["-mno-avx"] * _X86)),
)


def _cpu_flags() -> set[str]:
    """The CPU's features from /proc/cpuinfo: its ``flags`` line on x86, ``Features`` on ARM."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    lines = cpuinfo.read_text().splitlines()
    line = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


def supported_isas() -> list[str]:
    """The paths this CPU runs, widest first (``"default"`` always; AVX2 and AVX-512 on x86 that has them)."""
    flags = _cpu_flags()
    return [isa.name for isa in ISAS if isa.needs <= flags and (_X86 or not isa.needs)]


def selected_isa() -> str:
    """The path the kernels are built for: ``$RNNKIT_CPU_ISA`` if set, else the widest this CPU runs.

    Raises ValueError for a name that is not a path, or a path this CPU cannot run.
    """
    supported = supported_isas()
    name = os.environ.get(ISA_VARIABLE, "").strip().lower() or supported[0]
    if name not in supported:
        known = ", ".join(repr(isa.name) for isa in ISAS)
        why = "this CPU lacks its instructions" if any(isa.name == name for isa in ISAS) else f"the paths are {known}"
        raise ValueError(
            f"{ISA_VARIABLE}={name!r} cannot be built here ({why}); this CPU runs {', '.join(map(repr, supported))}"
        )
    return name


def _isa_flags(name: str) -> list[str]:
    return list(next(isa.flags for isa in ISAS if isa.name == name))


def _build_directory(isa: str) -> Path:
    digest = hashlib.sha256()
    for path in SOURCES + HEADERS:
        digest.update(path.read_bytes())
    digest.update(" ".join(CFLAGS + _isa_flags(isa)).encode() + torch.__version__.encode())
    digest.update(platform.machine().encode() + " ".join(sorted(_cpu_flags())).encode())
    root = Path(os.environ.get("RNNKIT_CACHE", Path.home() / ".cache" / "rnnkit"))
    return root / f"cpu-{isa}-{digest.hexdigest()[:16]}"


def _unity_source(build: Path) -> Path:
    """One translation unit of all the sources (ATen's headers, most of the compile time, are read once),
    including copies of them kept in ``build``.

    The build then names no file of the checkout, and a fresh clone's newer file times make ninja
    rebuild nothing when it runs.
    """
    for path in SOURCES + HEADERS:
        copy = build / "src" / path.relative_to(_OPS)
        text = path.read_text()
        if not copy.exists() or copy.read_text() != text:
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(text)
    unity = build / "rnnkit_cpu.cpp"
    text = "".join(f'#include "src/{path.relative_to(_OPS).as_posix()}"\n' for path in SOURCES)
    if not unity.exists() or unity.read_text() != text:
        unity.write_text(text)
    return unity


def _load_built(library: Path) -> bool:
    """Load ``library`` if it is there and whole; one cut short by a killed build is removed."""
    if not library.exists():
        return False
    try:
        torch.ops.load_library(str(library))
    except OSError:
        library.unlink()
        return False
    return True


def _first_error(text: str) -> str:
    """The line of a failed build that says what went wrong: the compiler's first error, else the last line."""
    lines = text.strip().splitlines()
    return next((line.strip() for line in lines if "error:" in line), lines[-1] if lines else "no output")


@assume_constant_result  # torch.compile calls it, rather than tracing into the build
def unavailable_reason() -> str | None:
    """Build (once) and load the kernels; None when ``torch.ops.rnnkit`` is ready, else why not."""
    return _build_and_load()


@functools.cache  # loading the library twice would register its ops twice, which aborts
def _build_and_load() -> str | None:
    try:
        isa = selected_isa()
        build = _build_directory(isa)
        build.mkdir(parents=True, exist_ok=True)
    except ValueError as error:  # a path RNNKIT_CPU_ISA names that this CPU cannot run
        return str(error)
    except (OSError, RuntimeError) as error:  # no home directory, or a cache that cannot be written
        return f"its build cache could not be made ({error}); set RNNKIT_CACHE to a writable directory"
    if not (build / "rnnkit_cpu.so").exists():
        print(
            f"rnnkit: compiling the CPU kernels for {isa} (once per machine, about a minute)...",
            file=sys.stderr,
            flush=True,
        )
    path = os.environ.get("PATH", "")
    try:
        import ninja  # the pip package puts a ninja binary beside itself; cpp_extension looks on PATH

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + path
    except ImportError:
        pass
    try:
        import fcntl  # POSIX: without it (Windows) the build fails with that message

        with open(build / "build.flock", "w") as held:
            # One process builds at a time. The OS drops this lock when its holder dies, but not the
            # file torch's build leaves as its own lock, which a build killed midway leaves behind
            # and every later build then waits on forever: inside ours, that file is stale.
            fcntl.flock(held, fcntl.LOCK_EX)
            (build / "lock").unlink(missing_ok=True)
            # A library here was built from these sources and flags for this torch and CPU (the
            # directory's name is their digest). cpp_extension would rebuild it for another checkout
            # or virtual environment, since its build file names torch's headers where that keeps them.
            if not _load_built(build / "rnnkit_cpu.so"):
                from torch.utils import cpp_extension  # with setuptools: half a second, for a build only

                cpp_extension.load(
                    name="rnnkit_cpu",
                    sources=[str(_unity_source(build))],
                    extra_cflags=CFLAGS + _isa_flags(isa),
                    extra_ldflags=LDFLAGS,
                    build_directory=str(build),
                    is_python_module=False,
                    verbose=False,
                )
    except (RuntimeError, OSError, ImportError) as error:
        return f"compiling its C++ kernels in {build} failed ({_first_error(str(error))})"
    finally:
        os.environ["PATH"] = path
    from . import fused, variant_cpu
    from .gru import cpu as gru_cpu
    from .lstm import cpu as lstm_cpu
    from .lstm import variant_cpu as lstm_variant_cpu
    from .rnn import cpu as rnn_cpu

    fused.register_replay()
    for op in (lstm_cpu, lstm_variant_cpu, gru_cpu, rnn_cpu, variant_cpu):
        op.register()
    return None
