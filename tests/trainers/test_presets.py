"""trainers.presets: every data set's defaults are sane, fit the default space, and read back as data."""

import json

import numpy as np
import pytest

from nas.errors import DataError
from trainers import PRESETS, get_preset, load_dataset


def test_every_preset_has_a_loader_and_sane_bounds():
    from trainers.data import _LOADERS

    for name, p in PRESETS.items():
        assert p.name == name and name in _LOADERS
        assert 1 <= p.min_epochs < p.max_epochs and p.trials > 0
        # with eta = 3 the rungs min * 3^k end exactly on max_epochs (no truncated last rung)
        k = round(np.log(p.max_epochs / p.min_epochs) / np.log(3))
        assert p.min_epochs * 3**k == p.max_epochs and k >= 2
        b = p.space_bounds
        assert "epochs" not in b
        for key in ("channels", "stem_channels"):
            assert b[key][0] < b[key][1] and b[key][0] % 8 == 0 and b[key][1] % 8 == 0
        assert b["head_channels"][1] % 32 == 0 and b["max_stages"] >= 1
        if p.input_shape is not None:
            # a side of H survives floor(log2 H) halvings before it is 1x1
            assert p.max_downsamples <= int(np.log2(p.input_shape[1]))
        d = p.to_dict()
        assert (d["min_epochs"], d["max_epochs"]) == (p.min_epochs, p.max_epochs) and "epochs" not in d
    assert get_preset("digits").max_downsamples == 3
    assert get_preset("digits").space_bounds["allow_stem_stride"] is False
    assert get_preset("FashionMNIST").name == "fashion-mnist"


def test_space_bounds_fit_default_space():
    default = pytest.importorskip("search_spaces.default")
    for p in PRESETS.values():
        space = default.default_space(**p.space_bounds)
        config = space.sample(seed=0)
        assert "stages" in config and "optimizer" in config


def test_unknown_preset_lists_choices():
    with pytest.raises(DataError, match="choose one of: digits, mnist"):
        get_preset("svhn")
    with pytest.raises(DataError, match="cifar10"):
        load_dataset("svhn")


@pytest.mark.parametrize(
    "alias, name",
    [
        ("digits", "digits"),
        ("MNIST", "mnist"),
        ("fashion_mnist", "fashion-mnist"),
        ("FashionMNIST", "fashion-mnist"),
        ("CIFAR10", "cifar10"),
        ("ImageFolder", "imagefolder"),
    ],
)
def test_names_are_read_loosely(alias, name):
    assert get_preset(alias) is PRESETS[name]


def test_to_dict_is_plain_json_and_epochs_is_the_pair():
    for p in PRESETS.values():
        d = p.to_dict()
        assert json.loads(json.dumps(d)) == d  # tuples became lists: a study's meta stores it as JSON
        assert d["space_bounds"]["batch_sizes"] == list(p.batch_sizes)
        assert p.epochs == (p.min_epochs, p.max_epochs)
    assert get_preset("imagefolder").to_dict()["input_shape"] is None
