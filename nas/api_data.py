"""The data side of ``nas.api.prepare``: which data set, its checks, loading it once, and what a trial's spec
carries to find it again in any worker. Composition layer: imports torch and ``trainers`` lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from nas.errors import DataError, NasError, StudyError
from nas.options import said, shown

DATA_FILE = "data.pt"  # the user's in-memory data, saved in the study folder for workers, resume and export


def check_device(device) -> str | None:
    if device is None:
        return None
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise NasError(f"device {device!r}: not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NasError(f"device {device!r}: no CUDA GPU is visible here; use {said('device', 'cpu')}")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise NasError(f"device {device!r}: only cpu, cuda and mps are supported")
    return str(dev)


def default_name(data, dataset, data_dir) -> str:
    """The data set a study folder is named after before anything is loaded (results/NAME)."""
    if data is not None:
        return "user"
    if dataset is not None:
        from trainers.presets import get_preset

        return get_preset(dataset).name
    return "imagefolder" if data_dir is not None else "digits"


def resolve_dataset(data, dataset, data_dir, old_meta) -> str:
    """The data set name: 'user' for the caller's own tensors / Dataset."""
    if data is not None:
        if dataset not in (None, "user", "imagefolder"):
            raise DataError(f"pass either data= or dataset={dataset!r}, not both")
        return "user"
    if dataset is not None:
        from trainers.presets import get_preset

        name = get_preset(dataset).name
        if name == "digits" and data_dir is not None:
            raise DataError(
                f"digits is bundled with scikit-learn, so {shown('data_dir')} {data_dir} would be "
                "ignored; leave it out, or name the data set stored there (imagefolder, mnist, cifar10, ...)"
            )
        return name
    if old_meta.get("dataset"):  # a resume: the study's data set
        return old_meta["dataset"]
    if data_dir is not None:
        from trainers.user_data import looks_like_image_folder

        if not Path(data_dir).is_dir():
            raise DataError(f"{shown('data_dir')} {data_dir} does not exist")
        if not looks_like_image_folder(data_dir):
            raise DataError(
                f"{shown('data_dir')} {data_dir} is not an image folder (no class folders of images, "
                f"directly or under train/); name the data set stored there ({shown('dataset')} mnist, "
                "cifar10, ...)"
            )
        return "imagefolder"
    return "digits"


def data_dir_key(dataset: str, data_dir) -> str | None:
    """The data location a named data set's study records: absolute (a resume from another folder compares
    equal), and none for digits, which is bundled."""
    if dataset == "digits":
        return None
    from trainers.data import _default_data_dir

    return str(Path(data_dir or _default_data_dir()).expanduser().resolve())


def user_preset(input_shape):
    """Bounds for the user's own images, from the nearest shipped data set by side length."""
    from trainers.presets import get_preset

    side = min(input_shape[1:]) if len(input_shape) == 3 else 32
    return get_preset("digits" if side <= 8 else "mnist" if side <= 28 else "imagefolder")


def is_tensor_data(source) -> bool:
    from trainers.data import TensorData

    return isinstance(source, TensorData)


def load_data(
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
):
    """(the data, its preset, the meta entries describing it). Named data sets load through the per-process
    cache the trials use, so the driver's load is the workers' load too when they share its process."""
    from trainers.presets import get_preset

    if name == "user":
        from trainers.user_data import prepare_data

        if image_size is not None:
            raise DataError(
                f"{shown('image_size')} resizes image folders and torchvision data sets; resize your "
                "own tensors or Dataset yourself"
            )
        source = (
            data
            if is_tensor_data(data)
            else prepare_data(
                data,
                val_data=val_data,
                test_data=test_data,
                num_classes=num_classes,
                class_names=class_names,
                seed=seed,
                val_fraction=val_fraction,
                test_fraction=test_fraction,
                in_memory=in_memory,
            )
        )
        preset = user_preset(tuple(source.input_shape))
    else:
        if val_data is not None or test_data is not None:
            raise DataError(
                "val_data= / test_data= go with data= tensors or a Dataset; an image folder takes val/ "
                "and test/ subfolders"
            )
        if name == "digits" and image_size not in (None, 8):
            raise DataError(
                f"digits images are 8x8; {shown('image_size')} applies to image folders and torchvision data sets"
            )
        from trainers.runner import cached_dataset

        source = cached_dataset(
            name,
            None if data_dir is None else str(data_dir),
            seed,
            bool(download),
            image_size,
            val_fraction,
            test_fraction,
        )
        preset = get_preset(name)
    mean, std = list(source.mean), list(source.std)
    if not mean and len(source.input_shape) == 3:  # streamed: the Dataset's own transform normalises
        mean, std = [0.0] * source.input_shape[0], [1.0] * source.input_shape[0]
    info = {
        "input_shape": list(source.input_shape),
        "num_classes": int(source.num_classes),
        "class_names": list(source.class_names),
        "norm_mean": mean,
        "norm_std": std,
    }
    return source, preset, info


def saved_user_data(folder: Path, old_meta: dict, has_user_fn: bool):
    """The saved copy of a resumed study's own data (``data.pt``)."""
    if old_meta.get("trainer") == "user" and not has_user_fn:
        raise NasError(
            f"{folder}: its trials ran your own train / model functions; resume it from Python "
            "with nas.api.search(..., train=..., resume=True)"
        )
    if not old_meta.get("data_file"):
        raise DataError(f"{folder}: its data was streamed from your Dataset; pass data= again to resume")
    from trainers.user_data import load_saved

    return load_saved(str(folder / old_meta["data_file"]))


def data_args(
    name, source, folder: Path, data_dir, download, seed, image_size, val_fraction, test_fraction, old_meta
) -> dict:
    """What the trial spec carries to find the data again, in any worker."""
    if name != "user":
        return {
            "dataset": name,
            "data_dir": None if data_dir is None else str(data_dir),
            "download": bool(download),
            "data_seed": seed,
            "image_size": image_size,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
        }
    if not is_tensor_data(source):
        return {"stream_data": source}
    from trainers.user_data import data_key, save_data

    key = data_key(source)
    if old_meta.get("data_key") not in (None, key):
        raise StudyError(f"{folder}: resume with other data than the study's; pass the same data, or another folder")
    if old_meta.get("data_key") != key or not (folder / DATA_FILE).exists():
        save_data(source, folder / DATA_FILE)
    return {"data_file": DATA_FILE, "data_key": key}


def is_path(data) -> bool:
    return isinstance(data, (str, os.PathLike))
