"""The one exception of the data loaders."""


class DataError(ValueError):
    """A data set that is missing, empty, unreadable or too small; the message says what was expected and what came."""
