"""Data sets as in-memory tensors with fixed, seeded splits.

Every loader turns its source into uint8/float arrays once, then `_finish` splits, normalises with the
train split's per-channel mean and std, and packs a `TensorData`. The training loop only indexes these
tensors; nothing here runs per sample during training.

Splits:
    digits        stratified train / val / test from the 1,797 images; val_fraction and test_fraction
                  are fractions of the whole set.
    torchvision   the official test set is the test split; val is a stratified val_fraction of the
                  official train set (test_fraction is unused).
    imagefolder   with train/ (val/, test/) subfolders those are used; a missing val or test split is cut,
                  stratified, from train. With plain class folders all three are cut as for digits.

Images from a folder are read with PIL, resized so the shorter side is `image_size` (default 32, the
side of the smallest common benchmark images and cheap to search on a CPU) and centre-cropped square,
keeping the aspect ratio. They become 1-channel when every image is grayscale, else RGB. Files whose
suffix is not an image suffix are ignored; image files PIL cannot read are skipped, counted in
`TensorData.skipped`, and reported with a warning.

Example:
    >>> data = load_dataset("digits", seed=0)
    >>> data.x_train.shape[1:], data.num_classes
    (torch.Size([1, 8, 8]), 10)
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nas.errors import DataError
from trainers.presets import get_preset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")
DEFAULT_FOLDER_IMAGE_SIZE = 32
# Pixels an image may declare in its header (about 8,000 x 8,000): larger ones are skipped as unreadable
# before decoding, since a folder image is resized to a few dozen pixels anyway. PIL's own bomb check
# raises only at twice its 89M-pixel warning level, and decoding that much costs gigabytes.
MAX_IMAGE_PIXELS = 64_000_000
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F", "P;gray"}


@dataclass
class TensorData:
    """Normalised float32 images (N, C, H, W) and int64 labels (N,) for the three splits."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    class_names: list[str]
    name: str = ""
    mean: tuple[float, ...] = ()  # per channel, train split, pixels scaled to [0, 1]; needed at inference
    std: tuple[float, ...] = ()
    skipped: int = 0  # unreadable image files left out (imagefolder)
    skipped_files: list[str] = field(default_factory=list)

    def to(self, device) -> "TensorData":
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        return TensorData(**{**self.__dict__, **moved})

    def summary(self) -> str:
        return (
            f"{self.name}: train {len(self.y_train)}, val {len(self.y_val)}, test {len(self.y_test)}, "
            f"{self.num_classes} classes, input {tuple(self.input_shape)}"
            + (f", {self.skipped} unreadable files skipped" if self.skipped else "")
        )


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    download: bool = False,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    image_size: int | None = None,
) -> TensorData:
    """Load a data set by name (see trainers.presets.PRESETS) into normalised in-memory tensors.

    data_dir: where torchvision sets live (default $LIGHTNAS_DATA or ./data); the image folder itself
    for "imagefolder". image_size: side to resize to (torchvision sets: native size unless given;
    imagefolder: 32 unless given; digits: always 8).
    """
    preset = get_preset(name)
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < frac < 1.0:
            raise DataError(f"{label}={frac} must lie strictly between 0 and 1")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction} leaves no training data; lower one of them"
        )
    loader = _LOADERS[preset.name]
    return loader(
        data_dir=data_dir,
        seed=seed,
        download=download,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        image_size=image_size,
        name=preset.name,
    )


# ----------------------------------------------------------------------------------------------- splitting


