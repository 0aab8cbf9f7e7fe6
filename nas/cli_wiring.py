"""The CLI's wiring: where the engine meets search_spaces and trainers.

This is the one module of ``nas`` (with ``cli`` and ``export``) that imports the CNN packages. It turns
``nas search`` options into a ``Study``: the data set's preset, the space, the exact MACs / params of a
config (``search_spaces.count``), the score, the hard limits, the executor and the trial objective.
"""
from __future__ import annotations

import sys
from pathlib import Path

from nas.errors import ConfigError, NasError, SpaceError
from nas.executors import get_executor
from nas.optimizer import Limit, Optimizer
from nas.score import parse_score
from nas.space import Space
from nas.storage import Storage
from nas.study import DB_NAME, Budget, Study, print_progress

# Below this target the default score barely rewards shrinking further (see nas.score); chosen per data
# set so that the default search lands near networks that are accurate *and* cheap on that input size.
DEFAULT_TARGETS = {
    "digits": {"macs": 60e3},
    "mnist": {"macs": 2e6},
    "fashion-mnist": {"macs": 2e6},
    "cifar10": {"macs": 20e6},
    "cifar100": {"macs": 30e6},
    "imagefolder": {"macs": 20e6},
}
PARETO_OBJECTIVES = {"acc": "maximize", "macs": "minimize", "params": "minimize"}  # --objective pareto


def default_space_for(dataset: str) -> Space:
    from search_spaces.default import default_space
    from trainers.presets import get_preset

    return default_space(**get_preset(dataset).space_bounds)


def downsample_limit(max_downsamples: int):
    """A constraint: at most ``max_downsamples`` stride-2 layers (stem included), so small inputs keep
    some spatial extent for the last stages."""

    def ok(config: dict) -> bool:
        n = int(config.get("stem", {}).get("stride", 1) == 2)
        n += sum(int(s.get("stride", 1) == 2) for s in config.get("stages", []))
        return n <= max_downsamples

    ok.__name__ = f"at_most_{max_downsamples}_downsamples"
    return ok


def _load_space(args, storage_meta: dict | None) -> Space:
    if args.space:
        return Space.load(args.space)
    if storage_meta and storage_meta.get("space"):
        return Space.from_dict(storage_meta["space"], source="study space")
    return default_space_for(args.dataset)


def make_study(args) -> tuple[Study, int | None]:
    from search_spaces.arch import validate_arch
    from search_spaces.counting import count
    from trainers.presets import get_preset
    from trainers.runner import cached_dataset, run_trial

    preset = get_preset(args.dataset)
    out = Path(args.out or f"results/{preset.name}")
    old_meta = {}
    if args.resume and (out / DB_NAME).exists():
        with Storage(out / DB_NAME, read_only=True) as st:
            old_meta = st.meta()
    # Load once in the driver: checks the data early (a one-line error before any trial) and gives the
    # input shape and class count of image folders.
    data = cached_dataset(preset.name, args.data_dir, 0, bool(args.download), None)
    input_shape, num_classes = tuple(data.input_shape), int(data.num_classes)

    space = _load_space(args, old_meta)
    probe = space.sample(seed=0)
    try:
        validate_arch(probe, num_classes=num_classes, in_chans=input_shape[0])
    except ConfigError as e:
        src = args.space or "the space"
        raise SpaceError(f"{src}: its configs do not describe a network: {e}") from None

    def known(config: dict) -> dict:
        return count(config, input_shape=input_shape, num_classes=num_classes)

    constraints = []
    if args.max_macs:
        constraints.append(Limit("macs", args.max_macs))
    if args.max_params:
        constraints.append(Limit("params", args.max_params))
    if preset.max_downsamples and not args.space:
        constraints.append(downsample_limit(preset.max_downsamples))
    targets = dict(DEFAULT_TARGETS.get(preset.name, {}))
    if args.max_macs:
        targets["macs"] = min(targets.get("macs", args.max_macs), args.max_macs)
    if args.max_params:
        targets["params"] = args.max_params
    pareto = getattr(args, "objective", "score") == "pareto"
    score = None if pareto else parse_score(args.score, default_targets=targets)

    trials = args.trials if args.trials is not None else preset.trials  # with --time-budget: whichever ends first
    budget = Budget(trials=trials, seconds=args.time_budget)
    # Pareto search: accuracy against the exact MACs and params, by expected hypervolume improvement.
    objectives = PARETO_OBJECTIVES if pareto else None
    opt = Optimizer(space, direction="maximize", seed=args.seed, constraints=constraints, known=known,
                    score=score, n_warmup=args.warmup or 8, value_bounds=(0.0, 1.0), objectives=objectives)
    workers = args.workers
    name = args.executor or ("inprocess" if workers == 1 else "process")
    if name == "inprocess" and workers > 1:
        raise NasError("--executor inprocess runs one trial at a time; use --executor process for --workers > 1")
    executor = get_executor(name, workers=workers, ray_address=args.ray_address,
                            resources={"num_cpus": 1, "num_gpus": args.gpus_per_trial})
    meta = {
        "dataset": preset.name, "data_dir": args.data_dir, "input_shape": list(input_shape),
        "num_classes": num_classes, "class_names": list(data.class_names), "space": space.to_dict(),
        "score": opt.score.spec(), "objectives": objectives, "max_macs": args.max_macs, "max_params": args.max_params, "seed": args.seed,
        "trials": trials, "time_budget": args.time_budget, "direction": "maximize", "objective": "val_acc",
        "augment": preset.augment, "norm_mean": list(data.mean), "norm_std": list(data.std),
        "command": " ".join(["nas"] + sys.argv[1:]),
        "precision": objective_args_precision(args),
    }
    objective_args = {"dataset": preset.name, "data_dir": args.data_dir, "download": bool(args.download),
                      "data_seed": 0, "augment": preset.augment, "save_weights": True,
                      "threads": max(1, _cpu_count() // workers),
                      "precision": objective_args_precision(args),
                      "channels_last": False if getattr(args, "no_channels_last", False) else None}
    study = Study(out, optimizer=opt, objective=run_trial, objective_args=objective_args, budget=budget,
                  executor=executor, meta=meta, resume=args.resume,
                  on_progress=None if args.quiet else print_progress(trials))
    return study, trials


def objective_args_precision(args) -> str:
    return getattr(args, "precision", None) or "auto"


def describe(study: Study) -> str:
    b = study.budget
    parts = []
    if b.trials:
        parts.append(f"{b.trials} trials")
    if b.seconds:
        parts.append(f"time budget {b.seconds:g}s")
    objs = study.opt.objectives
    parts.append(f"Pareto front of {', '.join(objs.names)}" if objs else f"score {study.opt.score.spec()}")
    parts.append(f"{study.executor.capacity} worker(s)")
    return ", ".join(parts)


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def model_section(view):
    """For ``nas report``: fvcore's per-module table and CPU latency of the best trial's network."""
    from search_spaces.builder import build_model
    from search_spaces.profile import format_profile, model_section_html, profile_model

    meta = view.meta
    shape = tuple(meta.get("input_shape") or ())
    if len(shape) != 3 or "num_classes" not in meta:
        return None

    def section(trial) -> dict:
        model = build_model(trial.config, num_classes=int(meta["num_classes"]), in_chans=shape[0])
        prof = profile_model(model, shape)
        return {"title": f"Best network (trial {trial.id})", "html": model_section_html(prof),
                "text": format_profile(prof)}

    return section
