"""Decode a config's architecture keys (stem, stages, head, classifier) into a checked, flat description.

This is the one place that reads those keys: the builder turns an ``Arch`` into modules, the counter turns
the same ``Arch`` into MACs and params, so the two cannot disagree about defaults or about what a key means.
Other top-level keys (the training ones) are ignored. Inside the architecture dicts an unknown key is an
error, so a typo such as ``kernal`` does not silently fall back to a default.

Defaults for optional keys (the config layout in the README):
    stem        kernel 3, stride 1, activation relu, pool none ("max" = 3x3 stride-2 max pool, ResNet)
    stages[i]   stride 1, repeats 1, kernel 3, activation relu; each block kind's own keys and their
                defaults come from the block registry (BottleNeck expansion 4; InvertedResidual
                expansion 6, se_ratio 0)
    head        absent or channels 0: no head conv; activation relu
    classifier  absent: dropout 0; num_classes optional (the caller's num_classes wins)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.errors import ConfigError
from search_spaces import registry
from search_spaces.blocks.activations import ACT_LAYERS
from search_spaces.checks import integer as _int
from search_spaces.checks import kernel as _kernel
from search_spaces.checks import number as _number
from search_spaces.checks import stride as _stride
from search_spaces.registry import REQUIRED as _REQ
from search_spaces.registry import STAGE_KEYS as _STAGE_COMMON

ACTIVATIONS = tuple(ACT_LAYERS)

_STEM = {"channels": _REQ, "kernel": 3, "stride": 1, "activation": "relu", "pool": None}
_HEAD = {"channels": 0, "activation": "relu"}
_CLASSIFIER = {"dropout": 0.0, "num_classes": None}
_POOLS = (None, "none", "max")
# Blocks per stage. Every block is materialised (a BlockSpec here, a module in the builder), so a typo such as
# repeats: 1000000000 would exhaust memory; ResNet-152's longest stage has 36.
MAX_REPEATS = 256
# Stages, and blocks in all: fvcore's tracer and the builder take minutes on thousands of blocks (a config of
# 5,000 stages hung `nas inspect`); MobileNetV2 has 7 stages and ResNet-152 50 blocks.
MAX_STAGES = 64
MAX_BLOCKS = 1024


@dataclass(frozen=True)
class BlockSpec:
    """One block: its registry name and the flat keyword arguments of its class."""

    block: str
    args: dict  # in_chs, out_chs, kernel_size, stride, act (+ expansion, se_ratio where the block has them)


@dataclass(frozen=True)
class Arch:
    in_chans: int
    stem: BlockSpec
    stem_pool: bool  # 3x3 stride-2 max pool after the stem
    stages: tuple  # tuple[tuple[BlockSpec, ...], ...]: the blocks of each stage, repeats unrolled
    head: BlockSpec | None  # 1x1 ConvBlock, None when head channels are 0
    dropout: float
    num_classes: int

    @property
    def features(self) -> int:
        """Channels entering the classifier."""
        last = self.head or (self.stages[-1][-1] if any(self.stages) else self.stem)
        return last.args["out_chs"]


def validate_arch(config: Any, *, num_classes: int | None = None, in_chans: int = 3) -> Arch:
    """Check the architecture keys of ``config``; return the decoded ``Arch`` or raise a ConfigError
    naming the path, e.g. ``stages[2].block: unknown block 'Foo' (expected Conv, BottleNeck, InvertedResidual)``.

    ``num_classes`` overrides ``classifier.num_classes``; one of the two must be given.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"config: expected a mapping with stem and stages, got {type(config).__name__}")
    in_chans = _int(in_chans, "in_chans", low=1)
    for key in ("stem", "stages"):
        if key not in config:
            raise ConfigError(f"{key}: missing (an architecture needs stem and stages)")

    stem = _fill(config["stem"], _STEM, "stem", optional=False)
    chs = _int(stem["channels"], "stem.channels", low=1)
    stem_spec = BlockSpec(
        "Conv",
        {
            "in_chs": in_chans,
            "out_chs": chs,
            "kernel_size": _kernel(stem["kernel"], "stem.kernel"),
            "stride": _stride(stem["stride"], "stem.stride"),
            "act": _act(stem["activation"], "stem.activation"),
        },
    )
    if stem["pool"] not in _POOLS:
        raise ConfigError(f'stem.pool: {stem["pool"]!r} is not one of "max", "none" (or leave it out)')

    if not isinstance(config["stages"], list):
        raise ConfigError(f"stages: expected a list of stage mappings, got {type(config['stages']).__name__}")
    if len(config["stages"]) > MAX_STAGES:
        raise ConfigError(f"stages: {len(config['stages'])} stages, above {MAX_STAGES}; use fewer stages")
    stages, n_blocks = [], 0
    for i, raw in enumerate(config["stages"]):
        blocks, chs = _stage(raw, f"stages[{i}]", chs)
        n_blocks += len(blocks)
        if n_blocks > MAX_BLOCKS:
            raise ConfigError(
                f"stages: more than {MAX_BLOCKS} blocks in all (at stages[{i}]); use fewer stages or repeats"
            )
        stages.append(blocks)

    head_spec = None
    head = _fill(config.get("head"), _HEAD, "head")
    head_chs = _int(head["channels"], "head.channels", low=0)
    head_act = _act(head["activation"], "head.activation")
    if head_chs:
        head_spec = BlockSpec(
            "Conv", {"in_chs": chs, "out_chs": head_chs, "kernel_size": 1, "stride": 1, "act": head_act}
        )

    cls = _fill(config.get("classifier"), _CLASSIFIER, "classifier")
    dropout = _number(cls["dropout"], "classifier.dropout")
    if not 0 <= dropout < 1:
        raise ConfigError(f"classifier.dropout: {dropout} is outside [0, 1)")
    if num_classes is None:
        if cls["num_classes"] is None:
            raise ConfigError(
                "num_classes: not given and the config has no classifier.num_classes; "
                "pass num_classes (the data set's class count)"
            )
        num_classes = _int(cls["num_classes"], "classifier.num_classes", low=1)
    else:
        if cls["num_classes"] is not None:
            _int(cls["num_classes"], "classifier.num_classes", low=1)
        num_classes = _int(num_classes, "num_classes", low=1)

    return Arch(in_chans, stem_spec, stem["pool"] == "max", tuple(stages), head_spec, float(dropout), num_classes)


