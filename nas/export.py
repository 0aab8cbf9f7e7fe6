"""Export one trial of a study as a model that needs only PyTorch.

``export_study`` writes into the out folder:
    model.py     standalone source (its only import is torch): the block classes the network uses, ARCH,
                 INPUT_SHAPE, MEAN / STD, CLASS_NAMES, ``build_model()``, ``normalize()`` and ``load()``
    weights.pt   the state_dict; ``torch.load(path, weights_only=True)`` reads it
    config.json  the trial's full config plus what a user of the model needs to know (accuracy, MACs, ...)
    model.ts     TorchScript of the same network (``torch.jit.load``)
    model.onnx   only where the ``onnx`` package is installed; otherwise config.json notes the skip

By default the chosen config is retrained from scratch on train + validation data, with the trial's seed
and epochs, and config.json reports the test accuracy of those weights; ``retrain=False`` exports the
weights the search kept.

model.py is generated from the templates below, never by reading our sources at run time. Nothing read
from a study goes into it as text: the architecture is decoded by ``search_spaces.validate_arch``, checked
again here against the block and activation registries (names), real finite numbers (not bools) and known
keys, and written with ``repr`` of those plain values. A block name holding Python code is a ConfigError.

This module and ``nas.cli`` are the only parts of ``nas`` that import torch and the CNN packages.

>>> export_study("results/digits", out="exported")        # doctest: +SKIP
['exported/model.py', 'exported/weights.pt', 'exported/model.ts', 'exported/config.json']
"""
from __future__ import annotations

import dataclasses
import importlib.util
import io
import itertools
import json
import linecache
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from nas.errors import ConfigError, NasError, StudyError
from nas.fsutil import atomic_folder, atomic_write_bytes, atomic_write_text, dangerous_out, foreign_files
from nas.report import load_study
from nas.trial import COMPLETE, PAUSED, Trial
from search_spaces.arch import Arch, validate_arch
from search_spaces.blocks import ACTIVATIONS, BLOCKS
from search_spaces.size import check_size

__all__ = ["export_study", "model_source", "arch_literal"]

# How model.py spells each registered activation; a test checks this against search_spaces.blocks.
_ACT_SOURCE = {"relu": "nn.ReLU", "relu6": "nn.ReLU6", "hardswish": "nn.Hardswish", "silu": "nn.SiLU"}
# Keys a stage of each block kind carries in ARCH beyond the common ones (search_spaces.arch's _BLOCK_EXTRA).
_STAGE_EXTRA = {"Conv": (), "BottleNeck": ("expansion",), "InvertedResidual": ("expansion", "se_ratio")}
_STAGE_COMMON = ("block", "channels", "stride", "repeats", "kernel", "activation")
_ATOL = 1e-5  # generated model vs search_spaces' on one random batch: float32 noise is ~1e-7
_module_ids = itertools.count()


# --- the architecture as checked plain data -----------------------------------------------------

def arch_literal(config: Any, *, num_classes: int, in_chans: int) -> dict:
    """The architecture part of ``config`` in the config layout, every default filled in: the ARCH of model.py.

    Decoded by ``validate_arch`` (ConfigError naming the key on bad input) and rebuilt from the decoded
    blocks, so only keys we know can appear; ``head`` is None when there is no head conv.

    >>> arch_literal({"stem": {"channels": 8}, "stages": []}, num_classes=10, in_chans=1)["stem"]
    {'channels': 8, 'kernel': 3, 'stride': 1, 'activation': 'relu', 'pool': None}
    """
    arch = validate_arch(config, num_classes=num_classes, in_chans=in_chans)
    out = _from_arch(arch)
    _check_arch(out)
    return out


