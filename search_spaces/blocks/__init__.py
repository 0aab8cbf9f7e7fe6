"""The building blocks of every searched CNN: one torch-only module per block, each registered once
(``search_spaces/registry.py``; the built-in entries are in ``builtin.py``).

Notation (shapes are NCHW)
    in_chs, out_chs   channels into / out of a block
    mid_chs           channels inside a block (BottleNeck: out_chs // expansion; InvertedResidual:
                      round(in_chs * expansion))
    rd_chs            squeeze-excite bottleneck width, max(1, int(in_chs * se_ratio))
    k, s              kernel size (odd) and stride (1 or 2); every conv pads k // 2, so the output is
                      floor((H + 2 * (k // 2) - k) / s) + 1 high

Every conv is bias-free and followed by BatchNorm, except the squeeze-excite 1x1 convs, which have a
bias and no norm (they act on a 1x1 map, as in MobileNetV3). Each block's registry entry mirrors these
choices in arithmetic; a change in a module must be made in its counter too (the property tests catch a
mismatch).
"""

from __future__ import annotations

from torch import nn

from nas.errors import ConfigError
from search_spaces import registry
from search_spaces.blocks import builtin  # noqa: F401  (registers Conv, BottleNeck, InvertedResidual)
from search_spaces.blocks.activations import ACT_LAYERS
from search_spaces.blocks.bottleneck import BottleNeck
from search_spaces.blocks.conv import ConvBlock
from search_spaces.blocks.inverted_residual import InvertedResidual, SqueezeExcite
from search_spaces.registry import BLOCKS

__all__ = [
    "ACTIVATIONS",
    "BLOCKS",
    "get_act",
    "get_block",
    "ConvBlock",
    "BottleNeck",
    "InvertedResidual",
    "SqueezeExcite",
]

ACTIVATIONS = tuple(ACT_LAYERS)


def get_act(name: str) -> type[nn.Module]:
    """The activation class registered as ``name``.

    >>> get_act("relu6")()
    ReLU6()
    """
    try:
        return ACT_LAYERS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown activation {name!r} (expected {', '.join(ACTIVATIONS)})") from None


def get_block(name: str) -> type[nn.Module]:
    """The block class registered as ``name`` (a stage's ``block`` key)."""
    return registry.get(name).module
