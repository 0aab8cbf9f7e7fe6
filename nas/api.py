"""Search on your own data, training code and search space: the Python face of ``nas search``.

``nas search`` is a thin layer over ``prepare`` (below): the same study folder, resume, executors, report
and export. This is a composition-layer module (like ``nas.cli``): it imports ``search_spaces`` and
``trainers`` lazily, only when a search needs them, so ``objective=`` searches never import torch.

What can be searched:
    data        ``dataset="digits"`` (or mnist, cifar10, ...), an ImageFolder path, ``(x, y)`` tensors or
                arrays, or a ``torch.utils.data.Dataset`` of (image, label) pairs (streamed through
                DataLoaders when it does not fit in memory); ``val_data=`` / ``test_data=``: your own splits
    training    the built-in trainer, or ``train=fn`` with ``fn(model, config, data, report) -> val_acc``
    space       the shipped CNN space (default), a YAML / JSON file, or a ``nas.Space``; a space that is not
                a CNN needs ``model=fn`` (``fn(config, data) -> nn.Module``) or ``objective=fn``
                (``fn(config) -> number``: any black box, nothing trained by lightnas)

Example (digits, two short trials of a user training loop):

>>> import torch
>>> from nas.api import search, small_cnn_space
>>> from sklearn.datasets import load_digits
>>> d = load_digits()
>>> x, y = torch.tensor(d.images[:, None] / 16, dtype=torch.float32), torch.tensor(d.target)
>>> def train(model, config, data, report):
...     opt = torch.optim.Adam(model.parameters(), lr=1e-2)
...     for epoch in range(1, 3):
...         for xb, yb in data.loader("train", batch_size=64):
...             opt.zero_grad()
...             torch.nn.functional.cross_entropy(model(xb), yb).backward()
...             opt.step()
...         acc = data.accuracy(model, "val")
...         if not report(epoch, acc):
...             break
...     return acc
>>> import tempfile; folder = tempfile.mkdtemp()
>>> view = search(data=(x, y), train=train, trials=2, warmup=2, out=folder,
...                   space=small_cnn_space())
>>> [t.status for t in view.trials], view.best.value > 0.5
(['complete', 'complete'], True)
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

from nas.api_data import (
    DATA_FILE,  # noqa: F401  (re-exported)
    check_device,
    data_args,
    data_dir_key,
    default_name,
    is_path,
    is_tensor_data,
    load_data,
    resolve_dataset,
    saved_user_data,
)
from nas.api_study import (
    PARETO_OBJECTIVES,
    check_fidelity_options,
    check_local_workers,
    config_sizes,
    constraints_and_targets,
    executor_name,
    from_study,
    note_oversized,
    old_meta,
    resolve_fidelity,
)
from nas.errors import ConfigError, DataError, NasError, SpaceError, StudyError
from nas.executors import get_executor
from nas.fsutil import dangerous_out
from nas.optimizer import Optimizer
from nas.options import on_cli, said, shown
from nas.score import parse_score
from nas.space import Space
from nas.study import DB_NAME, Budget, Study, print_progress
from nas.user_fn import check_fractions, check_image_size

__all__ = ["search", "prepare", "report", "export", "default_space_for", "small_cnn_space"]

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


def default_space_for(dataset: str, *, epochs: int | None = None) -> Space:
    """The shipped CNN + training space with the bounds of a data set's preset (``epochs``: fixed length)."""
    from search_spaces.default import default_space
    from trainers.presets import get_preset

    return _with_epochs(default_space(**get_preset(dataset).space_bounds), epochs)


def _with_epochs(space: Space, epochs: int | tuple | None) -> Space:
    """Epochs are not a parameter of the shipped space (the run length comes from the study); a fixed or
    searched ``epochs`` asked for here becomes one, which the trial runner honours when nothing else says."""
    from nas.space import Constant, Integer

    if epochs is None:
        return space
    param = Constant("epochs", int(epochs)) if isinstance(epochs, int) else Integer("epochs", *map(int, epochs))
    return Space([*space.root.params, param], name=space.name)


def small_cnn_space(*, epochs: int | tuple = (1, 2)) -> Space:
    """A tiny CNN space (two narrow stages) for examples and tests: a digits trial trains in about a second."""
    from search_spaces.default import default_space

    return _with_epochs(
        default_space(
            max_stages=2,
            channels=(8, 16),
            stem_channels=(8, 16),
            head_channels=(0, 32),
            max_repeats=1,
            batch_sizes=(64, 128),
            allow_stem_stride=False,
        ),
        epochs,
    )


