"""``nas search`` flags as ``nas.api.prepare`` options: the CLI is a thin layer over the Python API.

Every option is checked once, in ``nas.api`` (and the engine); run inside ``as_flags(FLAGS)`` those checks
name command-line flags (``--max-epochs``) where Python callers read option names (``max_epochs``).
"""

from __future__ import annotations

import sys

from nas.api import DEFAULT_TARGETS, default_space_for, downsample_limit  # noqa: F401  (re-exported)
from nas.api_study import PARETO_OBJECTIVES  # noqa: F401  (re-exported)
from nas.options import as_flags
from nas.study import Study

# API options whose flag is not --the-option-name.
FLAGS = {"pareto": "--objective pareto", "channels_last": "--no-channels-last", "progress": "--quiet"}


def api_options(args) -> dict:
    """``nas.api.prepare`` keyword options for parsed ``nas search`` arguments (unset flags: None, so the
    API's own defaults and a resumed study's settings apply)."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    return {
        "dataset": get("dataset"),
        "data_dir": get("data_dir"),
        "download": bool(get("download", False)),
        "image_size": get("image_size"),
        "val_fraction": get("val_fraction") or 0.15,
        "test_fraction": get("test_fraction") or 0.2,
        "space": get("space"),
        "out": get("out"),
        "trials": get("trials"),
        "time_budget": get("time_budget"),
        "max_macs": get("max_macs"),
        "max_params": get("max_params"),
        "score": get("score"),
        "pareto": get("objective") == "pareto",
        "seed": get("seed"),
        "resume": bool(get("resume", False)),
        "workers": get("workers", 1) or 1,
        "executor": get("executor"),
        "ray_address": get("ray_address"),
        "gpus_per_trial": get("gpus_per_trial", 0.0) or 0.0,
        "force": bool(get("force", False)),
        "warmup": get("warmup"),
        "device": get("device"),
        "epochs": get("epochs"),
        "fidelity": get("fidelity"),
        "min_epochs": get("min_epochs"),
        "max_epochs": get("max_epochs"),
        "eta": get("eta"),
        "precision": get("precision"),
        "channels_last": False if get("no_channels_last", False) else None,
        "progress": not get("quiet", False),
        "command": " ".join(["nas"] + sys.argv[1:]),
    }


def make_study(args) -> tuple[Study, int | None]:
    """The Study ``nas search ARGS`` runs, and its trial budget."""
    from nas import api

    with as_flags(FLAGS):
        study = api.prepare(**api_options(args))
    return study, study.budget.trials


def describe(study: Study) -> str:
    b = study.budget
    parts = []
    fid = study.opt.fidelity
    if b.trials and fid is not None:
        parts.append(f"{b.trials * fid.max_resource:g} epochs ({b.trials} full trainings)")
    elif b.trials:
        parts.append(f"{b.trials} trials")
    if fid is not None:
        parts.append("rungs " + "/".join(f"{r:g}" for r in fid.rungs) + f" epochs, eta {fid.eta:g}")
    else:
        parts.append("fidelity off")
    if b.seconds:
        parts.append(f"time budget {b.seconds:g}s")
    objs = study.opt.objectives
    parts.append(f"Pareto front of {', '.join(objs.names)}" if objs else f"score {study.opt.score.spec()}")
    parts.append(f"{study.executor.capacity} worker(s)")
    return ", ".join(parts)
