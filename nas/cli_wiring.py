"""The CLI's wiring: ``nas search`` options -> ``nas.api.prepare`` keyword options.

Everything a search needs (the preset, the space, exact MACs / params, the score, the hard limits, the
executor, the trial objective) is built by ``nas.api``; this module only translates parsed arguments.
"""
from __future__ import annotations

import sys

from nas import api
from nas.api import DEFAULT_TARGETS, default_space_for, downsample_limit, model_section  # noqa: F401 (re-exported)
from nas.study import Study


def options(args) -> dict:
    """The keyword options of ``nas.api.prepare`` for parsed ``nas search`` arguments."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731 - older Namespaces lack new flags
    return {
        "dataset": get("dataset"), "data_dir": get("data_dir"), "download": bool(get("download", False)),
        "image_size": get("image_size"), "val_fraction": get("val_fraction") or 0.15,
        "test_fraction": get("test_fraction") or 0.2, "space": get("space"), "out": get("out"),
        "trials": get("trials"), "time_budget": get("time_budget"), "max_macs": get("max_macs"),
        "max_params": get("max_params"), "score": get("score") or "mnas", "seed": get("seed", 0),
        "resume": bool(get("resume", False)), "workers": get("workers", 1), "executor": get("executor"),
        "ray_address": get("ray_address"), "gpus_per_trial": get("gpus_per_trial", 0.0) or 0.0,
        "warmup": get("warmup"), "device": get("device"), "epochs": get("epochs"),
        "progress": not get("quiet", False), "command": " ".join(["nas"] + sys.argv[1:]),
        "precision": get("precision") or "auto", "channels_last": False if get("no_channels_last", False) else None,
    }


def make_study(args) -> tuple[Study, int | None]:
    study = api.prepare(**options(args))
    return study, study.budget.trials


def describe(study: Study) -> str:
    b = study.budget
    parts = [study.meta.get("dataset") or "objective"]
    if b.trials:
        parts.append(f"{b.trials} trials")
    if b.seconds:
        parts.append(f"time budget {b.seconds:g}s")
    parts.append(f"score {study.opt.score.spec()}")
    parts.append(f"{study.executor.capacity} worker(s)")
    return ", ".join(parts)
