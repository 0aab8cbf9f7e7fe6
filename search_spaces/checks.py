"""One-line checks of config values, shared by the architecture validator and the block registry's keys.

Each takes the value and ``where`` (its path in the config, e.g. ``stages[2].kernel``) and returns the value or
raises a ConfigError that names the path.
"""

from __future__ import annotations

import math
from typing import Any

from nas.errors import ConfigError


def number(v: Any, where: str) -> float:
    """A finite int or float (not a bool)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where}: expected a number, got {v!r}")
    return v


def integer(v: Any, where: str, *, low: int) -> int:
    """An integer (an integral float such as 32.0 is accepted) of at least ``low``."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v:
        raise ConfigError(f"{where}: expected an integer, got {v!r}")
    if v < low:
        what = "positive" if low == 1 else f"at least {low}"
        raise ConfigError(f"{where}: {int(v)} must be {what}")
    return int(v)


def kernel(v: Any, where: str) -> int:
    k = integer(v, where, low=1)
    if k % 2 == 0:
        raise ConfigError(f"{where}: {k} must be odd (1, 3, 5, 7, ...) so that padding k // 2 keeps the size")
    return k


def stride(v: Any, where: str) -> int:
    s = integer(v, where, low=1)
    if s not in (1, 2):
        raise ConfigError(f"{where}: {s} must be 1 or 2")
    return s
