"""The built-in trainer on a streamed Dataset: the same optimizer, schedule, loss and augmentation as
``trainers.train`` (whose pieces it uses), with batches read through DataLoaders instead of indexed out of
in-memory tensors.

What differs from ``train_trial``: batches come from ``TrialData.loader`` (shuffled by a generator seeded
with the trial's seed, the last partial batch dropped, as in memory); there are no segments (streamed data
trains whole runs, fidelity off) and no time limit. Same seed, same Dataset, CPU -> the same weights.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn as nn

from nas.errors import ConfigError
from search_spaces.numerics import flush_denormals
from trainers.train import (
    AUGMENTATIONS,
    TRAIN_DEFAULTS,
    TrialFailed,
    TrialResult,
    build_optimizer,
    build_scheduler,
    fast_defaults,
    optimizer_lr_wd,
    train_step,
)


def train_streamed(
    config: dict,
    data,
    *,
    model: nn.Module,
    seed: int = 0,
    max_epochs: int | None = None,
    on_epoch=None,
    augment: str | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
) -> TrialResult:
    """Train ``model`` (already on ``data.device``) on a ``TrialData`` through its loaders; a TrialResult
    without weights or state. ``on_epoch(entry)`` returning True stops training (stopped="callback")."""
    cfg = {**TRAIN_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    epochs = int(cfg["epochs"] if max_epochs is None else max_epochs)
    batch_size = int(cfg["batch_size"])
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs ({epochs}) and batch_size ({batch_size}) must be at least 1")
    if augment is not None and augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augment {augment!r}; choose None or one of: {', '.join(AUGMENTATIONS)}")
    dev = data.device
    fast = fast_defaults(dev, precision=precision, channels_last=channels_last)
    loader = data.loader("train", batch_size=batch_size)
    steps = len(loader)
    if steps == 0:
        raise ConfigError("the training split is empty")
    net = model.train()
    use_cl = fast["channels_last"] and len(data.input_shape) == 3
    if use_cl:
        net = net.to(memory_format=torch.channels_last)
    lr, _ = optimizer_lr_wd(cfg)
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(
        optimizer, epochs=epochs, steps_per_epoch=steps, warmup_epochs=float(cfg["warmup_epochs"]), lr=lr
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(cfg["label_smoothing"]))
    aug = AUGMENTATIONS.get(augment)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    curve, stopped, update = [], None, 0
    start = time.perf_counter()
    with flush_denormals(dev.type == "cpu"):
        for epoch in range(1, epochs + 1):
            loss_sum, done = torch.zeros((), device=dev), 0
            for xb, yb in loader:
                xb, yb = xb.to(dev), torch.as_tensor(yb).to(dev)
                loss = train_step(
                    net,
                    optimizer,
                    loss_fn,
                    xb,
                    yb,
                    augment=aug,
                    gen=gen,
                    channels_last=use_cl,
                    bf16=fast["bf16"],
                    dev=dev,
                )
                update += 1
                scheduler.step_update(num_updates=update)
                loss_sum += loss.detach()
                done += 1
            train_loss = loss_sum.item() / max(done, 1)
            if not math.isfinite(train_loss):
                raise TrialFailed(
                    f"loss became {'nan' if math.isnan(train_loss) else 'inf'} at epoch {epoch} (lr={lr:g})"
                )
            entry = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_acc": data.accuracy(net, "val"),
                "lr": optimizer.param_groups[0]["lr"],
            }
            curve.append(entry)
            if on_epoch is not None and on_epoch({**entry, "elapsed": time.perf_counter() - start}) is True:
                stopped = "callback"
                break
    return TrialResult(
        val_acc=curve[-1]["val_acc"],
        test_acc=data.accuracy(net, "test"),
        train_time=time.perf_counter() - start,
        epochs_run=len(curve),
        curve=curve,
        stopped=stopped,
        max_epochs=epochs,
    )
