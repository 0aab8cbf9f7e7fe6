"""lightnas engine: search spaces, GP-UCB optimiser, studies. Knows nothing of CNNs or training."""

from nas.errors import ConfigError, DataError, NasError, SpaceError, StudyError
from nas.optimizer import Limit, Optimizer
from nas.space import Categorical, Constant, Float, Group, Integer, Repeat, Space

__all__ = [
    "Space",
    "Float",
    "Integer",
    "Categorical",
    "Constant",
    "Group",
    "Repeat",
    "Optimizer",
    "Limit",
    "load_study",
    "NasError",
    "SpaceError",
    "ConfigError",
    "DataError",
    "StudyError",
]


def __getattr__(name):
    if name == "load_study":  # pandas and matplotlib load only when a report is asked for
        from nas.report import load_study

        return load_study
    raise AttributeError(f"module 'nas' has no attribute {name!r}")
