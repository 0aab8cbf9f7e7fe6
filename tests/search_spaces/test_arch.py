"""validate_arch, the one reader of a config's architecture keys: the defaults it fills in, the blocks it unrolls,
the keys it refuses, and errors of one line that name the path."""

import copy

import pytest

from nas.errors import ConfigError
from search_spaces.arch import MAX_BLOCKS, MAX_REPEATS, MAX_STAGES, Arch, BlockSpec, validate_arch
from search_spaces.registry import Key

MINIMAL = {"stem": {"channels": 8}, "stages": [{"block": "Conv", "channels": 16}]}


def test_defaults_are_filled_in():
    arch = validate_arch(MINIMAL, num_classes=10)
    assert arch == Arch(
        in_chans=3,
        stem=BlockSpec("Conv", {"in_chs": 3, "out_chs": 8, "kernel_size": 3, "stride": 1, "act": "relu"}),
        stem_pool=False,
        stages=((BlockSpec("Conv", {"in_chs": 8, "out_chs": 16, "stride": 1, "kernel_size": 3, "act": "relu"}),),),
        head=None,
        dropout=0.0,
        num_classes=10,
    )
    assert arch.features == 16


@pytest.mark.parametrize(
    "block,extra",
    [("Conv", {}), ("BottleNeck", {"expansion": 4}), ("InvertedResidual", {"expansion": 6, "se_ratio": 0.0})],
)
def test_each_block_gets_its_registered_defaults(block, extra):
    arch = validate_arch({"stem": {"channels": 8}, "stages": [{"block": block, "channels": 16}]}, num_classes=2)
    args = arch.stages[0][0].args
    assert {k: v for k, v in args.items() if k not in ("in_chs", "out_chs", "stride", "kernel_size", "act")} == extra


def test_repeats_unroll_with_the_stride_and_width_on_the_first_block():
    cfg = {
        "stem": {"channels": 8, "pool": "max"},
        "stages": [{"block": "BottleNeck", "channels": 32, "stride": 2, "repeats": 3, "expansion": 2}],
        "head": {"channels": 64, "activation": "silu"},
        "classifier": {"dropout": 0.25, "num_classes": 5},
    }
    arch = validate_arch(cfg, in_chans=1)
    blocks = arch.stages[0]
    assert [(b.args["in_chs"], b.args["stride"]) for b in blocks] == [(8, 2), (32, 1), (32, 1)]
    assert all(b.args["expansion"] == 2 and b.args["out_chs"] == 32 for b in blocks)
    assert arch.stem_pool and arch.head == BlockSpec(
        "Conv", {"in_chs": 32, "out_chs": 64, "kernel_size": 1, "stride": 1, "act": "silu"}
    )
    assert arch.num_classes == 5 and arch.dropout == 0.25 and arch.features == 64
    assert validate_arch(cfg, num_classes=3, in_chans=1).num_classes == 3  # the caller's wins


def test_training_keys_beside_the_architecture_are_ignored():
    cfg = {**MINIMAL, "optimizer": {"name": "sgd"}, "lr": 0.1, "batch_size": 64, "anything": [1, 2]}
    assert validate_arch(cfg, num_classes=10) == validate_arch(MINIMAL, num_classes=10)


@pytest.mark.parametrize(
    "section,key,expected",
    [
        ("stem", "padding", "channels, kernel, stride, activation, pool"),
        ("head", "kernel", "channels, activation"),
        ("classifier", "dropuot", "dropout, num_classes"),
    ],
)
def test_unknown_section_keys_are_refused(section, key, expected):
    cfg = copy.deepcopy(MINIMAL)
    cfg.setdefault(section, {})[key] = 1
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: unknown key \(expected {expected}\)$"):
        validate_arch(cfg, num_classes=10)


@pytest.mark.parametrize(
    "block,key,expected",
    [
        ("Conv", "expansion", "block, channels, stride, repeats, kernel, activation"),
        ("BottleNeck", "se_ratio", "block, channels, stride, repeats, kernel, activation, expansion"),
        ("InvertedResidual", "kernal", "block, channels, stride, repeats, kernel, activation, expansion, se_ratio"),
    ],
)
def test_unknown_stage_keys_name_the_block_kind_and_its_keys(block, key, expected):
    cfg = {"stem": {"channels": 8}, "stages": [{"block": block, "channels": 16, key: 1}]}
    message = rf"^stages\[0\]\.{key}: unknown key for a {block} stage \(expected {expected}\)$"
    with pytest.raises(ConfigError, match=message):
        validate_arch(cfg, num_classes=10)


def _stages(n_stages: int, repeats: int = 1) -> dict:
    return {"stem": {"channels": 8}, "stages": [{"block": "Conv", "channels": 8, "repeats": repeats}] * n_stages}


