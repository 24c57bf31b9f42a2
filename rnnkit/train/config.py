"""Settings of each job, one dataclass per job; every field is a command-line flag (``--batch-size``).

A field's metadata holds its help text, its choices or its valid range written as an
interval (``"[1, inf)"``, ``"(0, 1)"``). Checkpoints store the resolved training config,
so a run can be resumed, evaluated and sampled from without repeating its flags.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from .. import ops
from ..data import DATASETS, TOKENIZERS
from .errors import ConfigError

CELLS = ("lstm", "gru", "rnn")
VARIANT_FIELDS = (
    "layer_norm",
    "layer_norm_at",
    "peephole",
    "recurrent_dropout",
    "zoneout",
    "weight_dropout",
    "forget_bias",
    "chrono_init",
)
DEVICES = ("auto", "cpu", "cuda")
# "torch.nn" trains torch.nn's own module (same parameters) to compare speed on the same run
BACKENDS = (*ops.BACKENDS, "torch.nn")


def option(
    default: Any = MISSING, help: str = "", *, choices: tuple = (), valid: str = "", metavar: str = "PATH"
) -> Any:
    """A config field: its default, help text, its choices or its valid interval, and (text fields) a metavar."""
    return field(default=default, metadata={"help": help, "choices": choices, "valid": valid, "metavar": metavar})


def _within(value: float, interval: str) -> bool:
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below  # False for NaN


def _kinds(annotation: Any) -> tuple[type, ...]:
    """The types a field accepts: ``float`` takes ints too, ``X | None`` takes None."""
    kinds = typing.get_args(annotation) or (annotation,)
    return (*kinds, int) if float in kinds else kinds


def check(config: Any) -> None:
    """ConfigError naming the flag, what it accepts and what it got, for the first bad field."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value, flag = getattr(config, f.name), "--" + f.name.replace("_", "-")
        kinds = _kinds(hints[f.name])
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            expected = " or ".join("None" if k is type(None) else k.__name__ for k in kinds)
            raise ConfigError(f"{flag} must be {expected}, got {value!r} ({type(value).__name__})")
        if f.metadata["choices"] and value not in f.metadata["choices"]:
            raise ConfigError(f"{flag} must be one of {', '.join(map(str, f.metadata['choices']))}, got {value!r}")
        if f.metadata["valid"] and value is not None and not _within(value, f.metadata["valid"]):
            raise ConfigError(f"{flag} must be in {f.metadata['valid']}, got {value}")
    backend = getattr(config, "backend", None)  # ExportConfig has none: it traces the compiled kernels
    if backend not in (None, "torch.nn"):
        try:
            ops.check_backend(backend)
        except (ValueError, RuntimeError) as error:
            raise ConfigError(f"--backend: {error}") from None
    if isinstance(config, TrainConfig):
        _check_variant(config)


def variant_args(config: TrainConfig) -> dict[str, Any]:
    """The variant keywords of the run's recurrent module that differ from torch.nn's net (``rnnkit.variants``)."""
    plain = {f.name: f.default for f in fields(TrainConfig) if f.name in VARIANT_FIELDS}
    given = {name: getattr(config, name) for name in VARIANT_FIELDS if getattr(config, name) != plain[name]}
    places = given.pop("layer_norm_at", "all")
    if given.get("layer_norm") and places != "all":
        given["layer_norm"] = tuple(places.split(","))
    return given


def _check_variant(config: TrainConfig) -> None:
    if config.layer_norm_at != "all":
        every = ("ih", "hh", "c") if getattr(config, "cell", "lstm") == "lstm" else ("ih", "hh")
        places = config.layer_norm_at.split(",")
        if not config.layer_norm:
            raise ConfigError("--layer-norm-at says where --layer-norm acts: give --layer-norm too")
        if any(place not in every for place in places):
            raise ConfigError(f"--layer-norm-at takes all or some of {','.join(every)}, got {config.layer_norm_at}")
    given = variant_args(config)
    flags = ", ".join("--" + name.replace("_", "-") for name in given)
    if given and config.backend == "torch.nn":
        raise ConfigError(f"{flags}: torch.nn's modules have no such variant; use --backend auto")
    cell = getattr(config, "cell", "lstm")
    lstm_only = [name for name in ("peephole", "forget_bias", "chrono_init") if name in given]
    if lstm_only and cell != "lstm":
        raise ConfigError(f"--{lstm_only[0].replace('_', '-')} is for --cell lstm, got --cell {cell}")
    if "forget_bias" in given and "chrono_init" in given:
        raise ConfigError("--forget-bias and --chrono-init both set the forget gate's bias: give one of them")
    recurrence = [name for name in given if name not in ("weight_dropout", "forget_bias", "chrono_init")]
    if recurrence and config.backend not in ("auto", "naive"):
        flag = "--" + recurrence[0].replace("_", "-")
        raise ConfigError(f"{flag} runs on --backend auto or naive, not {config.backend}")


