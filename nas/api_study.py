"""The study side of ``nas.api.prepare``: what a resume keeps, the fidelity, the limits and score, the workers.

Each check lives here once; ``nas search`` reaches it through ``nas.api.prepare`` and its messages name
options through ``nas.options`` (``max_epochs`` in Python, ``--max-epochs`` on the command line).
Composition layer: imports ``search_spaces`` lazily, for CNN spaces only.
"""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from pathlib import Path

from nas.errors import ConfigError, NasError
from nas.fidelity import DEFAULT_ETA, Fidelity
from nas.limits import WORKER_BASE_BYTES, check_workers
from nas.optimizer import Limit
from nas.options import said, shown
from nas.space import Space
from nas.storage import DB_NAME, open_study

PARETO_OBJECTIVES = {"acc": "maximize", "macs": "minimize", "params": "minimize"}  # pareto=True

# Options a resume takes from the study when they are not given: (option, meta key, default of a new
# study). Given, they must equal the study's (nas.defining).
FROM_STUDY = (
    ("seed", "seed", 0),
    ("score", "score", None),
    ("max_macs", "max_macs", None),
    ("max_params", "max_params", None),
    ("precision", "precision", "auto"),
)


def old_meta(folder: Path, resume: bool) -> dict:
    """The settings of the study a resume continues ({} for a new study)."""
    if resume and (folder / DB_NAME).exists():
        with open_study(folder) as st:
            return st.meta()
    return {}


def from_study(options: dict, meta: dict) -> dict:
    """``options`` with every ``FROM_STUDY`` option left out (None) taken from the resumed study's ``meta``."""
    out = dict(options)
    for option, key, default in FROM_STUDY:
        if out.get(option) is None:
            out[option] = meta.get(key, default)
    return out


# ------------------------------------------------------------------------------------------------ fidelity


def check_fidelity_options(mode, epochs) -> None:
    if mode not in (None, "on", "off"):
        raise NasError(f"{said('fidelity', mode)}: choose on or off")
    if epochs and mode == "on":
        raise NasError(f"{shown('epochs')} fixes every trial's length; it cannot go with {said('fidelity', 'on')}")


def resolve_fidelity(
    mode, min_epochs, max_epochs, eta, *, epochs, preset, meta: dict, default: str
) -> tuple[Fidelity | None, int]:
    """``(Fidelity or None for off, max_epochs)``. ``epochs`` fixes the length (fidelity off). Unset options
    come from the study being resumed (``meta``), then from the preset (``min_epochs`` / ``max_epochs``;
    presets without them: 1 and the top of their old ``epochs`` range). A new study's mode is ``default``."""
    check_fidelity_options(mode, epochs)
    if epochs:
        mode, max_epochs = "off", epochs
    old = meta.get("fidelity") if meta else None
    if mode is None:  # a resumed study keeps its mode (one from before multi-fidelity ran with it off)
        mode = ("on" if old else "off") if meta else default
    lo = min_epochs or (old or {}).get("min_resource") or getattr(preset, "min_epochs", 1)
    hi = (
        max_epochs
        or (old or {}).get("max_resource")
        or meta.get("max_epochs")
        or getattr(preset, "max_epochs", preset.epochs[1])
    )
    eta = eta or (old or {}).get("eta") or DEFAULT_ETA
    if lo > hi:
        said_hi = shown("max_epochs") if max_epochs else f"the {preset.name} preset's max epochs"
        raise NasError(
            f"{said('min_epochs', lo)} is above {said_hi} ({hi}); lower {shown('min_epochs')} or raise "
            f"{shown('max_epochs')}"
        )
    if eta < 2:
        raise NasError(f"{shown('eta')} must be at least 2 (each rung keeps the top 1/eta), got {eta}")
    fid = Fidelity(int(lo), int(hi), int(eta))
    return (fid if mode == "on" else None), int(hi)


# ------------------------------------------------------------------------------------------------ limits