def _from_arch(arch: Arch) -> dict:
    s = arch.stem.args
    stages = []
    for blocks in arch.stages:
        first = blocks[0]  # carries the stage's stride; the others repeat it with stride 1
        a = first.args
        stage = {"block": first.block, "channels": a["out_chs"], "stride": a["stride"], "repeats": len(blocks),
                 "kernel": a["kernel_size"], "activation": a["act"]}
        stage.update({k: a[k] for k in _STAGE_EXTRA.get(first.block, ())})
        stages.append(stage)
    head = None
    if arch.head is not None:
        head = {"channels": arch.head.args["out_chs"], "activation": arch.head.args["act"]}
    return {
        "stem": {"channels": s["out_chs"], "kernel": s["kernel_size"], "stride": s["stride"],
                 "activation": s["act"], "pool": "max" if arch.stem_pool else None},
        "stages": stages,
        "head": head,
        "classifier": {"dropout": arch.dropout},
    }


def _check_arch(d: Any) -> None:
    """Second, independent gate before anything becomes source text: exact keys, registry names, real numbers."""
    _keys(d, ("stem", "stages", "head", "classifier"), "ARCH")
    _keys(d["stem"], ("channels", "kernel", "stride", "activation", "pool"), "stem")
    for k in ("channels", "kernel", "stride"):
        _real(d["stem"][k], f"stem.{k}", integer=True)
    _name(d["stem"]["activation"], ACTIVATIONS, "stem.activation")
    if d["stem"]["pool"] not in (None, "max"):
        raise ConfigError(f"stem.pool: {_short(d['stem']['pool'])} is not None or 'max'")
    if not isinstance(d["stages"], list):
        raise ConfigError("stages: expected a list")
    for i, st in enumerate(d["stages"]):
        where = f"stages[{i}]"
        if not isinstance(st, dict):
            raise ConfigError(f"{where}: expected a mapping")
        block = _name(st.get("block"), BLOCKS, f"{where}.block")
        _keys(st, _STAGE_COMMON + _STAGE_EXTRA.get(block, ()), where)
        for k in ("channels", "stride", "repeats", "kernel"):
            _real(st[k], f"{where}.{k}", integer=True)
        _name(st["activation"], ACTIVATIONS, f"{where}.activation")
        for k in _STAGE_EXTRA.get(block, ()):
            _real(st[k], f"{where}.{k}", integer=block == "BottleNeck")
    if d["head"] is not None:
        _keys(d["head"], ("channels", "activation"), "head")
        _real(d["head"]["channels"], "head.channels", integer=True)
        _name(d["head"]["activation"], ACTIVATIONS, "head.activation")
    _keys(d["classifier"], ("dropout",), "classifier")
    _real(d["classifier"]["dropout"], "classifier.dropout", integer=False)


def _short(v: Any) -> str:
    r = repr(v)  # repr keeps the message on one line whatever the value holds
    return r if len(r) <= 60 else r[:57] + "..."


def _keys(d: Any, expected: tuple, where: str) -> None:
    if not isinstance(d, dict) or set(d) != set(expected):
        got = sorted(map(_short, d)) if isinstance(d, dict) else type(d).__name__
        raise ConfigError(f"{where}: expected exactly the keys {', '.join(expected)}, got {got}")


def _name(v: Any, registry, where: str) -> str:
    if not isinstance(v, str) or v not in registry:
        raise ConfigError(f"{where}: {_short(v)} is not a registered name (expected {', '.join(registry)})")
    return v


def _real(v: Any, where: str, *, integer: bool) -> None:
    ok = type(v) is int if integer else type(v) in (int, float)  # type(): bool and subclasses are out
    if not ok or not math.isfinite(v):
        kind = "an integer" if integer else "a finite number"
        raise ConfigError(f"{where}: expected {kind}, got {_short(v)}")


# --- source text ------------------------------------------------------------------------------

def _literal(v: Any) -> str:
    """Python source for a plain value: repr of None, bool, int, finite float and str; lists, tuples, dicts
    of those. Anything else (a class with its own __repr__, a NaN) is refused, so no text but a literal
    can come out."""
    t = type(v)
    if v is None or t in (bool, int, str):
        return repr(v)
    if t is float:
        if not math.isfinite(v):
            raise ConfigError(f"cannot write {v!r} into model.py; use a finite number")
        return repr(v)
    if t in (list, tuple):
        items = ", ".join(_literal(x) for x in v)
        return f"[{items}]" if t is list else f"({items}{',' if len(v) == 1 else ''})"
    if t is dict:
        return "{" + ", ".join(f"{_literal(k)}: {_literal(x)}" for k, x in v.items() if _is_str(k)) + "}"
    raise ConfigError(f"cannot write a {t.__name__} into model.py; only plain numbers, strings, lists, dicts")


