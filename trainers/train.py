"""Train one config on in-memory tensors: timm optimizer + per-step cosine schedule, seeded and fast.

Training keys read from the config (all optional; defaults are in `TRAIN_DEFAULTS`):
    optimizer        {"name": sgd|adam|adamw|rmsprop, + that optimizer's own keys}
                       sgd:  momentum, nesterov      adam/adamw: beta1, beta2      rmsprop: alpha, momentum
                       and, in the shipped space, its own lr and weight_decay (see `optimizer_lr_wd`)
    lr, weight_decay, batch_size, epochs, label_smoothing, warmup_epochs

Notation: N = training images, B = batch size, S = optimizer steps per epoch = N // B (the last, partial
batch is dropped so BatchNorm never sees a batch of one and every step has the same size; when N < B
there is one step on all N images).

Schedule: timm `create_scheduler_v2("cosine", step_on_epochs=False)`, stepped after every optimizer update:
a linear warmup over warmup_epochs * S steps from lr/100 to lr, then cosine decay to 0 at the last step.
Weight decay skips biases and norm parameters (timm's `filter_bias_and_bn`).

Length and segments: `max_epochs` is the run's full length, and the schedule spans all of it (default:
the config's `epochs` key, kept for old configs, else 10). `stop_epoch` ends this call after that epoch;
`resume` continues from the `TrainingState` (or its bytes) an earlier call returned with `keep_state=True`.
A run cut into segments this way is the same run as one straight through: no epoch is repeated, the
schedule, optimizer moments, data order and dropout draws carry over (see trainers/checkpoint.py), and on
the CPU the final weights are bit-identical.

Determinism: shuffling and augmentation draw from a `torch.Generator` seeded with `seed`, and global
RNG (dropout, and weight init when `model` is a factory) is seeded inside `torch.random.fork_rng`, so the
caller's RNG state is untouched. Same seed, same config, CPU -> identical weights. On CUDA results can
differ in the last bits (cuDNN kernel choice).

Augmentation (`augment=`): None, or "flip_crop" (random horizontal flip and a random shift of up to
1/8 of the side with zero padding, done per batch on the device).

Example:
    >>> import torch.nn as nn
    >>> data = load_dataset("digits")                                    # doctest: +SKIP
    >>> net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    >>> r = train_trial({"lr": 0.01, "epochs": 3}, data, model=net)      # doctest: +SKIP
    >>> r.val_acc > 0.8                                                  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from nas.errors import ConfigError
from search_spaces.numerics import denormals_flushed, flush_denormals
from trainers import checkpoint as ckpt
from trainers.checkpoint import TrainingState

TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "lr": 0.05,
    "weight_decay": 5e-4,
    "batch_size": 64,
    "epochs": 10,
    "label_smoothing": 0.0,
    "warmup_epochs": 0,
}
_EVAL_BATCH = 1024  # evaluation needs no gradients, so large batches are cheap and fewer calls are faster


class TrialFailed(RuntimeError):
    """Training broke down (loss not finite); `reason` is a short sentence for the trial record."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class TrialResult:
    val_acc: float  # what the optimiser sees: accuracy of the final weights on the validation split
    test_acc: float  # for reports only; never used to choose
    train_time: float  # seconds, training and per-epoch validation
    epochs_run: int  # epochs trained by this call (len(curve))
    curve: list[dict[str, float]]  # per epoch of this call: {epoch, train_loss, val_acc, lr[, fraction]}
    stopped: str | None = None  # None, "time_limit" or "callback"
    denormals_flushed: bool = False  # observed inside the training loop (CPU work), see search_spaces.numerics
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # keep_weights=True
    start_epoch: int = 0  # epochs already trained when this call began (resume)
    max_epochs: int = 0  # the run's full length (what the schedule spans)
    state: TrainingState | None = field(default=None, repr=False)  # keep_state=True, at an epoch boundary

    @property
    def epoch(self) -> int:
        """Epochs trained in all, this call included (a time-cut last epoch counts)."""
        return self.start_epoch + self.epochs_run

    def to_dict(self) -> dict[str, Any]:
        return {
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "train_time": self.train_time,
            "epochs_run": self.epochs_run,
            "curve": [dict(c) for c in self.curve],
            "stopped": self.stopped,
            "denormals_flushed": self.denormals_flushed,
            "start_epoch": self.start_epoch,
            "epoch": self.epoch,
            "max_epochs": self.max_epochs,
        }


# ----------------------------------------------------------------------------------------------- optimizers


def _sgd(opt):
    momentum = float(opt.get("momentum", 0.9))
    # torch refuses nesterov without momentum; a space that samples momentum 0 means plain SGD.
    nesterov = bool(opt.get("nesterov", True)) and momentum > 0
    return "sgd", {"momentum": momentum, "nesterov": nesterov}


