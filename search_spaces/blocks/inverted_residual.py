"""The ``InvertedResidual`` block (MobileNetV2 / V3) and its squeeze-excite. Imports only torch and its sibling
block modules: ``nas export`` copies this module into model.py."""

import torch
from torch import nn

from search_spaces.blocks.conv import ConvBlock


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

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expansion: float = 6,
        se_ratio: float = 0.0,
        act: str = "relu",
    ):
        super().__init__()
        mid_chs = round(in_chs * expansion)  # torchvision's MobileNetV2 rounds the same way
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = ConvBlock(in_chs, mid_chs, kernel_size=1, act=act) if expansion != 1 else nn.Identity()
        self.conv_dw = ConvBlock(mid_chs, mid_chs, kernel_size=kernel_size, stride=stride, groups=mid_chs, act=act)
        self.se = SqueezeExcite(mid_chs, max(1, int(in_chs * se_ratio))) if se_ratio > 0 else nn.Identity()
        self.conv_pwl = ConvBlock(mid_chs, out_chs, kernel_size=1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return x + y if self.has_skip else y
