"""MACs and parameter counts of a config, by arithmetic alone (no module is built; microseconds).

Notation
    H, W            spatial size entering a layer; a k x k conv with stride s and padding k // 2 gives
                    H' = floor((H + 2 * (k // 2) - k) / s) + 1      (torch.nn.Conv2d docs, "Shape")
    c_in, c_out, g  conv channels and groups (depthwise: g = c_in = c_out)

What counts (chosen to equal ``torch.utils.flop_counter.FlopCounterMode`` total / 2 for a batch of one):
    conv     MACs = H' * W' * c_out * (c_in / g) * k * k; the bias is not counted (conv_flop_count)
    linear   MACs = in * out; the bias is not counted (addmm_flop counts the matmul only)
    nothing else: BatchNorm, activations, pooling, residual adds and the SE gate cost 0 MACs.
Params are every weight and bias: conv c_out * c_in / g * k * k (+ c_out with a bias), BatchNorm 2 * c
(weight and bias; running statistics are buffers), linear in * out + out.
The block layouts are those of ``search_spaces/blocks.py``.
"""
from __future__ import annotations

from nas.errors import ConfigError
from search_spaces.arch import Arch, BlockSpec, validate_arch

__all__ = ["count", "count_arch"]


def _out(h: int, k: int, s: int) -> int:
    return (h + 2 * (k // 2) - k) // s + 1


def _conv(h: int, w: int, c_in: int, c_out: int, k: int, s: int = 1, g: int = 1,
          *, bias: bool = False, bn: bool = True) -> tuple[int, int, int, int]:
    """(macs, params, H', W') of one conv, with its BatchNorm when ``bn``."""
    ho, wo = _out(h, k, s), _out(w, k, s)
    weights = c_out * (c_in // g) * k * k
    params = weights + (c_out if bias else 0) + (2 * c_out if bn else 0)
    return ho * wo * weights, params, ho, wo


def _conv_block(a: dict, h: int, w: int) -> tuple[int, int, int, int]:
    return _conv(h, w, a["in_chs"], a["out_chs"], a["kernel_size"], a["stride"])


def _bottleneck(a: dict, h: int, w: int) -> tuple[int, int, int, int]:
    c_in, c_out, k, s = a["in_chs"], a["out_chs"], a["kernel_size"], a["stride"]
    mid = c_out // a["expansion"]
    m1, p1, _, _ = _conv(h, w, c_in, mid, 1)
    m2, p2, ho, wo = _conv(h, w, mid, mid, k, s)
    m3, p3, _, _ = _conv(ho, wo, mid, c_out, 1)
    macs, params = m1 + m2 + m3, p1 + p2 + p3
    if s != 1 or c_in != c_out:  # projection shortcut
        m4, p4, _, _ = _conv(h, w, c_in, c_out, 1, s)
        macs, params = macs + m4, params + p4
    return macs, params, ho, wo


def _inverted_residual(a: dict, h: int, w: int) -> tuple[int, int, int, int]:
    c_in, c_out, k, s, e = a["in_chs"], a["out_chs"], a["kernel_size"], a["stride"], a["expansion"]
    mid = round(c_in * e)
    macs = params = 0
    if e != 1:
        macs, params, _, _ = _conv(h, w, c_in, mid, 1)
    m, p, ho, wo = _conv(h, w, mid, mid, k, s, g=mid)  # depthwise
    macs, params = macs + m, params + p
    if a["se_ratio"] > 0:  # two 1x1 convs with bias on the pooled (1 x 1) map, no BN
        rd = max(1, int(c_in * a["se_ratio"]))
        for ci, co in ((mid, rd), (rd, mid)):
            m, p, _, _ = _conv(1, 1, ci, co, 1, bias=True, bn=False)
            macs, params = macs + m, params + p
    m, p, _, _ = _conv(ho, wo, mid, c_out, 1)
    return macs + m, params + p, ho, wo


_COUNTERS = {"Conv": _conv_block, "BottleNeck": _bottleneck, "InvertedResidual": _inverted_residual}


def _block(spec: BlockSpec, h: int, w: int) -> tuple[int, int, int, int]:
    return _COUNTERS[spec.block](spec.args, h, w)


def count_arch(arch: Arch, h: int, w: int) -> dict:
    """``{"macs", "params"}`` of a decoded architecture on an ``h`` x ``w`` input."""
    macs, params, h, w = _block(arch.stem, h, w)
    if arch.stem_pool:
        h, w = _out(h, 3, 2), _out(w, 3, 2)
    for spec in [b for stage in arch.stages for b in stage] + ([arch.head] if arch.head else []):
        m, p, h, w = _block(spec, h, w)
        macs, params = macs + m, params + p
    macs += arch.features * arch.num_classes
    params += arch.features * arch.num_classes + arch.num_classes
    return {"macs": macs, "params": params}


def count(config: dict, *, input_shape: tuple, num_classes: int | None = None) -> dict:
    """MACs (multiply-accumulates for one image) and parameter count of the model ``config`` describes.

    ``input_shape`` is (channels, height, width); ``num_classes`` defaults to the config's
    ``classifier.num_classes``. Equal to FlopCounterMode's total / 2 and to ``sum(p.numel())`` of
    ``build_model(config)``.

    >>> count({"stem": {"channels": 8}, "stages": []}, input_shape=(1, 8, 8), num_classes=10)
    {'macs': 4688, 'params': 178}
    """
    c, h, w = _shape(input_shape)
    return count_arch(validate_arch(config, num_classes=num_classes, in_chans=c), h, w)


def _shape(input_shape) -> tuple[int, int, int]:
    ok = (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
          and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape))
    if not ok:
        raise ConfigError(f"input_shape: expected (channels, height, width) of positive integers, "
                          f"got {input_shape!r}")
    return tuple(input_shape)
