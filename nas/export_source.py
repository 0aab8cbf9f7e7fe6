"""The text of an export's ``model.py``: a standalone PyTorch module whose only import is torch.

model.py holds, in order: ARCH (the architecture in the config layout, every default filled in), INPUT_SHAPE,
MEAN / STD, CLASS_NAMES, the activation table, the block modules the network uses, copied from their own source
(search_spaces/blocks/*.py, or wherever a registered block lives; see search_spaces/registry.py), BLOCKS, and
``Net`` / ``build_model()`` / ``normalize()`` / ``load()``.

A block module is copied whole, minus its docstring and imports: its ``import torch`` lines are gathered at the
top, and a ``from search_spaces.blocks.X import Name`` pulls module X in first (the activation table is written
here with only the activations the network uses). Any other import is refused: a block module imports only torch.

Nothing read from a study goes into the file as text: the architecture is decoded by
``search_spaces.validate_arch``, checked again here against the registries (names), real finite numbers (not bools)
and known keys, and written with ``repr`` of those plain values. A block name holding Python code is a ConfigError.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import re
import sys
from typing import Any

from nas.errors import ConfigError
from search_spaces import registry
from search_spaces.arch import Arch, validate_arch
from search_spaces.blocks import activations as _activations
from search_spaces.blocks.activations import ACT_LAYERS
from search_spaces.registry import STAGE_KEYS

__all__ = ["model_source", "arch_literal"]

# How model.py spells each activation: its torch.nn class (a test checks the names resolve to the same classes).
_ACT_SOURCE = {name: f"nn.{cls.__name__}" for name, cls in ACT_LAYERS.items()}
_ACT_MODULE = _activations.__name__  # written here, with only the activations a network uses
_SIBLINGS = "search_spaces.blocks."  # a block module may import other block modules of ours, and torch
# Names model.py defines itself; a block module defining one of them would be overwritten.
_OWN_NAMES = {
    "torch",
    "nn",
    "ARCH",
    "INPUT_SHAPE",
    "MEAN",
    "STD",
    "CLASS_NAMES",
    "ACT_LAYERS",
    "BLOCKS",
    "STAGE_KEYS",
    "Net",
    "build_model",
    "normalize",
    "load",
}
_STAGE_COMMON = tuple(STAGE_KEYS)


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
        stage = {
            "block": first.block,
            "channels": a["out_chs"],
            "stride": a["stride"],
            "repeats": len(blocks),
            "kernel": a["kernel_size"],
            "activation": a["act"],
        }
        stage.update({k: a[k] for k in registry.get(first.block).keys})
        stages.append(stage)
    head = None
    if arch.head is not None:
        head = {"channels": arch.head.args["out_chs"], "activation": arch.head.args["act"]}
    return {
        "stem": {
            "channels": s["out_chs"],
            "kernel": s["kernel_size"],
            "stride": s["stride"],
            "activation": s["act"],
            "pool": "max" if arch.stem_pool else None,
        },
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
    _name(d["stem"]["activation"], ACT_LAYERS, "stem.activation")
    if d["stem"]["pool"] not in (None, "max"):
        raise ConfigError(f"stem.pool: {_short(d['stem']['pool'])} is not None or 'max'")
    if not isinstance(d["stages"], list):
        raise ConfigError("stages: expected a list")
    for i, st in enumerate(d["stages"]):
        where = f"stages[{i}]"
        if not isinstance(st, dict):
            raise ConfigError(f"{where}: expected a mapping")
        keys = registry.get(_name(st.get("block"), registry.names(), f"{where}.block")).keys
        _keys(st, _STAGE_COMMON + tuple(keys), where)
        for k in ("channels", "stride", "repeats", "kernel"):
            _real(st[k], f"{where}.{k}", integer=True)
        _name(st["activation"], ACT_LAYERS, f"{where}.activation")
        for k, key in keys.items():
            _real(st[k], f"{where}.{k}", integer=key.integer)
    if d["head"] is not None:
        _keys(d["head"], ("channels", "activation"), "head")
        _real(d["head"]["channels"], "head.channels", integer=True)
        _name(d["head"]["activation"], ACT_LAYERS, "head.activation")
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

ARCH is the architecture in lightnas's config layout. The block classes below are lightnas's own
(copied from their modules), so the keys of weights.pt match build_model().state_dict() exactly.
"""
{imports}
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
            extra = {k: v for k, v in stage.items() if k not in STAGE_KEYS}  # the block's own keys
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
    in_stages = {st["block"] for st in arch["stages"]}
    used = [b for b in registry.names() if b == "Conv" or b in in_stages]  # Conv: the stem, and inside Net
    acts = {arch["stem"]["activation"]} | {st["activation"] for st in arch["stages"]}
    if arch["head"] is not None:
        acts.add(arch["head"]["activation"])
    imports, bodies = _block_sources([registry.get(b).module for b in used])

    parts = [
        _HEADER.format(trial_id=trial_id, imports="\n".join(imports)),  # trial_id checked to be an int above
        _arch_source(arch),
        f"INPUT_SHAPE = {_literal(shape)}  # (channels, height, width)",
        f"MEAN = {_literal(stats['MEAN'])}  # per channel, of pixels scaled to [0, 1]",
        f"STD = {_literal(stats['STD'])}",
        _wrapped_list("CLASS_NAMES", names, "output index -> class"),
        "",
        "ACT_LAYERS = {",
        *(f"    {_literal(a)}: {_ACT_SOURCE[a]}," for a in ACT_LAYERS if a in acts),
        "}",
        *(f"\n\n{b}" for b in bodies),
        "",
        "",
        "BLOCKS = {",
        *(f"    {_literal(b)}: {registry.get(b).module.__name__}," for b in used),
        "}",
        f"STAGE_KEYS = {_literal(_STAGE_COMMON)}",
        _NET.rstrip("\n"),
    ]
    return "\n".join(parts) + "\n"


