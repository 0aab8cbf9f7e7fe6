"""CNN search spaces: the block registry and its blocks, the config -> model builder, analytic MACs / params,
size caps, the spaces we ship. A block is defined once: its torch-only module plus one registry entry
(search_spaces/registry.py).

The names below load on first use, so importing a torch-free module of this package (``summary``) does
not import torch.
"""

from importlib import import_module

_WHERE = {
    "get_act": "search_spaces.blocks",
    "get_block": "search_spaces.blocks",
    "build_model": "search_spaces.builder",
    "validate_arch": "search_spaces.builder",
    "count": "search_spaces.counting",
    "default_space": "search_spaces.default",
    "architecture_space": "search_spaces.default",
    "training_space": "search_spaces.default",
}

__all__ = [
    "build_model",
    "validate_arch",
    "count",
    "default_space",
    "architecture_space",
    "training_space",
    "get_block",
    "get_act",
]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
