"""CNN search spaces: the block registry and its blocks, the config -> model builder, analytic MACs / params,
size caps, the spaces we ship. A block is defined once: its torch-only module plus one registry entry
(search_spaces/registry.py)."""
from search_spaces.blocks import get_act, get_block
from search_spaces.builder import build_model, validate_arch
from search_spaces.counting import count
from search_spaces.default import architecture_space, default_space, training_space

__all__ = ["build_model", "validate_arch", "count", "default_space", "architecture_space", "training_space",
           "get_block", "get_act"]