def _stage(raw: Any, where: str, in_chs: int) -> tuple[tuple, int]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with block and channels, got {type(raw).__name__}")
    name = raw.get("block")
    if name is None:
        raise ConfigError(f"{where}.block: missing (one of {', '.join(registry.names())})")
    try:
        block = registry.get(name)
    except ConfigError as e:
        raise ConfigError(f"{where}.block: {e}") from None
    keys = {k: key.default for k, key in block.keys.items()}
    s = _fill(raw, {**_STAGE_COMMON, **keys}, where, optional=False, kind=f"a {name} stage")
    out = _int(s["channels"], f"{where}.channels", low=1)
    stride = _stride(s["stride"], f"{where}.stride")
    repeats = _int(s["repeats"], f"{where}.repeats", low=1)
    if repeats > MAX_REPEATS:
        raise ConfigError(f"{where}.repeats: {repeats} is above {MAX_REPEATS}; use fewer blocks per stage")
    args = {"kernel_size": _kernel(s["kernel"], f"{where}.kernel"), "act": _act(s["activation"], f"{where}.activation")}
    for k, key in block.keys.items():
        args[k] = key.check(s[k], f"{where}.{k}")
    if block.check is not None:
        block.check({"in_chs": in_chs, "out_chs": out, "stride": stride, **args}, where)
    # The first block of a stage changes stride and width; the rest keep them.
    blocks = tuple(
        BlockSpec(
            name, {"in_chs": in_chs if j == 0 else out, "out_chs": out, "stride": stride if j == 0 else 1, **args}
        )
        for j in range(repeats)
    )
    return blocks, out


# --------------------------------------------------------------------------------------- checks
def _fill(d: Any, defaults: dict, where: str, *, optional: bool = True, kind: str = "") -> dict:
    """``d`` with defaults filled in; None stands for an absent ``optional`` section."""
    if d is None and optional:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    for k in d:
        if k not in defaults:
            raise ConfigError(
                f"{where}.{k}: unknown key{' for ' + kind if kind else ''} (expected {', '.join(defaults)})"
            )
    for k, v in defaults.items():
        if v is _REQ and k not in d:
            raise ConfigError(f"{where}.{k}: missing")
    return {**defaults, **d}


def _act(v: Any, where: str) -> str:
    if not isinstance(v, str) or v not in ACTIVATIONS:
        raise ConfigError(f"{where}: unknown activation {v!r} (expected {', '.join(ACTIVATIONS)})")
    return v
