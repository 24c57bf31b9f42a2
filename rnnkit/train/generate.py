"""Text from a character language model: the prefix read in one pass, then one token at a time."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..data import Vocab
from . import checkpoint
from .config import GenerateConfig, check
from .distributed import resolve_device
from .errors import CheckpointError, ConfigError


@torch.no_grad()
def sample(
    model: nn.Module,
    vocab: Vocab,
    prefix: str,
    length: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> str:
    """``prefix`` (as the tokeniser reads it) followed by ``length`` generated tokens.

    Each token is drawn from softmax(logits / temperature) over the vocabulary but ``<unk>``;
    temperature 0 takes the likeliest (d2l's ``predict_ch8``). Raises ValueError for a prefix
    with no tokens.
    """
    ids = vocab.encode(prefix)
    if len(ids) == 0:
        raise ValueError(f"the prefix must hold at least one token, got {prefix!r}")
    device = next(model.parameters()).device
    logits, state = model(ids[None].to(device))  # (1, P, V)
    generated = []
    for _ in range(length):
        last = logits[0, -1].float().cpu()  # (V,)
        last[0] = -math.inf  # <unk> stands for characters outside the vocabulary, not one to write
        if temperature == 0:
            token = last.argmax()
        else:
            token = torch.multinomial(torch.softmax(last / temperature, 0), 1, generator=generator)[0]
        generated.append(int(token))
        logits, state = model(token.view(1, 1).to(device), state)
    return vocab.decode(ids) + vocab.decode(generated)


def generate(config: GenerateConfig) -> str:
    """``config.prefix`` and ``config.length`` tokens from the charlm checkpoint ``config.checkpoint``."""
    check(config)
    payload, _, model = checkpoint.load_model(config.checkpoint, resolve_device(config.device), config.backend)
    if payload["task"] != "charlm":
        raise CheckpointError(f"checkpoint {config.checkpoint} is a {payload['task']} model, expected charlm")
    vocab = checkpoint.vocab_of(payload)
    if len(vocab.encode(config.prefix)) == 0:
        raise ConfigError(f"--prefix must hold at least one character, got {config.prefix!r}")
    generator = torch.Generator().manual_seed(config.seed)
    return sample(model, vocab, config.prefix, config.length, config.temperature, generator)
