"""Size caps of a network, checked from its config by arithmetic before anything is allocated.

One gate for every place a config enters: ``nas search`` (every proposed config is a constraint, so one
over the caps is never proposed; a trial checks again before it builds), ``nas inspect`` and ``nas export``.

Notation: per image, ``activations`` is the number of floats the blocks' convolutions write
(each block's registry entry says how many; BatchNorm and the activation keep one copy each for backward, so
training holds about 3x that), ``batch`` the config's batch size. Training memory is estimated as

    4 bytes * (3 * batch * activations + 4 * params)      (weights, gradients and two optimiser moments)

An estimate, low by the framework's own overhead; what it must catch is the config that asks for tens of
gigabytes (channels: 100000) before a trial allocates it.
"""

from __future__ import annotations

from nas.errors import ConfigError
from search_spaces.arch import Arch, validate_arch
from search_spaces.counting import _shape, count_arch, walk

# 4 GB of float32 weights; 25x ResNet-50's MACs at 224 (inspect runs the network on the CPU three times).
MAX_PARAMS = 1_000_000_000
MAX_MACS = 100_000_000_000
# Estimated training memory of one trial. 16 GiB: ResNet-50 at 224 with batch 64 needs ~11 GiB by this
# estimate; a CPU search on anything larger would not finish anyway.
MAX_TRAIN_BYTES = 16 << 30
DEFAULT_BATCH = 64  # what trainers/train.py uses when a config has no batch_size

CAPS = {"max_params": MAX_PARAMS, "max_macs": MAX_MACS, "max_train_bytes": MAX_TRAIN_BYTES}


def activations(arch: Arch, h: int, w: int) -> int:
    """Floats the network's convolutions write for one ``h`` x ``w`` image (each block's registry estimate)."""
    return sum(block.activations(args, h_in, w_in) for block, args, h_in, w_in, _ in walk(arch, h, w))


def measure(config: dict, *, input_shape, num_classes: int | None = None) -> dict:
    """``{"params", "macs", "activations", "train_bytes", "arch"}`` of ``config`` (ConfigError if it is
    malformed); ``arch`` is the decoded, checked architecture, so a caller can build the network from it
    (``search_spaces.builder.Net(arch)``) without validating the config again."""
    c, h, w = _shape(tuple(input_shape))
    arch = validate_arch(config, num_classes=num_classes, in_chans=c)
    counts = count_arch(arch, h, w)
    acts = activations(arch, h, w)
    batch = config.get("batch_size", DEFAULT_BATCH) if isinstance(config, dict) else DEFAULT_BATCH
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        batch = DEFAULT_BATCH  # the trainer reports a bad batch size itself
    return {**counts, "activations": acts, "train_bytes": 4 * (3 * batch * acts + 4 * counts["params"]), "arch": arch}


def over_caps(
    config: dict, *, input_shape, num_classes: int | None = None, train: bool = True, measured: dict | None = None
) -> str | None:
    """Why ``config`` is too large to build here (one sentence), or None. ``train=False`` skips the
    training-memory cap (inspect and export run one image); ``measured``: its ``measure``, if already taken."""
    m = measured or measure(config, input_shape=input_shape, num_classes=num_classes)
    shape = "x".join(map(str, input_shape))
    if m["params"] > MAX_PARAMS:
        return f"{m['params']:,} parameters at input {shape}, above the cap of {MAX_PARAMS:,}"
    if m["macs"] > MAX_MACS:
        return f"{m['macs']:,} MACs at input {shape}, above the cap of {MAX_MACS:,}"
    if train and m["train_bytes"] > MAX_TRAIN_BYTES:
        return (
            f"training would need about {m['train_bytes'] / 2**30:,.1f} GiB at input {shape} "
            f"(activations of the batch and weights), above the cap of {MAX_TRAIN_BYTES / 2**30:.0f} GiB"
        )
    return None


def check_size(
    config: dict, *, input_shape, num_classes: int | None = None, train: bool = True, measured: dict | None = None
) -> None:
    """Raise a one-line ConfigError when ``config`` is over a cap (see ``over_caps``)."""
    why = over_caps(config, input_shape=input_shape, num_classes=num_classes, train=train, measured=measured)
    if why:
        raise ConfigError(f"too large to build here: {why}; check channels, repeats and the input shape")
