"""The user's own data for ``nas.search``: tensors, a ``torch.utils.data.Dataset``, or an ImageFolder path.

``prepare_data`` turns what the user passes into one of two forms:

    TensorData   (trainers.data) everything in memory, split train / val / test with the same seeded,
                 stratified cut as the bundled data sets, images (N, C, H, W) normalised per channel with
                 the train split's statistics (uint8 pixels are scaled to [0, 1] first). Tensors of other
                 shapes (tabular rows, sequences) are kept as given. The built-in trainer indexes its batches.
    StreamData   a Dataset too large for memory (or ``in_memory=False``): the splits are index subsets of
                 it, read item by item through DataLoaders in the user's own ``train`` function. Nothing is
                 normalised: the Dataset's own transform does that. The built-in trainer reads it
                 through the same loaders (trainers.stream_train).

The user's own validation (and test) split is taken as given; only the missing ones are cut from ``data``.
``TrialData`` is what a user's ``train(model, config, data, report)`` receives: loaders in both forms,
tensors too when the data is in memory.

Bad input (items that are not (image, label) pairs, labels out of range, mismatched lengths, non-finite
pixels, fractions outside (0, 1)) is a DataError naming the item and the fix.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import DataError
from nas.user_fn import check_fractions, check_image_size  # noqa: F401 (checked here too; defined torch-free)
from trainers.data import IMAGE_SUFFIXES, TensorData, _finish, _stratified_split

# A Dataset is read into memory when its float32 copy stays under this (about a quarter of a small machine's
# memory); above it, it is streamed through DataLoaders.
DEFAULT_MAX_MEMORY = 2 * 1024**3
_PROBE_ITEMS = 16  # items of a streamed Dataset checked before any trial starts


def looks_like_image_folder(path) -> bool:
    """True when ``path`` holds class folders with images, directly or under ``train/``."""
    root = Path(path)
    if not root.is_dir():
        return False
    base = root / "train" if (root / "train").is_dir() else root
    for d in base.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.rglob("*") if f.is_file()):
                return True
    return False


# ------------------------------------------------------------------------------------------ streamed data


@dataclass
class StreamData:
    """Index subsets of a Dataset; read through DataLoaders. Picklable when the Dataset is."""

    dataset: Any
    train_idx: list
    val_idx: list
    test_idx: list
    num_classes: int
    input_shape: tuple
    class_names: list
    val_dataset: Any = None  # the user's own splits, when given, replace the index subsets
    test_dataset: Any = None
    name: str = "user"
    mean: tuple = ()
    std: tuple = ()

    def split(self, which: str):
        from torch.utils.data import Subset

        own = {"val": self.val_dataset, "test": self.test_dataset}.get(which)
        if own is not None:
            return own
        return Subset(self.dataset, {"train": self.train_idx, "val": self.val_idx, "test": self.test_idx}[which])

    def summary(self) -> str:
        n = {s: len(self.split(s)) for s in ("train", "val", "test")}
        return (
            f"{self.name} (streamed): train {n['train']}, val {n['val']}, test {n['test']}, "
            f"{self.num_classes} classes, input {tuple(self.input_shape)}"
        )


class TrialData:
    """What a user's ``train(model, config, data, report)`` gets.

    ``data.loader("train", batch_size=64)`` (shuffled, seeded, the last partial batch dropped) and ``data.loader("val")`` work for every
    kind of data; ``x_train, y_train, x_val, y_val`` (CPU tensors) exist when it is in memory.
    ``num_classes``, ``input_shape``, ``class_names``, ``seed`` and ``device`` (where the model already is)
    describe the trial; ``data.accuracy(model, "val")`` is top-1 accuracy on a split.
    """

    def __init__(
        self,
        source,
        *,
        device,
        seed: int,
        augment: str | None = None,
        precision: str = "auto",
        channels_last: bool | None = None,
    ):
        self.source, self.device, self.seed = source, torch.device(device), int(seed)
        # What the built-in trainer applies (trainers.train: AUGMENTATIONS, fast_defaults).
        self.augment, self.precision, self.channels_last = augment, precision, channels_last
        self.num_classes, self.input_shape = int(source.num_classes), tuple(source.input_shape)
        self.class_names = list(source.class_names)
        self.in_memory = isinstance(source, TensorData)

    def __getattr__(self, name):
        if name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            if self.in_memory:
                return getattr(self.source, name)
            raise DataError(f"data.{name}: this data set is streamed (not in memory); use data.loader(...)")
        raise AttributeError(name)

    def dataset(self, which: str = "train"):
        if self.in_memory:
            from torch.utils.data import TensorDataset

            return TensorDataset(getattr(self.source, f"x_{which}"), getattr(self.source, f"y_{which}"))
        return self.source.split(which)

    def loader(self, which: str = "train", *, batch_size: int = 64, shuffle: bool | None = None, **kwargs):
        from torch.utils.data import DataLoader

        if which not in ("train", "val", "test"):
            raise DataError(f"data.loader({which!r}): choose 'train', 'val' or 'test'")
        shuffle = which == "train" if shuffle is None else shuffle
        gen = torch.Generator().manual_seed(self.seed)
        ds = self.dataset(which)
        # Training batches drop the last partial one when there is more than one batch, as the built-in
        # trainer does: BatchNorm cannot train on a batch of a single image.
        drop_last = kwargs.pop("drop_last", which == "train" and len(ds) > batch_size)
        if self.in_memory and not kwargs:  # whole batches by tensor indexing: no per-item collate
            from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

            order = RandomSampler(ds, generator=gen) if shuffle else SequentialSampler(ds)
            return DataLoader(ds, sampler=BatchSampler(order, int(batch_size), drop_last=drop_last), batch_size=None)
        return DataLoader(ds, batch_size=int(batch_size), shuffle=shuffle, generator=gen, drop_last=drop_last, **kwargs)

    @torch.no_grad()
    def accuracy(self, model, which: str = "val", *, batch_size: int = 512) -> float:
        was = model.training
        model.eval()
        correct = total = 0
        for x, y in self.loader(which, batch_size=batch_size, shuffle=False):
            x, y = x.to(self.device), torch.as_tensor(y).to(self.device)
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
        model.train(was)
        return correct / total if total else 0.0


# ------------------------------------------------------------------------------------------ preparing


def _is_dataset(obj) -> bool:
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__") and not isinstance(obj, (tuple, list, dict, str))


def _as_image(v, where: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        t = v
    else:
        try:
            arr = np.asarray(v)
        except Exception:
            arr = None
        if arr is None or arr.dtype == object or arr.dtype.kind not in "biuf":
            raise DataError(f"{where}: the image is a {type(v).__name__}, not numbers; return a tensor or array")
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):  # a PIL-style HWC image
            arr = arr.transpose(2, 0, 1)
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex():
        raise DataError(f"{where}: the image has dtype {t.dtype}; use float or uint8 pixels")
    return t[None] if t.ndim == 2 else t  # a gray (H, W) image gets its channel axis


def _as_label(v, where: str) -> int:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    elif isinstance(v, np.ndarray) and v.size == 1:
        v = v.item()
    if (
        isinstance(v, (bool, np.bool_))
        or not isinstance(v, (int, np.integer, float, np.floating))
        or not float(v).is_integer()
    ):
        raise DataError(f"{where}: the label {v!r} is not a whole number; labels are class indices 0..K-1")
    return int(v)


def _item(ds, i: int, what: str) -> tuple[torch.Tensor, int]:
    where = f"{what} item {i}"
    try:
        item = ds[i]
    except Exception as e:
        raise DataError(f"{where}: reading it raised {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        kind = (
            f"a {len(item)}-item {type(item).__name__}"
            if isinstance(item, (tuple, list))
            else f"a {type(item).__name__}"
        )
        raise DataError(f"{where}: expected an (image, label) pair, got {kind}")
    return _as_image(item[0], where), _as_label(item[1], where)


def _labels_in_range(y: np.ndarray, num_classes: int, what: str) -> None:
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y[(y < 0) | (y >= num_classes)][0])
        raise DataError(
            f"{what}: label {bad} is outside 0..{num_classes - 1} ({num_classes} classes); "
            "labels must be class indices (pass num_classes= if some classes are missing)"
        )


def _tensors(pair, what: str) -> tuple[torch.Tensor, np.ndarray]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise DataError(f"{what}: expected (x, y) tensors, a Dataset or an ImageFolder path, got {type(pair).__name__}")
    x, y = pair
    if not isinstance(x, torch.Tensor):
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise DataError(f"{what}: x is a {type(x).__name__} of {arr.dtype}, not numbers")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.dtype == torch.bool or x.is_complex():
        raise DataError(f"{what}: x has dtype {x.dtype}; use float or uint8 values")
    if x.ndim < 2:
        raise DataError(f"{what}: x has shape {tuple(x.shape)}; expected (N, ...) with one row per example")
    y = torch.as_tensor(np.asarray(y)) if not isinstance(y, torch.Tensor) else y
    if y.ndim != 1 or y.dtype.is_floating_point and not bool((y == y.round()).all()) or y.dtype == torch.bool:
        raise DataError(f"{what}: y must be a 1-D tensor of class indices, got shape {tuple(y.shape)} {y.dtype}")
    if len(y) != len(x):
        raise DataError(f"{what}: x has {len(x)} rows but y has {len(y)} labels")
    if len(y) == 0:
        raise DataError(f"{what}: no examples")
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise DataError(f"{what}: x holds NaN or infinite values")
    return x, y.to(torch.int64).numpy()


def _read_all(ds, what: str) -> tuple[torch.Tensor, np.ndarray]:
    n = len(ds)
    if n == 0:
        raise DataError(f"{what}: the Dataset is empty")
    xs, ys = [], []
    first = None
    for i in range(n):
        x, y = _item(ds, i, what)
        if first is None:
            first = tuple(x.shape)
        elif tuple(x.shape) != first:
            raise DataError(
                f"{what} item {i}: image shape {tuple(x.shape)} differs from item 0's {first}; "
                "resize in the Dataset's transform"
            )
        xs.append(x)
        ys.append(y)
    x = torch.stack(xs)
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise DataError(f"{what}: some images hold NaN or infinite values")
    return x, np.asarray(ys, dtype=np.int64)


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.numpy() if x.dtype == torch.uint8 else x.to(torch.float32).numpy()


def _pack(parts: dict, class_names: list, normalize: bool) -> TensorData:
    """{split: (x, y)} -> TensorData; images normalised per channel with train statistics."""
    (xt, yt), (xv, yv), (xs, ys) = parts["train"], parts["val"], parts["test"]
    if normalize and xt.ndim == 4:
        return _finish("user", _numpy(xt), yt, _numpy(xv), yv, _numpy(xs), ys, class_names)
    xs_ = [x.to(torch.float32).contiguous() for x in (xt, xv, xs)]
    ys_ = [torch.as_tensor(y, dtype=torch.int64) for y in (yt, yv, ys)]
    return TensorData(
        xs_[0],
        ys_[0],
        xs_[1],
        ys_[1],
        xs_[2],
        ys_[2],
        num_classes=len(class_names),
        input_shape=tuple(xs_[0].shape[1:]),
        class_names=list(class_names),
        name="user",
    )


def _cut(y: np.ndarray, have_val: bool, have_test: bool, val_fraction, test_fraction, seed) -> dict:
    """Index arrays train / val / test of ``y``; splits the user gave are not cut (None)."""
    fracs = [f for f, have in ((val_fraction, have_val), (test_fraction, have_test)) if not have]
    pieces = _stratified_split(y, tuple(fracs), seed) if fracs else [np.arange(len(y))]
    out = {"train": pieces[0], "val": None, "test": None}
    rest = list(pieces[1:])
    if not have_val:
        out["val"] = rest.pop(0)
    if not have_test:
        out["test"] = rest.pop(0)
    for split in ("train", "val", "test"):
        if out[split] is not None and not len(out[split]):
            raise DataError(f"the {split} split is empty; give more examples or another fraction")
    return out


def prepare_data(
    data,
    *,
    val_data=None,
    test_data=None,
    num_classes: int | None = None,
    class_names=None,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    in_memory: bool | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    normalize: bool = True,
):
    """``data``: (x, y) tensors or arrays, or a Dataset of (image, label) pairs; ``val_data`` / ``test_data``:
    the user's own splits, of the same kinds. Returns TensorData (in memory) or StreamData."""
    check_fractions(val_fraction, test_fraction)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
    ):
        raise DataError(f"num_classes={num_classes!r}: expected a whole number of at least 2")
    sources = {"train": data, "val": val_data, "test": test_data}
    names = {"train": "data", "val": "val_data", "test": "test_data"}
    for k, v in sources.items():
        if isinstance(v, (str, os.PathLike)):
            raise DataError(
                f"{names[k]}: a folder path goes in data= alone (an ImageFolder, with val/ and test/ "
                "subfolders for your own splits)"
            )
    kinds = {k: _is_dataset(v) for k, v in sources.items() if v is not None}
    if any(kinds.values()) and _stream(sources, kinds, in_memory, max_memory):
        return _prepare_stream(sources, names, num_classes, class_names, seed, val_fraction, test_fraction)
    read = {
        k: (_read_all(v, names[k]) if kinds[k] else _tensors(v, names[k])) for k, v in sources.items() if v is not None
    }
    shapes = {k: tuple(x.shape[1:]) for k, (x, _) in read.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(
            f"the splits' examples differ in shape ({', '.join(f'{names[k]} {s}' for k, s in shapes.items())})"
        )
    k_classes = num_classes or int(max(int(y.max()) for _, y in read.values())) + 1
    for k, (_, y) in read.items():
        _labels_in_range(y, k_classes, names[k])
    x, y = read["train"]
    idx = _cut(y, "val" in read, "test" in read, val_fraction, test_fraction, seed)
    parts = {s: read[s] if idx[s] is None else (x[torch.as_tensor(idx[s])], y[idx[s]]) for s in idx}
    return _pack(parts, _class_names(class_names, k_classes), normalize)


def _class_names(given, k: int) -> list:
    if given is None:
        return [str(i) for i in range(k)]
    names = [str(n) for n in given]
    if len(names) != k:
        raise DataError(f"class_names has {len(names)} names for {k} classes")
    return names


def _stream(sources, kinds, in_memory, max_memory) -> bool:
    if in_memory is not None:
        if not in_memory and not all(kinds.values()):
            raise DataError("in_memory=False needs every split as a Dataset (tensors are in memory already)")
        return not in_memory
    total = 0
    for k, v in sources.items():
        if v is not None and kinds[k] and len(v):
            x, _ = _item(v, 0, "data")
            total += len(v) * x.numel() * 4
    return total > max_memory


def _prepare_stream(sources, names, num_classes, class_names, seed, val_fraction, test_fraction) -> StreamData:
    ds = sources["train"]
    if not _is_dataset(ds) or any(v is not None and not _is_dataset(v) for v in sources.values()):
        raise DataError("a streamed data set needs every split as a Dataset")
    if len(ds) == 0:
        raise DataError("data: the Dataset is empty")
    targets = getattr(ds, "targets", None)
    k = num_classes or (len(ds.classes) if hasattr(ds, "classes") else None)
    if k is None and targets is not None:
        k = int(np.max(np.asarray(targets))) + 1
    if k is None:
        raise DataError(
            "data: a Dataset too large for memory is streamed; pass num_classes= (its labels are not read in advance)"
        )
    shape = None
    for key, v in sources.items():
        if v is None:
            continue
        for i in range(min(_PROBE_ITEMS, len(v))):
            x, y = _item(v, i, names[key])
            _labels_in_range(np.asarray([y]), k, f"{names[key]} item {i}")
            shape = shape or tuple(x.shape)
            if tuple(x.shape) != shape:
                raise DataError(f"{names[key]} item {i}: image shape {tuple(x.shape)} differs from {shape}")
    if targets is not None and len(targets) == len(ds):
        y = np.asarray(targets, dtype=np.int64)
        _labels_in_range(y, k, "data")
    else:  # no labels to stratify on: a seeded random cut
        y = np.zeros(len(ds), dtype=np.int64)
    idx = _cut(y, sources["val"] is not None, sources["test"] is not None, val_fraction, test_fraction, seed)
    names_ = class_names if class_names is not None else getattr(ds, "classes", None)
    return StreamData(
        ds,
        *[[] if idx[s] is None else idx[s].tolist() for s in ("train", "val", "test")],
        num_classes=k,
        input_shape=shape,
        class_names=_class_names(names_, k),
        val_dataset=sources["val"],
        test_dataset=sources["test"],
    )


# ------------------------------------------------------------------------------------------ the study's copy

_FIELDS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def data_key(data: TensorData) -> str:
    """A content hash: resume checks that the data has not changed."""
    h = hashlib.sha256()
    for f in _FIELDS:
        t = getattr(data, f).contiguous()
        h.update(str((f, tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:32]


def save_data(data: TensorData, path) -> str:
    """Write the in-memory data into the study folder (workers and export read it); return its key."""
    import io

    from nas.fsutil import atomic_write_bytes

    key = data_key(data)
    record = {f: getattr(data, f) for f in _FIELDS}
    record.update(
        {
            "num_classes": int(data.num_classes),
            "input_shape": list(data.input_shape),
            "class_names": list(data.class_names),
            "mean": list(data.mean),
            "std": list(data.std),
            "key": key,
        }
    )
    buf = io.BytesIO()
    torch.save(record, buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return key


def load_saved(path: str, key: str | None = None) -> TensorData:
    """The data a study saved, read once per process while the file is unchanged (the driver's check and
    every trial in a worker share one copy); ``key``: refuse other data than the search started with."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: the study's copy of the data is missing; run the search again with data=") from None
    data, saved_key = _read_saved(str(path), st.st_mtime_ns, st.st_size)
    if key is not None and saved_key != key:
        raise DataError(f"{path} holds other data than this search started with; do not run two searches on one --out")
    return data


@lru_cache(maxsize=2)
def _read_saved(path: str, mtime_ns: int, size: int) -> tuple[TensorData, str | None]:
    try:
        r = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: the study's copy of the data is missing; run the search again with data=") from None
    except Exception as e:
        raise DataError(f"{path}: not readable ({' '.join(str(e).split())[:200]})") from None
    data = TensorData(
        *[r[f] for f in _FIELDS],
        num_classes=int(r["num_classes"]),
        input_shape=tuple(r["input_shape"]),
        class_names=list(r["class_names"]),
        name="user",
        mean=tuple(r["mean"]),
        std=tuple(r["std"]),
    )
    return data, r.get("key")
