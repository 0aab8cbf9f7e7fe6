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

model.py is written by ``nas.export_source`` from the block modules' own source; nothing read from a study
goes into it but checked plain values (see there). Before the export folder appears, the written module is
imported and compared with ``search_spaces``' builder on one random batch.

Part of the composition layer (tests/test_layers.py): with nas.export_source, nas.api, nas.cli and
nas.cli_wiring, the only parts of ``nas`` that import torch and the CNN packages.

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

import torch

from nas.errors import ConfigError, NasError, StudyError
from nas.export_source import _real, _shape, _short, arch_literal, model_source
from nas.fsutil import atomic_folder, atomic_write_bytes, atomic_write_text, dangerous_out, foreign_files
from nas.report import load_study
from nas.trial import COMPLETE, PAUSED, Trial
from search_spaces.size import check_size

__all__ = ["export_study", "model_source", "arch_literal"]

_ATOL = 1e-5  # generated model vs search_spaces' on one random batch: float32 noise is ~1e-7
_module_ids = itertools.count()


# --- the study side ----------------------------------------------------------------------------


def _choose(view, trial_id: int | None) -> Trial:
    if trial_id is None:
        best = view.best
        if best is None:
            raise StudyError(
                f"{view.path}: no complete trial to export yet (multi-fidelity: none reached the top "
                "rung); run `nas search` until one finishes, or pick one with --trial (see `nas report`)"
            )
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
        raise StudyError(
            f"{view.path}: trial {trial_id} is {t.status}{why}; export a complete trial "
            "(leave out --trial for the best one)"
        )
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
            raise ConfigError(
                "norm_mean / norm_std missing (studies from `nas search` store them); "
                "rerun the search with this version of lightnas"
            )
        for key, v in (("norm_mean", mean), ("norm_std", std)):
            if not isinstance(v, list) or len(v) != shape[0]:
                raise ConfigError(f"{key} is {_short(v)}, not one number per channel ({shape[0]})")
            for x in v:
                _real(x, key, integer=False)
    except (ConfigError, TypeError, ValueError) as e:  # TypeError / ValueError: edited into other types
        raise StudyError(f"{where}: {e}; the database was edited or damaged") from None
    return {
        "input_shape": shape,
        "num_classes": num_classes,
        "class_names": list(names),
        "mean": list(mean),
        "std": list(std),
    }


