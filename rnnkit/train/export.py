"""A checkpoint's model as ONNX (``rnnkit export``): the char LM with its state in and out, so a
runtime can generate token by token, and the classifier from its input sequence to its logits."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import onnx
from . import checkpoint
from .config import ExportConfig, check
from .errors import CheckpointError, ConfigError

# Input and output names of each task's graph; the char LM's states are those of an LSTM, or h alone.
NAMES = {
    "charlm": (["tokens", "h0", "c0"], ["logits", "h_n", "c_n"]),
    "classify": (["input"], ["logits"]),
}


def export(config: ExportConfig) -> Path:
    """Write the model of ``config.checkpoint`` to ``config.onnx``; returns that path."""
    check(config)
    payload, _, model = checkpoint.load_model(config.checkpoint, torch.device("cpu"), "auto")
    task = payload["task"]
    if task == "charlm":
        rnn = model.rnn
        # (B, T) and sizes other than 1, which torch.export would take as fixed: both axes stay dynamic
        tokens = torch.zeros(2, 3, dtype=torch.int64)
        states = tuple(torch.zeros(rnn.num_layers, 2, rnn.hidden_size) for _ in range(2 if rnn.mode == "LSTM" else 1))
        example = (tokens, states if len(states) > 1 else states[0])
        inputs, outputs = (names[: 1 + len(states)] for names in NAMES[task])
    else:
        example = (torch.zeros(2, 3, payload["model_args"]["input_size"]),)
        inputs, outputs = NAMES[task]
    target = Path(config.onnx)
    if not target.parent.is_dir():
        raise ConfigError(f"cannot write --onnx {target}: its folder {target.parent} does not exist")
    try:
        return onnx.export(model, target, example_input=example, input_names=inputs, output_names=outputs)
    except (ValueError, ImportError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {config.checkpoint}: {error}") from None
