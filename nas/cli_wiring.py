"""The CLI's wiring: where the engine meets search_spaces and trainers.

This is the one module of ``nas`` (with ``cli`` and ``export``) that imports the CNN packages. It turns
``nas search`` options into a ``Study``: the data set's preset, the space, the exact MACs / params of a
config (``search_spaces.count``), the score, the hard limits, the executor and the trial objective.
"""
from __future__ import annotations

import sys
from pathlib import Path

from nas.api import DEFAULT_TARGETS, default_space_for, downsample_limit  # noqa: F401  (re-exported)
from nas.errors import ConfigError, NasError, SpaceError
from nas.executors import get_executor
from nas.fidelity import DEFAULT_ETA, Fidelity
from nas.fsutil import dangerous_out
from nas.limits import WORKER_BASE_BYTES, check_workers
from nas.optimizer import Limit, Optimizer
from nas.score import parse_score
from nas.space import Space
from nas.storage import Storage
from nas.study import DB_NAME, Budget, Study, print_progress

PARETO_OBJECTIVES = {"acc": "maximize", "macs": "minimize", "params": "minimize"}  # --objective pareto


# Options that a resume takes from the study when they are not given: (argparse dest, meta key, default
# of a new study). Given, they must equal the study's (nas.defining).
FROM_STUDY = (("dataset", "dataset", "digits"), ("data_dir", "data_dir", None), ("seed", "seed", 0),
              ("score", "score", "mnas"), ("max_macs", "max_macs", None), ("max_params", "max_params", None),
              ("precision", "precision", None))


# default_space_for and downsample_limit live in nas.api (the CLI is wired through it); imported here for
# the wiring below and for callers that knew them here.


def _load_space(args, storage_meta: dict | None) -> Space:
    if args.space:
        return Space.load(args.space)
    if storage_meta and storage_meta.get("space"):
        return Space.from_dict(storage_meta["space"], source="study space")
    return default_space_for(args.dataset)


def fidelity_from_args(args, preset, old_meta: dict) -> tuple[Fidelity | None, int]:
    """``(Fidelity or None for --fidelity off, max_epochs)``. Unset options come from the study being
    resumed, then from the preset (``min_epochs`` / ``max_epochs``; presets without them: 1 and the top of
    their old ``epochs`` range)."""
    old = old_meta.get("fidelity") if old_meta else None
    mode = args.fidelity
    if mode is None:  # a resumed study keeps its mode (one from before multi-fidelity ran with it off)
        mode = ("on" if old else "off") if old_meta else "on"
    lo = args.min_epochs or (old or {}).get("min_resource") or getattr(preset, "min_epochs", 1)
    hi = args.max_epochs or (old or {}).get("max_resource") or old_meta.get("max_epochs") or getattr(
        preset, "max_epochs", preset.epochs[1])
    eta = args.eta or (old or {}).get("eta") or DEFAULT_ETA
    if lo > hi:
        said = "--max-epochs" if args.max_epochs else f"the {preset.name} preset's max epochs"
        raise NasError(f"--min-epochs {lo} is above {said} ({hi}); lower --min-epochs or raise --max-epochs")
    if eta < 2:
        raise NasError(f"--eta must be at least 2 (each rung keeps the top 1/eta), got {eta}")
    fid = Fidelity(int(lo), int(hi), int(eta))
    return (fid if mode == "on" else None), int(hi)


def _issue13_options(args, old_meta: dict) -> None:
    """--data-dir alone, --image-size, --val-fraction / --test-fraction, --device, --epochs (issue 13): checked
    here with nas.api's checks. TODO(lead): make_study should become nas.api.prepare (see nas/api.py)."""
    from nas import api
    from nas.user_fn import check_fractions, check_image_size

    check_fractions(getattr(args, "val_fraction", None) or 0.15, getattr(args, "test_fraction", None) or 0.2)
    check_image_size(getattr(args, "image_size", None))
    args.device = api._check_device(getattr(args, "device", None))
    if getattr(args, "dataset", None) is None and args.data_dir and not old_meta.get("dataset"):
        args.dataset = api._resolve_dataset(None, None, args.data_dir, {})
    elif getattr(args, "dataset", None) is not None:
        api._resolve_dataset(None, args.dataset, args.data_dir, {})  # digits with --data-dir is refused
    if (args.dataset or old_meta.get("dataset")) == "digits" and getattr(args, "image_size", None) not in (None, 8):
        raise NasError("digits images are 8x8; --image-size applies to image folders and torchvision data sets")
    if getattr(args, "epochs", None):  # a fixed training length: single fidelity, E epochs
        if getattr(args, "fidelity", None) == "on":
            raise NasError("--epochs fixes every trial's length; it cannot go with --fidelity on")
        args.fidelity, args.max_epochs = "off", args.epochs


