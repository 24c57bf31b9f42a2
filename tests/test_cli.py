"""The command line, run as a subprocess the way a user runs it."""

from __future__ import annotations

import subprocess
import sys


def rnnkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, timeout=300)


def test_demo_tours_the_modules_then_trains_two_models(tmp_path):
    """``make demo`` runs the full demo; ``--quick`` trains an epoch or two, enough to check every part."""
    result = rnnkit("demo", "--quick", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "5,760 parameters (torch.nn.LSTM: 5,760)" in result.stdout
    assert "output past each length is zero: True" in result.stdout
    assert "digits: test accuracy" in result.stdout
    assert "generated, always the likeliest next letter (d2l's predict_ch8):\n  time traveller" in result.stdout
    for run, files in {"digits": ["confusion.png"], "charlm": []}.items():
        for name in ["checkpoint.pt", "metrics.jsonl", "curves.png", *files]:
            assert (tmp_path / run / name).is_file()
            assert f"  {tmp_path / run / name}\n" in result.stdout
    assert result.stdout.rstrip().splitlines()[-1].startswith("more: rnnkit generate --checkpoint")


def test_unknown_command_is_one_line_and_exit_2():
    result = rnnkit("no-such-command")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr
