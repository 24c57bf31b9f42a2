"""Exceptions of training, evaluation and generation; the command line prints each as one line."""


class ConfigError(ValueError):
    """A setting out of range, an unusable device or backend, an output folder that cannot be written."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, corrupt, or from another task or model."""


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; training stopped before the step."""
