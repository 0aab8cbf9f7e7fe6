"""lightnas engine: search spaces, GP-UCB optimiser, studies. Knows nothing of CNNs or training."""
from nas.errors import ConfigError, DataError, NasError, SpaceError, StudyError
from nas.space import Categorical, Constant, Float, Group, Integer, Repeat, Space

__all__ = [
    "Space", "Float", "Integer", "Categorical", "Constant", "Group", "Repeat",
    "NasError", "SpaceError", "ConfigError", "DataError", "StudyError",
]
