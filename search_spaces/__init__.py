"""CNN search spaces: blocks, the config -> model builder, analytic MACs / params, the spaces we ship."""
from search_spaces.blocks import get_act, get_block
from search_spaces.builder import build_model, validate_arch
from search_spaces.counting import count
from search_spaces.default import architecture_space, default_space, training_space

__all__ = ["build_model", "validate_arch", "count", "default_space", "architecture_space", "training_space",
           "get_block", "get_act"]
