"""``rnnkit train``, ``rnnkit eval`` and ``rnnkit generate``: flags derived from the config dataclasses.

Every flag's default is left out of the parsed arguments, so a command knows which flags
were given: ``rnnkit train charlm --resume PATH --epochs 20`` takes the checkpoint's settings
and changes only the number of epochs.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields, replace
from typing import Any

from ..data import DataError
from . import checkpoint
from .config import TASKS, EvalConfig, ExportConfig, GenerateConfig
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .evaluate import evaluate
from .export import export
from .generate import generate
from .loop import train


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input and a diverged run become the command line's one-line errors (exit status 2)."""
    # imported here: rnnkit.cli imports this module to register its commands
    from ..cli import CLIError

    try:
        yield
    except (ConfigError, DataError, CheckpointError, TrainingDiverged) as error:
        raise CLIError(str(error)) from None


def _add_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per field of ``config_class``, typed, with its choices, help and default."""
    hints = typing.get_type_hints(config_class)
    for f in fields(config_class):
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        required = f.default is MISSING
        shown = "" if required or f.default is None else f" (default: {f.default})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata["help"] + shown}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            metavar = {int: "N", float: "X"}.get(kind, f.metadata["metavar"])
            kwargs.update(type=kind, required=required, metavar=metavar)
            if f.metadata["choices"]:
                kwargs.update(choices=f.metadata["choices"], metavar=None)
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def _given(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    names = {f.name for f in fields(config_class)}
    return {key: value for key, value in vars(args).items() if key in names}


def _train(args: argparse.Namespace) -> None:
    config_class = TASKS[args.task]
    given = _given(args, config_class)
    with user_errors():
        if "resume" in given:
            payload = checkpoint.load(given["resume"])
            if payload["task"] != args.task:
                raise CheckpointError(f"checkpoint {given['resume']} is from a {payload['task']} run, not {args.task}")
            config = replace(checkpoint.config_of(payload, given["resume"]), **given)
        else:
            config = config_class(**given)
        train(config)


def _generate(args: argparse.Namespace) -> None:
    with user_errors():
        print(generate(GenerateConfig(**_given(args, GenerateConfig))))


def _eval(args: argparse.Namespace) -> None:
    with user_errors():
        result, written = evaluate(EvalConfig(**_given(args, EvalConfig)))
    numbers = ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float))
    print(f"{result['checkpoint']} ({result['task']}, {result['epochs']} epochs): {numbers}")
    if written:
        print("wrote " + ", ".join(map(str, written)))


def _export(args: argparse.Namespace) -> None:
    with user_errors():
        print(f"wrote {export(ExportConfig(**_given(args, ExportConfig)))}")


def add_train(commands: argparse._SubParsersAction) -> None:
    """Register ``rnnkit train charlm|classify``."""
    parser = commands.add_parser("train", help="train a character language model or a sequence classifier")
    tasks = parser.add_subparsers(dest="task", required=True, parser_class=type(parser))
    helps = {"charlm": "character language model (d2l's setup by default)", "classify": "sequence classification"}
    for name, config_class in TASKS.items():
        task_parser = tasks.add_parser(name, help=helps[name], description=config_class.__doc__)
        _add_flags(task_parser, config_class)
        task_parser.set_defaults(run=_train)


def add_generate(commands: argparse._SubParsersAction) -> None:
    """Register ``rnnkit generate``."""
    parser = commands.add_parser("generate", help="text from a charlm checkpoint", description=GenerateConfig.__doc__)
    _add_flags(parser, GenerateConfig)
    parser.set_defaults(run=_generate)


def add_eval(commands: argparse._SubParsersAction) -> None:
    """Register ``rnnkit eval``."""
    parser = commands.add_parser("eval", help="evaluate a checkpoint", description=EvalConfig.__doc__)
    _add_flags(parser, EvalConfig)
    parser.set_defaults(run=_eval)


def add_export(commands: argparse._SubParsersAction) -> None:
    """Register ``rnnkit export``."""
    parser = commands.add_parser("export", help="a checkpoint's model as ONNX", description=ExportConfig.__doc__)
    _add_flags(parser, ExportConfig)
    parser.set_defaults(run=_export)
