"""rnnkit: LSTM, GRU and RNN for PyTorch, written from their equations.

Drop-in replacements for torch.nn's recurrent modules and cells (same arguments,
parameter names, shapes, gate order and initialisation) that also take
``lengths=`` on padded input.
"""

from .cells import GRUCell, LSTMCell, RNNCell
from .errors import RNNInputError, RNNTypeError
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
    "last_valid",
]
__version__ = "0.1.0"