def _is_str(k: Any) -> bool:
    if type(k) is not str:
        raise ConfigError(f"cannot write the key {_short(k)} into model.py; keys must be strings")
    return True


def _arch_source(arch: dict) -> str:
    """ARCH over several lines: one line per section and per stage."""
    lines = ["ARCH = {"]
    for key, value in arch.items():
        if key == "stages" and value:
            lines.append(f"    {_literal(key)}: [")
            lines += [_wrapped_dict(st, indent=8) + "," for st in value]
            lines.append("    ],")
        else:
            lines.append(f"    {_literal(key)}: {_literal(value)},")
    return "\n".join(lines + ["}"])


def _wrapped_dict(d: dict, *, indent: int, width: int = 100) -> str:
    """A dict literal on one line, or broken after an item where the line would pass `width`."""
    pad = " " * indent
    items = [f"{_literal(k)}: {_literal(v)}" for k, v in d.items() if _is_str(k)]
    lines, line = [], pad + "{"
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "}")
        if len(line) + len(piece.rstrip()) > width and line.strip() != "{":
            lines.append(line.rstrip())
            line = pad + " "
        line += piece
    return "\n".join(lines + [line])


def _wrapped_list(name: str, values: list, comment: str = "", width: int = 100) -> str:
    """`NAME = [a, b, ...]` broken over lines of at most `width` characters (100 class names stay readable)."""
    one = f"{name} = {_literal(list(values))}{'  # ' + comment if comment else ''}"
    if len(one) <= width:
        return one
    lines, line = [f"{name} = [{'  # ' + comment if comment else ''}"], "   "
    for v in values:
        item = f" {_literal(v)},"
        if len(line) + len(item) > width:
            lines.append(line)
            line = "   "
        line += item
    return "\n".join(lines + [line, "]"])


_HEADER = '''\
"""A CNN found by lightnas (trial {trial_id}), as a standalone PyTorch model: this file needs only torch.

    import model
    net = model.load("weights.pt")        # eval mode, on the CPU; pass the full path from another folder
    x = model.normalize(images)           # images: float (N, C, H, W) as INPUT_SHAPE, pixels in [0, 1]
    probs = net(x).softmax(1)             # (N, len(CLASS_NAMES))
    print(model.CLASS_NAMES[int(probs[0].argmax())])

ARCH is the architecture in lightnas's config layout. The classes below mirror lightnas's
search_spaces/blocks.py, so the keys of weights.pt match build_model().state_dict() exactly.
"""
import torch
from torch import nn
'''

_CONV_BLOCK = '''

class ConvBlock(nn.Module):
    """k x k conv (no bias) -> BatchNorm -> activation; act=None leaves the activation out."""

    def __init__(self, in_chs, out_chs, *, kernel_size=3, stride=1, groups=1, act="relu"):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = ACTIVATIONS[act]() if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
'''

_BOTTLENECK = '''

class BottleNeck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, k x k with the stride, 1x1 expand; activation after the add."""

    def __init__(self, in_chs, out_chs, *, kernel_size=3, stride=1, expansion=4, act="relu"):
        super().__init__()
        mid_chs = out_chs // expansion
        self.conv1 = ConvBlock(in_chs, mid_chs, kernel_size=1, act=act)
        self.conv2 = ConvBlock(mid_chs, mid_chs, kernel_size=kernel_size, stride=stride, act=act)
        self.conv3 = ConvBlock(mid_chs, out_chs, kernel_size=1, act=None)
        if stride != 1 or in_chs != out_chs:  # projection only where the identity cannot be added
            self.shortcut = ConvBlock(in_chs, out_chs, kernel_size=1, stride=stride, act=None)
        else:
            self.shortcut = nn.Identity()
        self.act = ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))
'''

