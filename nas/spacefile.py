"""Reading and writing a search-space file: JSON or YAML text to plain data, refusing what a space never holds,
and that data to parameters (``parse_params``).

A mapping with a key twice is an error (YAML and JSON parsers keep the last value silently), and more than
MAX_NODES values is refused without walking an alias bomb. ``nas.space.Space.load`` reads the file
(a capped read of a regular file, nas.fsutil) and builds the space from what this returns.
"""

from __future__ import annotations

import json
from typing import Any

from nas.errors import SpaceError
from nas.params import Categorical, Constant, Float, Group, Integer, Param, Repeat, _fmt

# YAML aliases can repeat one list a billion times; the shipped CNN spaces hold a few hundred values.
MAX_NODES = 100_000


def parse_text(text: str, source: str) -> Any:
    """JSON or YAML text to data, with a one-line SpaceError naming the file on failure. A mapping with a
    key twice is an error (YAML and JSON parsers keep the last one silently, dropping the first)."""
    import yaml

    is_json = source.endswith(".json")
    try:
        if is_json:
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise SpaceError(f"{source}: {e}; each key may appear once in a mapping") from None
    except (ValueError, yaml.YAMLError, RecursionError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
        raise SpaceError(f"{source}: not valid {'JSON' if is_json else 'YAML'} ({msg})") from None
    _check_node_count(data, source)
    return data


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(f"key {k!r} appears twice")
        out[k] = v
    return out


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=True)
                    try:
                        dup = key in seen
                        seen.add(key)
                    except TypeError:  # an unhashable key; SafeLoader reports it below
                        continue
                    if dup:
                        raise _DuplicateKey(f"key {key!r} appears twice (line {key_node.start_mark.line + 1})")
            return super().construct_mapping(node, deep=deep)

    return Loader


class _LazyLoader:
    """yaml is imported only when a YAML file is read; the loader class is made once."""

    _cls = None

    def __new__(cls, stream):
        if cls._cls is None:
            cls._cls = _yaml_loader()
        return cls._cls(stream)


_UniqueKeyLoader = _LazyLoader


def _check_node_count(data: Any, source: str) -> None:
    """Refuse more than MAX_NODES values, counting an aliased list once per use (as the parser would walk
    it). Iterative, and stops at the limit, so a billion-item alias bomb costs microseconds."""
    stack, seen = [data], 0
    while stack:
        v = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            why = (
                ""
                if source.endswith(".json")
                else " (YAML aliases can repeat one list many times: write the space out without aliases)"
            )
            raise SpaceError(
                f"{source}: more than {MAX_NODES:,} values, where a search space holds a few "
                f"hundred{why}; is it the right file?"
            )
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def yaml_dump(d: dict) -> str:
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


def parse_params(items: Any, where: str, depth: int = 0) -> list:
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
        return _build(Group, where, name, parse_params(d["params"], f"{where}.params", depth + 1))
    if kind == "repeat":
        return _build(Repeat, where, name, d["min"], d["max"], parse_params(d["params"], f"{where}.params", depth + 1))
    if kind == "float":
        return _build(Float, where, name, d["low"], d["high"], log=_bool(d.get("log", False), where))
    if kind == "int":
        return _build(
            Integer, where, name, d["low"], d["high"], step=d.get("step", 1), log=_bool(d.get("log", False), where)
        )
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
            parsed.append((c["value"], parse_params(c.get("params", []), f"{where}.choices[{i}].params", depth + 1)))
        else:
            parsed.append((c, []))
    return _build(Categorical, where, name, parsed)


def _build(cls, where: str, name: str, *args, **kwargs) -> Param:
    """Construct a parameter, re-labelling its error with the place in the file."""
    try:
        return cls(name, *args, **kwargs)
    except SpaceError as e:
        msg = str(e)
        raise SpaceError(f"{where}: {msg[len(name) + 2 :] if msg.startswith(name + ': ') else msg}") from None
    except (TypeError, ValueError, OverflowError) as e:  # wrong types reaching comparisons
        raise SpaceError(f"{where}: {e}") from None


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise SpaceError(f"{where}: log must be true or false, got {_fmt(v)}")
    return v
