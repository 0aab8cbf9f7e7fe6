"""The registry entries of the built-in blocks: Conv, BottleNeck, InvertedResidual (see search_spaces/registry.py).

Each entry's counter mirrors its module's layers in arithmetic (search_spaces/costs.py: a conv's MACs and params,
BatchNorm included); tests/search_spaces/test_counting.py checks them against FlopCounterMode. The activation
estimates are the floats the block's convs write for one image (search_spaces/size.py).
"""

from __future__ import annotations

from nas.errors import ConfigError
from nas.space import Categorical, Integer
from search_spaces.blocks.bottleneck import BottleNeck
from search_spaces.blocks.conv import ConvBlock
from search_spaces.blocks.inverted_residual import InvertedResidual
from search_spaces.costs import conv_cost, out_size
from search_spaces.registry import BlockDef, Key, register


def _conv_count(a: dict, h: int, w: int) -> tuple[int, int, int, int]:
    return conv_cost(h, w, a["in_chs"], a["out_chs"], a["kernel_size"], a["stride"])


def _conv_activations(a: dict, h: int, w: int) -> int:
    k, s = a["kernel_size"], a["stride"]
    return out_size(h, k, s) * out_size(w, k, s) * a["out_chs"]


register(
    BlockDef(
        "Conv",
        ConvBlock,
        count=_conv_count,
        activations=_conv_activations,
        # kernel 1 gives a pointwise stage: a cheap way to change width.
        space=lambda: [Integer("kernel", 1, 5, step=2)],
    )
)


def _bottleneck_count(a: dict, h: int, w: int) -> tuple[int, int, int, int]:
    c_in, c_out, k, s = a["in_chs"], a["out_chs"], a["kernel_size"], a["stride"]
    mid = c_out // a["expansion"]
    m1, p1, _, _ = conv_cost(h, w, c_in, mid, 1)
    m2, p2, ho, wo = conv_cost(h, w, mid, mid, k, s)
    m3, p3, _, _ = conv_cost(ho, wo, mid, c_out, 1)
    macs, params = m1 + m2 + m3, p1 + p2 + p3
    if s != 1 or c_in != c_out:  # projection shortcut
        m4, p4, _, _ = conv_cost(h, w, c_in, c_out, 1, s)
        macs, params = macs + m4, params + p4
    return macs, params, ho, wo


def _bottleneck_activations(a: dict, h: int, w: int) -> int:
    k, s, c_out = a["kernel_size"], a["stride"], a["out_chs"]
    mid = c_out // a["expansion"]
    return h * w * mid + out_size(h, k, s) * out_size(w, k, s) * (mid + 2 * c_out)  # + the projection shortcut


def _bottleneck_check(a: dict, where: str) -> None:
    out, e = a["out_chs"], a["expansion"]
    if out % e:
        raise ConfigError(
            f"{where}.channels: {out} is not divisible by expansion {e} (a BottleNeck's inner "
            f"width is channels / expansion); use a multiple of {e}"
        )


register(
    BlockDef(
        "BottleNeck",
        BottleNeck,
        count=_bottleneck_count,
        activations=_bottleneck_activations,
        keys={"expansion": Key(4, low=1, integer=True)},  # ResNet's
        check=_bottleneck_check,
        # expansion 1 is a plain two-conv residual block with a 1x1 squeeze; 4 is ResNet's.
        space=lambda: [Integer("kernel", 3, 5, step=2), Categorical("expansion", [1, 2, 4])],
    )
)


def _inverted_residual_count(a: dict, h: int, w: int) -> tuple[int, int, int, int]:
    c_in, c_out, k, s, e = a["in_chs"], a["out_chs"], a["kernel_size"], a["stride"], a["expansion"]
    mid = round(c_in * e)
    macs = params = 0
    if e != 1:
        macs, params, _, _ = conv_cost(h, w, c_in, mid, 1)
    m, p, ho, wo = conv_cost(h, w, mid, mid, k, s, g=mid)  # depthwise
    macs, params = macs + m, params + p
    if a["se_ratio"] > 0:  # two 1x1 convs with bias on the pooled (1 x 1) map, no BN
        rd = max(1, int(c_in * a["se_ratio"]))
        for ci, co in ((mid, rd), (rd, mid)):
            m, p, _, _ = conv_cost(1, 1, ci, co, 1, bias=True, bn=False)
            macs, params = macs + m, params + p
    m, p, _, _ = conv_cost(ho, wo, mid, c_out, 1)
    return macs + m, params + p, ho, wo


def _inverted_residual_activations(a: dict, h: int, w: int) -> int:
    k, s = a["kernel_size"], a["stride"]
    mid = round(a["in_chs"] * a["expansion"])
    return h * w * mid + out_size(h, k, s) * out_size(w, k, s) * (mid + a["out_chs"])


register(
    BlockDef(
        "InvertedResidual",
        InvertedResidual,
        count=_inverted_residual_count,
        activations=_inverted_residual_activations,
        keys={
            "expansion": Key(6, low=1, high=64),  # MobileNetV2's
            "se_ratio": Key(0.0, low=0, high=1, hint=" (0 = no squeeze-excite)"),
        },
        # expansion up to MobileNetV2's 6; SE ratio 0.25 is MobileNetV3 / EfficientNet's.
        space=lambda: [
            Integer("kernel", 3, 7, step=2),
            Integer("expansion", 1, 6),
            Categorical("se_ratio", [0.0, 0.25]),
        ],
    )
)