_INVERTED_RESIDUAL = '''

class SqueezeExcite(nn.Module):
    """Squeeze-excite: average pool, 1x1 conv -> ReLU -> 1x1 conv -> hard sigmoid scales each channel."""

    def __init__(self, chs, rd_chs):
        super().__init__()
        self.reduce = nn.Conv2d(chs, rd_chs, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(rd_chs, chs, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (N, chs, 1, 1)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class InvertedResidual(nn.Module):
    """MobileNetV2 / V3 block: 1x1 expansion (none when expansion == 1), depthwise k x k with the stride,
    optional squeeze-excite, linear 1x1 projection; the input is added back when the shapes allow."""

    def __init__(self, in_chs, out_chs, *, kernel_size=3, stride=1, expansion=6, se_ratio=0.0, act="relu"):
        super().__init__()
        mid_chs = round(in_chs * expansion)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = ConvBlock(in_chs, mid_chs, kernel_size=1, act=act) if expansion != 1 else nn.Identity()
        self.conv_dw = ConvBlock(mid_chs, mid_chs, kernel_size=kernel_size, stride=stride, groups=mid_chs,
                                 act=act)
        # The SE width follows the block's input channels, so a large expansion does not inflate it.
        self.se = SqueezeExcite(mid_chs, max(1, int(in_chs * se_ratio))) if se_ratio > 0 else nn.Identity()
        self.conv_pwl = ConvBlock(mid_chs, out_chs, kernel_size=1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return x + y if self.has_skip else y
'''

_NET = '''

class Net(nn.Module):
    """stem -> optional 3x3 max pool -> stages (block 0 of a stage carries its stride) -> optional 1x1 head
    -> global average pool -> dropout -> linear classifier."""

    def __init__(self, arch=ARCH, *, in_chans=INPUT_SHAPE[0], num_classes=len(CLASS_NAMES)):
        super().__init__()
        stem = arch["stem"]
        chs = stem["channels"]
        self.stem = ConvBlock(in_chans, chs, kernel_size=stem["kernel"], stride=stem["stride"],
                              act=stem["activation"])
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if stem["pool"] == "max" else nn.Identity()
        stages = []
        for stage in arch["stages"]:
            extra = {k: stage[k] for k in ("expansion", "se_ratio") if k in stage}
            blocks = []
            for j in range(stage["repeats"]):
                blocks.append(BLOCKS[stage["block"]](
                    chs if j == 0 else stage["channels"], stage["channels"], kernel_size=stage["kernel"],
                    stride=stage["stride"] if j == 0 else 1, act=stage["activation"], **extra))
            stages.append(nn.Sequential(*blocks))
            chs = stage["channels"]
        self.stages = nn.Sequential(*stages)
        head = arch["head"]
        if head is not None:
            self.head = ConvBlock(chs, head["channels"], kernel_size=1, act=head["activation"])
            chs = head["channels"]
        else:
            self.head = nn.Identity()
        dropout = arch["classifier"]["dropout"]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.pool(self.stem(x))))  # (N, features, H', W')
        return self.fc(self.dropout(x.mean((2, 3))))  # (N, num_classes)


def build_model(num_classes=len(CLASS_NAMES)):
    """The network with fresh weights (training mode)."""
    return Net(ARCH, in_chans=INPUT_SHAPE[0], num_classes=num_classes)


def normalize(images):
    """Float images (N, C, H, W), pixels in [0, 1] -> the per-channel normalised input the network expects."""
    mean = torch.tensor(MEAN, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean) / std


def load(weights_path="weights.pt", map_location="cpu"):
    """build_model() with the weights in weights_path, in eval mode. weights_only=True: torch refuses to
    unpickle anything but tensors and plain containers, so a tampered file cannot run code."""
    net = build_model()
    net.load_state_dict(torch.load(weights_path, map_location=map_location, weights_only=True))
    return net.eval()
'''


