"""Every block, over its parameter grid: output shape, finite values, a gradient for every parameter, and the
residual paths really adding the input."""

import itertools

import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from search_spaces.blocks import ACTIVATIONS, BLOCKS, BottleNeck, ConvBlock, InvertedResidual, get_act, get_block


def _out(h, k, s):
    return (h + 2 * (k // 2) - k) // s + 1


def _check_forward_backward(block: nn.Module, in_chs: int, out_chs: int, k: int, s: int, h: int = 8, n: int = 2):
    torch.manual_seed(0)
    x = torch.randn(n, in_chs, h, h, requires_grad=True)
    y = block.train()(x)
    assert y.shape == (n, out_chs, _out(h, k, s), _out(h, k, s))
    assert torch.isfinite(y).all()
    # A random projection, not y.sum(): the sum of a BatchNorm output has zero gradient.
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in block.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_activation_registry():
    assert set(ACTIVATIONS) == {"relu", "relu6", "hardswish", "silu"}
    x = torch.linspace(-8, 8, 33)
    assert torch.equal(get_act("relu6")()(x), x.clamp(0, 6))
    assert torch.allclose(get_act("hardswish")()(x), x * (x + 3).clamp(0, 6) / 6)
    assert torch.allclose(get_act("silu")()(x), x * torch.sigmoid(x))
    with pytest.raises(ConfigError, match="unknown activation 'gelu' \\(expected relu, relu6, hardswish, silu\\)"):
        get_act("gelu")


def test_block_registry():
    assert get_block("Conv") is ConvBlock and get_block("BottleNeck") is BottleNeck
    assert get_block("InvertedResidual") is InvertedResidual and len(BLOCKS) == 3
    with pytest.raises(ConfigError, match="expected Conv, BottleNeck, InvertedResidual"):
        get_block("Foo")


@pytest.mark.parametrize("k,s,act", list(itertools.product([1, 3, 5], [1, 2], ACTIVATIONS)))
def test_conv_block(k, s, act):
    _check_forward_backward(ConvBlock(4, 8, kernel_size=k, stride=s, act=act), 4, 8, k, s)


def test_depthwise_conv_block():
    block = ConvBlock(8, 8, kernel_size=3, groups=8)
    assert block.conv.weight.shape == (8, 1, 3, 3)
    _check_forward_backward(block, 8, 8, 3, 1)


@pytest.mark.parametrize("k,s,e,same", list(itertools.product([3, 5], [1, 2], [1, 2, 4], [True, False])))
def test_bottleneck(k, s, e, same):
    in_chs, out_chs = (8, 8) if same else (4, 8)
    act = ACTIVATIONS[(k + s + e) % len(ACTIVATIONS)]
    block = BottleNeck(in_chs, out_chs, kernel_size=k, stride=s, expansion=e, act=act)
    assert block.conv2.conv.weight.shape == (out_chs // e, out_chs // e, k, k)
    assert block.conv2.conv.stride == (s, s)  # v1.5: the stride sits on the k x k conv
    assert isinstance(block.shortcut, nn.Identity) == (same and s == 1)
    _check_forward_backward(block, in_chs, out_chs, k, s)


@pytest.mark.parametrize(
    "k,s,e,se,same", list(itertools.product([3, 5, 7], [1, 2], [1, 2, 6], [0.0, 0.25], [True, False]))
)
def test_inverted_residual(k, s, e, se, same):
    in_chs, out_chs = (16, 16) if same else (16, 24)
    act = ACTIVATIONS[(k + s + e) % len(ACTIVATIONS)]
    block = InvertedResidual(in_chs, out_chs, kernel_size=k, stride=s, expansion=e, se_ratio=se, act=act)
    assert isinstance(block.conv_pw, nn.Identity) == (e == 1)
    assert block.conv_dw.conv.groups == in_chs * e and block.conv_dw.conv.stride == (s, s)
    assert block.has_skip == (same and s == 1)
    if se:
        assert block.se.reduce.out_channels == max(1, int(in_chs * se))
        assert block.se.reduce.in_channels == in_chs * e
    else:
        assert isinstance(block.se, nn.Identity)
    # Four images and a 4-wide SE: with fewer, the ReLU inside the SE can be dead for the whole batch,
    # leaving its weights an honest all-zero gradient.
    _check_forward_backward(block, in_chs, out_chs, k, s, n=4)


def test_se_ratio_floor_is_one_channel():
    torch.manual_seed(1)
    block = InvertedResidual(2, 2, expansion=3, se_ratio=0.25)  # int(2 * 0.25) == 0 -> 1
    assert block.se.reduce.out_channels == 1
    _check_forward_backward(block, 2, 2, 3, 1, n=4)


def _zero_last_bn(bn: nn.BatchNorm2d):
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.zero_()


def test_inverted_residual_skip_adds_the_input():
    torch.manual_seed(0)
    block = InvertedResidual(8, 8, expansion=2, se_ratio=0.25).eval()
    _zero_last_bn(block.conv_pwl.bn)  # the residual branch now outputs 0
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), x)


def test_bottleneck_adds_then_activates():
    torch.manual_seed(0)
    block = BottleNeck(8, 8, expansion=2, act="relu6").eval()
    _zero_last_bn(block.conv3.bn)
    x = 4 * torch.randn(2, 8, 6, 6)
    assert torch.equal(block(x), x.clamp(0, 6))  # act(0 + x): identity shortcut, activation after the add
    proj = BottleNeck(4, 8, stride=2, expansion=2).eval()
    _zero_last_bn(proj.conv3.bn)
    x = torch.randn(2, 4, 6, 6)
    assert torch.allclose(proj(x), torch.relu(proj.shortcut(x)))