def _adam_like(timm_name):
    def make(opt):
        return timm_name, {"betas": (float(opt.get("beta1", 0.9)), float(opt.get("beta2", 0.999)))}

    return make


def _rmsprop(opt):
    # timm's own default alpha for rmsprop is 0.9 (TF style); torch's is 0.99. We default to timm's.
    return "rmsprop", {"alpha": float(opt.get("alpha", 0.9)), "momentum": float(opt.get("momentum", 0.0))}


# Our config names -> (timm opt name, timm kwargs). timm also knows "momentum"/"nesterov" as SGD variants.
OPTIMIZERS: dict[str, Callable[[dict], tuple[str, dict]]] = {
    "sgd": _sgd,
    "momentum": lambda o: ("sgd", {"momentum": float(o.get("momentum", 0.9)), "nesterov": False}),
    "nesterov": lambda o: _sgd({**o, "nesterov": True}),
    "adam": _adam_like("adam"),
    "adamw": _adam_like("adamw"),
    "rmsprop": _rmsprop,
}


def optimizer_lr_wd(config: dict) -> tuple[float, float]:
    """(lr, weight_decay): the optimizer's own keys when it has them (the shipped space puts them there, one
    range per optimizer), else the top-level keys, else the defaults. weight_decay is decoupled for AdamW
    and an L2 term in the gradient for the others (what torch's optimizers do with the same argument)."""
    opt = config.get("optimizer")
    opt = opt if isinstance(opt, dict) else {}
    lr = opt.get("lr", config.get("lr", TRAIN_DEFAULTS["lr"]))
    wd = opt.get("weight_decay", config.get("weight_decay", TRAIN_DEFAULTS["weight_decay"]))
    return float(lr), float(wd)


def build_optimizer(model: nn.Module, config: dict) -> torch.optim.Optimizer:
    """timm `create_optimizer_v2` from the config's optimizer, lr and weight_decay keys."""
    from timm.optim import create_optimizer_v2

    opt = config.get("optimizer", TRAIN_DEFAULTS["optimizer"])
    if isinstance(opt, str):
        opt = {"name": opt}
    name = str(opt.get("name", "sgd")).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    timm_name, kwargs = OPTIMIZERS[name](opt)
    lr, weight_decay = optimizer_lr_wd(config)
    return create_optimizer_v2(model, opt=timm_name, lr=lr, weight_decay=weight_decay, **kwargs)


def build_scheduler(optimizer, *, epochs: int, steps_per_epoch: int, warmup_epochs: float, lr: float):
    """timm cosine schedule counted in optimizer steps; call `.step_update(num_updates=k)` after step k."""
    from timm.scheduler import create_scheduler_v2

    sched, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=epochs,
        min_lr=0.0,
        warmup_epochs=warmup_epochs,
        warmup_lr=lr / 100,
        warmup_prefix=False,
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    return sched


# ----------------------------------------------------------------------------------------------- augmentation


