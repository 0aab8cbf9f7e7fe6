"""Turn a config (a plain JSON dict) into an ``nn.Module``.

The config is decoded and checked once by ``search_spaces.arch.validate_arch``; this module only maps the
decoded blocks onto the block registry (search_spaces/registry.py). Layout of the built model (the names show up in fvcore's table):

    stem      ConvBlock, then ``pool`` (3x3 stride-2 max pool, or identity)
    stages    stages[i][j] = block j of stage i; block 0 carries the stage's stride
    head      1x1 ConvBlock to head.channels, or identity when there is none
    then global average pool -> dropout -> fc (Linear with bias)
"""

from __future__ import annotations

import torch
from torch import nn

from search_spaces import registry
from search_spaces.arch import Arch, BlockSpec, validate_arch

__all__ = ["build_model", "validate_arch", "Net"]


class Net(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.stem = _make(arch.stem)
        # Same padding as torchvision's ResNet: the 3x3 stride-2 pool halves the size (rounding up).
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if arch.stem_pool else nn.Identity()
        self.stages = nn.Sequential(*(nn.Sequential(*(_make(b) for b in stage)) for stage in arch.stages))
        self.head = _make(arch.head) if arch.head is not None else nn.Identity()
        self.dropout = nn.Dropout(arch.dropout) if arch.dropout > 0 else nn.Identity()
        self.fc = nn.Linear(arch.features, arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.pool(self.stem(x))))  # (N, features, H', W')
        return self.fc(self.dropout(x.mean((2, 3))))  # (N, num_classes)


def _make(spec: BlockSpec) -> nn.Module:
    return registry.get(spec.block).module(**spec.args)


def build_model(config: dict, *, num_classes: int | None = None, in_chans: int = 3) -> nn.Module:
    """The CNN that ``config`` describes; only its stem, stages, head and classifier keys are read.

    ``num_classes`` defaults to the config's ``classifier.num_classes``.

    >>> cfg = {"stem": {"channels": 8}, "stages": [{"block": "Conv", "channels": 16, "stride": 2}]}
    >>> build_model(cfg, num_classes=10, in_chans=1)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    return Net(validate_arch(config, num_classes=num_classes, in_chans=in_chans))
