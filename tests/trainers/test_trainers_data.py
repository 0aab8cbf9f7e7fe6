"""Data loading: shapes, seeded stratified splits, normalisation, image folders, and the errors users see."""

import numpy as np
import pytest
import torch
from PIL import Image

from nas.errors import DataError
from trainers import load_dataset
from trainers.data import _stratified_split


# ----------------------------------------------------------------------------------------------- digits


def test_digits_shapes_and_sizes(digits):
    d = digits
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10 and d.class_names == [str(i) for i in range(10)]
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 8, 8) and len(x) == len(y)
    n = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert n == 1797
    assert abs(len(d.y_test) - 0.2 * n) <= 10 and abs(len(d.y_val) - 0.15 * n) <= 10


def test_digits_normalised_with_train_statistics(digits):
    d = digits
    assert abs(d.x_train.mean().item()) < 1e-4
    assert abs(d.x_train.std().item() - 1.0) < 1e-3
    # the stored statistics undo the normalisation back to the 0..16 pixel counts / 16
    from sklearn.datasets import load_digits

    raw = d.x_train * d.std[0] + d.mean[0]
    assert torch.allclose(raw * 16, (raw * 16).round(), atol=1e-3)
    assert abs(d.mean[0] - load_digits().images.mean() / 16) < 0.02  # train mean close to the full-set mean


def test_digits_split_stratified(digits):
    d = digits
    full = np.bincount(np.concatenate([d.y_train, d.y_val, d.y_test]), minlength=10)
    for y, frac in ((d.y_val, 0.15), (d.y_test, 0.2)):
        counts = np.bincount(y.numpy(), minlength=10)
        assert np.all(np.abs(counts - full * frac) <= 1.0), (counts, full * frac)


def test_digits_split_deterministic_and_seeded(digits):
    again = load_dataset("digits", seed=0)
    assert torch.equal(again.x_val, digits.x_val) and torch.equal(again.y_test, digits.y_test)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.y_val, digits.y_val)


def test_stratified_split_partitions_exactly():
    y = np.repeat(np.arange(5), [3, 10, 17, 40, 1])
    parts = _stratified_split(y, (0.15, 0.2), seed=3)
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(y)))  # disjoint and complete
    for c, k in zip(range(5), [3, 10, 17, 40, 1]):
        assert abs((y[parts[1]] == c).sum() - 0.15 * k) <= 1
        assert abs((y[parts[2]] == c).sum() - 0.2 * k) <= 1


def test_bad_fractions():
    with pytest.raises(DataError, match="no training data"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)


# ----------------------------------------------------------------------------------------------- torchvision


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100"])
def test_torchvision_missing_files(tmp_path, name):
    with pytest.raises(DataError) as e:
        load_dataset(name, data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert "not found in" in msg and str(tmp_path) in msg and "--download" in msg and "\n" not in msg


def test_torchvision_reads_real_files(tmp_path):
    """A fake MNIST in torchvision's on-disk layout (idx files) loads with the official test split as test."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def idx(path, arr):
        dims = arr.shape
        header = bytes([0, 0, 8, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)
        path.write_bytes(header + arr.astype(np.uint8).tobytes())

    y_tr, y_te = np.arange(100) % 10, np.arange(30) % 10
    idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (100, 28, 28)))
    idx(raw / "train-labels-idx1-ubyte", y_tr)
    idx(raw / "t10k-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)))
    idx(raw / "t10k-labels-idx1-ubyte", y_te)
    d = load_dataset("mnist", data_dir=tmp_path, val_fraction=0.2, image_size=16)
    assert d.input_shape == (1, 16, 16) and d.num_classes == 10
    assert len(d.y_test) == 30 and torch.equal(d.y_test, torch.as_tensor(y_te))
    assert len(d.y_train) == 80 and len(d.y_val) == 20
    assert np.all(np.bincount(d.y_val.numpy(), minlength=10) == 2)  # stratified: 2 of each 10


# ----------------------------------------------------------------------------------------------- imagefolder

COLORS = {"cat": (250, 10, 10), "dog": (10, 250, 10), "owl": (10, 10, 250)}


def _png(path, color, size=(12, 10), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    (img.convert(mode) if mode != "RGB" else img).save(path)


def test_imagefolder_plain_layout_with_corrupt_file(tmp_path):
    for c, color in COLORS.items():
        for i in range(10):
            _png(tmp_path / c / f"{i}.png", color)
    (tmp_path / "dog" / "broken.png").write_bytes(b"this is not a png")
    good = tmp_path / "cat" / "0.png"
    (tmp_path / "owl" / "truncated.png").write_bytes(good.read_bytes()[:40])
    (tmp_path / "owl" / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.warns(UserWarning, match="2 unreadable"):
        d = load_dataset("imagefolder", data_dir=tmp_path, image_size=8, seed=0)
    assert d.skipped == 2 and any("broken.png" in f for f in d.skipped_files)
    assert d.class_names == ["cat", "dog", "owl"] and d.num_classes == 3
    assert d.input_shape == (3, 8, 8)
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 30
    # pixels survive: un-normalised, each image is its class colour
    mean, std = torch.tensor(d.mean)[:, None, None], torch.tensor(d.std)[:, None, None]
    for x, y in zip(d.x_train, d.y_train):
        rgb = (x * std + mean) * 255
        want = torch.tensor(COLORS[d.class_names[y]], dtype=torch.float32)[:, None, None]
        assert torch.allclose(rgb, want.expand_as(rgb), atol=1.0)


def test_imagefolder_split_layout_and_grayscale(tmp_path):
    for split, n in (("train", 8), ("val", 2), ("test", 3)):
        for c in ("a", "b"):
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", (40 if c == "a" else 200,) * 3, size=(20, 20), mode="L")
    d = load_dataset("imagefolder", data_dir=tmp_path, image_size=16)
    assert d.input_shape == (1, 16, 16) and d.class_names == ["a", "b"] and d.skipped == 0
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (16, 4, 6)
    # without val/ the val split is cut from train
    import shutil

    shutil.rmtree(tmp_path / "val")
    d2 = load_dataset("imagefolder", data_dir=tmp_path, image_size=16, val_fraction=0.25)
    assert (len(d2.y_train), len(d2.y_val), len(d2.y_test)) == (12, 4, 6)


def test_imagefolder_default_size_is_32_and_keeps_aspect(tmp_path):
    for c in ("a", "b"):
        for i in range(5):
            _png(tmp_path / c / f"{i}.png", (0, 0, 0), size=(64, 40))
    d = load_dataset("imagefolder", data_dir=tmp_path)
    assert d.input_shape == (3, 32, 32)


def test_imagefolder_missing_and_empty(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="no images found in"):
        load_dataset("imagefolder", data_dir=tmp_path)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset("imagefolder", data_dir=tmp_path)
    (tmp_path / "cls" / "bad.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no readable images"):
        load_dataset("imagefolder", data_dir=tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("imagefolder")
