"""Error types shared by every module. Imports nothing of ours, so any module may use it."""


class NasError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with code 2."""


class SpaceError(NasError, ValueError):
    """A malformed search space, or a config that does not belong to a space."""


class ConfigError(NasError, ValueError):
    """A config that cannot be built or run (bad channels, unknown block, ...)."""


class DataError(NasError):
    """A data set that is missing, empty or unreadable."""


class StudyError(NasError):
    """A study folder that is missing, locked, empty or not a study."""


class SpaceExhausted(NasError):
    """Every config the space holds (under the constraints) was already tried: a search ends normally."""
