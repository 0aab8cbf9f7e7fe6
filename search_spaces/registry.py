"""The block registry: every block a stage may name (its ``block`` key), each defined once.

A block is two things: a torch-only module holding its ``nn.Module`` (``nas export`` copies that module's own
source into model.py), and one ``BlockDef`` registered here, which says all that the rest of lightnas reads:

    name         the stage's ``block`` value
    module       the nn.Module class; the builder calls module(in_chs, out_chs, kernel_size=, stride=, act=,
                 **keys) for each block of a stage ("args" below are these keyword arguments)
    keys         the stage keys beyond the common ones, each a ``Key``: default and range (validate_arch)
    count        (args, H, W) -> (MACs, params, H', W')  (search_spaces/counting.py; see costs.py)
    activations  (args, H, W) -> floats its layers write for one image  (search_spaces/size.py)
    space        () -> its branch's parameters in the default space; ``activation`` is added
                 (search_spaces/default.py)
    check        optional (args, where) -> None for rules across keys (BottleNeck: expansion divides channels)

The built-in blocks register in ``search_spaces/blocks/builtin.py``; your own block registers the same way::

    register(BlockDef("DWSep", DWSep, keys={"expansion": Key(1, low=1, high=4, integer=True)},
                      count=..., activations=..., space=lambda: [Integer("kernel", 3, 5, step=2)]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.errors import ConfigError
from search_spaces import checks

# Keys every stage has, with their defaults; REQUIRED marks the ones a config must give.
REQUIRED = object()
STAGE_KEYS = {"block": REQUIRED, "channels": REQUIRED, "stride": 1, "repeats": 1, "kernel": 3, "activation": "relu"}


@dataclass(frozen=True)
class Key:
    """A numeric stage key of one block kind: its default and its range [low, high] (high None: no bound)."""

    default: float
    low: float
    high: float | None = None
    integer: bool = False  # an integer key; otherwise any finite number
    hint: str = ""  # added to the out-of-range message, e.g. " (0 = no squeeze-excite)"

    def check(self, v: Any, where: str) -> float:
        if self.integer:
            v = checks.integer(v, where, low=int(self.low))
        else:
            v = checks.number(v, where)
        if v < self.low or (self.high is not None and v > self.high):
            span = f"[{self.low}, {self.high}]" if self.high is not None else f"[{self.low}, inf)"
            raise ConfigError(f"{where}: {v} is outside {span}{self.hint}")
        return v


@dataclass(frozen=True)
class BlockDef:
    """One block kind, as every part of lightnas sees it (the table in this module's docstring)."""

    name: str
    module: type
    count: Callable[[dict, int, int], tuple[int, int, int, int]]
    activations: Callable[[dict, int, int], int]
    space: Callable[[], list]
    keys: dict[str, Key] = field(default_factory=dict)
    check: Callable[[dict, str], None] | None = None


_BLOCKS: dict[str, BlockDef] = {}


def register(block: BlockDef) -> BlockDef:
    """Add ``block``; a name already taken, or a key that clashes with the common stage keys, is a ValueError."""
    if not isinstance(block, BlockDef):
        raise TypeError(f"register: expected a BlockDef, got {type(block).__name__}")
    if not isinstance(block.name, str) or not block.name.isidentifier():
        raise ValueError(f"block name {block.name!r} must be a Python identifier (it is written into model.py)")
    if block.name in _BLOCKS:
        raise ValueError(f"block {block.name!r} is already registered; unregister it first or choose another name")
    clash = sorted(set(block.keys) & set(STAGE_KEYS))
    if clash:
        raise ValueError(f"block {block.name!r}: key {clash[0]!r} is a common stage key; name it otherwise")
    for k, key in block.keys.items():
        if not k.isidentifier() or not isinstance(key, Key):
            raise ValueError(f"block {block.name!r}: key {k!r} must be an identifier mapped to a Key")
    if not isinstance(block.module, type):
        raise TypeError(f"block {block.name!r}: module must be the nn.Module class, got {block.module!r}")
    _BLOCKS[block.name] = block
    return block


def unregister(name: str) -> None:
    """Remove a registered block (a KeyError for a name never registered)."""
    del _BLOCKS[name]


@contextlib.contextmanager
def registered(block: BlockDef) -> Iterator[BlockDef]:
    """``block`` registered inside the ``with`` only (tests, experiments)."""
    register(block)
    try:
        yield block
    finally:
        _BLOCKS.pop(block.name, None)


def get(name: Any) -> BlockDef:
    """The registered block ``name``, or a ConfigError listing the registered ones."""
    try:
        return _BLOCKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown block {name!r} (expected {', '.join(_BLOCKS)})") from None


def names() -> tuple[str, ...]:
    """Registered block names, in registration order (the built-in ones first)."""
    return tuple(_BLOCKS)


class _Classes(Mapping):
    """Read-only live view: block name -> nn.Module class (``search_spaces.blocks.BLOCKS``)."""

    def __getitem__(self, name):
        return _BLOCKS[name].module

    def __iter__(self):
        return iter(tuple(_BLOCKS))

    def __len__(self):
        return len(_BLOCKS)

    def __repr__(self):
        return f"BLOCKS({', '.join(_BLOCKS)})"


BLOCKS: Mapping[str, type] = _Classes()
