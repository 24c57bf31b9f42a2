"""Each cell's gates, in the order torch.nn stacks their blocks of H rows in ``weight_ih`` and
``weight_hh``: the one table that the modules (how many) and ``rnnkit.explain`` (names, meanings,
nonlinearities) read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gate:
    """One block of G*H rows in ``weight_ih``/``weight_hh``: its letter, meaning and nonlinearity."""

    name: str
    meaning: str
    activation: str


GATES: dict[str, tuple[Gate, ...]] = {
    "LSTM": (
        Gate("i", "input gate", "sigmoid"),
        Gate("f", "forget gate", "sigmoid"),
        Gate("g", "cell candidate", "tanh"),
        Gate("o", "output gate", "sigmoid"),
    ),
    "GRU": (Gate("r", "reset gate", "sigmoid"), Gate("z", "update gate", "sigmoid"), Gate("n", "new gate", "tanh")),
    "RNN_TANH": (Gate("h", "hidden state", "tanh"),),
    "RNN_RELU": (Gate("h", "hidden state", "relu"),),
}
