"""The arithmetic of one conv layer, from which every block's MAC / parameter counter is made.

Notation
    H, W            spatial size entering a layer; a k x k conv with stride s and padding k // 2 gives
                    H' = floor((H + 2 * (k // 2) - k) / s) + 1      (torch.nn.Conv2d docs, "Shape")
    c_in, c_out, g  conv channels and groups (depthwise: g = c_in = c_out)

What counts is chosen to equal ``torch.utils.flop_counter.FlopCounterMode`` total / 2 for a batch of one:
a conv costs H' * W' * c_out * (c_in / g) * k * k MACs, its bias nothing (conv_flop_count). Params are every
weight and bias: c_out * c_in / g * k * k (+ c_out with a bias), and 2 * c for a BatchNorm (weight and
bias; the running statistics are buffers). See search_spaces/counting.py for the whole network.
"""

from __future__ import annotations


def out_size(h: int, k: int, s: int) -> int:
    """H' of a k x k conv (or pool) with stride s and padding k // 2."""
    return (h + 2 * (k // 2) - k) // s + 1


def conv_cost(
    h: int, w: int, c_in: int, c_out: int, k: int, s: int = 1, g: int = 1, *, bias: bool = False, bn: bool = True
) -> tuple[int, int, int, int]:
    """(macs, params, H', W') of one conv, with its BatchNorm when ``bn``.

    >>> conv_cost(8, 8, 1, 8, 3)  # 64 positions x 72 weights; 72 weights + BN's 16
    (4608, 88, 8, 8)
    """
    ho, wo = out_size(h, k, s), out_size(w, k, s)
    weights = c_out * (c_in // g) * k * k
    params = weights + (c_out if bias else 0) + (2 * c_out if bn else 0)
    return ho * wo * weights, params, ho, wo
