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

from nas.errors import ConfigError, DataError, NasError, SpaceError, StudyError
from nas.executors import get_executor
from nas.optimizer import Limit, Optimizer
from nas.score import parse_score
from nas.space import Space
from nas.storage import Storage
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
DATA_FILE = "data.pt"  # the user's in-memory data, saved in the study folder for workers, resume and export


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

    return _with_epochs(default_space(max_stages=2, channels=(8, 16), stem_channels=(8, 16), head_channels=(0, 32),
                                      max_repeats=1, batch_sizes=(64, 128), allow_stem_stride=False), epochs)


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

def _check_device(device) -> str | None:
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise NasError(f"device {device!r}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NasError(f"device {device!r}: no CUDA GPU is visible here; use device='cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise NasError(f"device {device!r}: only cpu, cuda and mps are supported")
    return str(dev)


def _check_picklable(name: str, obj, executor: str) -> None:
    if obj is None or executor == "inprocess":
        return
    try:
        pickle.dumps(obj)
    except Exception as e:
        raise NasError(f"{name} cannot be sent to {executor} workers ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:120]}); define it at module level (not a lambda, closure or "
                       "function typed into an interactive session), or use executor='inprocess'") from None


def _positive(name: str, v, *, integer: bool = True):
    if v is None:
        return None
    ok = (isinstance(v, int) if integer else isinstance(v, (int, float))) and not isinstance(v, bool) and v >= 1
    if not ok:
        raise NasError(f"{name}={v!r}: expected a whole number of at least 1" if integer else
                       f"{name}={v!r}: expected a positive number")
    return v


# ------------------------------------------------------------------------------------------------ data

def _resolve_dataset(data, dataset, data_dir, old_meta) -> str | None:
    """The data set name: 'user' for the caller's own tensors / Dataset; None for an objective search."""
    if data is not None:
        if dataset not in (None, "user", "imagefolder"):
            raise DataError(f"pass either data= or dataset={dataset!r}, not both")
        return "user"
    if dataset is not None:
        from trainers.presets import get_preset

        name = get_preset(dataset).name
        if name == "digits" and data_dir is not None:
            raise DataError(f"digits is bundled with scikit-learn, so data_dir {data_dir} would be ignored; leave "
                            "it out, or name the data set stored there (imagefolder, mnist, cifar10, ...)")
        return name
    if data_dir is not None:
        from trainers.user_data import looks_like_image_folder

        if not Path(data_dir).is_dir():
            raise DataError(f"data_dir {data_dir} does not exist")
        if not looks_like_image_folder(data_dir):
            raise DataError(f"data_dir {data_dir} is not an image folder (no class folders of images, directly or "
                            "under train/); name the data set stored there (mnist, cifar10, ...)")
        return "imagefolder"
    if old_meta.get("dataset"):
        return old_meta["dataset"]
    return "digits"


def _user_preset(input_shape):
    """Bounds for the user's own images, from the nearest shipped data set by side length."""
    from trainers.presets import get_preset

    side = min(input_shape[1:]) if len(input_shape) == 3 else 32
    return get_preset("digits" if side <= 8 else "mnist" if side <= 28 else "imagefolder")


# ------------------------------------------------------------------------------------------------ prepare

def prepare(*, data=None, dataset: str | None = None, data_dir=None, download: bool = False, val_data=None,
            test_data=None, num_classes: int | None = None, class_names=None, image_size: int | None = None,
            val_fraction: float = 0.15, test_fraction: float = 0.2, in_memory: bool | None = None,
            space=None, train: Callable | None = None, model: Callable | None = None,
            objective: Callable | None = None, direction: str = "maximize", reporter: Callable | None = None,
            out=None, trials: int | None = None, time_budget: float | None = None, max_macs: float | None = None,
            max_params: float | None = None, score: str | None = None, seed: int = 0, resume: bool = False,
            workers: int = 1, executor: str | None = None, ray_address: str | None = None,
            gpus_per_trial: float = 0.0, warmup: int | None = None, device: str | None = None,
            epochs: int | None = None, augment: str | None = "auto", precision: str = "auto",
            channels_last: bool | None = None, progress: bool = False, command: str | None = None) -> Study:
    """Check every option and build the ``Study`` that ``search`` runs (``nas search`` runs it too).

    Nothing is trained here; the data is loaded (and, when it is the caller's own in-memory data, saved
    into the study folder) so that bad input fails now, in one line, before any trial.
    """
    check_fractions(val_fraction, test_fraction)
    image_size = check_image_size(image_size)
    for name, v in (("trials", trials), ("workers", workers), ("warmup", warmup), ("epochs", epochs)):
        _positive(name, v)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise NasError(f"seed={seed!r}: expected a whole number from 0 to 2**32 - 1")
    if objective is not None and (train is not None or model is not None):
        raise NasError("objective= replaces training entirely; pass it alone, without train= or model=")
    device = _check_device(device)

    if isinstance(data, (str, os.PathLike)):  # an ImageFolder path
        if dataset not in (None, "imagefolder") or data_dir is not None:
            raise DataError("data= is a folder path: leave out dataset= and data_dir=")
        data, dataset, data_dir = None, "imagefolder", str(data)
    old_meta = _old_meta(out, resume)
    name = None if objective is not None else _resolve_dataset(data, dataset, data_dir, old_meta)
    folder = Path(out or f"results/{name or 'objective'}")
    if (folder / DB_NAME).exists() and not resume:
        raise StudyError(f"{folder} already holds a study; resume it (--resume) or choose another folder")
    ex_name = executor or ("inprocess" if workers == 1 else "process")
    if ex_name == "inprocess" and workers > 1:
        raise NasError("executor 'inprocess' runs one trial at a time; use 'process' for more than one worker")
    for label, obj in (("train", train), ("model", model), ("objective", objective), ("reporter", reporter)):
        _check_picklable(label, obj, ex_name)

    if name == "user" and data is None:  # resuming a study on the user's own data: its saved copy
        if old_meta.get("trainer") == "user" and train is None and model is None:
            raise NasError(f"{folder}: its trials ran your own train / model functions; resume it from Python "
                           "with nas.api.search(..., train=..., resume=True)")
        if not old_meta.get("data_file"):
            raise DataError(f"{folder}: its data was streamed from your Dataset; pass data= again to resume")
        from trainers.user_data import load_saved

        data = load_saved(str(folder / old_meta["data_file"]))
    if precision not in ("auto", "bf16", "fp32"):
        raise NasError(f"precision={precision!r}: choose auto, bf16 or fp32")
    meta: dict[str, Any] = {"command": command or "nas.api.search", "seed": seed, "direction": direction,
                            "precision": precision}
    args: dict[str, Any] = {"save_weights": True, "threads": max(1, cpu_count() // workers),
                            "precision": precision, "channels_last": channels_last}
    if reporter is not None:
        args["reporter"] = reporter
    if objective is not None:
        space_obj = _load_space(space, None, epochs, old_meta, cnn_default=False)
        known, fn, value_bounds = None, _objective_fn(), None
        args.update({"user_objective": objective})
        meta.update({"dataset": None, "trainer": "objective", "objective": getattr(objective, "__name__", "objective")})
        preset = None
    else:
        source, preset, info = _load_data(name, data, data_dir, download, val_data, test_data, num_classes,
                                          class_names, image_size, val_fraction, test_fraction, in_memory, seed)
        space_obj = _load_space(space, preset, epochs, old_meta, cnn_default=True)
        cnn = _is_cnn(space_obj, info, model)
        known = _known_fn(info) if cnn else None
        value_bounds = (0.0, 1.0)
        fn = _trial_fn(train, source, model)
        if fn.__name__ == "run_trial" and not cnn:
            raise SpaceError(f"{space if isinstance(space, (str, os.PathLike)) else 'the space'}: its configs do not "
                             f"describe a network ({_arch_error(space_obj, info)}); pass model= or objective= for a "
                             "space that is not a CNN")
        _check_picklable("data", source if not _is_tensor_data(source) else None, ex_name)
        data_args = _data_args(name, source, folder, data_dir, download, seed, image_size, val_fraction,
                               test_fraction, old_meta)
        augment = (None if name == "user" else preset.augment) if augment == "auto" else augment
        if model is not None and train is None and not _is_tensor_data(source):
            raise DataError("the built-in trainer needs the data in memory; pass train= for a streamed Dataset")
        args.update(data_args, augment=augment, user_train=train, user_model=model, device=device, epochs=epochs)
        meta.update(info, dataset=name, data_dir=None if data_dir is None else str(data_dir), augment=augment,
                    trainer="builtin" if train is None and model is None else "user", model="builtin" if model is None else "user",
                    image_size=image_size, val_fraction=val_fraction, test_fraction=test_fraction, data_seed=seed,
                    device=device, epochs=epochs, data_file=data_args.get("data_file"),
                    data_key=data_args.get("data_key"), objective="val_acc")

    constraints = []
    for limit, key in ((max_macs, "macs"), (max_params, "params")):
        if limit is not None:
            if known is None:
                raise NasError(f"max_{key} needs a CNN space that lightnas builds (its {key} are counted exactly)")
            constraints.append(Limit(key, limit))
    if preset is not None and preset.max_downsamples and space is None and known is not None:
        constraints.append(downsample_limit(preset.max_downsamples))
    targets = dict(DEFAULT_TARGETS.get(getattr(preset, "name", ""), {})) if known is not None else {}
    if max_macs:
        targets["macs"] = min(targets.get("macs", max_macs), max_macs)
    if max_params:
        targets["params"] = max_params
    score_obj = parse_score(score or ("mnas" if known is not None else "acc"), default_targets=targets)
    if trials is None and time_budget is None and preset is None:
        raise NasError("give a budget: trials=N and/or time_budget=SECONDS")
    n_trials = trials if trials is not None or preset is None else preset.trials  # with a time budget too
    budget = Budget(trials=n_trials, seconds=time_budget)
    opt = Optimizer(space_obj, direction=direction, seed=seed, constraints=constraints, known=known,
                    score=score_obj, n_warmup=warmup or 8, value_bounds=value_bounds)
    ex = get_executor(ex_name, workers=workers, ray_address=ray_address,
                      resources={"num_cpus": 1, "num_gpus": gpus_per_trial})
    meta.update(space=space_obj.to_dict(), score=score_obj.spec(), max_macs=max_macs, max_params=max_params,
                trials=n_trials, time_budget=time_budget)
    return Study(folder, optimizer=opt, objective=fn, objective_args=args, budget=budget, executor=ex, meta=meta,
                 resume=resume, on_progress=print_progress(n_trials) if progress else None)


def _old_meta(out, resume) -> dict:
    if resume and out is not None and (Path(out) / DB_NAME).exists():
        with Storage(Path(out) / DB_NAME, read_only=True) as st:
            return st.meta()
    return {}


def _is_tensor_data(source) -> bool:
    from trainers.data import TensorData

    return isinstance(source, TensorData)


def _load_data(name, data, data_dir, download, val_data, test_data, num_classes, class_names, image_size,
               val_fraction, test_fraction, in_memory, seed):
    """(the data, its preset, the meta entries describing it)."""
    from trainers.presets import get_preset

    if name == "user":
        from trainers.user_data import prepare_data

        if image_size is not None:
            raise DataError("image_size resizes image folders and torchvision data sets; resize your own tensors "
                            "or Dataset yourself")
        source = data if _is_tensor_data(data) else prepare_data(
            data, val_data=val_data, test_data=test_data, num_classes=num_classes, class_names=class_names,
            seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, in_memory=in_memory)
        preset = _user_preset(tuple(source.input_shape))
    else:
        if val_data is not None or test_data is not None:
            raise DataError("val_data= / test_data= go with data= tensors or a Dataset; an image folder takes val/ "
                            "and test/ subfolders")
        if name == "digits" and image_size not in (None, 8):
            raise DataError("digits images are 8x8; image_size applies to image folders and torchvision data sets")
        from trainers.runner import cached_dataset

        source = cached_dataset(name, None if data_dir is None else str(data_dir), seed, bool(download), image_size,
                                val_fraction, test_fraction)
        preset = get_preset(name)
    info = {"input_shape": list(source.input_shape), "num_classes": int(source.num_classes),
            "class_names": list(source.class_names), "norm_mean": list(source.mean), "norm_std": list(source.std)}
    return source, preset, info


def _data_args(name, source, folder: Path, data_dir, download, seed, image_size, val_fraction, test_fraction,
               old_meta) -> dict:
    """What the trial spec carries to find the data again, in any worker."""
    if name != "user":
        return {"dataset": name, "data_dir": None if data_dir is None else str(data_dir), "download": bool(download), "data_seed": seed, "image_size": image_size,
                "val_fraction": val_fraction, "test_fraction": test_fraction}
    if not _is_tensor_data(source):
        return {"stream_data": source}
    from trainers.user_data import data_key, save_data

    key = data_key(source)
    if old_meta.get("data_key") not in (None, key):
        raise StudyError(f"{folder}: resume with other data than the study's; pass the same data, or another folder")
    if old_meta.get("data_key") != key or not (folder / DATA_FILE).exists():
        save_data(source, folder / DATA_FILE)
    return {"data_file": DATA_FILE, "data_key": key}


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
    if isinstance(space, (str, os.PathLike)):
        return _fix_epochs(Space.load(space), epochs)
    if space is not None:
        raise SpaceError(f"space: expected a nas.Space or a YAML / JSON file, got a {type(space).__name__}")
    if old_meta.get("space"):
        return Space.from_dict(old_meta["space"], source="study space")
    if not cnn_default:
        raise SpaceError("objective= needs space= (a nas.Space or a YAML / JSON file)")
    return default_space_for(preset.name, epochs=epochs)


def _arch_error(space: Space, info) -> str:
    from search_spaces.arch import validate_arch

    try:
        validate_arch(space.sample(seed=0), num_classes=info["num_classes"], in_chans=info["input_shape"][0])
    except ConfigError as e:
        return str(e)
    return "not images"


def _is_cnn(space: Space, info, model) -> bool:
    """Whether lightnas builds (and counts) the network of this space's configs."""
    if model is not None or len(info["input_shape"]) != 3:
        return False
    from search_spaces.arch import validate_arch

    try:
        validate_arch(space.sample(seed=0), num_classes=info["num_classes"], in_chans=info["input_shape"][0])
    except ConfigError:
        return False
    return True


def _known_fn(info):
    from functools import partial

    from search_spaces.counting import count

    return partial(count, input_shape=tuple(info["input_shape"]), num_classes=info["num_classes"])


def _trial_fn(train, source, model=None):
    if train is None and model is None:
        if not _is_tensor_data(source):
            raise DataError("the built-in trainer needs the data in memory; pass train= (your function reads "
                            "data.loader(...)), or in_memory=True if it fits")
        from trainers.runner import run_trial

        return run_trial
    from trainers.user_trial import run_user_trial

    return run_user_trial


def _objective_fn():
    from nas.user_fn import run_objective

    return run_objective


# ------------------------------------------------------------------------------------------------ run

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

    view = load_study(study.folder)
    if view.best is None:
        errors = [t.error for t in view.trials if t.error]
        first = " ".join(str(errors[0]).split())[:300] if errors else "no trial finished"
        raise NasError(f"{study.folder}: none of the {len(view.trials)} trials completed; the first error: {first}")
    return view


def report(study, *, top: int = 10, files: bool = True, profile: bool = True) -> str:
    """The text ``nas report`` prints; with ``files`` it also writes trials.csv, pareto.csv, plots and
    report.html into the study folder (``profile``: the best network's latency and FLOP table)."""
    from nas.report import format_summary, load_study, write_report

    view = load_study(study)
    text = format_summary(view, top=top)
    if files:
        written = write_report(study, model_section=model_section(view) if profile else None)
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
        return {"title": f"Best network (trial {trial.id})", "html": model_section_html(prof),
                "text": format_profile(prof)}

    return section
