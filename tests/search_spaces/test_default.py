"""The shipped search spaces: YAML copies in sync, every sample builds and trains a step, sizes stay small,
optimiser branches carry only their own settings."""

import numpy as np
import pytest
import torch

from nas.space import Space
from search_spaces import build_model, count
from search_spaces.default import (
    OPTIMIZER_RANGES,
    SHIPPED,
    SPACES_DIR,
    architecture_space,
    default_space,
    training_space,
    write_shipped,
)

OPTIMIZER_KEYS = {
    "sgd": {"momentum", "nesterov"},
    "adam": {"beta1", "beta2"},
    "adamw": {"beta1", "beta2"},
    "rmsprop": {"alpha", "momentum"},
}
OPTIMIZER_KEYS = {k: v | {"lr", "weight_decay"} for k, v in OPTIMIZER_KEYS.items()}
TRAINING_KEYS = {"optimizer", "batch_size", "label_smoothing", "warmup_epochs"}
ARCH_KEYS = {"stem", "stages", "head", "classifier"}


@pytest.mark.parametrize("filename", sorted(SHIPPED))
def test_shipped_yaml_equals_the_python_definition(filename):
    shipped = Space.load(SPACES_DIR / filename)
    assert shipped.to_dict() == SHIPPED[filename]().to_dict(), (
        f"spaces/{filename} has drifted: run python -m search_spaces.default"
    )


def test_write_shipped_reproduces_the_files(tmp_path):
    for path in write_shipped(tmp_path):
        assert path.read_text() == (SPACES_DIR / path.name).read_text()


def test_config_layout():
    cfg = default_space().sample(seed=0)
    assert set(cfg) == ARCH_KEYS | TRAINING_KEYS
    assert set(architecture_space().sample(seed=0)) == ARCH_KEYS
    assert set(training_space().sample(seed=0)) == TRAINING_KEYS


def test_optimizer_branches_carry_only_their_own_params():
    seen = set()
    for cfg in training_space().sample_many(200, seed=1):
        opt = dict(cfg["optimizer"])
        name = opt.pop("name")
        assert set(opt) == OPTIMIZER_KEYS[name]
        seen.add(name)
        lo, hi = OPTIMIZER_RANGES[name]["lr"]
        assert lo <= opt["lr"] <= hi and cfg["batch_size"] in (32, 64, 128, 256)
        lo, hi = OPTIMIZER_RANGES[name]["weight_decay"]
        assert lo <= opt["weight_decay"] <= hi
        assert 0 <= cfg["warmup_epochs"] <= 3
    assert seen == set(OPTIMIZER_KEYS)


def test_bounds_are_passed_through():
    space = default_space(max_stages=2, channels=(16, 32), batch_sizes=(8,), allow_stem_stride=False)
    for cfg in space.sample_many(50, seed=2):
        assert 1 <= len(cfg["stages"]) <= 2 and cfg["stem"]["stride"] == 1
        assert all(16 <= s["channels"] <= 32 for s in cfg["stages"])
        assert "epochs" not in cfg and cfg["batch_size"] == 8
    with pytest.raises(TypeError, match="unknown bound 'max_stage'"):
        default_space(max_stage=3)
    with pytest.raises(TypeError, match="unknown bound 'epochs'"):  # epochs are a resource, not searched
        default_space(epochs=(3, 4))


def test_samples_build_and_train_a_step():
    """Real weights, train mode, a batch of two 8x8 images: a sampled config must not only count but run."""
    torch.manual_seed(0)
    for cfg in default_space().sample_many(20, seed=3):
        model = build_model(cfg, num_classes=10, in_chans=1).train()
        y = model(torch.randn(2, 1, 8, 8))
        assert y.shape == (2, 10) and torch.isfinite(y).all()
        torch.nn.functional.cross_entropy(y, torch.tensor([0, 1])).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _largest(block: dict) -> dict:
    """The widest, deepest config the default space allows with one block kind everywhere."""
    return {
        "stem": {"channels": 32, "kernel": 5, "stride": 1, "activation": "relu"},
        "stages": [{**block, "channels": 128, "stride": 1, "repeats": 3, "activation": "relu"}] * 6,
        "head": {"channels": 256, "activation": "relu"},
        "classifier": {"dropout": 0.0},
    }


def test_models_stay_small():
    space = architecture_space()
    largest = [
        _largest({"block": "Conv", "kernel": 5}),
        _largest({"block": "BottleNeck", "kernel": 5, "expansion": 1}),
        _largest({"block": "InvertedResidual", "kernel": 7, "expansion": 6, "se_ratio": 0.25}),
    ]
    for cfg in largest:
        space.validate(cfg)  # really inside the space
        c = count(cfg, input_shape=(1, 8, 8), num_classes=10)
        assert c["params"] < 10_000_000 and c["macs"] < 600_000_000
    sizes = [count(c, input_shape=(1, 8, 8), num_classes=10) for c in space.sample_many(300, seed=4)]
    assert np.median([s["params"] for s in sizes]) < 500_000
    assert np.median([s["macs"] for s in sizes]) < 5_000_000


def test_each_optimizer_has_its_own_ranges_from_practice():
    """Adam-family lrs sit two orders below SGD's; AdamW's decoupled decay is orders above the L2 values."""
    r = OPTIMIZER_RANGES
    assert r["sgd"]["lr"][0] > r["adam"]["lr"][0] and r["sgd"]["lr"][1] >= 10 * r["adam"]["lr"][1]
    assert r["adam"]["lr"] == r["adamw"]["lr"] and r["rmsprop"]["lr"][1] <= 1e-2
    assert r["adamw"]["weight_decay"][0] >= 10 * r["adam"]["weight_decay"][1]
    assert 5e-4 <= r["sgd"]["weight_decay"][1] and 1e-2 <= r["adamw"]["weight_decay"][1]