def downsample_limit(max_downsamples: int):
    """A constraint: at most ``max_downsamples`` stride-2 layers (stem included), so small inputs keep
    some spatial extent for the last stages."""

    def ok(config: dict) -> bool:
        n = int(config.get("stem", {}).get("stride", 1) == 2)
        n += sum(int(s.get("stride", 1) == 2) for s in config.get("stages", []))
        return n <= max_downsamples

    ok.__name__ = f"at_most_{max_downsamples}_downsamples"
    return ok


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------------ checks


def _check_picklable(name: str, obj, executor: str) -> None:
    if obj is None or executor == "inprocess":
        return
    try:
        pickle.dumps(obj)
    except Exception as e:
        raise NasError(
            f"{name} cannot be sent to {executor} workers ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:120]}); define it at module level (not a lambda, closure or "
            "function typed into an interactive session), or use executor='inprocess'"
        ) from None


def _positive(name: str, v):
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise NasError(f"{said(name, v)}: expected a whole number of at least 1")
    return v


def _check_options(o: dict) -> None:
    """The checks that need nothing loaded; each option is checked here, once."""
    check_fractions(o["val_fraction"], o["test_fraction"])
    o["image_size"] = check_image_size(o["image_size"])
    for name in ("trials", "workers", "warmup", "epochs", "min_epochs", "max_epochs", "eta"):
        _positive(name, o[name])
    seed = o["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32):
        raise NasError(f"{said('seed', seed)}: expected a whole number from 0 to 2**32 - 1")
    if o["objective"] is not None and (o["train"] is not None or o["model"] is not None):
        raise NasError("objective= replaces training entirely; pass it alone, without train= or model=")
    if o["precision"] not in (None, "auto", "bf16", "fp32"):
        raise NasError(f"{said('precision', o['precision'])}: choose auto, bf16 or fp32")
    check_fidelity_options(o["fidelity"], o["epochs"])
    o["device"] = check_device(o["device"])


# ------------------------------------------------------------------------------------------------ prepare


def prepare(
    *,
    data=None,
    dataset: str | None = None,
    data_dir=None,
    download: bool = False,
    val_data=None,
    test_data=None,
    num_classes: int | None = None,
    class_names=None,
    image_size: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    in_memory: bool | None = None,
    space=None,
    train: Callable | None = None,
    model: Callable | None = None,
    objective: Callable | None = None,
    direction: str = "maximize",
    reporter: Callable | None = None,
    out=None,
    trials: int | None = None,
    time_budget: float | None = None,
    max_macs: float | None = None,
    max_params: float | None = None,
    score: str | None = None,
    pareto: bool = False,
    seed: int | None = None,
    resume: bool = False,
    workers: int = 1,
    executor: str | None = None,
    ray_address: str | None = None,
    gpus_per_trial: float = 0.0,
    force: bool = False,
    warmup: int | None = None,
    device: str | None = None,
    epochs: int | None = None,
    fidelity: str | None = None,
    min_epochs: int | None = None,
    max_epochs: int | None = None,
    eta: int | None = None,
    augment: str | None = "auto",
    precision: str | None = None,
    channels_last: bool | None = None,
    progress: bool = False,
    command: str | None = None,
) -> Study:
    """Check every option and build the ``Study`` that ``search`` runs (``nas search`` runs it too).

    Nothing is trained here; the data is loaded (and, when it is the caller's own in-memory data, saved
    into the study folder) so that bad input fails now, in one line, before any trial. A resume takes the
    study's seed, score, limits, precision, data set and fidelity settings where they are not given.
    Fidelity: ``"on"`` (successive halving between ``min_epochs`` and ``max_epochs``, the built-in trainer
    only), ``"off"`` (every trial trains ``max_epochs``; ``epochs=E`` is ``"off"`` with E), or None: a resumed
    study's own mode, else on for the built-in trainer on a named data set (as ``nas search``) and off
    otherwise (your own data or training function: the config's ``epochs``, if any, says how long).
    ``pareto=True``: the accuracy-MACs-params front instead of one ``score``.
    """
    o = dict(locals())
    _check_options(o)
    device, image_size = o["device"], o["image_size"]
    if is_path(data):  # an ImageFolder path
        if dataset not in (None, "imagefolder") or data_dir is not None:
            raise DataError("data= is a folder path: leave out dataset= and data_dir=")
        data, dataset, data_dir = None, "imagefolder", str(data)
    folder = (
        Path(out)
        if out is not None
        else Path("results") / ("objective" if objective is not None else default_name(data, dataset, data_dir))
    )
    why = dangerous_out(folder)
    if why:
        raise NasError(f"{said('out', str(folder))}: {why}; pass a new folder for the study, such as results/digits")
    old = old_meta(folder, resume)
    if (folder / DB_NAME).exists() and not resume:
        raise StudyError(f"{folder} already holds a study; resume it ({shown('resume')}) or choose another folder")
    seed, score, max_macs, max_params, precision = (
        from_study(o, old)[k] for k in ("seed", "score", "max_macs", "max_params", "precision")
    )
    ex_name = executor or ("inprocess" if workers == 1 else "process")  # checked below, once the trials are known
    for label, obj in (("train", train), ("model", model), ("objective", objective), ("reporter", reporter)):
        _check_picklable(label, obj, ex_name)

    meta: dict[str, Any] = {
        "command": command or "nas.api.search",
        "seed": seed,
        "direction": direction,
        "precision": precision,
    }
    args: dict[str, Any] = {"save_weights": True, "precision": precision, "channels_last": channels_last}
    if reporter is not None:
        args["reporter"] = reporter
    fid, source = None, None
    if objective is not None:
        if fidelity == "on" or min_epochs or max_epochs or eta:
            raise NasError(f"{shown('fidelity')} and its epochs are for networks lightnas trains, not objective=")
        space_obj = _load_space(space, None, epochs, old, cnn_default=False)
        known, fits, fn, value_bounds, preset = None, None, _objective_fn(), None, None
        args.update({"user_objective": objective})
        meta.update({"dataset": None, "trainer": "objective", "objective": getattr(objective, "__name__", "objective")})
    else:
        name = resolve_dataset(data, dataset, data_dir, old)
        if data_dir is None and data is None:  # a resume: the study's data location
            data_dir = old.get("data_dir")
        if name == "user" and data is None:  # resuming a study on the user's own data: its saved copy
            data = saved_user_data(folder, old, train is not None or model is not None)
        builtin = train is None and model is None
        fid_options = (fidelity, min_epochs, max_epochs, eta)
        fid_default = "on" if builtin and name != "user" else "off"
        if name != "user":  # bad settings fail before the data loads
            from trainers.presets import get_preset

            resolve_fidelity(*fid_options, epochs=epochs, preset=get_preset(name), meta=old, default=fid_default)
        source, preset, info = load_data(
            name,
            data,
            data_dir,
            download,
            val_data,
            test_data,
            num_classes,
            class_names,
            image_size,
            val_fraction,
            test_fraction,
            in_memory,
            seed,
        )
        fid, top = resolve_fidelity(*fid_options, epochs=epochs, preset=preset, meta=old, default=fid_default)
        fn = _trial_fn(train, model, source)
        if fid is not None and not (builtin and is_tensor_data(source)):
            raise NasError(
                f"{said('fidelity', 'on')} needs the built-in trainer on data in memory; your own train / "
                f"model functions and streamed data train whole runs (use {said('fidelity', 'off')})"
            )
        space_obj = _load_space(space, preset, epochs, old, cnn_default=True)
        problem = _arch_problem(space_obj, info, model)
        known, fits = config_sizes(tuple(info["input_shape"]), info["num_classes"]) if problem is None else (None, None)
        value_bounds = (0.0, 1.0)
        if builtin and problem is not None:
            src = space if is_path(space) else "the space"
            hint = "" if on_cli() else "; pass model= or objective= for a space that is not a CNN"
            raise SpaceError(f"{src}: its configs do not describe a network ({problem}){hint}")
        if fits is not None:
            note_oversized(space_obj, tuple(info["input_shape"]), info["num_classes"])
        _check_picklable("data", source if not is_tensor_data(source) else None, ex_name)
        # The run length the study fixes: the named data sets' (as nas search), or the one asked for; else the
        # config's own epochs (the user's space) or the preset's.
        fixed = epochs or max_epochs or (top if builtin and name != "user" else None)
        data_args_ = data_args(
            name, source, folder, data_dir, download, seed, image_size, val_fraction, test_fraction, old
        )
        augment = (None if name == "user" else preset.augment) if augment == "auto" else augment
        args.update(data_args_, augment=augment, user_train=train, user_model=model, device=device)
        if fid is None and fixed:
            args["epochs"] = fixed  # in multi-fidelity mode the spec's resource keys say it
        meta.update(
            info,
            dataset=name,
            augment=augment,
            trainer="builtin" if builtin else "user",
            data_dir=data_dir_key(name, data_dir) if name != "user" else None,
            model="builtin" if model is None else "user",
            image_size=image_size,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            data_seed=seed,
            device=device,
            epochs=epochs,
            data_file=data_args_.get("data_file"),
            data_key=data_args_.get("data_key"),
            objective="val_acc",
            max_epochs=top if (fid is not None or fixed) else None,
        )
        if fits is not None:
            from search_spaces.size import CAPS

            meta["size_caps"] = dict(CAPS)

    downsamples = (
        downsample_limit(preset.max_downsamples)
        if preset is not None and preset.max_downsamples and space is None
        else None
    )
    constraints, targets = constraints_and_targets(
        fits=fits,
        max_macs=max_macs,
        max_params=max_params,
        downsamples=downsamples,
        default_targets=DEFAULT_TARGETS.get(getattr(preset, "name", ""), {}),
    )
    objectives = PARETO_OBJECTIVES if pareto else None
    if pareto and known is None:
        raise NasError(f"{shown('pareto')} needs a CNN space that lightnas builds (MACs and params are counted)")
    score_obj = (
        None if pareto else parse_score(score or ("mnas" if known is not None else "acc"), default_targets=targets)
    )
    if trials is None and time_budget is None and preset is None:
        raise NasError(f"give a budget: {shown('trials')} and/or {shown('time_budget')} (seconds)")
    n_trials = trials if trials is not None or preset is None else preset.trials  # with a time budget too
    budget = Budget(trials=n_trials, seconds=time_budget)
    opt = Optimizer(
        space_obj,
        direction=direction,
        seed=seed,
        constraints=constraints,
        known=known,
        score=score_obj,
        n_warmup=warmup or 8,
        value_bounds=value_bounds,
        fidelity=fid,
        objectives=objectives,
    )
    n_workers = min(workers, n_trials) if n_trials else workers  # a worker beyond the trial budget sits idle
    ex_name = executor_name(executor, n_workers)
    check_local_workers(
        ex_name, n_workers, gpus_per_trial=gpus_per_trial, ray_address=ray_address, force=force, data=source
    )
    args["threads"] = max(1, cpu_count() // n_workers)
    ex = get_executor(
        ex_name, workers=n_workers, ray_address=ray_address, resources={"num_cpus": 1, "num_gpus": gpus_per_trial}
    )
    meta.update(
        space=space_obj.to_dict(),
        score=opt.score.spec(),
        objectives=objectives,
        max_macs=max_macs,
        max_params=max_params,
        trials=n_trials,
        time_budget=time_budget,
        epoch_budget=n_trials * fid.max_resource if (fid is not None and n_trials) else None,
    )
    return Study(
        folder,
        optimizer=opt,
        objective=fn,
        objective_args=args,
        budget=budget,
        executor=ex,
        meta=meta,
        resume=resume,
        on_progress=print_progress(n_trials) if progress else None,
    )


def _fix_epochs(space: Space, epochs: int | None) -> Space:
    """With a fixed training length, a top-level ``epochs`` parameter becomes that constant, so the stored
    configs say what every trial trained (and the GP wastes no dimension on it)."""
    from nas.space import Constant

    params = space.root.params
    if epochs is None or not any(p.name == "epochs" for p in params):
        return space
    return Space([Constant("epochs", int(epochs)) if p.name == "epochs" else p for p in params], name=space.name)


def _load_space(space, preset, epochs, old_meta, *, cnn_default: bool) -> Space:
    if isinstance(space, Space):
        return _fix_epochs(space, epochs)
    if is_path(space):
        return _fix_epochs(Space.load(space), epochs)
    if space is not None:
        raise SpaceError(f"space: expected a nas.Space or a YAML / JSON file, got a {type(space).__name__}")
    if old_meta.get("space"):
        return Space.from_dict(old_meta["space"], source="study space")
    if not cnn_default:
        raise SpaceError("objective= needs space= (a nas.Space or a YAML / JSON file)")
    return default_space_for(preset.name, epochs=epochs)


def _arch_problem(space: Space, info, model) -> str | None:
    """None when lightnas builds (and counts) the network of this space's configs, else why not."""
    if model is not None:
        return "the network is your model="
    if len(info["input_shape"]) != 3:
        return "not images"
    from search_spaces.arch import validate_arch

    try:
        validate_arch(space.sample(seed=0), num_classes=info["num_classes"], in_chans=info["input_shape"][0])
    except ConfigError as e:
        return str(e)
    return None


def _trial_fn(train, model, source):
    """The built-in trainer on in-memory data (trainers.runner: segments, time limits); else a trial that hands
    the network to a train function: the user's, or the built-in one reading batches through DataLoaders."""
    if train is None and model is None and is_tensor_data(source):
        from trainers.runner import run_trial

        return run_trial
    from trainers.user_trial import run_user_trial

    return run_user_trial


def _objective_fn():
    from nas.user_fn import run_objective

    return run_objective


# ------------------------------------------------------------------------------------------------ run


def _summaries(options: dict) -> dict:
    """The report's extra columns: the CNN's "blocks" where lightnas builds the network (an objective or the
    user's own model has none; an objective search stays free of torch and the CNN packages)."""
    if options.get("objective") is not None or options.get("model") is not None:
        return {}
    from search_spaces.summary import SUMMARIES

    return SUMMARIES


def search(**options):
    """Run a search (keyword options as ``prepare``) and return the finished study (``nas.load_study``):
    ``.best``, ``.trials``, ``.trials_dataframe()``, ``.pareto_front()``.

    Trials that fail are recorded with their error and the search goes on; when no trial at all completes,
    NasError gives the first error in one line.
    """
    study = prepare(**options)
    try:
        study.run()
    finally:
        study.executor.shutdown()
    if options.get("progress"):
        print(file=sys.stderr)
    from nas.report import load_study

    view = load_study(study.folder, summaries=_summaries(options))
    if view.best is None:
        errors = [t.error for t in view.trials if t.error]
        first = " ".join(str(errors[0]).split())[:300] if errors else "no trial finished"
        raise NasError(f"{study.folder}: none of the {len(view.trials)} trials completed; the first error: {first}")
    return view


def report(study, *, top: int = 10, files: bool = True, profile: bool = True) -> str:
    """The text ``nas report`` prints; with ``files`` it also writes trials.csv, pareto.csv, plots and
    report.html into the study folder (``profile``: the best network's latency and FLOP table)."""
    from nas.report import format_summary, load_study, write_report
    from search_spaces.summary import SUMMARIES

    view = load_study(study, summaries=SUMMARIES)
    text = format_summary(view, top=top)
    if files:
        written = write_report(study, model_section=model_section(view) if profile else None, summaries=SUMMARIES)
        text += "\n\nwrote: " + ", ".join(str(Path(f).name) for f in written.values())
    return text


def export(study, *, out, trial: int | None = None, retrain: bool = True, progress=True) -> list[str]:
    """``nas export``: model.py, weights.pt, config.json, model.ts and model.onnx of the best or a chosen
    trial; ``progress``: one line per retraining epoch on stderr. See ``nas.export.export_study``."""
    from nas.export import export_study

    return export_study(study, out=out, trial_id=trial, retrain=retrain, progress=progress)


def model_section(view):
    """For reports: fvcore's per-module table and CPU latency of the best trial's network."""
    meta = view.meta
    shape = tuple(meta.get("input_shape") or ())
    if len(shape) != 3 or "num_classes" not in meta or meta.get("model", "builtin") != "builtin":
        return None
    from search_spaces.builder import build_model
    from search_spaces.profile import format_profile, model_section_html, profile_model

    def section(trial) -> dict:
        net = build_model(trial.config, num_classes=int(meta["num_classes"]), in_chans=shape[0])
        prof = profile_model(net, shape, threads=cpu_count())
        return {
            "title": f"Best network (trial {trial.id})",
            "html": model_section_html(prof),
            "text": format_profile(prof),
        }

    return section
