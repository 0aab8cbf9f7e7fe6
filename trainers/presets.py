"""Per-data-set defaults, kept in one place: input shape, classes, epochs, trial count, search-space bounds.

`space_bounds` is plain data for `search_spaces.default.default_space(**preset.space_bounds)`; its keys are
exactly that function's options (channel bounds are multiples of 8, head channels of 32):

    max_stages        most stages a config may have
    max_repeats       most blocks per stage
    channels          (lo, hi) stage channels;  stem_channels, head_channels likewise (head 0 = no head conv)
    allow_stem_stride whether the stem may downsample (stride 2)
    batch_sizes       the `batch_size` choices

Epochs are not searched: a trial's length is a resource the search hands out. `max_epochs` is the full
length of every run (its learning-rate schedule spans it, so a trial stopped at a rung and continued later
is the same run); `min_epochs` is the first rung of successive halving (rungs min_epochs * eta^k, capped at
max_epochs). With eta = 3 every preset's ladder ends exactly on max_epochs (1, 3, 9, 27 or 2, 6, 18, 54).

`max_downsamples` is recorded beside them, not passed: the most stride-2 layers worth having in total.
A side of H reaches 1x1 after floor(log2(H)) halvings; more still builds (3x3 convs keep 1x1 at 1x1)
but only adds cost, so a space or a filter may use it.

Example:
    >>> get_preset("digits").input_shape
    (1, 8, 8)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nas.errors import DataError


@dataclass(frozen=True)
class Preset:
    name: str
    input_shape: tuple[int, int, int] | None  # (C, H, W); None = read from the data (imagefolder)
    num_classes: int | None  # None = read from the data (imagefolder)
    min_epochs: int  # the first rung: epochs every trial gets before the first promotion decision
    max_epochs: int  # the full run; the learning-rate schedule spans it
    trials: int  # default trial budget of a search
    augment: str | None  # passed to train_trial(augment=...): "flip_crop" or None
    max_downsamples: int
    arch_bounds: dict[str, Any] = field(default_factory=dict)
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256)

    @property
    def epochs(self) -> tuple[int, int]:
        """(min_epochs, max_epochs), for callers written before the two fields (it is no searched range)."""
        return self.min_epochs, self.max_epochs

    @property
    def space_bounds(self) -> dict[str, Any]:
        return {**self.arch_bounds, "batch_sizes": self.batch_sizes}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "num_classes": self.num_classes,
            "min_epochs": self.min_epochs,
            "max_epochs": self.max_epochs,
            "trials": self.trials,
            "augment": self.augment,
            "max_downsamples": self.max_downsamples,
            "space_bounds": {k: list(v) if isinstance(v, tuple) else v for k, v in self.space_bounds.items()},
        }


def _arch(*, max_stages, channels, stem_channels, head_channels, allow_stem_stride, max_repeats=3):
    return {
        "max_stages": max_stages,
        "max_repeats": max_repeats,
        "channels": channels,
        "stem_channels": stem_channels,
        "head_channels": head_channels,
        "allow_stem_stride": allow_stem_stride,
    }


_SMALL_GRAY = _arch(
    max_stages=5, channels=(8, 128), stem_channels=(8, 32), head_channels=(0, 256), allow_stem_stride=True
)
_COLOR = _arch(max_stages=5, channels=(16, 256), stem_channels=(16, 64), head_channels=(0, 512), allow_stem_stride=True)

PRESETS: dict[str, Preset] = {
    # 8x8 -> 4 -> 2 -> 1: three halvings at most, and a stem stride would spend one on a tiny input.
    # One epoch of ~1.2k images takes well under a second; widths up to 48 and 3 stages keep a trial to
    # seconds while still holding networks well past the hand-written baseline (157k MACs). Batch 256 would
    # leave 4 steps an epoch, too few. Epochs 1..27 (rungs 1, 3, 9, 27): one epoch already ranks digits
    # networks coarsely (most reach 60-95 %), and 27 is past where the old searched range (5-20) saw its
    # best trials pile up at the top. With eta 3 a 40-trial search trains about 40 + 13*2 + 4*6 + 1*18
    # ~ 110 epochs, a quarter of the ~500 the old searched epochs cost, so `make demo` fits its 4 minutes.
    "digits": Preset(
        "digits",
        (1, 8, 8),
        10,
        min_epochs=1,
        max_epochs=27,
        trials=40,
        augment=None,
        max_downsamples=3,
        arch_bounds=_arch(
            max_stages=3, channels=(8, 48), stem_channels=(8, 24), head_channels=(0, 96), allow_stem_stride=False
        ),
        batch_sizes=(32, 64, 128),
    ),
    # 28x28 -> 14 -> 7 -> 4 -> 2. No flips or shifts: they change what a digit means at this size.
    # MNIST is learnt in a few epochs (the old range topped at 15): rungs 1, 3, 9.
    "mnist": Preset(
        "mnist",
        (1, 28, 28),
        10,
        min_epochs=1,
        max_epochs=9,
        trials=30,
        augment=None,
        max_downsamples=4,
        arch_bounds=_SMALL_GRAY,
    ),
    # Flips would suit clothes, but 28x28 items fill the frame and shifts cut them; keep it plain.
    # Slower to converge than MNIST (old range 3-20): rungs 2, 6, 18.
    "fashion-mnist": Preset(
        "fashion-mnist",
        (1, 28, 28),
        10,
        min_epochs=2,
        max_epochs=18,
        trials=30,
        augment=None,
        max_downsamples=4,
        arch_bounds=_SMALL_GRAY,
    ),
    # 32x32 -> 16 -> 8 -> 4 -> 2; flip + shift is the standard CIFAR augmentation, worth a few points.
    # Rungs 1, 3, 9, 27: 27 epochs of 50k images is already an hour for a mid-sized net on a CPU.
    "cifar10": Preset(
        "cifar10",
        (3, 32, 32),
        10,
        min_epochs=1,
        max_epochs=27,
        trials=25,
        augment="flip_crop",
        max_downsamples=4,
        arch_bounds=_COLOR,
    ),
    # 100 classes need longer (old range 10-60) and one epoch says little: rungs 2, 6, 18, 54.
    "cifar100": Preset(
        "cifar100",
        (3, 32, 32),
        100,
        min_epochs=2,
        max_epochs=54,
        trials=25,
        augment="flip_crop",
        max_downsamples=4,
        arch_bounds=_COLOR,
    ),
    # Shape and classes come from the folder (32x32 unless image_size says otherwise). Photos usually
    # survive a horizontal flip; pass augment=None for text, digits or anything with a handedness.
    # Rungs 1, 3, 9, 27: on 10k 32x32 photos an epoch is ~11 s on 2 cores, so a full run is ~5 minutes
    # and a first rung ~11 s (the old range was 5-30, every trial trained to its end).
    "imagefolder": Preset(
        "imagefolder",
        None,
        None,
        min_epochs=1,
        max_epochs=27,
        trials=20,
        augment="flip_crop",
        max_downsamples=4,
        arch_bounds=_COLOR,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset for a data set name; DataError naming the choices for an unknown one."""
    key = str(name).lower().replace("_", "-")
    if key == "fashionmnist":
        key = "fashion-mnist"
    if key not in PRESETS:
        raise DataError(f"unknown data set {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[key]