def _api_options(args) -> dict:
    """``nas.api.prepare`` keyword options for parsed ``nas search`` arguments."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    return {
        "dataset": get("dataset"), "data_dir": get("data_dir"), "download": bool(get("download", False)),
        "image_size": get("image_size"), "val_fraction": get("val_fraction") or 0.15,
        "test_fraction": get("test_fraction") or 0.2, "space": get("space"), "out": get("out"),
        "trials": get("trials"), "time_budget": get("time_budget"), "max_macs": get("max_macs"),
        "max_params": get("max_params"), "score": get("score"), "seed": get("seed") or 0,
        "resume": bool(get("resume", False)), "workers": get("workers", 1), "executor": get("executor"),
        "ray_address": get("ray_address"), "gpus_per_trial": get("gpus_per_trial", 0.0) or 0.0,
        "warmup": get("warmup"), "device": get("device"), "epochs": get("epochs"),
        "precision": get("precision") or "auto", "channels_last": False if get("no_channels_last", False) else None,
        "progress": not get("quiet", False), "command": " ".join(["nas"] + sys.argv[1:]),
    }


def make_study(args) -> tuple[Study, int | None]:
    from search_spaces.arch import validate_arch
    from search_spaces.counting import count
    from trainers.presets import get_preset
    from search_spaces.size import CAPS as SIZE_CAPS
    from trainers.runner import cached_dataset, run_trial

    out = Path(args.out or f"results/{get_preset(args.dataset or 'digits').name}")
    why = dangerous_out(out)
    if why:
        raise NasError(f"--out {out}: {why}; pass a new folder for the study, such as results/digits")
    old_meta = {}
    if args.resume and (out / DB_NAME).exists():
        with Storage(out / DB_NAME, read_only=True) as st:
            old_meta = st.meta()
    if old_meta.get("dataset") == "user":  # a study of the user's own data: only nas.api knows it
        from nas import api

        study = api.prepare(**_api_options(args))
        return study, study.budget.trials
    _issue13_options(args, old_meta)
    for dest, key, default in FROM_STUDY:  # a resume keeps the study's settings unless told otherwise
        if getattr(args, dest, None) is None:
            setattr(args, dest, old_meta.get(key, default))
    preset = get_preset(args.dataset)
    fidelity, max_epochs = fidelity_from_args(args, preset, old_meta)  # bad settings fail before the data loads
    # Load once in the driver: checks the data early (a one-line error before any trial) and gives the
    # input shape and class count of image folders.
    image_size = getattr(args, "image_size", None)
    fractions = (getattr(args, "val_fraction", None) or 0.15, getattr(args, "test_fraction", None) or 0.2)
    data = cached_dataset(preset.name, args.data_dir, args.seed, bool(args.download), image_size, *fractions)
    input_shape, num_classes = tuple(data.input_shape), int(data.num_classes)

    space = _load_space(args, old_meta)
    probe = space.sample(seed=0)
    try:
        validate_arch(probe, num_classes=num_classes, in_chans=input_shape[0])
    except ConfigError as e:
        src = args.space or "the space"
        raise SpaceError(f"{src}: its configs do not describe a network: {e}") from None

    _note_oversized(space, input_shape, num_classes)

    def known(config: dict) -> dict:
        return count(config, input_shape=input_shape, num_classes=num_classes)

    constraints = [size_limit(input_shape, num_classes)]  # never propose what cannot be built here
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
                    score=score, n_warmup=args.warmup or 8, value_bounds=(0.0, 1.0), fidelity=fidelity,
                    objectives=objectives)
    workers = min(args.workers, trials)  # a worker beyond the trial budget would only sit idle
    name = args.executor or ("inprocess" if workers == 1 else "process")
    if name == "inprocess" and workers > 1:
        raise NasError("--executor inprocess runs one trial at a time; use --executor process for --workers > 1")
    if args.gpus_per_trial and name != "ray":
        raise NasError(f"--gpus-per-trial is a Ray resource request; with --executor {name} trials use "
                       "no GPU. Add --executor ray, or leave --gpus-per-trial out")
    if name != "inprocess" and not args.ray_address:  # workers on this machine: cores and memory
        data_bytes = sum(getattr(data, k).element_size() * getattr(data, k).nelement()
                         for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"))
        problem = check_workers(workers, force=bool(getattr(args, "force", False)),
                                per_worker_bytes=WORKER_BASE_BYTES + data_bytes)  # each holds the data
        if problem:
            raise NasError(f"--workers {workers}: {problem}; use fewer workers, or pass --force")
    executor = get_executor(name, workers=workers, ray_address=args.ray_address,
                            resources={"num_cpus": 1, "num_gpus": args.gpus_per_trial})
    meta = {
        "dataset": preset.name, "data_dir": _data_dir_key(preset.name, args.data_dir),
        "input_shape": list(input_shape), "size_caps": dict(SIZE_CAPS),
        "num_classes": num_classes, "class_names": list(data.class_names), "space": space.to_dict(),
        "score": opt.score.spec(), "objectives": objectives, "max_macs": args.max_macs, "max_params": args.max_params, "seed": args.seed,
        "trials": trials, "time_budget": args.time_budget, "direction": "maximize", "objective": "val_acc",
        "augment": preset.augment, "norm_mean": list(data.mean), "norm_std": list(data.std),
        "command": " ".join(["nas"] + sys.argv[1:]), "max_epochs": max_epochs,
        "epoch_budget": trials * max_epochs if (fidelity is not None and trials) else None,
        "precision": objective_args_precision(args),
        "data_seed": args.seed, "image_size": image_size, "val_fraction": fractions[0],
        "test_fraction": fractions[1], "device": args.device, "epochs": getattr(args, "epochs", None),
    }
    objective_args = {"dataset": preset.name, "data_dir": args.data_dir, "download": bool(args.download),
                      "data_seed": args.seed, "image_size": image_size, "val_fraction": fractions[0],
                      "test_fraction": fractions[1], "device": args.device,
                      "augment": preset.augment, "save_weights": True,
                      "threads": max(1, _cpu_count() // workers),
                      "precision": objective_args_precision(args),
                      "channels_last": False if getattr(args, "no_channels_last", False) else None}
    if fidelity is None:  # a full training of max_epochs; in multi-fidelity mode the spec's resource keys say it
        objective_args["epochs"] = max_epochs
    study = Study(out, optimizer=opt, objective=run_trial, objective_args=objective_args, budget=budget,
                  executor=executor, meta=meta, resume=args.resume,
                  on_progress=None if args.quiet else print_progress(trials))
    return study, trials


def size_limit(input_shape: tuple, num_classes: int):
    """A constraint: the config is under the size caps of search_spaces/size.py at this input (params,
    MACs, estimated training memory), so one that would take the machine's memory is never proposed."""
    from search_spaces.size import over_caps

    def ok(config: dict) -> bool:
        try:
            return over_caps(config, input_shape=input_shape, num_classes=num_classes) is None
        except ConfigError:
            return False

    ok.__name__ = "within_size_caps"
    return ok


def _note_oversized(space: Space, input_shape: tuple, num_classes: int, n: int = 200) -> None:
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
        print(f"nas search: note: {len(reasons)} of {n} sampled configs are too large to train here (e.g. "
              f"{reasons[0]}); they are never proposed", file=sys.stderr)


def _data_dir_key(dataset: str, data_dir: str | None) -> str | None:
    """The data location a study records: absolute (a resume from another folder compares equal), and
    none for digits, which is bundled and ignores --data-dir."""
    if dataset == "digits":
        return None
    from trainers.data import _default_data_dir

    return str(Path(data_dir or _default_data_dir()).expanduser().resolve())


def objective_args_precision(args) -> str:
    return getattr(args, "precision", None) or "auto"


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
        prof = profile_model(model, shape, threads=_cpu_count())  # measured with the count it states
        return {"title": f"Best network (trial {trial.id})", "html": model_section_html(prof),
                "text": format_profile(prof)}

    return section
