"""Exception types.

torch.nn raises RuntimeError for some bad inputs (wrong feature or hidden size)
and ValueError or TypeError for others. rnnkit's classes derive from both kinds,
so code written against torch.nn keeps catching what it caught before.
"""


class RNNInputError(ValueError, RuntimeError):
    """An input, state or ``lengths`` of the wrong shape or value."""


class RNNTypeError(TypeError, ValueError):
    """An input or state of the wrong type, dtype or device."""
