"""The ``Conv`` block, and the layer every other block is made of. Imports only torch (and the activation
table): ``nas export`` copies this module into model.py."""

import torch
from torch import nn

from search_spaces.blocks.activations import ACT_LAYERS


class ConvBlock(nn.Module):
    """k x k conv (no bias) -> BatchNorm -> activation; ``act=None`` leaves the activation out (a linear
    projection)."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: str | None = "relu",
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = ACT_LAYERS[act]() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
