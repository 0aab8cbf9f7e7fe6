"""Declarative, JSON-serialisable search spaces with conditional sub-spaces.

A space is a list of parameters; a *config* is a plain nested dict that round-trips through JSON.

The parameter kinds (Float, Integer, Categorical with branch parameters, Constant, Group, Repeat) are
defined in ``nas.params``; this module composes them and re-exports their names.

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
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import SpaceError
from nas.params import (  # noqa: F401 - the parameter kinds are part of this module's API
    Categorical,
    Constant,
    Dim,
    Float,
    Group,
    Integer,
    Param,
    Repeat,
    _fmt,
    _join,
    _Level,
    _same,
)
from nas.spacefile import MAX_NODES, parse_params, parse_text, yaml_dump  # noqa: F401 - MAX_NODES: this module's API

Config = dict

# Hostile files must fail fast: every slot of a repeat holds all its parameters, so nested repeats multiply
# the encoding (four nested max-64 repeats would be 16M dimensions), and YAML aliases can repeat one list a
# billion times. The shipped CNN spaces have under 100 dimensions and a few hundred values.
MAX_DIMS = 10_000


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
            raise SpaceError(
                f"{self.name or 'space'}: more than {MAX_DIMS:,} encoded dimensions (each slot of a "
                "repeat holds all its parameters, so nested repeats multiply); lower a repeat's "
                "max or nest fewer repeats"
            )
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
        plan = self._encode_plan(self.root, "", "")
        if self.n_conditional or any(kind > 1 for kind, *_ in plan):
            xs, masks = zip(*(self.encode(c, validate=validate) for c in configs))
            return np.stack(xs), np.stack(masks)
        # A flat space (no branch, group or repeat holds a parameter): column by column, vectorised.
        if validate:
            for c in configs:
                self.validate(c)
        x = np.zeros((len(configs), self.n_dims))
        for kind, p, j, _ in plan:
            v = [c[p.name] for c in configs]
            x[:, j] = [p.index(u) for u in v] if kind == 1 else p.to_unit_many(v)
        return x, np.ones_like(x, dtype=bool)

    def _encode_level(self, level, cfg, path, branch, x, active) -> None:
        for kind, p, j, extra in self._encode_plan(level, path, branch):
            v = cfg[p.name]
            if kind == 0:  # float / int
                x[j], active[j] = p.to_unit(v), True
            elif kind == 1:  # categorical: its index, then the chosen branch
                i = p.index(v)
                x[j], active[j] = i, True
                self._encode_level(p.branches[i], cfg, path, extra[i], x, active)
            elif kind == 2:  # group
                self._encode_level(p.level, v, extra, "", x, active)
            elif kind == 3:  # repeat: its count, then one slot per item
                x[j], active[j] = p.count.to_unit(len(v)), True
                for i, item in enumerate(v):
                    self._encode_level(p.level, item, f"{extra}[{i}]{branch}", "", x, active)

    def _encode_plan(self, level, path: str, branch: str) -> list:
        """``(kind, param, dim index, extra)`` per parameter of ``level`` at ``(path, branch)``, built once: the
        dimension keys are strings joined from the path, and encoding thousands of candidates per proposal
        would otherwise rebuild them every time. ``(path, branch)`` names one level of the space."""
        cache = self.__dict__.setdefault("_plans", {})
        plan = cache.get((path, branch))
        if plan is None:
            plan = []
            for p in level.params:
                key = _join(path, p.name) + branch
                if isinstance(p, (Float, Integer)):
                    plan.append((0, p, self._index[key], None))
                elif isinstance(p, Categorical):
                    plan.append((1, p, self._index[key], [f"{branch}@{p.name}={c}" for c in p.choices]))
                elif isinstance(p, Group):
                    plan.append((2, p, -1, key))
                elif isinstance(p, Repeat):
                    plan.append((3, p, self._index[_join(path, p.name) + "#" + branch], _join(path, p.name)))
            cache[(path, branch)] = plan
        return plan

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
                cfg[p.name] = [
                    self._decode_level(p.level, x, f"{_join(path, p.name)}[{i}]{branch}", "") for i in range(n)
                ]
        return cfg

    # ---------------------------------------------------------------- neighbours
    def neighbours(
        self, config: Config, rng: np.random.Generator | None = None, *, validate: bool = True
    ) -> list[Config]:
        """Configs one move away: one numeric value nudged, one category switched (its new branch
        sampled), one repeated item added (a copy of the last) or removed. All are valid. ``validate=False``
        skips the check of ``config`` (for configs this space made, as in ``encode``)."""
        if validate:
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
                    self._moves_level(
                        p.level, item, rng, lambda new, i=i, n=p.name, v=v: put(n, v[:i] + [new] + v[i + 1 :])
                    )
                if len(v) < p.max:
                    last = v[-1] if v else self._sample_level(p.level, rng)
                    put(p.name, v + [json.loads(json.dumps(last))])
                if len(v) > p.min:
                    for i in range(len(v)):
                        put(p.name, v[:i] + v[i + 1 :])

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
        lines = [
            f"space {self.name!r}: {len(self.root.params)} top-level parameters, "
            f"{self.n_dims} encoded dims ({self.n_conditional} conditional), size {self._size_str()}"
        ]
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
            raise SpaceError(
                f"{source}: unknown key {sorted(map(str, unknown))[0]!r} (expected name, description, params)"
            )
        name = d.get("name", "")
        if not isinstance(name, str):
            raise SpaceError(f"{source}: name must be a string")
        params = parse_params(d["params"], f"{source}: params")
        try:
            return cls(params, name=name)
        except SpaceError as e:
            raise SpaceError(f"{source}: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = self.to_json() if path.suffix == ".json" else yaml_dump(self.to_dict())
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