def _stratified_split(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Index arrays for splits of `y`, each holding about `fraction` of every class; rest goes to the first.

    Per class, a seeded permutation is cut with cumulative rounding, so a class with k members gives
    round(k * fraction) to each split and the split sizes add up exactly.
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        cuts = np.round(np.cumsum(fractions) * len(members)).astype(int)
        pieces = np.split(members, cuts)  # [f1, f2, ..., rest]
        parts[0].append(pieces[-1])
        for i, piece in enumerate(pieces[:-1]):
            parts[i + 1].append(piece)
    # Sort so the order does not depend on class iteration; training shuffles anyway.
    return [np.sort(np.concatenate(p)) for p in parts]


def _finish(name, x_train, y_train, x_val, y_val, x_test, y_test, class_names, *, skipped=()) -> TensorData:
    """uint8 or float (N, C, H, W) arrays -> normalised float32 tensors, stats from the train split."""
    # uint8 pixels -> [0, 1] first, so mean/std read the same across data sets (torchvision's convention).
    xs = [
        torch.as_tensor(np.ascontiguousarray(x)).float() / (255.0 if x.dtype == np.uint8 else 1.0)
        for x in (x_train, x_val, x_test)
    ]
    mean = xs[0].mean(dim=(0, 2, 3))  # (C,)
    std = xs[0].std(dim=(0, 2, 3)).clamp_min(1e-6)  # clamp: a constant channel must not divide by zero
    xs = [((x - mean[None, :, None, None]) / std[None, :, None, None]).contiguous() for x in xs]
    ys = [torch.as_tensor(np.asarray(y), dtype=torch.int64) for y in (y_train, y_val, y_test)]
    return TensorData(
        xs[0],
        ys[0],
        xs[1],
        ys[1],
        xs[2],
        ys[2],
        num_classes=len(class_names),
        input_shape=tuple(xs[0].shape[1:]),
        class_names=list(class_names),
        name=name,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        skipped=len(skipped),
        skipped_files=list(skipped),
    )


# ----------------------------------------------------------------------------------------------- digits


def _load_digits(*, seed, val_fraction, test_fraction, name, **_):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8); pixel counts 0..16
    y = bunch.target.astype(np.int64)
    tr, va, te = _stratified_split(y, (val_fraction, test_fraction), seed)
    return _finish(name, x[tr], y[tr], x[va], y[va], x[te], y[te], [str(c) for c in bunch.target_names])


# ----------------------------------------------------------------------------------------------- torchvision


def _default_data_dir() -> Path:
    return Path(os.environ.get("LIGHTNAS_DATA", "data"))


def _resize(x: np.ndarray, size: int | None) -> np.ndarray:
    """(N, C, H, W) uint8 -> same, square side `size`, in one batched interpolate (no per-image work)."""
    if size is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    t = torch.nn.functional.interpolate(
        torch.from_numpy(x).float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def _load_torchvision(*, data_dir, seed, download, val_fraction, image_size, name, **_):
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[
        name
    ]
    root = Path(data_dir) if data_dir is not None else _default_data_dir()
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as e:  # torchvision's "Dataset not found" / "corrupted"
        raise DataError(f"{name} not found in {root}; pass --download or put the files there ({e})") from None
    except OSError as e:  # network errors while downloading
        raise DataError(f"{name} could not be read or downloaded into {root}: {e}") from None

    def arrays(ds):
        x = np.asarray(ds.data)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # MNIST (N,H,W); CIFAR (N,H,W,C)
        return _resize(x, image_size), np.asarray(ds.targets, dtype=np.int64)

    x, y = arrays(train)
    x_test, y_test = arrays(test)
    tr, va = _stratified_split(y, (val_fraction,), seed)
    return _finish(name, x[tr], y[tr], x[va], y[va], x_test, y_test, list(train.classes))


# ----------------------------------------------------------------------------------------------- imagefolder


def _class_files(root: Path) -> dict[str, list[Path]]:
    """{class name: image files} for the class subfolders of `root` (hidden entries ignored)."""
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f for f in d.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        )
        out[d.name] = files
    return out


