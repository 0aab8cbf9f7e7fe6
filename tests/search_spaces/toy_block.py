"""A toy block for tests/search_spaces/test_registry.py, written as a user's own block would be: a torch-only
module (torch and the block modules of search_spaces.blocks), registered from the test."""

import torch
from torch import nn

from search_spaces.blocks.conv import ConvBlock


class DWSep(nn.Module):
    """Depthwise-separable conv: k x k depthwise with ``mult`` filters per input channel and the stride, then a
    linear 1x1 projection to out_chs (MobileNetV1 without the activation after the projection)."""

    def __init__(
        self, in_chs: int, out_chs: int, *, kernel_size: int = 3, stride: int = 1, mult: int = 1, act: str = "relu"
    ):
        super().__init__()
        self.dw = ConvBlock(in_chs, in_chs * mult, kernel_size=kernel_size, stride=stride, groups=in_chs, act=act)
        self.pw = ConvBlock(in_chs * mult, out_chs, kernel_size=1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))
