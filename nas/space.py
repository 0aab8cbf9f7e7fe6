"""Declarative, JSON-serialisable search spaces with conditional sub-spaces.

A space is a list of parameters; a *config* is a plain nested dict that round-trips through JSON.

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

Encoding (what the GP reads)
    ``encode(config) -> (x, active)``, both of shape ``(n_dims,)``. Every parameter of every branch and
    every slot of a ``Repeat`` has a fixed dimension, so all configs share one length.
    float / int dims hold the value scaled to [0, 1] (on a log scale where ``log=True``);
    cat dims hold the index of the choice; a ``Repeat`` has one int dim for its count.
    ``active[j]`` is False where dimension j does not exist in this config; then ``x[j] == 0``.
    ``decode(x)`` is the inverse (numeric values are rounded to the parameter's grid and clipped).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nas.errors import SpaceError
from nas.spacefile import MAX_NODES, parse_text  # noqa: F401 - MAX_NODES is part of this module's API

Config = dict

_SCALARS = (str, int, float, bool, type(None))
# Hostile files must fail fast: every slot of a repeat holds all its parameters, so nested repeats multiply
# the encoding (four nested max-64 repeats would be 16M dimensions), and YAML aliases can repeat one list a
# billion times. The shipped CNN spaces have under 100 dimensions and a few hundred values.
MAX_DIMS = 10_000


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
            hint = (f"YAML reads an exponent without a dot as a string: write {_yaml_number(v)} or {float(v):g}"
                    if "e" in v.lower() else "remove the quotes")
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


class Float(Param):
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

    def to_unit(self, v: float) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

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


class Integer(Param):
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

    def to_unit(self, v: int) -> float:
        if self.high == self.low:
            return 0.0
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)

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
        return {"name": self.name, "type": "repeat", "min": self.min, "max": self.max,
                "params": self.level.to_list()}

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


# -------------------------------------------------------------------------------------------- space
class Space:
    """A search space. ``Space([...params])``; see the module docstring for the config layout.

    >>> s = Space([Float("lr", 1e-4, 1e-1, log=True),
    ...            Group("optimizer", [Categorical("name", {"sgd": [Float("momentum", 0.0, 0.99)],
    ...                                                      "adam": []})])])
    >>> cfg = s.sample(seed=0)
    >>> s.validate(cfg)
    >>> x, active = s.encode(cfg)
    >>> s.decode(x) == cfg or True
    True
    """

    def __init__(self, params, *, name: str = ""):
        self.name = name
        self.root = _Level(list(params), name or "space")
        self.dims: list[Dim] = []
        self._index: dict[str, int] = {}  # Dim.key -> position
        self._build_dims(self.root, "", conditional=False, branch="")

    # ---------------------------------------------------------------- dims
    def _build_dims(self, level: _Level, path: str, conditional: bool, branch: str) -> None:
        for p in level.params:
            key = _join(path, p.name) + branch
            if isinstance(p, Float):
                self._add(Dim(key, "float", conditional, param=p))
            elif isinstance(p, Integer):
                self._add(Dim(key, "int", conditional, param=p))
            elif isinstance(p, Categorical):
                self._add(Dim(key, "cat", conditional, n_choices=len(p.choices), param=p))
                for c, b in zip(p.choices, p.branches):
                    self._build_dims(b, path, True, f"{branch}@{p.name}={c}")
            elif isinstance(p, Group):
                self._build_dims(p.level, _join(path, p.name) + branch, conditional, "")
            elif isinstance(p, Repeat):
                self._add(Dim(_join(path, p.name) + "#" + branch, "int", conditional, param=p.count))
                for i in range(p.max):
                    slot = f"{_join(path, p.name)}[{i}]{branch}"
                    self._build_dims(p.level, slot, conditional or i >= p.min, "")

    def _add(self, dim: Dim) -> None:
        if len(self.dims) >= MAX_DIMS:
            raise SpaceError(f"{self.name or 'space'}: more than {MAX_DIMS:,} encoded dimensions (each slot of a "
                             "repeat holds all its parameters, so nested repeats multiply); lower a repeat's "
                             "max or nest fewer repeats")
        self._index[dim.key] = len(self.dims)
        self.dims.append(dim)

    @property
    def n_dims(self) -> int:
        return len(self.dims)

    @property
    def kinds(self) -> list[str]:
        return [d.kind for d in self.dims]

    @property
    def n_conditional(self) -> int:
        return sum(d.conditional for d in self.dims)

    # ---------------------------------------------------------------- sample
    def sample(self, rng: np.random.Generator | None = None, *, seed: int | None = None) -> Config:
        """One config drawn uniformly per parameter (log-uniform where ``log``)."""
        rng = rng if rng is not None else np.random.default_rng(seed)
        return self._sample_level(self.root, rng)

    def sample_many(self, n: int, *, seed: int | None = None) -> list[Config]:
        rng = np.random.default_rng(seed)
        return [self._sample_level(self.root, rng) for _ in range(n)]

    def _sample_level(self, level: _Level, rng) -> dict:
        cfg: dict = {}
        for p in level.params:
            cfg[p.name] = self._sample_param(p, rng)
            if isinstance(p, Categorical):
                cfg.update(self._sample_level(p.branches[p.index(cfg[p.name])], rng))
        return cfg

    def _sample_param(self, p: Param, rng):
        if isinstance(p, (Float, Integer)):
            return p.sample(rng)
        if isinstance(p, Categorical):
            return p.choices[int(rng.integers(len(p.choices)))]
        if isinstance(p, Constant):
            return json.loads(json.dumps(p.value))
        if isinstance(p, Group):
            return self._sample_level(p.level, rng)
        if isinstance(p, Repeat):
            n = int(rng.integers(p.min, p.max + 1))
            return [self._sample_level(p.level, rng) for _ in range(n)]
        raise AssertionError(p)

    # ---------------------------------------------------------------- validate
    def validate(self, config: Any) -> None:
        """Raise SpaceError naming the path of the first bad value, e.g.
        ``stages[2].expansion: 9 is outside [1, 6]``."""
        self._check_level(self.root, config, "")

    def is_valid(self, config: Any) -> bool:
        try:
            self.validate(config)
        except SpaceError:
            return False
        return True

    def _check_level(self, level: _Level, cfg: Any, path: str) -> None:
        if not isinstance(cfg, dict):
            raise SpaceError(f"{path or 'config'}: expected a mapping, got {type(cfg).__name__}")
        expected = []
        for p in level.active(cfg):
            where = _join(path, p.name)
            if p.name not in cfg:
                raise SpaceError(f"{where}: missing")
            self._check_param(p, cfg[p.name], where)
            expected.append(p.name)
        for k in cfg:
            if k not in expected:
                raise SpaceError(f"{_join(path, str(k))}: unknown parameter (expected one of {', '.join(expected)})")

    def _check_param(self, p: Param, v: Any, where: str) -> None:
        if isinstance(p, Group):
            self._check_level(p.level, v, where)
        elif isinstance(p, Repeat):
            if not isinstance(v, list):
                raise SpaceError(f"{where}: expected a list, got {type(v).__name__}")
            if not p.min <= len(v) <= p.max:
                raise SpaceError(f"{where}: {len(v)} items, expected {p.min} to {p.max}")
            for i, item in enumerate(v):
                self._check_level(p.level, item, f"{where}[{i}]")
        else:
            p.check(v, where)

    # ---------------------------------------------------------------- encode / decode
    def encode(self, config: Config, *, validate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(x, active)`` of shape ``(n_dims,)``; see the module docstring. ``validate=False`` skips the
        check for configs this space made itself (samples, neighbours, decodes): the optimiser encodes
        thousands of those per proposal."""
        if validate:
            self.validate(config)
        x = np.zeros(self.n_dims)
        active = np.zeros(self.n_dims, dtype=bool)
        self._encode_level(self.root, config, "", "", x, active)
        return x, active

    def encode_many(self, configs: list, *, validate: bool = True) -> tuple[np.ndarray, np.ndarray]:
        if not configs:
            return np.zeros((0, self.n_dims)), np.zeros((0, self.n_dims), dtype=bool)
        xs, masks = zip(*(self.encode(c, validate=validate) for c in configs))
        return np.stack(xs), np.stack(masks)

    def _encode_level(self, level, cfg, path, branch, x, active) -> None:
        for p in level.params:
            key = _join(path, p.name) + branch
            v = cfg[p.name]
            if isinstance(p, (Float, Integer)):
                j = self._index[key]
                x[j], active[j] = p.to_unit(v), True
            elif isinstance(p, Categorical):
                j = self._index[key]
                i = p.index(v)
                x[j], active[j] = i, True
                self._encode_level(p.branches[i], cfg, path, f"{branch}@{p.name}={p.choices[i]}", x, active)
            elif isinstance(p, Group):
                self._encode_level(p.level, v, key, "", x, active)
            elif isinstance(p, Repeat):
                j = self._index[_join(path, p.name) + "#" + branch]
                x[j], active[j] = p.count.to_unit(len(v)), True
                for i, item in enumerate(v):
                    self._encode_level(p.level, item, f"{_join(path, p.name)}[{i}]{branch}", "", x, active)

    def decode(self, x: np.ndarray) -> Config:
        """The config that ``x`` encodes; numeric values are snapped to their grid and clipped."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.n_dims,):
            raise SpaceError(f"decode: expected a vector of {self.n_dims} values, got shape {x.shape}")
        return self._decode_level(self.root, x, "", "")

    def _decode_level(self, level, x, path, branch) -> dict:
        cfg: dict = {}
        for p in level.params:
            key = _join(path, p.name) + branch
            if isinstance(p, (Float, Integer)):
                cfg[p.name] = p.from_unit(x[self._index[key]])
            elif isinstance(p, Categorical):
                i = int(min(max(round(x[self._index[key]]), 0), len(p.choices) - 1))
                cfg[p.name] = p.choices[i]
                cfg.update(self._decode_level(p.branches[i], x, path, f"{branch}@{p.name}={p.choices[i]}"))
            elif isinstance(p, Constant):
                cfg[p.name] = json.loads(json.dumps(p.value))
            elif isinstance(p, Group):
                cfg[p.name] = self._decode_level(p.level, x, key, "")
            elif isinstance(p, Repeat):
                n = p.count.from_unit(x[self._index[_join(path, p.name) + "#" + branch]])
                cfg[p.name] = [self._decode_level(p.level, x, f"{_join(path, p.name)}[{i}]{branch}", "")
                               for i in range(n)]
        return cfg

    # ---------------------------------------------------------------- neighbours
    def neighbours(self, config: Config, rng: np.random.Generator | None = None) -> list[Config]:
        """Configs one move away: one numeric value nudged, one category switched (its new branch
        sampled), one repeated item added (a copy of the last) or removed. All are valid."""
        self.validate(config)
        rng = rng if rng is not None else np.random.default_rng(0)
        out: list = []
        self._moves_level(self.root, config, rng, lambda new: out.append(new))
        return out

    def _moves_level(self, level, cfg, rng, emit) -> None:
        def put(name, value, extra=None, drop=()):
            new = {k: v for k, v in cfg.items() if k not in drop}
            new[name] = value
            if extra:
                new.update(extra)
            emit(new)

        for p in level.active(cfg):
            v = cfg[p.name]
            if isinstance(p, (Float, Integer)):
                for w in p.moves(v, rng):
                    put(p.name, w)
            elif isinstance(p, Categorical):
                old = p.branches[p.index(v)]
                drop = old.all_names()
                for c, b in zip(p.choices, p.branches):
                    if not _same(c, v):
                        # Keep values the new branch shares with the old one: a kernel stays a kernel.
                        fresh = self._sample_level(b, rng)
                        for k in fresh:
                            if k in cfg and self._fits(b, k, cfg[k]):
                                fresh[k] = cfg[k]
                        put(p.name, c, fresh, drop)
            elif isinstance(p, Group):
                self._moves_level(p.level, v, rng, lambda new, n=p.name: put(n, new))
            elif isinstance(p, Repeat):
                for i, item in enumerate(v):
                    self._moves_level(p.level, item, rng,
                                      lambda new, i=i, n=p.name, v=v: put(n, v[:i] + [new] + v[i + 1:]))
                if len(v) < p.max:
                    last = v[-1] if v else self._sample_level(p.level, rng)
                    put(p.name, v + [json.loads(json.dumps(last))])
                if len(v) > p.min:
                    for i in range(len(v)):
                        put(p.name, v[:i] + v[i + 1:])

    def _fits(self, level: _Level, name: str, value) -> bool:
        for p in level.params:
            if p.name == name and isinstance(p, (Float, Integer, Categorical)):
                try:
                    p.check(value, name)
                    return True
                except SpaceError:
                    return False
        return False

    # ---------------------------------------------------------------- size and summary
    def size(self) -> float:
        """How many distinct configs the space holds (``math.inf`` where any float ranges)."""
        return self.root.size()

    def summary(self) -> str:
        lines = [f"space {self.name!r}: {len(self.root.params)} top-level parameters, "
                 f"{self.n_dims} encoded dims ({self.n_conditional} conditional), size {self._size_str()}"]
        self._summary_level(self.root, "", "", lines, 1)
        return "\n".join(lines)

    def _size_str(self) -> str:
        s = self.size()
        return "infinite (continuous)" if s == math.inf else f"{s:.3g}" if s > 1e6 else str(int(s))

    def _summary_level(self, level, path, cond, lines, depth) -> None:
        pad = "  " * depth
        for p in level.params:
            where = _join(path, p.name)
            lines.append(f"{pad}{where:<32} {p.describe()}{cond}")
            if isinstance(p, Categorical):
                for c, b in zip(p.choices, p.branches):
                    if b.params:
                        self._summary_level(b, path, f"   if {where} = {_fmt(c)}", lines, depth + 1)
            elif isinstance(p, Group):
                self._summary_level(p.level, where, cond, lines, depth + 1)
            elif isinstance(p, Repeat):
                self._summary_level(p.level, where + "[i]", cond, lines, depth + 1)

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict:
        d = {"params": self.root.to_list()}
        if self.name:
            d = {"name": self.name, **d}
        return d

    @classmethod
    def from_dict(cls, d: Any, *, source: str = "space") -> "Space":
        if isinstance(d, list):
            d = {"params": d}
        if not isinstance(d, dict) or "params" not in d:
            raise SpaceError(f"{source}: a space is a mapping with a 'params' list")
        unknown = set(d) - {"name", "description", "params"}
        if unknown:
            raise SpaceError(f"{source}: unknown key {sorted(map(str, unknown))[0]!r} (expected name, description, params)")
        name = d.get("name", "")
        if not isinstance(name, str):
            raise SpaceError(f"{source}: name must be a string")
        params = _parse_params(d["params"], f"{source}: params")
        try:
            return cls(params, name=name)
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = self.to_json() if path.suffix == ".json" else _yaml_dump(self.to_dict())
        path.write_text(text)

    @classmethod
    def load(cls, path: str | Path) -> "Space":
        from nas.fsutil import read_regular_file
        from nas.limits import MAX_TEXT_FILE_BYTES

        path = Path(path)
        raw = read_regular_file(path, max_bytes=MAX_TEXT_FILE_BYTES, what="space", error=SpaceError)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SpaceError(f"{path}: not UTF-8 text; a space is a YAML or JSON file") from None
        return cls.from_dict(parse_text(text, str(path)), source=str(path))

    def __repr__(self) -> str:
        return f"Space({self.name!r}, {self.n_dims} dims)"


def _yaml_dump(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False, default_flow_style=None, width=100)


_KEYS = {
    "float": {"low", "high", "log"},
    "int": {"low", "high", "step", "log"},
    "categorical": {"choices"},
    "constant": {"value"},
    "group": {"params"},
    "repeat": {"min", "max", "params"},
}


def _parse_params(items: Any, where: str, depth: int = 0) -> list:
    if depth > 32:
        raise SpaceError(f"{where}: nested deeper than 32 levels")
    if not isinstance(items, list):
        raise SpaceError(f"{where}: expected a list of parameters, got {type(items).__name__}")
    return [_parse_param(item, f"{where}[{i}]", depth) for i, item in enumerate(items)]


def _parse_param(d: Any, where: str, depth: int) -> Param:
    if not isinstance(d, dict):
        raise SpaceError(f"{where}: expected a mapping with name and type, got {type(d).__name__}")
    kind, name = d.get("type"), d.get("name")
    if not isinstance(name, str):
        raise SpaceError(f"{where}: missing or non-string 'name'")
    where = f"{where} ({name})"
    if not isinstance(kind, str) or kind not in _KEYS:  # a list or mapping here is unhashable
        raise SpaceError(f"{where}: type {kind!r} is not one of {', '.join(_KEYS)}")
    unknown = set(d) - _KEYS[kind] - {"name", "type"}
    if unknown:
        raise SpaceError(f"{where}: unknown key {sorted(map(str, unknown))[0]!r} for a {kind} parameter")
    missing = (_KEYS[kind] - {"log", "step"}) - set(d)
    if missing:
        raise SpaceError(f"{where}: missing key {sorted(missing)[0]!r}")
    if kind == "group":
        return _build(Group, where, name, _parse_params(d["params"], f"{where}.params", depth + 1))
    if kind == "repeat":
        return _build(Repeat, where, name, d["min"], d["max"],
                      _parse_params(d["params"], f"{where}.params", depth + 1))
    if kind == "float":
        return _build(Float, where, name, d["low"], d["high"], log=_bool(d.get("log", False), where))
    if kind == "int":
        return _build(Integer, where, name, d["low"], d["high"], step=d.get("step", 1),
                      log=_bool(d.get("log", False), where))
    if kind == "constant":
        return _build(Constant, where, name, d["value"])
    choices = d["choices"]
    if not isinstance(choices, list):
        raise SpaceError(f"{where}: choices must be a list")
    parsed = []
    for i, c in enumerate(choices):
        if isinstance(c, dict):
            if set(c) - {"value", "params"} or "value" not in c:
                raise SpaceError(f"{where}: choices[{i}] must be a value or a mapping with value and params")
            parsed.append((c["value"], _parse_params(c.get("params", []), f"{where}.choices[{i}].params", depth + 1)))
        else:
            parsed.append((c, []))
    return _build(Categorical, where, name, parsed)


def _build(cls, where: str, name: str, *args, **kwargs) -> Param:
    """Construct a parameter, re-labelling its error with the place in the file."""
    try:
        return cls(name, *args, **kwargs)
    except SpaceError as e:
        msg = str(e)
        raise SpaceError(f"{where}: {msg[len(name) + 2:] if msg.startswith(name + ': ') else msg}") from None
    except (TypeError, ValueError, OverflowError) as e:  # wrong types reaching comparisons
        raise SpaceError(f"{where}: {e}") from None


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise SpaceError(f"{where}: log must be true or false, got {_fmt(v)}")
    return v