def _read_image(path: Path, size: int):
    """(uint8 array (size, size, 3), was_gray) or None when PIL cannot read the file, or when its header
    declares more than MAX_IMAGE_PIXELS (checked before decoding: a 100,000 x 100,000 PNG is a few KB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own cap
            with Image.open(path) as img:
                w, h = img.size  # from the header; nothing decoded yet
                if w * h > MAX_IMAGE_PIXELS:
                    return None
                img.load()  # decode now: truncated files only fail here
                gray = img.mode in _GRAY_MODES
                img = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8), gray


def _load_imagefolder(*, data_dir, seed, val_fraction, test_fraction, image_size, name, **_):
    if data_dir is None:
        raise DataError("imagefolder needs a directory; pass --data-dir DIR with one folder per class")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; pass --data-dir with one folder per class")
    size = image_size or DEFAULT_FOLDER_IMAGE_SIZE

    split_dirs = {s: root / s for s in ("train", "val", "test") if (root / s).is_dir()}
    layouts = (
        {s: _class_files(d) for s, d in split_dirs.items()} if "train" in split_dirs else {"all": _class_files(root)}
    )
    class_names = sorted({c for files in layouts.values() for c, fs in files.items() if fs})
    if not class_names:
        raise DataError(
            f"no images found in {root}; put one folder per class (optionally under "
            "train/ val/ test/) holding .png/.jpg files"
        )
    index = {c: i for i, c in enumerate(class_names)}

    skipped: list[str] = []
    images, labels, grays, origin = [], [], [], []
    for split, files in layouts.items():
        for c, paths in files.items():
            for p in paths:
                got = _read_image(p, size)
                if got is None:
                    skipped.append(str(p))
                    continue
                images.append(got[0])
                grays.append(got[1])
                labels.append(index[c])
                origin.append(split)
    if skipped:
        warnings.warn(
            f"{len(skipped)} unreadable (or over {MAX_IMAGE_PIXELS:,}-pixel) image file(s) in {root} "
            f"skipped, e.g. {skipped[0]}",
            stacklevel=3,
        )
    if not images:
        raise DataError(f"no readable images in {root} ({len(skipped)} unreadable files skipped)")
    if len(set(labels)) < 2:
        raise DataError(
            f"{root} holds one class ({class_names[labels[0]]!r}); a classifier needs at least two "
            "class folders (with one, every prediction is right)"
        )
    if "train" in layouts:
        have = {s: {c for c, fs in files.items() if fs} for s, files in layouts.items()}
        for split in ("val", "test"):
            if split in have and have[split] and have[split] != have["train"]:
                only_split, only_train = sorted(have[split] - have["train"]), sorted(have["train"] - have[split])
                diff = "; ".join(
                    x
                    for x in (
                        f"only in {split}/: {', '.join(only_split[:5])}" if only_split else "",
                        f"only in train/: {', '.join(only_train[:5])}" if only_train else "",
                    )
                    if x
                )
                raise DataError(
                    f"{root}: {split}/ and train/ hold different classes ({diff}); give both the same class folders"
                )

    x = np.stack(images).transpose(0, 3, 1, 2)  # (N, 3, S, S)
    if all(grays):
        x = x[:, :1]  # gray converted to RGB has R == G == B
    y = np.asarray(labels, dtype=np.int64)
    origin = np.asarray(origin)

    if "all" in layouts:
        tr, va, te = _stratified_split(y, (val_fraction, test_fraction), seed)
    else:
        tr = np.flatnonzero(origin == "train")
        va, te = np.flatnonzero(origin == "val"), np.flatnonzero(origin == "test")
        cut = tuple(f for f, have in ((val_fraction, len(va)), (test_fraction, len(te))) if not have)
        if cut:  # a missing split is cut from train, stratified, as a fraction of train
            pieces = _stratified_split(y[tr], cut, seed)
            new = [tr[p] for p in pieces[1:]]
            tr = tr[pieces[0]]
            if not len(va):
                va = new.pop(0)
            if not len(te):
                te = new.pop(0)
    for split, idx in (("train", tr), ("val", va), ("test", te)):
        if not len(idx):
            raise DataError(f"the {split} split of {root} is empty; add images (at least a few per class)")
    return _finish(name, x[tr], y[tr], x[va], y[va], x[te], y[te], class_names, skipped=skipped)


_LOADERS = {
    "digits": _load_digits,
    "mnist": _load_torchvision,
    "fashion-mnist": _load_torchvision,
    "cifar10": _load_torchvision,
    "cifar100": _load_torchvision,
    "imagefolder": _load_imagefolder,
}