def model_source(config: Any, *, input_shape, mean, std, class_names, trial_id: int = 0) -> str:
    """The text of model.py for ``config`` (only its architecture keys are read).

    Raises ConfigError for anything that is not a plain, registered, finite value.
    """
    shape = _shape(input_shape)
    names = list(class_names) if isinstance(class_names, (list, tuple)) else None
    if not names or any(type(n) is not str for n in names):
        raise ConfigError("class_names: expected a non-empty list of strings")
    stats = {}
    for label, values in (("MEAN", mean), ("STD", std)):
        if not isinstance(values, (list, tuple)) or len(values) != shape[0]:
            raise ConfigError(f"{label}: expected {shape[0]} numbers (one per input channel), got {_short(values)}")
        for v in values:
            _real(v, label, integer=False)
        if label == "STD" and min(values) <= 0:
            raise ConfigError(f"STD: {_short(values)} must be positive")
        stats[label] = tuple(float(v) for v in values)
    if type(trial_id) is not int:
        raise ConfigError(f"trial id: expected an integer, got {_short(trial_id)}")

    arch = arch_literal(config, num_classes=len(names), in_chans=shape[0])
    blocks = {st["block"] for st in arch["stages"]}
    acts = {arch["stem"]["activation"]} | {st["activation"] for st in arch["stages"]}
    if arch["head"] is not None:
        acts.add(arch["head"]["activation"])

    parts = [
        _HEADER.format(trial_id=trial_id),  # trial_id checked to be an int above
        _arch_source(arch),
        f"INPUT_SHAPE = {_literal(shape)}  # (channels, height, width)",
        f"MEAN = {_literal(stats['MEAN'])}  # per channel, of pixels scaled to [0, 1]",
        f"STD = {_literal(stats['STD'])}",
        _wrapped_list("CLASS_NAMES", names, "output index -> class"),
        "",
        "ACTIVATIONS = {",
        *(f"    {_literal(a)}: {_ACT_SOURCE[a]}," for a in ACTIVATIONS if a in acts),
        "}",
        _CONV_BLOCK.rstrip("\n"),
    ]
    if "BottleNeck" in blocks:
        parts.append(_BOTTLENECK.rstrip("\n"))
    if "InvertedResidual" in blocks:
        parts.append(_INVERTED_RESIDUAL.rstrip("\n"))
    used = [b for b in BLOCKS if b == "Conv" or b in blocks]
    cls = {"Conv": "ConvBlock", "BottleNeck": "BottleNeck", "InvertedResidual": "InvertedResidual"}
    parts += ["", "", "BLOCKS = {", *(f"    {_literal(b)}: {cls[b]}," for b in used), "}", _NET.rstrip("\n")]
    return "\n".join(parts) + "\n"


def _shape(v: Any) -> tuple[int, int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ConfigError(f"input_shape: expected [C, H, W], got {_short(v)}")
    for x in v:
        _real(x, "input_shape", integer=True)
        if x < 1:
            raise ConfigError(f"input_shape: {_short(v)} must be positive")
    return tuple(v)


# --- the study side ----------------------------------------------------------------------------

def _choose(view, trial_id: int | None) -> Trial:
    if trial_id is None:
        best = view.best
        if best is None:
            raise StudyError(f"{view.path}: no complete trial to export yet (multi-fidelity: none reached the top "
                             "rung); run `nas search` until one finishes, or pick one with --trial (see `nas report`)")
        return best
    if isinstance(trial_id, bool) or not isinstance(trial_id, int):
        raise NasError(f"trial id {trial_id!r} is not an integer; pass --trial with a number from `nas report`")
    by_id = {t.id: t for t in view.trials}
    if trial_id not in by_id:
        span = f"ids {min(by_id)}-{max(by_id)}" if by_id else "no trials"
        raise StudyError(f"{view.path}: no trial {trial_id} ({span}); pick one from `nas report {view.path}`")
    t = by_id[trial_id]
    # Multi-fidelity: a trial paused at a lower rung may be chosen by hand (its weights are its last rung's);
    # without --trial only top-rung (complete) trials compete.
    if t.status not in (COMPLETE, PAUSED) or t.value is None:
        why = f": {' '.join(str(t.error).split())[:200]}" if t.error else ""
        raise StudyError(f"{view.path}: trial {trial_id} is {t.status}{why}; export a complete trial "
                         "(leave out --trial for the best one)")
    return t


def _study_meta(view) -> dict:
    """input_shape, num_classes, class_names, mean, std from the study meta, checked."""
    meta = view.meta
    where = f"{view.path}: study meta"
    try:
        shape = _shape(meta.get("input_shape"))
        num_classes = meta.get("num_classes")
        _real(num_classes, "num_classes", integer=True)
        names = meta.get("class_names") or [str(i) for i in range(num_classes)]
        if len(names) != num_classes:
            raise ConfigError(f"class_names has {len(names)} names for {num_classes} classes")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"class_names is {_short(names)}, not a list of names")
        mean, std = meta.get("norm_mean"), meta.get("norm_std")
        if mean is None or std is None:
            raise ConfigError("norm_mean / norm_std missing (studies from `nas search` store them); "
                              "rerun the search with this version of lightnas")
        for key, v in (("norm_mean", mean), ("norm_std", std)):
            if not isinstance(v, list) or len(v) != shape[0]:
                raise ConfigError(f"{key} is {_short(v)}, not one number per channel ({shape[0]})")
            for x in v:
                _real(x, key, integer=False)
    except (ConfigError, TypeError, ValueError) as e:  # TypeError / ValueError: edited into other types
        raise StudyError(f"{where}: {e}; the database was edited or damaged") from None
    return {"input_shape": shape, "num_classes": num_classes, "class_names": list(names),
            "mean": list(mean), "std": list(std)}