# --- the block modules' own source ---------------------------------------------------------------


def _block_sources(classes: list) -> tuple[list[str], list[str]]:
    """(the torch import lines, the bodies) of the modules that define ``classes``: each module once, the modules
    it imports from first."""
    imports, bodies, seen, defined = ["import torch", "from torch import nn"], [], {_ACT_MODULE}, set(_OWN_NAMES)

    def add(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        module = sys.modules.get(name) or importlib.import_module(name)
        body, deps, lines, names = _module_body(module)
        for dep in deps:
            add(dep)
        clash = sorted(names & defined)
        if clash:
            raise ConfigError(
                f"block module {name} defines {clash[0]!r}, which model.py already has from another module; rename it"
            )
        defined.update(names)
        imports.extend(line for line in lines if line not in imports)
        bodies.append(body)

    for cls in classes:
        if cls.__qualname__ != cls.__name__:  # BLOCKS in model.py names the class at the module's top level
            raise ConfigError(f"block class {cls.__qualname__} is not at the top level of its module; define it there")
        add(cls.__module__)
    return imports, bodies


def _module_body(module) -> tuple[str, list[str], list[str], set[str]]:
    """A block module's source without its docstring and imports: (body, the sibling modules it imports from,
    its torch import lines, the top-level names it defines). Any other import is a ConfigError."""
    try:
        source = inspect.getsource(module)
    except (OSError, TypeError) as e:  # a module with no file (defined interactively, or compiled only)
        raise ConfigError(
            f"cannot read the source of block module {module.__name__} ({e}); define the block in a .py file"
        ) from None
    tree = ast.parse(source)
    for node in ast.walk(tree):  # imports inside functions too: model.py must need nothing but torch
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not _allowed(node, top=node in tree.body):
            raise ConfigError(
                f"block module {module.__name__} (line {node.lineno}) imports "
                f"{ast.get_source_segment(source, node)!r}; a block module imports only torch and "
                f"other block modules (from {_SIBLINGS}X import Name), so that export can copy it"
            )
    drop, deps, torch_lines, names = set(), [], [], set()
    for i, node in enumerate(tree.body):
        span = range(node.lineno - 1, node.end_lineno)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            drop.update(span)
            if isinstance(node, ast.ImportFrom) and node.module.startswith(_SIBLINGS):
                deps.append(node.module)
            elif not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                torch_lines.append(ast.get_source_segment(source, node))
        elif i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            drop.update(span)  # the module docstring; model.py has its own
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    kept = [line for n, line in enumerate(source.splitlines()) if n not in drop]
    body = re.sub(r"\n{4,}", "\n\n\n", "\n".join(kept).strip("\n"))
    return body, deps, torch_lines, names


def _allowed(node, *, top: bool) -> bool:
    if isinstance(node, ast.Import):
        return all(a.name == "torch" or a.name.startswith("torch.") for a in node.names)
    if node.level != 0 or node.module is None:
        return False
    if node.module == "torch" or node.module.startswith("torch.") or node.module == "__future__":
        return True
    # A sibling block module, at the top and without "as": model.py defines the same name in one namespace.
    return top and node.module.startswith(_SIBLINGS) and not any(a.asname for a in node.names)


def _shape(v: Any) -> tuple[int, int, int]:
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        raise ConfigError(f"input_shape: expected [C, H, W], got {_short(v)}")
    for x in v:
        _real(x, "input_shape", integer=True)
        if x < 1:
            raise ConfigError(f"input_shape: {_short(v)} must be positive")
    return tuple(v)
