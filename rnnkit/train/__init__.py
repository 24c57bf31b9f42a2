"""Training, evaluation and sampling: the Python API beneath ``rnnkit train``, ``eval`` and ``generate``.

>>> from rnnkit.train import ClassifyConfig, train
>>> history = train(ClassifyConfig(data="digits", epochs=30, out_dir="runs/digits"))  # doctest: +SKIP
>>> history[-1]["test_acc"]  # doctest: +SKIP
"""

from . import checkpoint
from .checkpoint import load_model
from .config import CharLMConfig, ClassifyConfig, EvalConfig, GenerateConfig, TrainConfig
from .errors import CheckpointError, ConfigError, TrainingDiverged
from .evaluate import evaluate
from .generate import generate, sample
from .loop import make_task, train
from .models import CharLM, Classifier

__all__ = [
    "CharLM",
    "CharLMConfig",
    "CheckpointError",
    "Classifier",
    "ClassifyConfig",
    "ConfigError",
    "EvalConfig",
    "GenerateConfig",
    "TrainConfig",
    "TrainingDiverged",
    "checkpoint",
    "evaluate",
    "generate",
    "load_model",
    "make_task",
    "sample",
    "train",
]
