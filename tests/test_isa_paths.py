"""Every instruction-set path of the CPU kernels that this CPU runs passes the kernels' tests.

A process loads one build of the kernels: the suite's own runs the widest path (or the one
``$RNNKIT_CPU_ISA`` names). Each other path is built (once per machine, then cached) and tested in
a fresh process with ``$RNNKIT_CPU_ISA`` set: the tests marked ``cpu_kernels`` (against naive and
torch.nn, the precision sweep, the thread splits), among them one that checks the loaded library
was compiled for that path; of the random parity sweep, every third configuration. So a machine
with AVX-512 still tests the AVX2 and portable paths.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.ops import compiled

ROOT = Path(__file__).resolve().parents[1]
FILES = [
    "tests/test_ops_cpu.py",
    "tests/test_parity.py",
    "tests/test_variant_parity.py",
    "tests/test_precision.py",
    "tests/test_masks.py",
]
# Of the parity sweep against torch.nn, every third configuration (its sizes, layers, directions,
# lengths and dtypes drawn at random): the paths differ in the elementwise math and vector widths,
# which every configuration exercises, and the precision sweep runs in full.
PARITY_EVERY = 3


@pytest.mark.long
@pytest.mark.parametrize("isa", [isa.name for isa in compiled.ISAS])
def test_path_passes_the_kernel_tests(isa):
    if isa not in compiled.supported_isas():
        pytest.skip(f"this CPU cannot run the {isa} path")
    if compiled.unavailable_reason() is not None:
        pytest.skip(f"compiled CPU backend: {compiled.unavailable_reason()}")
    if isa == compiled.selected_isa():
        pytest.skip(f"{isa} is this process's own path, which the whole suite tests")
    env = {**os.environ, compiled.ISA_VARIABLE: isa, "RNNKIT_TEST_PARITY_EVERY": str(PARITY_EVERY)}
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "cpu_kernels", *FILES]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{isa}: {done.stdout[-4000:]}{done.stderr[-2000:]}"
    assert " passed" in done.stdout and " skipped" not in done.stdout.splitlines()[-1], done.stdout[-2000:]
