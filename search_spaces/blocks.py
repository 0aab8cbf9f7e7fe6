"""The building blocks of every searched CNN, and the two registries that name them.

Notation (shapes are NCHW)
    in_chs, out_chs   channels into / out of a block
    mid_chs           channels inside a block (BottleNeck: out_chs // expansion; InvertedResidual:
                      round(in_chs * expansion))
    rd_chs            squeeze-excite bottleneck width, max(1, int(in_chs * se_ratio))
    k, s              kernel size (odd) and stride (1 or 2); every conv pads k // 2, so the output is
                      floor((H + 2 * (k // 2) - k) / s) + 1 high

Every conv is bias-free and followed by BatchNorm, except the squeeze-excite 1x1 convs, which have a
bias and no norm (they act on a 1x1 map, as in MobileNetV3). ``search_spaces/counting.py`` mirrors these
choices in arithmetic; a change here must be made there too (the property tests catch a mismatch).
"""
from __future__ import annotations

import torch
from torch import nn

from nas.errors import ConfigError

# ------------------------------------------------------------------------------------ activations
_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,  # MobileNetV2
    "hardswish": nn.Hardswish,  # MobileNetV3
    "silu": nn.SiLU,  # EfficientNet ("swish")
}
ACTIVATIONS = tuple(_ACTS)


def get_act(name: str) -> type[nn.Module]:
    """The activation class registered as ``name``.

    >>> get_act("relu6")()
    ReLU6()
    """
    try:
        return _ACTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown activation {name!r} (expected {', '.join(ACTIVATIONS)})") from None


# ----------------------------------------------------------------------------------------- blocks
class ConvBlock(nn.Module):
    """k x k conv (no bias) -> BatchNorm -> activation; ``act=None`` leaves the activation out
    (the linear projections of BottleNeck and InvertedResidual)."""

    def __init__(self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, act: str | None = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = get_act(act)() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BottleNeck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, k x k with the stride (v1.5 puts it here, not on the first
    1x1), 1x1 expand, each with BN; the activation comes after the residual add."""

    def __init__(self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1,
                 expansion: int = 4, act: str = "relu"):
        super().__init__()
        mid_chs = out_chs // expansion  # the builder has checked that expansion divides out_chs
        self.conv1 = ConvBlock(in_chs, mid_chs, kernel_size=1, act=act)
        self.conv2 = ConvBlock(mid_chs, mid_chs, kernel_size=kernel_size, stride=stride, act=act)
        self.conv3 = ConvBlock(mid_chs, out_chs, kernel_size=1, act=None)
        # Projection shortcut only where the identity cannot be added (ResNet "option B").
        if stride != 1 or in_chs != out_chs:
            self.shortcut = ConvBlock(in_chs, out_chs, kernel_size=1, stride=stride, act=None)
        else:
            self.shortcut = nn.Identity()
        self.act = get_act(act)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excite: global average pool, 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) ->
    hard sigmoid, which scales each channel. Hard sigmoid rather than sigmoid because MobileNetV3
    chose it for cheap inference; it has no parameters, so the counts do not depend on the choice."""

    def __init__(self, chs: int, rd_chs: int):
        super().__init__()
        self.reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(rd_chs, chs, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (N, chs, 1, 1)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2 / V3 block: 1x1 expansion (left out when expansion == 1), depthwise k x k with the
    stride, optional squeeze-excite on the expanded channels, linear 1x1 projection (BN, no activation);
    the input is added back when the shapes allow (stride 1 and in_chs == out_chs).

    The squeeze-excite width is taken from the block's *input* channels, ``max(1, int(in_chs * se_ratio))``
    (EfficientNet / timm's convention), so a large expansion does not also inflate the SE layers.
    """

    def __init__(self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1,
                 expansion: float = 6, se_ratio: float = 0.0, act: str = "relu"):
        super().__init__()
        mid_chs = round(in_chs * expansion)  # torchvision's MobileNetV2 rounds the same way
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = ConvBlock(in_chs, mid_chs, kernel_size=1, act=act) if expansion != 1 else nn.Identity()
        self.conv_dw = ConvBlock(mid_chs, mid_chs, kernel_size=kernel_size, stride=stride, groups=mid_chs,
                                 act=act)
        self.se = SqueezeExcite(mid_chs, max(1, int(in_chs * se_ratio))) if se_ratio > 0 else nn.Identity()
        self.conv_pwl = ConvBlock(mid_chs, out_chs, kernel_size=1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return x + y if self.has_skip else y


BLOCKS: dict[str, type[nn.Module]] = {
    "Conv": ConvBlock,
    "BottleNeck": BottleNeck,
    "InvertedResidual": InvertedResidual,
}


def get_block(name: str) -> type[nn.Module]:
    """The block class registered as ``name`` (a stage's ``block`` key)."""
    try:
        return BLOCKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown block {name!r} (expected {', '.join(BLOCKS)})") from None