def _saved_state(view, trial: Trial) -> dict:
    from trainers.runner import weights_path

    path = weights_path(view.path, trial.id)
    if not path.is_file():
        raise StudyError(f"{view.path}: trial {trial.id} kept no weights ({path} missing); "
                         "export without --no-retrain to retrain it")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        # torch's message for a file holding objects ends in advice to pass weights_only=False, which
        # would run whatever the file holds: never echo it.
        why = ("it holds objects other than tensors, which are never unpickled" if "weights_only" in str(e)
               else " ".join(str(e).split())[:200])
        raise StudyError(f"{path}: not readable as weights ({why}); "
                         "export without --no-retrain to retrain the trial") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StudyError(f"{path} holds no state_dict; export without --no-retrain to retrain the trial")
    return state


def _data_spec(view) -> dict:
    """The spec entries that find the search's data again (``trainers.runner.trial_data``)."""
    meta = view.meta
    keys = ("dataset", "data_dir", "data_file", "data_key", "image_size", "val_fraction", "test_fraction")
    spec = {k: meta[k] for k in keys if meta.get(k) is not None}
    spec.update(study_dir=str(view.path), data_seed=int(meta.get("data_seed", 0) or 0), download=False)
    return spec


def _epoch_line(trial_id: int, epochs: int, stream):
    """Per-epoch progress of the retraining, one line each on stderr."""

    def show(entry: dict) -> None:
        print(f"nas export: retraining trial {trial_id}: epoch {entry['epoch']}/{epochs}, train loss "
              f"{entry['train_loss']:.4f}, {entry['elapsed']:.1f}s", file=stream, flush=True)

    return show