def _saved_state(view, trial: Trial) -> dict:
    from trainers.runner import weights_path

    path = weights_path(view.path, trial.id)
    if not path.is_file():
        raise StudyError(
            f"{view.path}: trial {trial.id} kept no weights ({path} missing); export without --no-retrain to retrain it"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        # torch's message for a file holding objects ends in advice to pass weights_only=False, which
        # would run whatever the file holds: never echo it.
        why = (
            "it holds objects other than tensors, which are never unpickled"
            if "weights_only" in str(e)
            else " ".join(str(e).split())[:200]
        )
        raise StudyError(
            f"{path}: not readable as weights ({why}); export without --no-retrain to retrain the trial"
        ) from None
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
        print(
            f"nas export: retraining trial {trial_id}: epoch {entry['epoch']}/{epochs}, train loss "
            f"{entry['train_loss']:.4f}, {entry['elapsed']:.1f}s",
            file=stream,
            flush=True,
        )

    return show


def _retrain(view, trial: Trial, info: dict, *, progress=None) -> tuple[dict, float, dict]:
    """Train the trial's config from scratch on train + val (same split, seed and epochs as the search),
    with the search's thread rule (one thread for small networks)."""
    from search_spaces.builder import build_model
    from trainers import train as train_mod
    from trainers.runner import _threads_for, fixed_epochs, trial_data

    meta = view.meta
    if meta.get("trainer", "builtin") != "builtin":
        raise NasError(
            f"{view.path}: its trials were trained by your own train function, which export cannot "
            "call; export the trial's own weights (--no-retrain, or retrain=False)"
        )
    spec = _data_spec(view)
    data = trial_data(spec)
    if tuple(data.input_shape) != tuple(info["input_shape"]) or not _close(data.mean, info["mean"]):
        raise StudyError(
            f"{view.path}: the data set now loads differently from the search (shape "
            f"{tuple(data.input_shape)} vs {tuple(info['input_shape'])}, or other statistics); "
            "export with --no-retrain, or restore the data the search used"
        )
    # Validation images join the training set; the val split is left empty (the search already chose).
    full = dataclasses.replace(
        data,
        x_train=torch.cat([data.x_train, data.x_val]),
        y_train=torch.cat([data.y_train, data.y_val]),
        x_val=data.x_val[:0],
        y_val=data.y_val[:0],
    )
    # The search's full run length: a fixed --epochs, else the study's max_epochs (epochs are not searched).
    config = fixed_epochs({"epochs": meta.get("epochs") or meta.get("max_epochs")}, trial.config)
    c = info["input_shape"][0]
    from nas.api import cpu_count

    threads = _threads_for(config, data, cpu_count())
    epochs = int({**train_mod.TRAIN_DEFAULTS, **config}["epochs"])
    try:
        result = train_mod.train_trial(
            config,
            full,
            seed=trial.seed,
            keep_weights=True,
            augment=meta.get("augment"),
            num_threads=threads,
            precision=meta.get("precision") or "auto",
            model=lambda: build_model(config, num_classes=info["num_classes"], in_chans=c),
            on_epoch=_epoch_line(trial.id, epochs, progress) if progress is not None else None,
        )
    except train_mod.TrialFailed as e:
        raise NasError(
            f"retraining trial {trial.id} failed ({e.reason}); export its own weights with "
            "--no-retrain or choose another --trial"
        ) from None
    details = {
        "epochs": result.epochs_run,
        "seed": trial.seed,
        "train_images": len(full.y_train),
        "train_time": result.train_time,
        "test_acc": result.test_acc,
        "threads": threads or cpu_count(),
    }
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
            torch.onnx.export(
                net,
                (example,),
                buf,
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    except Exception as e:  # an optional extra: a failure is noted, not fatal
        return None, f"model.onnx skipped: torch.onnx.export failed ({' '.join(str(e).split())[:200]})"
    return buf.getvalue(), None


# --- entry point -------------------------------------------------------------------------------


def export_study(study_dir, *, out, trial_id: int | None = None, retrain: bool = True, progress=True) -> list[str]:
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
        raise NasError(
            f"--out {out} holds other files ({', '.join(other[:3])}); an export replaces its "
            "folder as a whole: choose another --out (a new or empty folder, or an old export)"
        )
    view = load_study(study_dir)
    trial = _choose(view, trial_id)
    info = _study_meta(view)
    try:  # check the config and write the source before spending minutes on retraining
        check_size(trial.config, input_shape=info["input_shape"], num_classes=info["num_classes"], train=retrain)
        source = model_source(
            trial.config,
            input_shape=info["input_shape"],
            mean=info["mean"],
            std=info["std"],
            class_names=info["class_names"],
            trial_id=trial.id,
        )
    except ConfigError as e:
        raise ConfigError(f"{view.path}: cannot export trial {trial.id}: {e}") from None
    with atomic_folder(out) as staging:  # an export killed or failing half-way leaves no folder behind
        names = _write_export(view, trial, info, source, staging, retrain, progress)
    return [str(out / n) for n in names]


# Files an export writes; an existing --out holding only these (or nothing) is replaced as a whole.
_EXPORT_FILES = {"model.py", "weights.pt", "config.json", "model.ts", "model.onnx", "__pycache__"}


def _write_export(view, trial: Trial, info: dict, source: str, out: Path, retrain: bool, progress=True) -> list[str]:
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
        raise StudyError(
            f"{view.path}: trial {trial.id}'s weights do not fit its config "
            f"({' '.join(str(e).split())[:200]}); export without --no-retrain"
        ) from None
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
