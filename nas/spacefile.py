"""Reading a search-space file: JSON or YAML text to plain data, refusing what a space never holds.

A mapping with a key twice is an error (YAML and JSON parsers keep the last value silently), and more than
MAX_NODES values is refused without walking an alias bomb. ``nas.space.Space.load`` reads the file
(a capped read of a regular file, nas.fsutil) and builds the space from what this returns.
"""
from __future__ import annotations

import json
from typing import Any

from nas.errors import SpaceError

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
            why = ("" if source.endswith(".json") else
                   " (YAML aliases can repeat one list many times: write the space out without aliases)")
            raise SpaceError(f"{source}: more than {MAX_NODES:,} values, where a search space holds a few "
                             f"hundred{why}; is it the right file?")
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
