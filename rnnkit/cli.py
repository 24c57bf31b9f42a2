"""The ``rnnkit`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="rnnkit", description="LSTM, GRU and RNN for PyTorch, explained.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="a short tour: torch.nn weights, lengths=, parity with torch.nn")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
