"""The command line, run as a subprocess the way a user runs it."""

from __future__ import annotations

import subprocess
import sys


def rnnkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnkit", *args], capture_output=True, text=True, timeout=300)


def test_demo_prints_parity_with_torch():
    result = rnnkit("demo")
    assert result.returncode == 0, result.stderr
    assert "5,760 parameters (torch.nn.LSTM: 5,760)" in result.stdout
    assert "output past each length is zero: True" in result.stdout


def test_unknown_command_is_one_line_and_exit_2():
    result = rnnkit("no-such-command")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "invalid choice" in result.stderr
    assert "Traceback" not in result.stderr
