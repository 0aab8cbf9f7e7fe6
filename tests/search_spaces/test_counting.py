"""The analytic counts against independent counters: torch's FlopCounterMode (MACs = FLOPs / 2, batch of
one), sum(p.numel()) of the built model, and torchvision's own MobileNetV2 / ResNet-50."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from nas.errors import ConfigError
from search_spaces import build_model, count, default_space

REFERENCE = Path(__file__).parents[2] / "search_spaces" / "reference"


def counted(model: torch.nn.Module, shape: tuple) -> dict:
    """MACs and params of a built model, measured (FlopCounterMode reads shapes only, so a model on the
    meta device works too: no arithmetic, cheap even at 224 x 224)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        y = model(torch.zeros(1, *shape, device=device))
    assert fc.get_total_flops() % 2 == 0
    return {"macs": fc.get_total_flops() // 2, "params": sum(p.numel() for p in model.parameters()), "out": y.shape}


def test_hand_computed_example():
    # stem 3x3 conv 1->8 on 8x8 (72 weights, 64 positions) + BN; Conv stage 3x3 stride 2 8->16 on 4x4;
    # linear 16->10.
    cfg = {"stem": {"channels": 8}, "stages": [{"block": "Conv", "channels": 16, "stride": 2}]}
    macs = 64 * 72 + 16 * (16 * 8 * 9) + 16 * 10
    params = (72 + 16) + (16 * 8 * 9 + 32) + (160 + 10)
    assert count(cfg, input_shape=(1, 8, 8), num_classes=10) == {"macs": macs, "params": params}


def test_squeeze_excite_is_counted_on_a_one_by_one_map():
    base = {"stem": {"channels": 8}, "stages": [{"block": "InvertedResidual", "channels": 8, "expansion": 2}]}
    se = {**base, "stages": [{**base["stages"][0], "se_ratio": 0.25}]}
    a = count(base, input_shape=(3, 8, 8), num_classes=2)
    b = count(se, input_shape=(3, 8, 8), num_classes=2)
    # 16 expanded channels, 2 reduced: two 1x1 convs with bias, MACs once each (not per pixel).
    assert b["macs"] - a["macs"] == 16 * 2 + 2 * 16
    assert b["params"] - a["params"] == (16 * 2 + 2) + (2 * 16 + 16)


def _check(cfg, shape, num_classes):
    want = count(cfg, input_shape=shape, num_classes=num_classes)
    # Real tensors: on tiny inputs the CPU is several times faster than the meta device's dispatch.
    got = counted(build_model(cfg, num_classes=num_classes, in_chans=shape[0]), shape)
    assert (want["macs"], want["params"]) == (got["macs"], got["params"]), json.dumps(cfg)
    assert tuple(got["out"]) == (1, num_classes)


@pytest.mark.parametrize("hw", [8, 16])
def test_default_space_counts_match_flop_counter(hw):
    """100 configs sampled from the shipped space at each size; every one must build and count exactly."""
    rng = np.random.default_rng(hw)
    for cfg in default_space().sample_many(100, seed=hw):
        _check(cfg, (int(rng.choice([1, 3])), hw, hw), int(rng.integers(2, 20)))


def _wild_config(rng) -> dict:
    """Configs beyond the default space: any width, kernel 7, max pool, fractional expansion, odd sizes."""
    act = lambda: str(rng.choice(["relu", "relu6", "hardswish", "silu"]))  # noqa: E731
    stages = []
    for _ in range(int(rng.integers(0, 5))):
        block = str(rng.choice(["Conv", "BottleNeck", "InvertedResidual"]))
        st = {
            "block": block,
            "stride": int(rng.integers(1, 3)),
            "repeats": int(rng.integers(1, 4)),
            "kernel": int(rng.choice([1, 3, 5, 7])),
            "activation": act(),
        }
        if block == "BottleNeck":
            st["expansion"] = int(rng.choice([1, 2, 3, 4]))
            st["channels"] = st["expansion"] * int(rng.integers(1, 9))
            st["kernel"] = max(st["kernel"], 3)
        else:
            st["channels"] = int(rng.integers(1, 25))
        if block == "InvertedResidual":
            st["expansion"] = float(rng.choice([1, 1.5, 2, 2.5, 4]))
            st["se_ratio"] = float(rng.choice([0, 0.1, 0.25, 0.5, 1.0]))
        stages.append(st)
    return {
        "stem": {
            "channels": int(rng.integers(1, 17)),
            "kernel": int(rng.choice([1, 3, 5, 7])),
            "stride": int(rng.integers(1, 3)),
            "activation": act(),
            "pool": str(rng.choice(["max", "none"])),
        },
        "stages": stages,
        "head": {"channels": int(rng.choice([0, 0, 7, 32])), "activation": act()},
        "classifier": {"dropout": float(rng.choice([0.0, 0.5]))},
    }


def test_wild_configs_match_flop_counter():
    rng = np.random.default_rng(0)
    for _ in range(100):
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 20)), int(rng.integers(1, 20)))
        _check(_wild_config(rng), shape, int(rng.integers(1, 12)))


@pytest.mark.parametrize(
    "name,make,params,macs",
    [
        ("mobilenet_v2", torchvision.models.mobilenet_v2, 3_504_872, 300_774_272),
        ("resnet50", torchvision.models.resnet50, 25_557_032, 4_089_184_256),
    ],
)
def test_reference_configs_equal_torchvision(name, make, params, macs):
    cfg = json.loads((REFERENCE / f"{name}.json").read_text())
    assert cfg["classifier"]["num_classes"] == 1000
    with torch.device("meta"):  # no weight init, no arithmetic: about a second each
        ours, theirs = build_model(cfg), make(weights=None)
    shape = (3, 224, 224)
    theirs_counted, ours_counted = counted(theirs, shape), counted(ours, shape)
    assert (theirs_counted["params"], theirs_counted["macs"]) == (params, macs)
    assert (ours_counted["params"], ours_counted["macs"]) == (params, macs)
    assert count(cfg, input_shape=shape) == {"macs": macs, "params": params}
    # Same parameter tensors, layer by layer (names differ; shapes and order must not).
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_count_is_fast_and_checks_its_input():
    cfg = default_space().sample(seed=3)
    start = time.perf_counter()
    for _ in range(200):
        count(cfg, input_shape=(3, 32, 32), num_classes=10)
    assert (time.perf_counter() - start) / 200 < 0.005  # tens of microseconds in practice; generous for CI
    for bad in [(32, 32), (3, 0, 32), "3x32x32", (3.0, 32, 32)]:
        with pytest.raises(ConfigError, match="input_shape: expected \\(channels, height, width\\)"):
            count(cfg, input_shape=bad, num_classes=10)
    with pytest.raises(ConfigError, match="stages\\[0\\]\\.channels"):
        count({**cfg, "stages": [{**cfg["stages"][0], "channels": -1}]}, input_shape=(3, 8, 8), num_classes=10)