BAD = [
    ("not a dict", [MINIMAL], r"^config: expected a mapping with stem and stages, got list$"),
    ("no stages", {"stem": {"channels": 8}}, r"^stages: missing \(an architecture needs stem and stages\)$"),
    ("stage list", {**MINIMAL, "stages": [["Conv"]]}, r"^stages\[0\]: expected a mapping with block and channels"),
    (
        "block list",
        {**MINIMAL, "stages": [{"block": ["Conv"], "channels": 8}]},
        r"^stages\[0\]\.block: unknown block \['Conv'\] \(expected Conv, BottleNeck, InvertedResidual\)$",
    ),
    (
        "block missing",
        {**MINIMAL, "stages": [{"channels": 8}]},
        r"^stages\[0\]\.block: missing \(one of Conv, BottleNeck, InvertedResidual\)$",
    ),
    ("stem kernel", {"stem": {"channels": 8, "kernel": 2}, "stages": []}, r"^stem\.kernel: 2 must be odd"),
    ("stem pool", {"stem": {"channels": 8, "pool": "avg"}, "stages": []}, r"^stem\.pool: 'avg' is not one of"),
    (
        "stem act",
        {"stem": {"channels": 8, "activation": "gelu"}, "stages": []},
        r"^stem\.activation: unknown activation 'gelu' \(expected relu, relu6, hardswish, silu\)$",
    ),
    (
        "nan channels",
        {**MINIMAL, "stages": [{"block": "Conv", "channels": float("nan")}]},
        r"^stages\[0\]\.channels: expected an integer, got nan$",
    ),
    (
        "se_ratio string",
        {**MINIMAL, "stages": [{"block": "InvertedResidual", "channels": 8, "se_ratio": "0.25"}]},
        r"^stages\[0\]\.se_ratio: expected a number, got '0\.25'$",
    ),
    (
        "se_ratio range",
        {**MINIMAL, "stages": [{"block": "InvertedResidual", "channels": 8, "se_ratio": -0.1}]},
        r"^stages\[0\]\.se_ratio: -0\.1 is outside \[0, 1\] \(0 = no squeeze-excite\)$",
    ),
    (
        "divisible",
        {**MINIMAL, "stages": [{"block": "BottleNeck", "channels": 10, "expansion": 4}]},
        r"^stages\[0\]\.channels: 10 is not divisible by expansion 4 .*use a multiple of 4$",
    ),
    ("repeats", _stages(1, MAX_REPEATS + 1), rf"^stages\[0\]\.repeats: {MAX_REPEATS + 1} is above {MAX_REPEATS}"),
    ("stages", _stages(MAX_STAGES + 1), rf"^stages: {MAX_STAGES + 1} stages, above {MAX_STAGES}"),
    (
        "blocks",
        _stages(MAX_BLOCKS // MAX_REPEATS + 1, MAX_REPEATS),
        rf"^stages: more than {MAX_BLOCKS} blocks in all \(at stages\[{MAX_BLOCKS // MAX_REPEATS}\]\)",
    ),
    ("dropout", {**MINIMAL, "classifier": {"dropout": True}}, r"^classifier\.dropout: expected a number, got True$"),
]


@pytest.mark.parametrize("config,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_errors_are_one_line_and_name_the_path(config, message):
    with pytest.raises(ConfigError, match=message) as e:
        validate_arch(config, num_classes=10)
    assert "\n" not in str(e.value)


def test_num_classes_and_in_chans_are_checked():
    with pytest.raises(ConfigError, match=r"^num_classes: not given"):
        validate_arch(MINIMAL)
    with pytest.raises(ConfigError, match=r"^in_chans: expected an integer, got True$"):
        validate_arch(MINIMAL, num_classes=10, in_chans=True)
    with pytest.raises(ConfigError, match=r"^classifier\.num_classes: expected an integer"):
        validate_arch({**MINIMAL, "classifier": {"num_classes": "10"}}, num_classes=10)  # checked even when overridden


def test_registry_keys_check_their_range():
    assert Key(1, low=1, high=2, integer=True).check(2.0, "k") == 2  # integral floats become ints
    assert Key(6, low=1, high=64).check(4.5, "e") == 4.5
    assert Key(0, low=0).check(1e9, "x") == 1e9  # no upper bound
    for key, value, message in [
        (Key(1, low=1, high=2, integer=True), 3, r"^k: 3 is outside \[1, 2\]$"),
        (Key(1, low=2, integer=True), 1, r"^k: 1 must be at least 2$"),
        (Key(0.5, low=0.25), 0.0, r"^k: 0\.0 is outside \[0\.25, inf\)$"),
        (Key(0.5, low=0, high=1), float("inf"), r"^k: expected a number, got inf$"),
    ]:
        with pytest.raises(ConfigError, match=message):
            key.check(value, "k")
