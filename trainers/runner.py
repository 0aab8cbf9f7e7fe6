"""One NAS trial, as the search loop's objective: load the data (cached per process), build the network
from the config, train it (a whole run, or one segment of it), save its weights, return validation accuracy.

``run_trial(spec)`` is module-level so executors can pickle it. ``spec`` is a ``nas.spec.TrialSpec`` (or a
dict with its keys): ``trial_id``, ``config``, ``seed``, ``study_dir``, ``known`` (the study's MACs and
params of the config), ``threads``, and in ``extra`` the objective arguments ``nas.api`` sets: ``dataset``,
``data_dir``, ``download``, ``data_seed``, ``image_size``, ``val_fraction``, ``test_fraction`` (or
``data_file`` / ``data_key``: the user's in-memory data, saved in the study folder), ``device``, ``epochs``,
``save_weights``, ``max_epochs``, ``time_limit``, ``augment``, ``precision``, ``channels_last`` and
``reporter`` (see ``nas.user_fn``). The data set is loaded once per process (``cached_dataset``,
``load_saved``); the config is measured once per trial (``measured``: its size caps and thread rule).

How many epochs (the run's full length, which the learning-rate schedule spans), first match wins:
    spec.max_resource      multi-fidelity mode (see below)
    extra["max_epochs"]    the objective argument (single-fidelity mode: every trial trains this many;
    extra["epochs"]        the same under the name nas.api uses with fidelity off)
    config["epochs"]       an old config that still carries the key (before epochs left the space)
    the data set preset's max_epochs
so a config's ``epochs`` key is ignored whenever the search says how long runs are.

Multi-fidelity mode (the engine's stop-and-go successive halving) adds ``resource_from`` (epochs already
trained, 0 = a fresh start), ``resource_to`` (stop after this epoch), ``max_resource`` and ``checkpoint``
(the bytes the previous segment returned, None for a fresh start). The segment continues the same run:
the schedule spans max_resource and the state restores weights, optimizer, scheduler position, data order
and RNG (trainers/checkpoint.py), so on the CPU the weights equal a straight run's.

Returns ``{"value": val acc at the last epoch trained, "metrics": {..., "curve": this segment's epochs},
"resource": epochs trained in all, "checkpoint": bytes | None}``. The checkpoint is None in single-fidelity
mode, at max_resource (nothing left to continue) and when a time limit cut the last epoch short (then
``resource`` counts only the full epochs). ``weights.pt`` is rewritten at the end of every segment.
"""

from __future__ import annotations

import io
import os
import time
from functools import lru_cache
from pathlib import Path

from nas.fsutil import atomic_write_bytes, remove_stale_temps
from nas.spec import TrialSpec


@lru_cache(maxsize=2)
def cached_dataset(
    name: str,
    data_dir: str | None,
    seed: int,
    download: bool,
    image_size: int | None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
):
    from trainers.data import load_dataset

    return load_dataset(
        name,
        data_dir=data_dir,
        seed=seed,
        download=download,
        image_size=image_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )


def trial_data(spec):
    """The spec's data: the user's copy in the study folder, or a named data set (both cached per process)."""
    spec = TrialSpec.of(spec)
    x = spec.extra
    if x.get("data_file"):
        from trainers.user_data import load_saved

        return load_saved(str(Path(spec.study_dir) / x["data_file"]), x.get("data_key"))
    if x.get("dataset") == "user":  # only export asks: the trials themselves get the Dataset (stream_data)
        from nas.errors import DataError

        raise DataError(
            f"{spec.study_dir}: its data was streamed from your Dataset, not saved in the study, so it "
            "cannot be read again here; export the trials' own weights (--no-retrain, or retrain=False)"
        )
    return cached_dataset(
        x.get("dataset", "digits"),
        x.get("data_dir"),
        int(x.get("data_seed", 0)),
        bool(x.get("download", False)),
        x.get("image_size"),
        float(x.get("val_fraction", 0.15)),
        float(x.get("test_fraction", 0.2)),
    )


def fixed_epochs(spec, config: dict) -> dict:
    """The config with the spec's fixed training length, when the search fixes one."""
    epochs = TrialSpec.of(spec).extra.get("epochs")
    return {**config, "epochs": int(epochs)} if epochs else config


def save_trial_weights(spec, state_dict: dict, metrics: dict) -> None:
    import torch

    spec = TrialSpec.of(spec)
    if not spec.study_dir:
        return
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    path = weights_path(spec.study_dir, spec.trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)  # a search killed mid-write left one; this trial's folder is ours while it runs
    atomic_write_bytes(path, buf.getvalue())
    metrics["weights"] = str(path.relative_to(spec.study_dir))


