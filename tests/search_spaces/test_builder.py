"""The config -> model builder: structure, defaults, num_classes, and the errors bad configs raise."""

import copy
import re

import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from search_spaces import build_model, validate_arch
from search_spaces.blocks import BottleNeck, ConvBlock, InvertedResidual

from example_configs import EVERY_BLOCK

CFG = EVERY_BLOCK


def test_builds_the_layout_of_the_config():
    torch.manual_seed(0)
    model = build_model(CFG, num_classes=10, in_chans=1)
    assert [len(s) for s in model.stages] == [1, 2, 2]
    b0, b1 = model.stages[1]
    assert isinstance(b0, BottleNeck) and isinstance(model.stages[2][0], InvertedResidual)
    assert isinstance(model.stages[0][0], ConvBlock)
    assert b0.conv2.conv.stride == (2, 2) and b1.conv2.conv.stride == (1, 1)  # stride on the first block only
    assert b0.conv1.conv.in_channels == 32 and b1.conv1.conv.in_channels == 64
    assert isinstance(b0.shortcut, ConvBlock) and isinstance(b1.shortcut, nn.Identity)
    assert model.head.conv.out_channels == 128 and model.fc.in_features == 128 and model.fc.out_features == 10
    assert isinstance(model.stages[2][0].conv_dw.act, nn.Hardswish)
    assert model.dropout.p == 0.1
    model.train()
    y = model(torch.randn(3, 1, 16, 16))
    assert y.shape == (3, 10) and torch.isfinite(y).all()


def test_optional_sections_default():
    cfg = {"stem": {"channels": 8}, "stages": [{"block": "InvertedResidual", "channels": 16}]}
    model = build_model(cfg, num_classes=4)
    assert isinstance(model.head, nn.Identity) and isinstance(model.dropout, nn.Identity)
    assert isinstance(model.pool, nn.Identity) and model.fc.in_features == 16
    ir = model.stages[0][0]
    assert ir.conv_dw.conv.kernel_size == (3, 3) and ir.conv_dw.conv.in_channels == 48  # expansion 6
    assert isinstance(ir.se, nn.Identity) and isinstance(model.stem.act, nn.ReLU)
    assert build_model({**cfg, "head": {"channels": 0}}, num_classes=4).fc.in_features == 16
    assert build_model({**cfg, "head": None, "classifier": None}, num_classes=4).fc.in_features == 16
    assert build_model({"stem": {"channels": 8}, "stages": []}, num_classes=2)(torch.zeros(2, 3, 4, 4)).shape == (2, 2)


def test_num_classes_from_config_or_argument():
    cfg = copy.deepcopy(CFG)
    cfg["classifier"]["num_classes"] = 7
    assert build_model(cfg).fc.out_features == 7
    assert build_model(cfg, num_classes=3).fc.out_features == 3  # the caller (the data set) wins
    with pytest.raises(ConfigError, match="num_classes: not given"):
        build_model(CFG)


def test_max_pool_stem():
    cfg = {"stem": {"channels": 8, "kernel": 7, "stride": 2, "pool": "max"}, "stages": []}
    model = build_model(cfg, num_classes=2)
    assert isinstance(model.pool, nn.MaxPool2d)
    x = torch.zeros(1, 3, 32, 32)
    assert model.pool(model.stem(x)).shape == (1, 8, 8, 8)


def _with(path: str, value, base=CFG):
    """A copy of ``base`` with the key at ``path`` (e.g. ``stages[1].kernel``) set to value (or deleted)."""
    cfg = copy.deepcopy(base)
    *parents, last = re.findall(r"\w+|\[\d+\]", path)
    key = lambda p: int(p[1:-1]) if p.startswith("[") else p  # noqa: E731
    d = cfg
    for p in parents:
        d = d[key(p)]
    last = key(last)
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value
    return cfg


_DELETE = object()

ERRORS = [
    (
        "stages[2].block",
        "Foo",
        r"stages\[2\]\.block: unknown block 'Foo' \(expected Conv, BottleNeck, InvertedResidual\)",
    ),
    ("stages[0].block", _DELETE, r"stages\[0\]\.block: missing"),
    ("stages[0].channels", _DELETE, r"stages\[0\]\.channels: missing"),
    ("stages[0].channels", 0, r"stages\[0\]\.channels: 0 must be positive"),
    ("stages[0].channels", 12.5, r"stages\[0\]\.channels: expected an integer"),
    ("stages[0].channels", True, r"stages\[0\]\.channels: expected an integer"),
    ("stem.channels", -8, r"stem\.channels: -8 must be positive"),
    ("stem.channels", _DELETE, r"stem\.channels: missing"),
    ("stages[1].stride", 3, r"stages\[1\]\.stride: 3 must be 1 or 2"),
    ("stem.stride", 0, r"stem\.stride: 0 must be positive"),
    ("stages[1].kernel", 4, r"stages\[1\]\.kernel: 4 must be odd"),
    ("stem.kernel", 0, r"stem\.kernel: 0 must be positive"),
    ("stages[1].channels", 66, r"stages\[1\]\.channels: 66 is not divisible by expansion 4 .* use a multiple of 4"),
    ("stages[1].expansion", 0, r"stages\[1\]\.expansion: 0 must be positive"),
    ("stages[2].expansion", 0.5, r"stages\[2\]\.expansion: 0.5 is outside \[1, 64\]"),
    ("stages[2].se_ratio", 1.5, r"stages\[2\]\.se_ratio: 1.5 is outside \[0, 1\]"),
    ("stages[0].expansion", 2, r"stages\[0\]\.expansion: unknown key for a Conv stage \(expected block, channels"),
    ("stages[0].kernal", 3, r"stages\[0\]\.kernal: unknown key"),
    ("stages[0].repeats", 0, r"stages\[0\]\.repeats: 0 must be positive"),
    ("stages[2].activation", "gelu", r"stages\[2\]\.activation: unknown activation 'gelu' \(expected relu, relu6"),
    ("head.channels", -1, r"head\.channels: -1 must be at least 0"),
    ("head.activation", None, r"head\.activation: unknown activation None"),
    ("classifier.dropout", 1.0, r"classifier\.dropout: 1.0 is outside \[0, 1\)"),
    ("classifier.num_classes", 0, r"classifier\.num_classes: 0 must be positive"),
    ("stem.pool", "avg", r"stem\.pool: 'avg' is not one of"),
    ("stem", _DELETE, r"stem: missing"),
    ("stages", _DELETE, r"stages: missing"),
    ("stages", {"block": "Conv"}, r"stages: expected a list"),
    ("stages[1]", "BottleNeck", r"stages\[1\]: expected a mapping"),
    ("head", [128], r"head: expected a mapping"),
]


@pytest.mark.parametrize("path,value,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_name_the_path(path, value, message):
    cfg = _with(path, value)
    with pytest.raises(ConfigError, match=message) as info:
        build_model(cfg, num_classes=10)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=message):  # the counter shares the checks
        validate_arch(cfg, num_classes=10)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="config: expected a mapping"):
        build_model([1, 2], num_classes=10)
    with pytest.raises(ConfigError, match="num_classes: 0 must be positive"):
        build_model(CFG, num_classes=0)
    with pytest.raises(ConfigError, match="in_chans: 0 must be positive"):
        build_model(CFG, num_classes=10, in_chans=0)


def test_integral_floats_are_accepted():
    cfg = _with("stages[0].channels", 32.0)
    assert build_model(cfg, num_classes=10).stages[0][0].conv.out_channels == 32
