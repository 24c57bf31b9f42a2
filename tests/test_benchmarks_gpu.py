"""benchmarks/gpu.py: its smoke run checks, times and reports every kind of row; without CUDA it says so and stops.

Without a GPU the smoke run's Triton kernels run in Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit import ops

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
_TRITON_REASON = ops.unavailable_reason("triton")


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """benchmarks/gpu.py in a fresh interpreter, rnnkit from this checkout, Triton interpreting without CUDA."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if not torch.cuda.is_available():
        env["TRITON_INTERPRET"] = "1"
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(_TRITON_REASON is not None, reason=f"triton backend: {_TRITON_REASON}")
@pytest.mark.long
def test_smoke_run_writes_every_kind_of_row(tmp_path):
    out = tmp_path / "smoke.json"
    result = run_script("--smoke", "--repeats", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "MISMATCH" not in result.stdout and "ERROR" not in result.stdout, result.stdout
    report = json.loads(out.read_text())
    assert {"date", "device", "versions", "grid", "dtypes", "repeats", "statistic", "summary", "rows"} <= set(report)
    assert report["complete"] is True and report["grid"] == "smoke" and report["dtypes"] == ["fp32"]
    assert {"torch", "triton", "cudnn", "rnnkit"} <= set(report["versions"])
    rows = report["rows"]
    assert {(row["cell"], row["kind"]) for row in rows} == {
        ("LSTM", "grid"),
        ("LSTM", "variable lengths"),
        ("LSTM", "bidirectional"),
        ("GRU", "grid"),
    }
    assert [row["baseline"].split()[-1] for row in rows if row["kind"] == "variable lengths"] == ["packed", "padded"]
    for row in rows:
        assert row["status"] == "ok", row
        for key in ("torch_fwd_ms", "rnnkit_fwd_ms", "fwd_ratio", "torch_fwd_bwd_ms", "rnnkit_fwd_bwd_ms"):
            assert row[key] > 0, (key, row)
        assert row["fwd_bwd_ratio"] == pytest.approx(row["torch_fwd_bwd_ms"] / row["rnnkit_fwd_bwd_ms"])
        assert row["rnnkit_us_per_step"] == pytest.approx(
            row["rnnkit_fwd_ms"] * 1e3 / row["config"]["steps"] / row["config"]["num_layers"]
        )
        if row["kind"] == "variable lengths":
            assert row["var_over_padded_fwd_bwd"] > 0
        assert row["launch"]["forward"]["programs"] >= 1 and not row["launch"]["forward"]["split"]
    assert set(report["summary"]["dtypes"]) == {"fp32"}
    assert report["summary"]["dtypes"]["fp32"]["rows"] == 4  # the padded baseline of the lengths row is left out
    if importlib.util.find_spec("matplotlib") is not None:
        assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_cuda_it_stops_with_one_line():
    result = run_script(timeout=60)
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("gpu.py: no CUDA device"), result.stderr
