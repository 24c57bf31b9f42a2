"""rnnkit: LSTM, GRU and RNN for PyTorch, written from their equations.

Drop-in replacements for torch.nn's recurrent modules and cells (same arguments,
parameter names, shapes, gate order and initialisation) that also take
``lengths=`` on padded input; ``explain``, ``record`` and ``plots`` show what any
LSTM, GRU or RNN (rnnkit's or torch.nn's) holds, computes and returns.
"""

from .cells import GRUCell, LSTMCell, RNNCell
from .errors import RNNInputError, RNNTypeError
from .explain import explain, plots
from .explain.record import Recording, record
from .modules import GRU, LSTM, RNN
from .sequences import last_valid

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "RNNInputError",
    "RNNTypeError",
    "Recording",
    "explain",
    "last_valid",
    "plots",
    "record",
]
__version__ = "0.1.0"
