"""A trained checkpoint measured again: on its held-out data, or a charlm on another text."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..data import DataError, read_text
from . import checkpoint
from .charlm import CharLMTask, perplexity
from .classify import ClassifyTask
from .config import EvalConfig, check
from .distributed import resolve_device
from .errors import ConfigError
from .loop import writable


def evaluate(config: EvalConfig) -> tuple[dict[str, Any], list[Path]]:
    """The checkpoint's loss and perplexity or accuracy, with the files written to ``config.out_dir``
    (eval.json, and confusion.png for a classifier), if given.

    charlm: on its validation text, or on ``config.text`` (as ``text_loss``, ``text_ppl``).
    classify: on its test set, read from ``config.data_dir`` if given.
    """
    check(config)
    device = resolve_device(config.device)
    payload, trained, model = checkpoint.load_model(config.checkpoint, device, config.backend)
    for flag, value, task_name in (("--text", config.text, "charlm"), ("--data-dir", config.data_dir, "classify")):
        if value is not None and trained.task != task_name:
            raise ConfigError(f"{flag} is for {task_name} checkpoints, {config.checkpoint} is {trained.task}")
    out_dir = None if config.out_dir is None else writable(Path(config.out_dir))
    written: list[Path] = []
    if trained.task == "charlm" and config.text is not None:
        ids = checkpoint.vocab_of(payload).encode(read_text(config.text))
        if len(ids) < 2:
            raise DataError(f"text file {config.text} holds {len(ids)} tokens, expected 2 or more")
        metrics = perplexity(model, ids, trained.batch_size, device, split="text")
    else:
        if trained.task == "charlm":
            task: CharLMTask | ClassifyTask = CharLMTask(trained, checkpoint.vocab_of(payload))
        else:
            task = ClassifyTask(replace(trained, data_dir=config.data_dir or trained.data_dir))
        metrics = task.evaluate(model, device)
        if out_dir is not None:
            written += task.figures(model, device, out_dir)
    result = {"checkpoint": config.checkpoint, "task": trained.task, "epochs": len(payload["history"]), **metrics}
    if out_dir is not None:
        (out_dir / "eval.json").write_text(json.dumps(result) + "\n")
        written.insert(0, out_dir / "eval.json")
    return result, written