def _flip_crop(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random shift by up to H//8 rows / W//8 cols (zero padded), per sample."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=gen, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    p = max(1, h // 8)
    xp = nn.functional.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (b,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


AUGMENTATIONS: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {"flip_crop": _flip_crop}


# ----------------------------------------------------------------------------------------------- loop


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in eval mode; 0.0 for an empty split."""
    if len(y) == 0:
        return 0.0
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    for i in range(0, len(y), _EVAL_BATCH):
        correct += (model(x[i : i + _EVAL_BATCH]).argmax(1) == y[i : i + _EVAL_BATCH]).sum()
    model.train(was_training)
    return correct.item() / len(y)


def train_step(net, optimizer, loss_fn, xb, yb, *, augment, gen, channels_last: bool, bf16: bool, dev):
    """One optimizer step on a batch (augmented, channels-last and bfloat16 autocast where asked); the
    detached-able loss tensor. Shared by the in-memory loop and the streamed one (``stream_train``)."""
    if augment is not None:
        xb = augment(xb, gen)
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(net(xb), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


PRECISIONS = ("auto", "bf16", "fp32")


def native_bf16() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (AMX or AVX512-BF16), as oneDNN sees it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def amx_bf16() -> bool:
    """Whether this CPU has AMX tiles (Intel Sapphire Rapids and later), the bfloat16 hardware "auto" uses."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_defaults(dev: torch.device, *, precision: str = "auto", channels_last: bool | None = None) -> dict:
    """What training on `dev` uses: {"bf16": autocast to bfloat16?, "channels_last": NHWC?}.

    Measured in bench/bench_precision.py: where bfloat16 is emulated (AVX2) autocast ran 2.5-7x slower, and
    on an AMD CPU with native AVX512-BF16 it still ran slower (0.55x on the 8.2M-MAC cifar10-dev network,
    0.87x on digits: autocast's casts cost more than its faster convolutions save at these sizes). So "auto"
    turns it on only with AMX tiles, whose bfloat16 matrix units are many times faster than AVX512; the AMX
    case is not measured here (no such CPU), "fp32" turns it off. Channels-last ran faster on every CPU
    measured. CUDA keeps float32 NCHW training.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    cpu = dev.type == "cpu"
    bf16 = precision == "bf16" or (precision == "auto" and cpu and amx_bf16() and native_bf16())
    return {"bf16": bf16, "channels_last": cpu if channels_last is None else bool(channels_last)}


def _pick_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train_trial(
    config: dict,
    data,
    *,
    model: nn.Module | Callable[[], nn.Module],
    seed: int = 0,
    device=None,
    max_epochs: int | None = None,
    stop_epoch: int | None = None,
    resume=None,
    keep_state: bool = False,
    time_limit: float | None = None,
    on_epoch: Callable[[dict], Any] | None = None,
    keep_weights: bool = False,
    augment: str | None = None,
    num_threads: int | None = None,
    flush_denormal: bool = True,
    precision: str = "auto",
    channels_last: bool | None = None,
) -> TrialResult:
    """Train `model` on `data` (a TensorData) with the config's training keys and return a TrialResult.

    model: a module, or a zero-argument factory called under the seed (so the init is seeded too).
    max_epochs: the run's full length; the schedule spans it (default: the config's `epochs`, else 10).
    stop_epoch: stop after this epoch (default max_epochs); with keep_state=True the result's `state`
        continues the run later.
    resume: a TrainingState, or its bytes, from an earlier segment of the same run (same config, seed,
        data and max_epochs); training picks up at its epoch + 1.
    keep_state: put the TrainingState after the last full epoch on the result (None when a time limit
        cut the last epoch short: a partial epoch cannot be continued).
    time_limit: seconds; once passed, training stops after the current step and the last curve entry
        carries "fraction" (of its epoch done) when the cut fell mid-epoch (stopped="time_limit").
    on_epoch: called after each epoch with its curve entry plus "elapsed"; returning True stops training
        (stopped="callback"), e.g. for pruning.
    keep_weights: put a CPU copy of the final state_dict on the result.
    num_threads: torch intra-op threads for this call (restored afterwards), so parallel workers do not
        oversubscribe the cores.
    flush_denormal: flush denormal floats to zero while training on a CPU (restored afterwards): without
        it epochs grow several times slower as training proceeds (search_spaces.numerics). False leaves
        the caller's mode as it is.
    precision: "auto" (bfloat16 autocast for the training steps on CPUs with native bfloat16 arithmetic,
        AMX or AVX512-BF16; float32 elsewhere and on CUDA), "bf16" or "fp32". Evaluation stays float32.
    channels_last: NHWC memory format for the network and its batches; None decides by `fast_defaults`
        (on for CPU training, where oneDNN's convolutions run faster in it; see bench/bench_precision.py).
    Raises TrialFailed when the training loss becomes nan or inf, ConfigError for bad training keys or a
    checkpoint that does not belong to this run.
    """
    cfg = {**TRAIN_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    epochs, stop = _segment(cfg, max_epochs, stop_epoch)
    batch_size = int(cfg["batch_size"])
    if batch_size < 1:
        raise ConfigError(f"batch_size ({batch_size}) must be at least 1")
    if augment is not None and augment not in AUGMENTATIONS:
        raise ConfigError(f"unknown augment {augment!r}; choose None or one of: {', '.join(AUGMENTATIONS)}")
    state = None if resume is None else ckpt.as_state(resume)
    dev = _pick_device(device)
    old_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with flush_denormals(flush_denormal and dev.type == "cpu"), torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            net = model if isinstance(model, nn.Module) else model()
            fast = fast_defaults(dev, precision=precision, channels_last=channels_last)
            return _run(
                cfg,
                data,
                net,
                seed=seed,
                dev=dev,
                epochs=epochs,
                stop=stop,
                resume=state,
                keep_state=keep_state,
                batch_size=batch_size,
                time_limit=time_limit,
                on_epoch=on_epoch,
                keep_weights=keep_weights,
                augment=AUGMENTATIONS.get(augment),
                **fast,
            )
    finally:
        torch.set_num_threads(old_threads)


def _segment(cfg: dict, max_epochs, stop_epoch) -> tuple[int, int]:
    """(full length, last epoch of this call), checked."""
    epochs = int(cfg["epochs"]) if max_epochs is None else int(max_epochs)
    stop = epochs if stop_epoch is None else int(stop_epoch)
    if epochs < 1:
        raise ConfigError(f"epochs ({epochs}) must be at least 1")
    if not 1 <= stop <= epochs:
        raise ConfigError(f"stop_epoch ({stop}) must lie in 1..max_epochs ({epochs})")
    return epochs, stop


def _run(
    cfg,
    data,
    net,
    *,
    seed,
    dev,
    epochs,
    stop,
    resume,
    keep_state,
    batch_size,
    time_limit,
    on_epoch,
    keep_weights,
    augment,
    bf16: bool,
    channels_last: bool,
):
    net = net.to(dev).train()
    channels_last = channels_last and data.x_train.dim() == 4
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    x_train, y_train = data.x_train.to(dev), data.y_train.to(dev)
    x_val, y_val = data.x_val.to(dev), data.y_val.to(dev)
    n = len(y_train)
    if n == 0:
        raise ConfigError("the training split is empty")
    batch_size = min(batch_size, n)
    steps = n // batch_size  # drop the partial last batch (see module docstring)

    lr, _ = optimizer_lr_wd(cfg)
    optimizer = build_optimizer(net, cfg)
    scheduler = build_scheduler(
        optimizer, epochs=epochs, steps_per_epoch=steps, warmup_epochs=float(cfg["warmup_epochs"]), lr=lr
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(cfg["label_smoothing"]))
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    first, update = 1, 0
    if resume is not None:
        ckpt.check_compatible(resume, max_epochs=epochs, steps_per_epoch=steps, stop_epoch=stop)
        ckpt.restore(resume, net, optimizer, gen, device=dev)
        first, update = resume.epoch + 1, resume.update
        scheduler.step_update(num_updates=update)  # the lr of the next step, as in the straight run

    curve: list[dict[str, float]] = []
    stopped = None
    start = time.perf_counter()
    deadline = None if time_limit is None else start + float(time_limit)
    for epoch in range(first, stop + 1):
        order = torch.randperm(n, generator=gen, device=dev)
        # Summed on the device: one host sync per epoch; a single nan/inf step makes the sum non-finite.
        loss_sum = torch.zeros((), device=dev)
        done = 0
        for s in range(steps):
            idx = order[s * batch_size : (s + 1) * batch_size]
            loss = train_step(
                net,
                optimizer,
                loss_fn,
                x_train[idx],
                y_train[idx],
                augment=augment,
                gen=gen,
                channels_last=channels_last,
                bf16=bf16,
                dev=dev,
            )
            update += 1
            scheduler.step_update(num_updates=update)
            loss_sum += loss.detach()
            done += 1
            # Checked per step too: one epoch of a large set on a CPU can outlast a whole budget.
            if deadline is not None and done < steps and time.perf_counter() > deadline:
                stopped = "time_limit"
                break
        train_loss = loss_sum.item() / done
        if not math.isfinite(train_loss):
            kind = "nan" if math.isnan(train_loss) else "inf"
            raise TrialFailed(f"loss became {kind} at epoch {epoch} (lr={lr:g})")
        entry = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_acc": evaluate(net, x_val, y_val),
            "lr": optimizer.param_groups[0]["lr"],
        }
        if done < steps:
            entry["fraction"] = done / steps  # the time limit cut this epoch short
        curve.append(entry)
        elapsed = time.perf_counter() - start
        if on_epoch is not None and on_epoch({**entry, "elapsed": elapsed}) is True and not stopped:
            stopped = "callback"
        if stopped:
            break
        if time_limit is not None and elapsed > time_limit and epoch < stop:
            stopped = "time_limit"
            break
    train_time = time.perf_counter() - start
    flushed = dev.type == "cpu" and denormals_flushed()  # observed where the work ran, for the record and tests
    saved = None
    if keep_state and "fraction" not in curve[-1]:
        saved = ckpt.capture(
            net,
            optimizer,
            gen,
            epoch=curve[-1]["epoch"],
            update=update,
            max_epochs=epochs,
            steps_per_epoch=steps,
            seed=seed,
            device=dev,
        )

    test_acc = evaluate(net, data.x_test.to(dev), data.y_test.to(dev))
    state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()} if keep_weights else None
    return TrialResult(
        val_acc=curve[-1]["val_acc"],
        test_acc=test_acc,
        train_time=train_time,
        epochs_run=len(curve),
        curve=curve,
        stopped=stopped,
        state_dict=state,
        denormals_flushed=flushed,
        start_epoch=first - 1,
        max_epochs=epochs,
        state=saved,
    )