def weights_path(study_dir: str | Path, trial_id: int) -> Path:
    return Path(study_dir) / "trials" / f"{trial_id}" / "weights.pt"


# Below this many MACs per training batch, intra-op threads cost more than they save: on digits-sized
# networks two threads ran 1.5-5x slower than one on a 2-core machine, and far worse when it was busy.
SMALL_BATCH_MACS = 5e7


def measured(config: dict, data) -> dict:
    """The config's size at this data (``search_spaces.size.measure``: params, MACs, training memory), once
    per trial: the size-cap check and the thread rule both read it. ConfigError when it is over a cap."""
    from search_spaces.size import check_size, measure

    m = measure(config, input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    check_size(config, input_shape=tuple(data.input_shape), num_classes=data.num_classes, measured=m)
    return m


def _threads_for(config: dict, data, allotted: int | None, *, macs: int | None = None) -> int | None:
    if macs is None:
        from search_spaces.counting import count

        macs = count(config, input_shape=tuple(data.input_shape), num_classes=data.num_classes)["macs"]
    if macs * int(config.get("batch_size", 64)) < SMALL_BATCH_MACS:
        return 1
    return allotted


def epochs_for(spec, config: dict) -> int:
    """The run's full length in epochs (see the module docstring for the order)."""
    spec = TrialSpec.of(spec)
    x = spec.extra
    for value in (spec.max_resource, x.get("max_epochs"), x.get("epochs"), config.get("epochs")):
        if value is not None:
            return int(value)
    from trainers.presets import get_preset

    return get_preset(x.get("dataset", "digits")).max_epochs


def _segment(spec: TrialSpec, max_epochs: int) -> tuple[int, int, bytes | None]:
    """(resource_from, resource_to, checkpoint) of a multi-fidelity job, checked; (0, max, None) otherwise."""
    from nas.errors import ConfigError

    if not spec.segment:
        return 0, max_epochs, None
    start, stop, state = int(spec.resource_from or 0), int(spec.resource_to), spec.checkpoint
    if not 0 <= start < stop <= max_epochs:
        raise ConfigError(
            f"a trial segment must satisfy 0 <= resource_from ({start}) < resource_to ({stop}) "
            f"<= max_resource ({max_epochs})"
        )
    if start > 0 and state is None:
        raise ConfigError(f"resuming from epoch {start} needs the previous segment's checkpoint; none was given")
    if start == 0:
        state = None  # a fresh start: a stale checkpoint must not leak in
    return start, stop, state


def run_trial(spec) -> dict:
    from nas.errors import ConfigError
    from nas.user_fn import report_for
    from search_spaces.builder import Net
    from trainers.checkpoint import as_state
    from trainers.train import train_trial

    spec = TrialSpec.of(spec)
    x = spec.extra
    data = trial_data(spec)
    config = fixed_epochs(spec, spec.config)
    # Proposals are already under the caps; a trial queued by an older study, or a config edited in the
    # database, is checked again here, before anything is allocated.
    size = measured(config, data)
    threads = _threads_for(config, data, spec.threads, macs=size["macs"])
    max_epochs = epochs_for(spec, config)
    start, stop, state = _segment(spec, max_epochs)
    if state is not None:
        state = as_state(state)
        if state.epoch != start:
            raise ConfigError(f"the checkpoint holds {state.epoch} epochs, the job says resource_from={start}")
    report = report_for(spec)
    t0 = time.perf_counter()
    result = train_trial(
        config,
        data,
        seed=int(spec.seed),
        keep_weights=bool(x.get("save_weights", True)),
        model=lambda: Net(size["arch"]),  # the architecture measured() validated: not decoded again
        device=x.get("device"),
        num_threads=threads,
        max_epochs=max_epochs,
        stop_epoch=stop,
        resume=state,
        keep_state=spec.segment and stop < max_epochs,
        time_limit=x.get("time_limit"),
        augment=x.get("augment"),
        precision=x.get("precision", "auto"),
        channels_last=x.get("channels_last"),
        on_epoch=lambda e: not report(e["epoch"], e["val_acc"]),
    )
    metrics = result.to_dict()
    metrics["wall_time"] = time.perf_counter() - t0
    metrics["pid"] = os.getpid()
    if result.state_dict is not None:
        save_trial_weights(spec, result.state_dict, metrics)
    cut = "fraction" in result.curve[-1]  # a time limit stopped mid-epoch: that epoch does not count
    return {
        "value": result.val_acc,
        "metrics": metrics,
        "resource": result.epoch - int(cut),
        "checkpoint": result.state.to_bytes() if result.state is not None else None,
    }
