"""The parameters of a search space and the dims of its encoding: Float, Integer, Categorical, Constant, Group,
Repeat, each checking its own values, sampling them and proposing moves (``nas.space`` composes them).

Parameter kinds
    Float(name, low, high, log=False)        a real number
    Integer(name, low, high, step=1, log=False)
    Categorical(name, choices)               a choice; each choice may carry its own parameters
    Constant(name, value)                    fixed; kept in the config, never searched
    Group(name, params)                      a nested dict
    Repeat(name, min, max, params)           a list of ``min..max`` dicts with the same parameters

A categorical's branch parameters sit beside it in the same dict: choosing ``sgd`` for
``optimizer.name`` makes ``optimizer.momentum`` exist, choosing ``adam`` makes ``optimizer.beta1``.
Branches nest to any depth.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from nas.errors import SpaceError

_SCALARS = (str, int, float, bool, type(None))


def _fmt(v: Any) -> str:
    return json.dumps(v) if isinstance(v, str) else repr(v)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (JSON does), but lets 2 equal 2.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


_INT64 = (-(2**63), 2**63 - 1)


def _no_numeric_strings(name: str, **values) -> None:
    """YAML 1.1 reads 1e-4 (no dot) as a string: say so instead of "must be a number"."""
    for what, v in values.items():
        if isinstance(v, str):
            try:
                float(v)
            except ValueError:
                continue
            hint = (
                f"YAML reads an exponent without a dot as a string: write {_yaml_number(v)} or {float(v):g}"
                if "e" in v.lower()
                else "remove the quotes"
            )
            raise SpaceError(f"{name}: {what} {v!r} is a string, not a number ({hint})")


def _yaml_number(text: str) -> str:
    mant, _, exp = text.strip().lower().partition("e")
    return f"{mant if '.' in mant else mant + '.0'}e{exp}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


# --------------------------------------------------------------------------------------------- dims
@dataclass(frozen=True)
class Dim:
    """One dimension of the encoding. ``key`` names it, e.g. ``stages[1].kernel@block=Conv``."""

    key: str
    kind: str  # "float" | "int" | "cat"
    conditional: bool  # True where some configs lack this dimension
    n_choices: int = 0  # cat only
    param: Any = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------- parameters
class Param:
    name: str

    def _check_name(self) -> None:
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in ".[]@=#"):
            raise SpaceError(f"parameter name {self.name!r} must be a non-empty string without . [ ] @ = #")


class _Numeric(Param):
    """What Float and Integer share: ``low``, ``high``, ``log`` and the map onto [0, 1] the GP reads."""

    low: float
    high: float
    log: bool

    def to_unit(self, v: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            lo, span = self._log_span()
            return (math.log(v) - lo) / span
        return (v - self.low) / (self.high - self.low)

    def to_unit_many(self, v: np.ndarray) -> np.ndarray:
        """``to_unit`` over an array of values (the column-wise encoding of a flat space)."""
        v = np.asarray(v, dtype=float)
        if self.high == self.low:
            return np.zeros(len(v))
        if self.log:
            lo, span = self._log_span()
            return (np.log(v) - lo) / span
        return (v - self.low) / (self.high - self.low)

    def _log_span(self) -> tuple[float, float]:
        """``(log low, log high - log low)``, computed once (encoding calls ``to_unit`` for every candidate)."""
        span = self.__dict__.get("_log_cache")
        if span is None:
            span = self.__dict__["_log_cache"] = (math.log(self.low), math.log(self.high) - math.log(self.low))
        return span


class Float(_Numeric):
    def __init__(self, name: str, low: float, high: float, *, log: bool = False):
        self.name, self.log = name, bool(log)
        self._check_name()
        _no_numeric_strings(name, low=low, high=high)
        if not (_is_number(low) and _is_number(high)) or not (math.isfinite(low) and math.isfinite(high)):
            raise SpaceError(f"{name}: low and high must be finite numbers, got {low!r}, {high!r}")
        if low > high:
            raise SpaceError(f"{name}: low {low} is above high {high}")
        if log and low <= 0:
            raise SpaceError(f"{name}: a log scale needs low > 0, got {low}")
        self.low, self.high = float(low), float(high)

    def from_unit(self, u: float) -> float:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return min(max(v, self.low), self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit(rng.random())

    def check(self, v: Any, path: str) -> None:
        if not _is_number(v) or not math.isfinite(v):
            raise SpaceError(f"{path}: expected a number, got {_fmt(v)}")
        if not self.low <= v <= self.high:
            raise SpaceError(f"{path}: {v} is outside [{self.low:g}, {self.high:g}]")

    def moves(self, v: float, rng: np.random.Generator) -> list:
        u = self.to_unit(v)
        out = []
        for step in (0.05, 0.2):
            for s in (-1, 1):
                w = self.from_unit(min(max(u + s * step * (0.5 + rng.random()), 0.0), 1.0))
                if w != v and all(w != o for o in out):
                    out.append(w)
        return out

    def size(self) -> float:
        return 1 if self.low == self.high else math.inf

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": "float", "low": self.low, "high": self.high}
        if self.log:
            d["log"] = True
        return d

    def describe(self) -> str:
        return f"float [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


class Integer(_Numeric):
    def __init__(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False):
        self.name, self.log = name, bool(log)
        self._check_name()
        _no_numeric_strings(name, low=low, high=high, step=step)
        for what, v in (("low", low), ("high", high), ("step", step)):
            if not _is_number(v) or not math.isfinite(v) or int(v) != v:
                raise SpaceError(f"{name}: {what} must be an integer, got {v!r}")
            if not _INT64[0] <= int(v) <= _INT64[1]:  # numpy samples in int64; SQLite stores int64
                raise SpaceError(f"{name}: {what} {int(v)} is beyond the 64-bit integer range (+-9.2e18)")
        low, high, step = int(low), int(high), int(step)
        if low > high:
            raise SpaceError(f"{name}: low {low} is above high {high}")
        if step < 1:
            raise SpaceError(f"{name}: step must be at least 1, got {step}")
        if (high - low) % step:
            raise SpaceError(f"{name}: high - low ({high - low}) must be a multiple of step {step}")
        if log and low <= 0:
            raise SpaceError(f"{name}: a log scale needs low > 0, got {low}")
        if log and step != 1:
            raise SpaceError(f"{name}: log and step cannot be combined")
        self.low, self.high, self.step = low, high, step

    def from_unit(self, u: float) -> int:
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        v = self.low + round((v - self.low) / self.step) * self.step
        return int(min(max(v, self.low), self.high))

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:  # uniform in log space, then onto the grid
            return self.from_unit(rng.random())
        return int(self.low + self.step * rng.integers(0, (self.high - self.low) // self.step + 1))

    def check(self, v: Any, path: str) -> None:
        if not _is_number(v) or not math.isfinite(v) or int(v) != v:
            raise SpaceError(f"{path}: expected an integer, got {_fmt(v)}")
        if not self.low <= v <= self.high:
            raise SpaceError(f"{path}: {int(v)} is outside [{self.low}, {self.high}]")
        if (int(v) - self.low) % self.step:
            raise SpaceError(f"{path}: {int(v)} is not on the grid {self.low}, {self.low + self.step}, ...")

    def moves(self, v: int, rng: np.random.Generator) -> list:
        cands = [v - self.step, v + self.step]
        if self.log:
            cands += [self.from_unit(self.to_unit(v) - 0.15), self.from_unit(self.to_unit(v) + 0.15)]
        out = []
        for w in cands:
            if self.low <= w <= self.high and w != v and w not in out:
                out.append(int(w))
        return out

    def size(self) -> float:
        return (self.high - self.low) // self.step + 1

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": "int", "low": self.low, "high": self.high}
        if self.step != 1:
            d["step"] = self.step
        if self.log:
            d["log"] = True
        return d

    def describe(self) -> str:
        extra = f" step {self.step}" if self.step != 1 else ""
        return f"int [{self.low}, {self.high}]{extra}" + (" log" if self.log else "")


class Constant(Param):
    def __init__(self, name: str, value: Any):
        self.name, self.value = name, value
        self._check_name()
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise SpaceError(f"{name}: a constant must be JSON-serialisable, got {value!r}") from None

    def check(self, v: Any, path: str) -> None:
        if not (v == self.value if not isinstance(self.value, _SCALARS) else _same(v, self.value)):
            raise SpaceError(f"{path}: must be the constant {_fmt(self.value)}, got {_fmt(v)}")

    def to_dict(self) -> dict:
        return {"name": self.name, "type": "constant", "value": self.value}

    def describe(self) -> str:
        return f"constant {_fmt(self.value)}"


class Categorical(Param):
    """A choice among JSON scalars; ``branches[i]`` holds the parameters that choice ``i`` brings."""

    def __init__(self, name: str, choices):
        self.name = name
        self._check_name()
        if isinstance(choices, dict):
            choices = list(choices.items())
        else:
            choices = [c if isinstance(c, tuple) else (c, []) for c in choices]
        if not choices:
            raise SpaceError(f"{name}: a categorical needs at least one choice")
        self.choices, self.branches = [], []
        for value, params in choices:
            if not isinstance(value, _SCALARS):
                raise SpaceError(f"{name}: choice {value!r} must be a string, number, bool or null")
            if isinstance(value, float) and not math.isfinite(value):  # NaN equals nothing, not even itself
                raise SpaceError(f"{name}: choice {value!r} is not a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
                raise SpaceError(f"{name}: choice {value} is beyond the 64-bit integer range (+-9.2e18)")
            if any(_same(value, c) for c in self.choices):
                raise SpaceError(f"{name}: choice {_fmt(value)} appears twice")
            self.choices.append(value)
            self.branches.append(_Level(list(params), f"{name}={value}"))

    @property
    def conditional(self) -> bool:
        return any(b.params for b in self.branches)

    def index(self, v: Any) -> int:
        for i, c in enumerate(self.choices):
            if _same(v, c):
                return i
        return -1

    def check(self, v: Any, path: str) -> None:
        if self.index(v) < 0:
            shown = ", ".join(_fmt(c) for c in self.choices)
            raise SpaceError(f"{path}: {_fmt(v)} is not one of {shown}")

    def size(self) -> float:
        return sum(b.size() for b in self.branches)

    def to_dict(self) -> dict:
        out = []
        for c, b in zip(self.choices, self.branches):
            out.append({"value": c, "params": b.to_list()} if b.params else c)
        return {"name": self.name, "type": "categorical", "choices": out}

    def describe(self) -> str:
        return "categorical {" + ", ".join(_fmt(c) for c in self.choices) + "}"


class Group(Param):
    def __init__(self, name: str, params):
        self.name = name
        self._check_name()
        self.level = _Level(list(params), name)

    def to_dict(self) -> dict:
        return {"name": self.name, "type": "group", "params": self.level.to_list()}

    def describe(self) -> str:
        return "group"


class Repeat(Param):
    def __init__(self, name: str, min: int, max: int, params):  # noqa: A002 - the natural names
        self.name = name
        self._check_name()
        for what, v in (("min", min), ("max", max)):
            if not _is_number(v) or int(v) != v:
                raise SpaceError(f"{name}: {what} must be an integer, got {v!r}")
        if not 0 <= min <= max:
            raise SpaceError(f"{name}: need 0 <= min <= max, got min {min}, max {max}")
        if max > 64:
            raise SpaceError(f"{name}: max {max} is above 64 repeats")
        self.min, self.max = int(min), int(max)
        self.level = _Level(list(params), name)
        self.count = Integer(f"{name}_count", self.min, self.max)  # its encoding dimension

    def size(self) -> float:
        s = self.level.size()
        return sum(s**n for n in range(self.min, self.max + 1)) if s != math.inf else math.inf

    def to_dict(self) -> dict:
        return {"name": self.name, "type": "repeat", "min": self.min, "max": self.max, "params": self.level.to_list()}

    def describe(self) -> str:
        return f"repeat {self.min}..{self.max}"


# ------------------------------------------------------------------------------------------- levels
class _Level:
    """The parameters that share one dict of a config, with the branch parameters they may bring."""

    def __init__(self, params: list, where: str):
        for p in params:
            if not isinstance(p, Param):
                raise SpaceError(f"{where}: {p!r} is not a parameter")
        self.params = params
        # A name may appear in two branches of one categorical (they never coexist), nowhere else.
        seen: dict[str, object] = {}
        for p in params:
            self._claim(seen, p.name, None, where)
            if isinstance(p, Categorical):
                for b in p.branches:
                    for n in b.all_names():
                        self._claim(seen, n, p, where)

    @staticmethod
    def _claim(seen: dict, name: str, owner, where: str) -> None:
        if name in seen and (owner is None or seen[name] is not owner):
            raise SpaceError(f"{where}: parameter name {name!r} is used twice in one dict")
        seen[name] = owner

    def all_names(self) -> set:
        names = set()
        for p in self.params:
            names.add(p.name)
            if isinstance(p, Categorical):
                for b in p.branches:
                    names |= b.all_names()
        return names

    def size(self) -> float:
        s = 1
        for p in self.params:
            if isinstance(p, (Float, Integer, Categorical, Repeat)):
                s *= p.size()
            elif isinstance(p, Group):
                s *= p.level.size()
        return s

    def to_list(self) -> list:
        return [p.to_dict() for p in self.params]

    # A config's dict holds these parameters plus the branch parameters of the chosen categories.
    def active(self, cfg: dict) -> Iterator[Param]:
        for p in self.params:
            yield p
            if isinstance(p, Categorical) and p.name in cfg:
                i = p.index(cfg[p.name])
                if i >= 0:
                    yield from p.branches[i].active(cfg)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