@dataclass
class TrainConfig:
    """What every training run has: output, length, optimiser, machine. See ``CharLMConfig``, ``ClassifyConfig``."""

    task: ClassVar[str]
    # fields that say how to run, not what to train: the only ones a resumed run may change
    RUN_FIELDS: ClassVar[tuple[str, ...]] = (
        "out_dir",
        "resume",
        "progress",
        "log_every",
        "epochs",
        "device",
        "backend",
    )

    # I/O
    out_dir: str = option("runs/train", "folder for checkpoint.pt, metrics.jsonl and the PNG plots", metavar="DIR")
    resume: str | None = option(None, "checkpoint to continue from; its run's settings apply unless given again")
    progress: bool = option(True, "progress bars on stderr (shown on a terminal only)")
    log_every: int = option(1, "print the log line every this many epochs (and after the last)", valid="[1, inf)")
    # optimisation
    epochs: int = option(20, "passes over the training data", valid="[1, inf)")
    batch_size: int = option(64, "sequences per step, over all processes together", valid="[1, inf)")
    optimizer: str = option("adam", "sgd or adam", choices=("sgd", "adam"))
    lr: float = option(2e-3, "learning rate", valid="(0, inf)")
    momentum: float = option(0.0, "SGD momentum", valid="[0, 1)")
    weight_decay: float = option(0.0, "L2 penalty (decoupled for adam: AdamW)", valid="[0, inf)")
    clip: float = option(0.0, "clip the gradient norm to this (0: no clipping)", valid="[0, inf)")
    schedule: str = option(
        "constant", "learning rate over epochs: constant, or cosine decay", choices=("constant", "cosine")
    )
    eval_every: int = option(1, "evaluate every this many epochs (and after the last)", valid="[1, inf)")
    seed: int = option(0, "seeds the initial weights, batch order and dropout (CPU runs repeat exactly)")
    # machine
    device: str = option("auto", "cuda when available with auto", choices=DEVICES)
    backend: str = option("auto", "rnnkit backend, or torch.nn to train torch.nn's module", choices=BACKENDS)
    # variants of the recurrent module (rnnkit's modules; DESIGN.md, "Variants")
    layer_norm: bool = option(False, "layer normalisation inside the recurrence")
    layer_norm_at: str = option(
        "all",
        "where --layer-norm acts: all, or some of ih (W_ih x_t), hh (W_hh h_{t-1}), c (LSTM's c_t), e.g. hh,c",
        metavar="PLACES",
    )
    peephole: bool = option(False, "LSTM peepholes: the gates see the cell state")
    recurrent_dropout: float = option(
        0.0, "variational dropout on h_{t-1}: one mask per sequence and layer", valid="[0, 1)"
    )
    zoneout: float = option(0.0, "probability that a unit keeps its previous state, each step", valid="[0, 1)")
    weight_dropout: float = option(0.0, "DropConnect on the recurrent weights (AWD-LSTM)", valid="[0, 1)")
    forget_bias: float | None = option(None, "LSTM: initialise the forget gate's bias to this", metavar="X")
    chrono_init: float | None = option(
        None, "LSTM: chrono initialisation for dependencies up to this many steps", valid="[2, inf)", metavar="X"
    )


