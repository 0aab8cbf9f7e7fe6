"""``nas inspect``: what a config costs, counted three ways that must agree.

    macs, params            analytic (search_spaces/counting.py), what the search scores with
    counted_macs            torch.utils.flop_counter.FlopCounterMode total / 2 on the built model
    counted_params          sum(p.numel()) of the built model
    fvcore_macs             fvcore's FlopCountAnalysis, with its BatchNorm and pooling handles switched off
                            (fvcore counts one fused multiply-add as one flop, so its flops are MACs)

Batch of one, eval mode (BatchNorm then needs no batch statistics, so a 1x1 map is fine).
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.errors import ConfigError
from nas.fmt import si
from nas.fsutil import read_regular_file
from nas.limits import MAX_TEXT_FILE_BYTES
from search_spaces import size
from search_spaces.builder import build_model
from search_spaces.counting import _shape, count

__all__ = ["inspect_config", "inspect_main", "parse_input_shape"]

_DEFAULT_CLASSES = 10  # what inspect assumes when neither the caller nor the config says
# inspect builds the network and runs it three times at batch 1 on the CPU: a config over the caps of
# search_spaces/size.py is refused from its analytic count before anything is allocated, so a typo like
# channels: 100000 does not take the machine's memory.
MAX_PARAMS, MAX_MACS = size.MAX_PARAMS, size.MAX_MACS


def inspect_config(config: dict, *, input_shape: tuple, num_classes: int | None = None, max_depth: int = 3) -> dict:
    """Analytic params / MACs, the same counted on the built model, and fvcore's per-module table."""
    shape = _shape(tuple(input_shape))
    analytic = count(config, input_shape=shape, num_classes=num_classes)
    size.check_size(config, input_shape=shape, num_classes=num_classes, train=False)
    size_text = f"{analytic['params']:,} parameters and {analytic['macs']:,} MACs"
    try:
        torch.manual_seed(0)  # the counts do not depend on the weights; fix them anyway for repeatable tables
        model = build_model(config, num_classes=num_classes, in_chans=shape[0]).eval()
        x = torch.zeros(1, *shape)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            out = model(x)
        fv_total, table = fvcore_table(model, x, max_depth)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise
        raise ConfigError(
            f"not enough memory to build and run the network ({size_text}); "
            "try a smaller --input-shape or run it on a larger machine"
        ) from None
    result = {
        "params": analytic["params"],
        "macs": analytic["macs"],
        "counted_params": sum(p.numel() for p in model.parameters()),
        "counted_macs": counter.get_total_flops() // 2,
        "fvcore_macs": fv_total,
        "input_shape": list(shape),
        "num_classes": model.arch.num_classes,
        "output_shape": list(out.shape),
        "table": table,
    }
    result["agree"] = (
        result["params"] == result["counted_params"]
        and result["macs"] == result["counted_macs"] == result["fvcore_macs"]
    )
    return result


def fvcore_table(model: torch.nn.Module, x: torch.Tensor, max_depth: int) -> tuple[int, str]:
    """fvcore's total (MACs, as FlopCounterMode counts them) and its per-module table."""
    with warnings.catch_warnings():  # fvcore uses torch.jit, which newer torch marks deprecated
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis, flop_count_table

    # Count BatchNorm (folded into the conv at inference) and pooling as zero, as FlopCounterMode does.
    # A handle of None does not do it here: fvcore consults its default handles before its ignore list.
    free = {op: _zero for op in ("aten::batch_norm", "aten::adaptive_avg_pool2d")}
    analysis = (
        FlopCountAnalysis(model, (x,))
        .set_op_handle(**free)
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        total = int(analysis.total())
    return total, flop_count_table(analysis, max_depth=max_depth)


def _zero(inputs, outputs) -> Counter:
    return Counter()


def parse_input_shape(text) -> tuple[int, int, int]:
    """``"3x32x32"``, ``"3,32,32"`` or a sequence of three ints -> (channels, height, width)."""
    if isinstance(text, str):
        parts = [p for p in re.split(r"[x,\s]+", text.strip().lower()) if p]
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"input shape {text!r}: expected CxHxW, e.g. 3x32x32")
        text = tuple(int(p) for p in parts)
    return _shape(tuple(text) if isinstance(text, (list, tuple)) else text)


REFERENCE_DIR = Path(__file__).parent / "reference"  # package data: found from any working directory


def reference_names() -> list[str]:
    return sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))


def resolve_config_path(name) -> Path:
    """A file path as given, or a shipped reference config by name (``mobilenet_v2``, ``resnet50.json``)."""
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    ref = REFERENCE_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    return ref if ref.is_file() else path


def _load(path: Path) -> dict:
    from nas.errors import SpaceError
    from nas.space import parse_text

    if not path.exists() and path.parent == Path("."):
        raise ConfigError(f"{path}: no such file (shipped configs by name: {', '.join(reference_names())})")
    raw = read_regular_file(path, max_bytes=MAX_TEXT_FILE_BYTES, what="config", error=ConfigError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a config is a JSON or YAML file") from None
    # JSON for .json, YAML otherwise (YAML reads JSON too); the same parser and alias-bomb guard as spaces.
    source = str(path) if path.suffix.lower() in (".json", ".yaml", ".yml") else f"{path}.yaml"
    try:
        data = parse_text(text, source)
    except SpaceError as e:
        raise ConfigError(str(e).replace(source, str(path), 1)) from None
    # A trial record or an exported result holds the config under "config".
    if isinstance(data, dict) and "stem" not in data and isinstance(data.get("config"), dict):
        data = data["config"]
    return data


def inspect_main(path, input_shape, as_json: bool, *, num_classes: int | None = None) -> str:
    """The text ``nas inspect PATH --input-shape CxHxW [--json]`` prints.

    ``num_classes`` defaults to the config's ``classifier.num_classes``, else 10 (said in the output).
    ``path``: a JSON or YAML file, or the name of a shipped reference config (``mobilenet_v2``).
    Bad JSON / YAML or a bad config raises a one-line ConfigError naming the file.
    """
    path = resolve_config_path(path)
    shape = parse_input_shape(input_shape)
    config = _load(path)
    assumed = num_classes is None and not (
        isinstance(config, dict)
        and isinstance(config.get("classifier"), dict)
        and config["classifier"].get("num_classes") is not None
    )
    try:
        r = inspect_config(config, input_shape=shape, num_classes=_DEFAULT_CLASSES if assumed else num_classes)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if as_json:
        return json.dumps({k: v for k, v in r.items() if k != "table"} | {"path": str(path)})
    note = " (assumed: the config has no classifier.num_classes; pass --num-classes)" if assumed else ""
    check = "ok" if r["agree"] else "MISMATCH (please report: the analytic counts are wrong)"
    return "\n".join(
        [
            f"config        {path}",
            f"input         {'x'.join(map(str, shape))}, {r['num_classes']} classes{note}",
            f"params        {r['params']:,} ({si(r['params'])})",
            f"MACs          {r['macs']:,} ({si(r['macs'])})",
            f"check         FlopCounterMode/2 {r['counted_macs']:,}, fvcore {r['fvcore_macs']:,}, "
            f"numel {r['counted_params']:,}: {check}",
            "",
            "per module (fvcore; its #flops column counts one multiply-add as one flop, i.e. MACs):",
            r["table"],
        ]
    )
