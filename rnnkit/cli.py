"""The ``rnnkit`` command: one subcommand per module, each registered by its ``add_command``.

A subcommand reports bad input (missing file, bad number, unknown data set) by raising
``CLIError``: ``main`` prints it as one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import demo
from .explain import cli as explain_cli
from .train import commands as train_commands


class CLIError(Exception):
    """A user error with a one-line explanation; exit status 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        raise CLIError(message)


# Each entry adds its subcommand to the parser and sets ``run`` (args -> exit status) as default.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    demo.add_command,
    explain_cli.add_command,
    train_commands.add_train,
    train_commands.add_eval,
    train_commands.add_generate,
    train_commands.add_export,
]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit status."""
    parser = _Parser(prog="rnnkit", description="LSTM, GRU and RNN for PyTorch, explained.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add_command in COMMANDS:
        add_command(commands)
    try:
        args = parser.parse_args(argv)
        return args.run(args) or 0
    except CLIError as error:
        print(f"rnnkit: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
