"""The ``BottleNeck`` block (ResNet). Imports only torch and its sibling block modules: ``nas export`` copies
this module into model.py."""

import torch
from torch import nn

from search_spaces.blocks.activations import ACT_LAYERS
from search_spaces.blocks.conv import ConvBlock


class BottleNeck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, k x k with the stride (v1.5 puts it here, not on the first
    1x1), 1x1 expand, each with BN; the activation comes after the residual add."""

    def __init__(
        self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1, expansion: int = 4, act: str = "relu"
    ):
        super().__init__()
        mid_chs = out_chs // expansion  # the validator has checked that expansion divides out_chs
        self.conv1 = ConvBlock(in_chs, mid_chs, kernel_size=1, act=act)
        self.conv2 = ConvBlock(mid_chs, mid_chs, kernel_size=kernel_size, stride=stride, act=act)
        self.conv3 = ConvBlock(mid_chs, out_chs, kernel_size=1, act=None)
        # Projection shortcut only where the identity cannot be added (ResNet "option B").
        if stride != 1 or in_chs != out_chs:
            self.shortcut = ConvBlock(in_chs, out_chs, kernel_size=1, stride=stride, act=None)
        else:
            self.shortcut = nn.Identity()
        self.act = ACT_LAYERS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))