def _retrain(view, trial: Trial, info: dict, *, progress=None) -> tuple[dict, float, dict]:
    """Train the trial's config from scratch on train + val (same split, seed and epochs as the search),
    with the search's thread rule (one thread for small networks)."""
    from search_spaces.builder import build_model
    from trainers import train as train_mod
    from trainers.runner import _threads_for, fixed_epochs, trial_data

    meta = view.meta
    if meta.get("trainer", "builtin") != "builtin":
        raise NasError(f"{view.path}: its trials were trained by your own train function, which export cannot "
                       "call; export the trial's own weights (--no-retrain, or retrain=False)")
    spec = _data_spec(view)
    data = trial_data(spec)
    if tuple(data.input_shape) != tuple(info["input_shape"]) or not _close(data.mean, info["mean"]):
        raise StudyError(f"{view.path}: the data set now loads differently from the search (shape "
                         f"{tuple(data.input_shape)} vs {tuple(info['input_shape'])}, or other statistics); "
                         "export with --no-retrain, or restore the data the search used")
    # Validation images join the training set; the val split is left empty (the search already chose).
    full = dataclasses.replace(
        data, x_train=torch.cat([data.x_train, data.x_val]), y_train=torch.cat([data.y_train, data.y_val]),
        x_val=data.x_val[:0], y_val=data.y_val[:0])
    # The search's full run length: a fixed --epochs, else the study's max_epochs (epochs are not searched).
    config = fixed_epochs({"epochs": meta.get("epochs") or meta.get("max_epochs")}, trial.config)
    c = info["input_shape"][0]
    from nas.api import cpu_count

    threads = _threads_for(config, data, cpu_count())
    epochs = int({**train_mod.TRAIN_DEFAULTS, **config}["epochs"])
    try:
        result = train_mod.train_trial(
            config, full, seed=trial.seed, keep_weights=True, augment=meta.get("augment"), num_threads=threads,
            precision=meta.get("precision") or "auto",
            model=lambda: build_model(config, num_classes=info["num_classes"], in_chans=c),
            on_epoch=_epoch_line(trial.id, epochs, progress) if progress is not None else None)
    except train_mod.TrialFailed as e:
        raise NasError(f"retraining trial {trial.id} failed ({e.reason}); export its own weights with "
                       "--no-retrain or choose another --trial") from None
    details = {"epochs": result.epochs_run, "seed": trial.seed, "train_images": len(full.y_train),
               "train_time": result.train_time, "test_acc": result.test_acc, "threads": threads or cpu_count()}
    return result.state_dict, result.test_acc, details


def _close(a, b) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7) for x, y in zip(a, b))


# --- the generated module, TorchScript, ONNX ---------------------------------------------------

def _import_generated(path: Path):
    """Import model.py under a fresh name. It stays in sys.modules only while TorchScript reads its source."""
    name = f"_lightnas_export_{next(_module_ids)}"
    linecache.checkcache(str(path))  # a rewritten file at the same path must not be read from the cache
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _script(net: torch.nn.Module) -> bytes:
    with warnings.catch_warnings():
        # torch.jit.script is deprecated in favour of torch.export, but TorchScript is still what C++ and
        # mobile runtimes load, and scripting keeps the batch size free.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(net)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
    return buf.getvalue()


