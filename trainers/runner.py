"""One NAS trial, as the search loop's objective: load the data (cached per process), build the network
from the config, train it, save its weights, return validation accuracy.

``run_trial(spec)`` is module-level so executors can pickle it. ``spec`` holds ``trial_id``, ``config``,
``seed``, ``study_dir`` and the objective arguments the CLI sets: ``dataset``, ``data_dir``, ``download``,
``data_seed``, ``image_size``, ``threads``, ``save_weights``, ``max_epochs``, ``time_limit``, ``precision``,
``channels_last``.
"""
from __future__ import annotations

import io
import os
import time
from functools import lru_cache
from pathlib import Path

from nas.fsutil import atomic_write_bytes, remove_stale_temps


@lru_cache(maxsize=2)
def cached_dataset(name: str, data_dir: str | None, seed: int, download: bool, image_size: int | None):
    from trainers.data import load_dataset

    return load_dataset(name, data_dir=data_dir, seed=seed, download=download, image_size=image_size)


def weights_path(study_dir: str | Path, trial_id: int) -> Path:
    return Path(study_dir) / "trials" / f"{trial_id}" / "weights.pt"


# Below this many MACs per training batch, intra-op threads cost more than they save: on digits-sized
# networks two threads ran 1.5-5x slower than one on a 2-core machine, and far worse when it was busy.
SMALL_BATCH_MACS = 5e7


def _threads_for(config: dict, data, allotted: int | None) -> int | None:
    from search_spaces.counting import count

    macs = count(config, input_shape=tuple(data.input_shape), num_classes=data.num_classes)["macs"]
    if macs * int(config.get("batch_size", 64)) < SMALL_BATCH_MACS:
        return 1
    return allotted


def run_trial(spec: dict) -> dict:
    import torch

    from search_spaces.builder import build_model
    from search_spaces.size import check_size
    from trainers.train import train_trial

    data = cached_dataset(spec.get("dataset", "digits"), spec.get("data_dir"), int(spec.get("data_seed", 0)),
                          bool(spec.get("download", False)), spec.get("image_size"))
    config = spec["config"]
    c, _, _ = data.input_shape
    # Proposals are already under the caps; a trial queued by an older study, or a config edited in the
    # database, is checked again here, before anything is allocated.
    check_size(config, input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    threads = _threads_for(config, data, spec.get("threads"))
    t0 = time.perf_counter()
    result = train_trial(
        config, data, seed=int(spec.get("seed", 0)), keep_weights=bool(spec.get("save_weights", True)),
        model=lambda: build_model(config, num_classes=data.num_classes, in_chans=c),
        num_threads=threads, max_epochs=spec.get("max_epochs"), time_limit=spec.get("time_limit"),
        augment=spec.get("augment"), precision=spec.get("precision", "auto"),
        channels_last=spec.get("channels_last"))
    metrics = result.to_dict()
    metrics["wall_time"] = time.perf_counter() - t0
    metrics["pid"] = os.getpid()
    if result.state_dict is not None and spec.get("study_dir"):
        buf = io.BytesIO()
        torch.save(result.state_dict, buf)
        path = weights_path(spec["study_dir"], spec["trial_id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)  # a search killed mid-write left one; this trial's folder is ours while it runs
        atomic_write_bytes(path, buf.getvalue())
        metrics["weights"] = str(path.relative_to(spec["study_dir"]))
    return {"value": result.val_acc, "metrics": metrics}
