"""MACs and parameter counts of a config, by arithmetic alone (no module is built; microseconds).

Notation: search_spaces/costs.py (H, W, c_in, c_out, g; a conv's output size).

What counts (chosen to equal ``torch.utils.flop_counter.FlopCounterMode`` total / 2 for a batch of one):
    conv     MACs = H' * W' * c_out * (c_in / g) * k * k; the bias is not counted (conv_flop_count)
    linear   MACs = in * out; the bias is not counted (addmm_flop counts the matmul only)
    nothing else: BatchNorm, activations, pooling, residual adds and the SE gate cost 0 MACs.
Params are every weight and bias: conv c_out * c_in / g * k * k (+ c_out with a bias), BatchNorm 2 * c
(weight and bias; running statistics are buffers), linear in * out + out.
Each block counts itself (its registry entry's ``count``, written from search_spaces/costs.py); this module
walks the network: stem, optional max pool, stages, head, classifier.
"""

from __future__ import annotations

from collections.abc import Iterator

from nas.errors import ConfigError
from search_spaces import registry
from search_spaces.arch import Arch, validate_arch
from search_spaces.costs import out_size
from search_spaces.registry import BlockDef

__all__ = ["count", "count_arch", "walk"]


_out = out_size  # the name search_spaces.size and older callers import


def walk(arch: Arch, h: int, w: int) -> Iterator[tuple[BlockDef, dict, int, int, tuple]]:
    """Every block of ``arch`` in order (stem, stages, head): (its registry entry, its args, the H and W entering
    it, its count (MACs, params, H', W'))."""
    specs = [arch.stem] + [b for stage in arch.stages for b in stage] + ([arch.head] if arch.head else [])
    for i, spec in enumerate(specs):
        block = registry.get(spec.block)
        counted = block.count(spec.args, h, w)
        yield block, spec.args, h, w, counted
        h, w = counted[2:]
        if i == 0 and arch.stem_pool:
            h, w = out_size(h, 3, 2), out_size(w, 3, 2)


def count_arch(arch: Arch, h: int, w: int) -> dict:
    """``{"macs", "params"}`` of a decoded architecture on an ``h`` x ``w`` input."""
    macs = params = 0
    for *_, (m, p, _, _) in walk(arch, h, w):
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
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape)
    )
    if not ok:
        raise ConfigError(f"input_shape: expected (channels, height, width) of positive integers, got {input_shape!r}")
    return tuple(input_shape)