@dataclass
class CharLMConfig(TrainConfig):
    """A character language model; the defaults are d2l's setup (one-hot LSTM 256, SGD lr 1, clip 1)."""

    task: ClassVar[str] = "charlm"

    epochs: int = option(500, "passes over the training tokens", valid="[1, inf)")
    batch_size: int = option(32, "subsequences per step, over all processes together", valid="[1, inf)")
    optimizer: str = option("sgd", "sgd or adam", choices=("sgd", "adam"))
    lr: float = option(1.0, "learning rate", valid="(0, inf)")
    clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)", valid="[0, inf)")
    # data
    text: str | None = option(None, "UTF-8 text file to learn (default: The Time Machine, shipped with rnnkit)")
    tokenizer: str = option("letters", "letters: a-z and space (28 tokens); chars: every character", choices=TOKENIZERS)
    val_fraction: float = option(0.1, "the end of the text held out for validation", valid="[0, 1)")
    max_tokens: int = option(10000, "train on the first this many tokens (0: all; d2l uses 10000)", valid="[0, inf)")
    partition: str = option(
        "random", "random windows, or sequential streams carrying the state", choices=("random", "sequential")
    )
    num_steps: int = option(35, "tokens per window: the truncated backpropagation length", valid="[1, inf)")
    # model
    cell: str = option("lstm", "recurrent cell", choices=CELLS)
    hidden_size: int = option(256, "features of the hidden state", valid="[1, inf)")
    num_layers: int = option(1, "stacked recurrent layers", valid="[1, inf)")
    embedding: int = option(0, "embedding size (0: one-hot input, as d2l)", valid="[0, inf)")
    dropout: float = option(
        0.0,
        "dropout on an embedding (not one-hot input), between layers, before the output",
        valid="[0, 1)",
    )


@dataclass
class ClassifyConfig(TrainConfig):
    """A sequence classifier: each image row (or signal step) is one time step."""

    task: ClassVar[str] = "classify"

    epochs: int = option(30, "passes over the training data", valid="[1, inf)")
    batch_size: int = option(32, "sequences per step, over all processes together", valid="[1, inf)")
    lr: float = option(1e-2, "learning rate", valid="(0, inf)")
    schedule: str = option(
        "cosine", "learning rate over epochs: constant, or cosine decay", choices=("constant", "cosine")
    )
    # data
    data: str = option(
        "digits",
        "digits (scikit-learn), mnist1d (generated), mnist or fashion-mnist (IDX files)",
        choices=DATASETS,
    )
    data_dir: str | None = option(
        None,
        "folder holding the IDX files of --data mnist or fashion-mnist (fashion-mnist: Debian's package's by default)",
        metavar="DIR",
    )
    # model
    cell: str = option("lstm", "recurrent cell", choices=CELLS)
    hidden_size: int = option(128, "features of the hidden state", valid="[1, inf)")
    num_layers: int = option(1, "stacked recurrent layers", valid="[1, inf)")
    bidirectional: bool = option(False, "read the sequence both ways")
    readout: str = option("last", "classify the last hidden state, or the mean over time", choices=("last", "mean"))
    dropout: float = option(0.0, "dropout between layers and before the output layer", valid="[0, 1)")


TASKS: dict[str, type[TrainConfig]] = {"charlm": CharLMConfig, "classify": ClassifyConfig}


@dataclass
class GenerateConfig:
    """Text from a character language model's checkpoint."""

    checkpoint: str = option(help="checkpoint.pt of a charlm run")
    prefix: str = option("time traveller", "text to start from", metavar="TEXT")
    length: int = option(200, "tokens to generate", valid="[1, inf)")
    temperature: float = option(1.0, "sampling temperature (0: always the likeliest token)", valid="[0, inf)")
    seed: int = option(0, "seeds the sampling")
    device: str = option("auto", "cuda when available with auto", choices=DEVICES)
    backend: str = option("auto", "rnnkit backend, or torch.nn", choices=BACKENDS)


@dataclass
class EvalConfig:
    """A checkpoint's loss and perplexity or accuracy on its held-out data or another text."""

    checkpoint: str = option(help="checkpoint.pt of a training run")
    text: str | None = option(None, "charlm: perplexity on this UTF-8 file instead of the validation text")
    data_dir: str | None = option(
        None, "classify --data mnist or fashion-mnist: where the IDX files are now", metavar="DIR"
    )
    out_dir: str | None = option(None, "also write eval.json (and confusion.png for a classifier) here", metavar="DIR")
    device: str = option("auto", "cuda when available with auto", choices=DEVICES)
    backend: str = option("auto", "rnnkit backend, or torch.nn", choices=BACKENDS)


@dataclass
class ExportConfig:
    """A training checkpoint's model as an ONNX file, run by onnxruntime or any ONNX runtime."""

    checkpoint: str = option(help="checkpoint.pt of a training run")
    onnx: str = option(help="the .onnx file to write")