def config_sizes(input_shape: tuple, num_classes: int, cache: int = 4096):
    """``(known, fits)`` for the optimiser, sharing one ``search_spaces.size.measure`` per config (validated
    and counted once, however often the acquisition asks): ``known(config) -> {"macs", "params"}``, and the
    constraint ``fits(config)``: under the size caps at this input (params, MACs, estimated training memory),
    so a config that would take the machine's memory is never proposed."""
    from search_spaces.size import measure, over_caps

    shape = tuple(input_shape)

    @lru_cache(maxsize=cache)
    def _measure(key: str):
        try:
            return measure(json.loads(key), input_shape=shape, num_classes=num_classes)
        except ConfigError as e:
            return str(e)

    def measured(config: dict) -> dict:
        m = _measure(json.dumps(config, sort_keys=True, default=str))
        if isinstance(m, str):
            raise ConfigError(m)
        return m

    def known(config: dict) -> dict:
        m = measured(config)
        return {"macs": m["macs"], "params": m["params"]}

    def fits(config: dict) -> bool:
        try:
            return over_caps(config, input_shape=shape, num_classes=num_classes, measured=measured(config)) is None
        except ConfigError:
            return False

    fits.__name__ = "within_size_caps"
    return known, fits


def note_oversized(space: Space, input_shape: tuple, num_classes: int, n: int = 200) -> None:
    """Say on stderr when part of the space is over the size caps: those configs are never proposed (and
    when all of them are, the optimiser's first ask says so in one line)."""
    from search_spaces.size import over_caps

    reasons = []
    for config in space.sample_many(n, seed=0):
        try:
            why = over_caps(config, input_shape=input_shape, num_classes=num_classes)
        except ConfigError:
            continue
        if why:
            reasons.append(why)
    if reasons and len(reasons) < n:
        print(
            f"nas search: note: {len(reasons)} of {n} sampled configs are too large to train here (e.g. "
            f"{reasons[0]}); they are never proposed",
            file=sys.stderr,
        )


def constraints_and_targets(*, fits, max_macs, max_params, downsamples, default_targets: dict):
    """(constraints, score targets). ``fits``: the size-cap constraint when lightnas builds (and counts) the
    networks (``config_sizes``), else None; ``downsamples``: a constraint or None."""
    constraints = []
    if fits is not None:  # never propose what cannot be built here
        constraints.append(fits)
    for limit, key in ((max_macs, "macs"), (max_params, "params")):
        if limit is not None:
            if fits is None:
                raise NasError(
                    f"{shown('max_' + key)} needs a CNN space that lightnas builds (its {key} are counted exactly)"
                )
            constraints.append(Limit(key, limit))
    if downsamples is not None and fits is not None:
        constraints.append(downsamples)
    targets = dict(default_targets) if fits is not None else {}
    if max_macs:
        targets["macs"] = min(targets.get("macs", max_macs), max_macs)
    if max_params:
        targets["params"] = max_params
    return constraints, targets


# ------------------------------------------------------------------------------------------------ workers


def executor_name(executor: str | None, workers: int) -> str:
    name = executor or ("inprocess" if workers == 1 else "process")
    if name not in ("inprocess", "process", "ray"):
        raise NasError(f"{said('executor', name)}: choose inprocess, process or ray")
    if name == "inprocess" and workers > 1:
        raise NasError(
            f"{said('executor', 'inprocess')} runs one trial at a time; use {said('executor', 'process')} "
            f"for {shown('workers')} above 1"
        )
    return name


def check_local_workers(name: str, workers: int, *, gpus_per_trial, ray_address, force: bool, data) -> None:
    """GPUs are a Ray request; workers on this machine must fit its cores and memory (each holds the data)."""
    if gpus_per_trial and name != "ray":
        raise NasError(
            f"{shown('gpus_per_trial')} is a Ray resource request; with {said('executor', name)} trials "
            f"use no GPU. Use {said('executor', 'ray')}, or leave {shown('gpus_per_trial')} out"
        )
    if name == "inprocess" or ray_address:
        return
    problem = check_workers(workers, force=bool(force), per_worker_bytes=WORKER_BASE_BYTES + data_bytes(data))
    if problem:
        raise NasError(f"{said('workers', workers)}: {problem}; use fewer workers, or pass {shown('force')}")


def data_bytes(data) -> int:
    """The bytes of an in-memory data set's tensors (0 for streamed data)."""
    total = 0
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        t = getattr(data, k, None)
        if t is not None and hasattr(t, "element_size"):
            total += t.element_size() * t.nelement()
    return total
