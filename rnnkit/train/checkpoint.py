"""Checkpoints: what it takes to resume, evaluate or sample, written atomically and read safely.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``::

    format      "rnnkit.train/1"
    task        "charlm" or "classify"
    config      the resolved training config, as a dict
    model_args  the model's constructor arguments (the backend aside)
    model, optimizer, scheduler   their state_dicts
    rng         per process: {"torch": CPU generator state, "cuda": CUDA generator state or None}
    vocab       {"tokens": [...], "tokenizer": ...} for charlm, else None
    history     the metrics of every finished epoch; their number is the epoch to resume at
"""

from __future__ import annotations

import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Vocab
from .config import TASKS, TrainConfig
from .errors import CheckpointError
from .models import MODELS

FORMAT = "rnnkit.train/1"
_KEYS = ("format", "task", "config", "model_args", "model", "optimizer", "scheduler", "rng", "vocab", "history")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it: ``path`` is never half-written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def load(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, on the CPU; CheckpointError when missing, truncated, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to unpickle means the file is not a usable checkpoint
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {_one_line(error)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or set(payload) != set(_KEYS):
        got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not an rnnkit training checkpoint: expected keys {list(_KEYS)}, got {got}")
    if payload["task"] not in TASKS:
        raise CheckpointError(f"checkpoint {path} is for task {payload['task']!r}, expected one of {list(TASKS)}")
    return payload


def config_of(payload: dict[str, Any], path: str | Path) -> TrainConfig:
    """The training config stored in a checkpoint."""
    try:
        return TASKS[payload["task"]](**payload["config"])
    except TypeError as error:
        raise CheckpointError(f"checkpoint {path} holds a config this rnnkit cannot read: {error}") from None


def vocab_of(payload: dict[str, Any]) -> Vocab | None:
    """The vocabulary stored in a charlm checkpoint (None for classify)."""
    vocab = payload["vocab"]
    return None if vocab is None else Vocab(tuple(vocab["tokens"]), vocab["tokenizer"])


def check_resumable(
    payload: dict[str, Any], path: str | Path, config: TrainConfig, model_args: dict[str, Any], vocab: Vocab | None
) -> None:
    """CheckpointError unless ``config`` continues the checkpoint's run: the same task, settings (only
    ``RUN_FIELDS`` may differ), model and vocabulary."""
    if payload["task"] != config.task:
        raise CheckpointError(f"checkpoint {path} is from a {payload['task']} run, cannot resume {config.task}")
    saved = payload["config"]
    for f in fields(config):
        value = saved.get(f.name, f.default)  # a field newer than the checkpoint had its default then
        if f.name not in config.RUN_FIELDS and value != getattr(config, f.name):
            raise CheckpointError(
                f"checkpoint {path} was trained with {f.name}={value!r}, this run has "
                f"{f.name}={getattr(config, f.name)!r}; a resumed run may change only "
                f"{', '.join(config.RUN_FIELDS)}"
            )
    if payload["model_args"] != model_args:
        raise CheckpointError(f"checkpoint {path} holds a model of {payload['model_args']}, this run's is {model_args}")
    if vocab_of(payload) != vocab:
        raise CheckpointError(f"checkpoint {path} has another vocabulary than this run's text")


def restore(payload: dict[str, Any], path: str | Path, **parts: Any) -> None:
    """Load the checkpoint's state into each named part (``model=``, ``optimizer=``, ``scheduler=``)."""
    for name, part in parts.items():
        try:
            part.load_state_dict(payload[name])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint {path} does not fit this {name}: {_one_line(error)}") from None


def load_model(path: str | Path, device: torch.device, backend: str) -> tuple[dict[str, Any], TrainConfig, nn.Module]:
    """A checkpoint, its config and its model on ``device`` in eval mode."""
    payload = load(path)
    config = config_of(payload, path)
    try:
        model = MODELS[payload["task"]](**payload["model_args"], backend=backend)
    except TypeError as error:
        raise CheckpointError(f"checkpoint {path} holds model arguments this rnnkit cannot read: {error}") from None
    except ValueError as error:  # a variant that the backend asked for does not run
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    restore(payload, path, model=model)
    return payload, config, model.to(device).eval()


def state(
    config: TrainConfig,
    model_args: dict[str, Any],
    vocab: Vocab | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rng: list[dict[str, Any]],
    history: list[dict[str, float]],
) -> dict[str, Any]:
    """The checkpoint of a run after ``len(history)`` epochs."""
    return {
        "format": FORMAT,
        "task": config.task,
        "config": asdict(config),
        "model_args": model_args,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng,
        "vocab": None if vocab is None else {"tokens": list(vocab.tokens), "tokenizer": vocab.tokenizer},
        "history": history,
    }
