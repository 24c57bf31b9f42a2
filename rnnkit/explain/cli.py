"""``rnnkit explain``: the explain report of a module described by its constructor, or of a checkpoint.

    rnnkit explain lstm --input-size 100 --hidden-size 100 --num-layers 2 --bidirectional
    rnnkit explain gru --input-size 28 --hidden-size 64 --batch-first --lengths 28,9,17 --json
    rnnkit explain --checkpoint model.pt --plot params.png --gates gates.png
    rnnkit explain --checkpoint runs/charlm/checkpoint.pt --gates gates.png --text "time traveller"

Exit status: 0 when every relation holds, 1 when one fails, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import cli
from ..cells import GRUCell, LSTMCell, RNNCell
from ..modules import GRU, LSTM, RNN
from ..ops import BACKENDS
from . import Report, explain, plots
from .checkpoint import load_checkpoint
from .record import record
from .spec import spec_of

# cell type -> (rnnkit class, torch.nn class)
CELL_TYPES: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "lstm": (LSTM, nn.LSTM),
    "gru": (GRU, nn.GRU),
    "rnn": (RNN, nn.RNN),
    "lstmcell": (LSTMCell, nn.LSTMCell),
    "grucell": (GRUCell, nn.GRUCell),
    "rnncell": (RNNCell, nn.RNNCell),
}
_VARIANT = ("layer_norm", "peephole", "recurrent_dropout", "zoneout", "weight_dropout")
_ARCHITECTURE = ("input_size", "hidden_size", "num_layers", "proj_size", "bidirectional", "no_bias", *_VARIANT)
_SEQUENCE_ONLY = ("num_layers", "proj_size", "bidirectional", "batch_first", "seq_len", "lengths", *_VARIANT)


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def _zoneout(text: str) -> float | tuple[float, float]:
    """``Z`` or ``ZC,ZH`` (an LSTM's c and h)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected a probability Z, or ZC,ZH for an LSTM's c and h; got {text!r}")
    return values[0] if len(values) == 1 else values


def _places(text: str) -> tuple[str, ...]:
    """Where --layer-norm acts: ``hh,c`` -> ("hh", "c")."""
    return tuple(text.split(","))


def _lengths(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, like 5,2,4; got {text!r}")
    return values


def add_command(commands: argparse._SubParsersAction) -> None:
    """Register ``rnnkit explain``."""
    parser = commands.add_parser(
        "explain",
        help="parameters, equations, shapes and output/h_n relations of an LSTM, GRU or RNN, checked live",
        description="Explain an LSTM, GRU or RNN (or cell) described by its constructor arguments or read from "
        "a checkpoint: parameters split into gate blocks with the count formula, the equations, every shape, "
        "and the relations between output, h_n and c_n checked on a random input.",
    )
    parser.add_argument("cell", nargs="?", choices=list(CELL_TYPES), help="the module to build (not with --checkpoint)")
    model = parser.add_argument_group("the module (as its constructor takes them)")
    model.add_argument("--input-size", type=_integer(1), metavar="I")
    model.add_argument("--hidden-size", type=_integer(1), metavar="H")
    model.add_argument("--num-layers", type=_integer(1), metavar="L")
    model.add_argument("--proj-size", type=_integer(0), metavar="P", help="LSTM only")
    model.add_argument("--bidirectional", action="store_true")
    model.add_argument("--batch-first", action="store_true")
    model.add_argument("--no-bias", action="store_true", help="bias=False")
    model.add_argument("--nonlinearity", choices=["tanh", "relu"], default="tanh", help="RNN only (default tanh)")
    variant = parser.add_argument_group("a variant of rnnkit's LSTM, GRU or RNN (README, Variants)")
    variant.add_argument(
        "--layer-norm",
        nargs="?",
        const=True,
        type=_places,
        metavar="PLACES",
        help="layer normalisation inside the recurrence; or only at some of ih,hh,c",
    )
    variant.add_argument("--peephole", action="store_true", help="LSTM peepholes")
    variant.add_argument("--recurrent-dropout", type=float, metavar="P", help="variational dropout on h_{t-1}")
    variant.add_argument("--zoneout", type=_zoneout, metavar="Z", help="Z, or ZC,ZH for an LSTM's c and h")
    variant.add_argument("--weight-dropout", type=float, metavar="P", help="DropConnect on weight_hh")
    model.add_argument("--torch", action="store_true", help="explain torch.nn's module instead of rnnkit's")
    model.add_argument("--backend", choices=BACKENDS, default="auto", help="rnnkit's backend (default auto)")
    model.add_argument("--checkpoint", metavar="PATH", help="a torch.save'd state dict holding one LSTM/GRU/RNN")
    data = parser.add_argument_group("the input the relations are checked on")
    data.add_argument("--seq-len", type=_integer(1), metavar="T", help="default 5, or max(lengths)")
    data.add_argument("--batch", type=_integer(1), metavar="B", help="default 3, or the number of lengths")
    data.add_argument("--unbatched", action="store_true", help="one sequence without a batch dimension")
    data.add_argument("--lengths", type=_lengths, metavar="N,N,...", help="valid steps of each sequence")
    data.add_argument("--seed", type=int, default=0)
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the report as JSON (schema rnnkit.explain/1)")
    out.add_argument("--plot", metavar="FILE.png", help="draw the parameter blocks")
    out.add_argument("--gates", metavar="FILE.png", help="draw the gates over time for sample 0 of the input")
    out.add_argument(
        "--text",
        metavar="TEXT",
        help="with --checkpoint of a character model (rnnkit train charlm) and --gates: draw the gates as the "
        "model reads TEXT, its characters on the time axis",
    )
    parser.set_defaults(run=run)


def _build(args: argparse.Namespace) -> nn.Module:
    """The module the arguments describe."""
    if args.checkpoint is not None:
        given = [f"--{a.replace('_', '-')}" for a in _ARCHITECTURE if getattr(args, a) not in (None, False)]
        if given or args.torch:
            flags = ", ".join(given + (["--torch"] if args.torch else []))
            raise cli.CLIError(f"--checkpoint gives the module; leave out {flags}")
        try:
            module, _ = load_checkpoint(
                args.checkpoint, nonlinearity=args.nonlinearity, batch_first=args.batch_first, backend=args.backend
            )
        except (FileNotFoundError, ValueError) as error:
            raise cli.CLIError(str(error)) from error
        if args.cell is not None and type(module).__name__.lower() != args.cell:
            raise cli.CLIError(f"{args.checkpoint} holds a {type(module).__name__}, not a {args.cell}")
        return module
    if args.cell is None:
        raise cli.CLIError(f"say which module to explain ({', '.join(CELL_TYPES)}) or give --checkpoint PATH")
    if args.input_size is None or args.hidden_size is None:
        raise cli.CLIError(f"explain {args.cell} needs --input-size and --hidden-size")
    is_cell = args.cell.endswith("cell")
    if is_cell:
        given = [f"--{a.replace('_', '-')}" for a in _SEQUENCE_ONLY if getattr(args, a) not in (None, False)]
        if given:
            raise cli.CLIError(f"{args.cell} runs one step and takes no {', '.join(given)}")
    arguments: dict[str, Any] = {"bias": not args.no_bias}
    if args.cell.startswith("rnn"):
        arguments["nonlinearity"] = args.nonlinearity
    if not is_cell:
        arguments |= {"num_layers": args.num_layers or 1, "batch_first": args.batch_first}
        arguments["bidirectional"] = args.bidirectional
    if args.proj_size:
        arguments["proj_size"] = args.proj_size
    ours, theirs = CELL_TYPES[args.cell]
    given = {name: getattr(args, name) for name in _VARIANT if getattr(args, name) not in (None, False)}
    if args.torch and given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise cli.CLIError(f"{flags}: torch.nn's modules have no such variant; leave out --torch")
    if args.torch and args.backend != "auto":
        raise cli.CLIError("--backend chooses rnnkit's kernels; torch.nn's modules (--torch) have their own")
    if not args.torch:
        arguments["backend"] = args.backend
        arguments |= given
    try:
        return (theirs if args.torch else ours)(args.input_size, args.hidden_size, **arguments)
    except (TypeError, ValueError, RuntimeError) as error:
        raise cli.CLIError(str(error).strip().splitlines()[0]) from error


def _input_shape(args: argparse.Namespace, module: nn.Module) -> tuple[int, ...]:
    lengths = args.lengths
    if lengths and args.unbatched:
        raise cli.CLIError("--lengths need a batch; leave out --unbatched")
    steps = args.seq_len or (max(lengths) if lengths else 5)
    batch = args.batch or (len(lengths) if lengths else 3)
    features = module.input_size
    if spec_of(module).is_cell:
        return (features,) if args.unbatched else (batch, features)
    if args.unbatched:
        return (steps, features)
    return (batch, steps, features) if module.batch_first else (steps, batch, features)


def _save(path: str, draw: Callable[[], Any]) -> None:
    try:
        draw().savefig(path, dpi=100)
    except (OSError, ValueError) as error:  # an unwritable path, or an extension matplotlib cannot write
        raise cli.CLIError(f"cannot write {path}: {error}") from error
    print(f"wrote {path}", file=sys.stderr)


def _text_gates(args: argparse.Namespace) -> Any:
    """The gates figure of the character model in ``args.checkpoint`` reading ``args.text``."""
    from ..train.checkpoint import load_model, vocab_of
    from ..train.errors import CheckpointError

    try:
        payload, _, model = load_model(args.checkpoint, torch.device("cpu"), args.backend)
    except CheckpointError as error:
        raise cli.CLIError(f"--text needs a character model checkpoint (rnnkit train charlm): {error}") from error
    vocab = vocab_of(payload)
    if vocab is None:
        raise cli.CLIError(f"--text needs a character model; {args.checkpoint} is a {payload['task']} checkpoint")
    ids = vocab.encode(args.text)
    if len(ids) == 0:
        raise cli.CLIError(f"--text {args.text!r} holds no characters the model reads ({vocab.tokenizer} tokens)")
    with torch.no_grad(), record(model) as rec:
        model(ids.unsqueeze(0))  # (1, T): one sequence
    return plots.gates(rec, sample=0, tokens=[vocab.tokens[i] for i in ids.tolist()])


def run(args: argparse.Namespace) -> int:
    """Print the report; write the pictures asked for. Returns 0, or 1 when a relation fails."""
    if args.text is not None and (args.checkpoint is None or args.gates is None):
        raise cli.CLIError("--text draws a character model's gates: give --checkpoint PATH and --gates FILE.png too")
    module = _build(args)
    try:
        report: Report = explain(module, _input_shape(args, module), lengths=args.lengths, seed=args.seed)
    except ValueError as error:  # the input shape or lengths do not fit the module
        raise cli.CLIError(str(error)) from error
    if args.plot:
        _save(args.plot, lambda: plots.parameters(module))
    if args.text is not None:
        _save(args.gates, lambda: _text_gates(args))
    elif args.gates:
        _save(args.gates, lambda: plots.gates(report.recording, sample=0))
    print(report.to_json() if args.json else report)
    return 0 if report.passed else 1