def _onnx(net: torch.nn.Module, example: torch.Tensor) -> tuple[bytes | None, str | None]:
    """(model.onnx bytes, None), or (None, why it was skipped)."""
    if importlib.util.find_spec("onnx") is None:
        return None, "model.onnx skipped: the onnx package is not installed (pip install onnx, then export again)"
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript-based exporter writes to a buffer and needs only onnx (dynamo=True also
            # needs onnxscript); the batch axis stays dynamic.
            torch.onnx.export(net, (example,), buf, dynamo=False, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as e:  # an optional extra: a failure is noted, not fatal
        return None, f"model.onnx skipped: torch.onnx.export failed ({' '.join(str(e).split())[:200]})"
    return buf.getvalue(), None


# --- entry point -------------------------------------------------------------------------------

def export_study(study_dir, *, out, trial_id: int | None = None, retrain: bool = True,
                 progress=True) -> list[str]:
    """Export a trial (default: the study's best complete one) into the folder ``out``; return the paths
    written. ``retrain=False`` exports the trial's own saved weights instead of retraining; ``progress``:
    one line per retraining epoch on stderr (True), on a given stream, or none (False / None).

    Raises StudyError / NasError with a one-line message for a folder that is not a study, a study with no
    complete trial, an unknown or unfinished trial, missing weights, or an ``out`` that is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NasError(f"--out {out} is a file; pass a folder (it is created if missing)")
    why = dangerous_out(out)
    if why:
        raise NasError(f"--out {out}: {why}; pass a new folder for the export")
    other = foreign_files(out, _EXPORT_FILES)
    if other:
        raise NasError(f"--out {out} holds other files ({', '.join(other[:3])}); an export replaces its "
                       "folder as a whole: choose another --out (a new or empty folder, or an old export)")
    view = load_study(study_dir)
    trial = _choose(view, trial_id)
    info = _study_meta(view)
    try:  # check the config and write the source before spending minutes on retraining
        check_size(trial.config, input_shape=info["input_shape"], num_classes=info["num_classes"],
                   train=retrain)
        source = model_source(trial.config, input_shape=info["input_shape"], mean=info["mean"],
                              std=info["std"], class_names=info["class_names"], trial_id=trial.id)
    except ConfigError as e:
        raise ConfigError(f"{view.path}: cannot export trial {trial.id}: {e}") from None
    with atomic_folder(out) as staging:  # an export killed or failing half-way leaves no folder behind
        names = _write_export(view, trial, info, source, staging, retrain, progress)
    return [str(out / n) for n in names]


# Files an export writes; an existing --out holding only these (or nothing) is replaced as a whole.
_EXPORT_FILES = {"model.py", "weights.pt", "config.json", "model.ts", "model.onnx", "__pycache__"}


def _write_export(view, trial: Trial, info: dict, source: str, out: Path, retrain: bool,
                  progress=True) -> list[str]:
    """Write every file of the export into the (staging) folder ``out``; return their names."""

    notes: list[str] = []
    if retrain:
        stream = sys.stderr if progress is True else (progress or None)
        state, test_acc, retrain_info = _retrain(view, trial, info, progress=stream)
    else:
        state, test_acc, retrain_info = _saved_state(view, trial), trial.metrics.get("test_acc"), None
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}

    from search_spaces.builder import build_model

    reference = build_model(trial.config, num_classes=info["num_classes"], in_chans=info["input_shape"][0])
    try:
        reference.load_state_dict(state)
    except RuntimeError as e:
        raise StudyError(f"{view.path}: trial {trial.id}'s weights do not fit its config "
                         f"({' '.join(str(e).split())[:200]}); export without --no-retrain") from None
    reference.eval()

    written = [atomic_write_text(out / "model.py", source)]
    buf = io.BytesIO()
    torch.save(state, buf)
    written.append(atomic_write_bytes(out / "weights.pt", buf.getvalue()))

    module = _import_generated(out / "model.py")
    try:
        net = module.build_model()
        net.load_state_dict(state)  # strict: the generated classes must name every tensor as ours do
        net.eval()
        example = torch.randn((2, *info["input_shape"]), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            if not torch.allclose(net(example), reference(example), atol=_ATOL, rtol=0):
                raise RuntimeError(f"generated model.py disagrees with search_spaces for trial {trial.id}")
        written.append(atomic_write_bytes(out / "model.ts", _script(net)))
    finally:
        sys.modules.pop(module.__name__, None)
    onnx_bytes, note = _onnx(net, example[:1])
    if onnx_bytes is not None:
        written.append(atomic_write_bytes(out / "model.onnx", onnx_bytes))
    elif note:
        notes.append(note)

    macs, params = trial.macs, trial.params
    if macs is None or params is None:
        from search_spaces.counting import count

        known = count(trial.config, input_shape=info["input_shape"], num_classes=info["num_classes"])
        macs, params = known["macs"], known["params"]
    record = {
        "trial_id": trial.id,
        "study": str(view.path),
        "dataset": view.meta.get("dataset"),
        "retrained": bool(retrain),
        "val_acc": trial.metrics.get("val_acc", trial.value),  # of the search run: the val split chose it
        "test_acc": test_acc,  # of the exported weights
        "search_test_acc": trial.metrics.get("test_acc"),
        "score": trial.score,
        "macs": macs,
        "params": params,
        "input_shape": list(info["input_shape"]),
        "num_classes": info["num_classes"],
        "class_names": info["class_names"],
        "mean": info["mean"],
        "std": info["std"],
        "retrain": retrain_info,
        "files": [p.name for p in written] + ["config.json"],
        "notes": notes,
        "config": trial.config,
    }
    written.append(atomic_write_text(out / "config.json", json.dumps(record, indent=2) + "\n"))
    return [p.name for p in written]
