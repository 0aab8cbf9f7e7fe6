"""The training state of a trial between two segments, so that a run stopped at a rung and continued later
is the same run as one straight through.

A ``TrainingState`` holds everything the training loop reads that changes as it goes:
    model        state_dict (weights and BatchNorm buffers)
    optimizer    state_dict (moments, step counts, and the param groups' current lr)
    update       optimizer updates done so far: the scheduler's position (the schedule is a pure function of it)
    data_rng     state of the loop's torch.Generator (shuffling and augmentation)
    global_rng   torch's global CPU RNG state (dropout; and CUDA's, when training ran on a GPU)
plus what must agree for a continuation to make sense: epochs done, the run's full length (``max_epochs``:
the learning-rate schedule spans it), steps per epoch and the seed.

``to_bytes`` / ``from_bytes`` go through ``torch.save`` / ``torch.load(weights_only=True)``: tensors on the
CPU, plain Python values, nothing that runs code when loaded, so the bytes can travel to any process or
machine (a Ray node) and back. On the CPU a continued run is bit-identical to a straight one. Continuing on
another device kind (trained on a GPU, continued on a CPU) loads weights, optimizer and schedule but cannot
reuse the generator states (their formats differ): the data order is reseeded from (seed, epoch) and a
warning says the run is no longer bit-identical.

    >>> state = TrainingState.from_bytes(result.state.to_bytes())    # doctest: +SKIP
    >>> train_trial(config, data, model=f, max_epochs=9, resume=state)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, fields
from typing import Any

import torch

from nas.errors import ConfigError

FORMAT = 1  # bumped when the layout changes; an older or newer checkpoint is refused with a clear message


@dataclass
class TrainingState:
    epoch: int  # epochs completed
    update: int  # optimizer updates done (the scheduler's position)
    max_epochs: int  # the run's full length; the schedule spans it
    steps_per_epoch: int
    seed: int
    device_type: str  # "cpu" or "cuda": which generator format data_rng / global_rng hold
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    data_rng: torch.Tensor
    global_rng: torch.Tensor
    cuda_rng: torch.Tensor | None = None

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save({"format": FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrainingState":
        """Raises ConfigError for bytes that are not a training state of this format."""
        try:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for truncated or foreign bytes
            raise ConfigError(f"not a readable training checkpoint ({' '.join(str(e).split())[:160]})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise ConfigError(f"training checkpoint format {got!r} is not {FORMAT}; start the trial afresh")
        raw.pop("format")
        try:
            return cls(**raw)
        except TypeError as e:
            raise ConfigError(f"training checkpoint is incomplete: {e}") from None


def _cpu(tree):
    """A copy of a nested dict/list of tensors with every tensor detached on the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: _cpu(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cpu(v) for v in tree)
    return tree


def capture(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    *,
    epoch: int,
    update: int,
    max_epochs: int,
    steps_per_epoch: int,
    seed: int,
    device: torch.device,
) -> TrainingState:
    """The state after ``epoch`` full epochs; call it inside the same RNG context the loop ran in."""
    cuda = None
    if device.type == "cuda":
        cuda = torch.cuda.get_rng_state(device).clone()
    return TrainingState(
        epoch=int(epoch),
        update=int(update),
        max_epochs=int(max_epochs),
        steps_per_epoch=int(steps_per_epoch),
        seed=int(seed),
        device_type=device.type,
        model=_cpu(net.state_dict()),
        optimizer=_cpu(optimizer.state_dict()),
        data_rng=gen.get_state().clone(),
        global_rng=torch.get_rng_state().clone(),
        cuda_rng=cuda,
    )


def as_state(resume) -> TrainingState:
    """A TrainingState from a TrainingState or its bytes."""
    if isinstance(resume, TrainingState):
        return resume
    if isinstance(resume, (bytes, bytearray, memoryview)):
        return TrainingState.from_bytes(bytes(resume))
    raise ConfigError(f"resume must be a TrainingState or its bytes, got {type(resume).__name__}")


def check_compatible(state: TrainingState, *, max_epochs: int, steps_per_epoch: int, stop_epoch: int) -> None:
    """ConfigError when continuing ``state`` would not be the same run (or has nothing left to do)."""
    if state.max_epochs != max_epochs:
        raise ConfigError(
            f"the checkpoint belongs to a run of {state.max_epochs} epochs, not {max_epochs}: "
            "the learning-rate schedule would change; continue with the same max_epochs"
        )
    if state.steps_per_epoch != steps_per_epoch:
        raise ConfigError(
            f"the checkpoint was trained with {state.steps_per_epoch} steps an epoch, this run has "
            f"{steps_per_epoch} (another batch size or training split)"
        )
    if not state.epoch < stop_epoch:
        raise ConfigError(
            f"the checkpoint has already trained {state.epoch} epochs; nothing to do up to epoch {stop_epoch}"
        )


def restore(
    state: TrainingState,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    *,
    device: torch.device,
) -> None:
    """Load ``state`` into the freshly built network, optimizer and generator, and set the global RNG."""
    try:
        net.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
    except (RuntimeError, ValueError, KeyError) as e:  # another architecture or optimizer
        raise ConfigError(
            f"the checkpoint does not fit this config's network or optimizer: {' '.join(str(e).split())[:200]}"
        ) from None
    if state.device_type == device.type:
        gen.set_state(state.data_rng)
        torch.set_rng_state(state.global_rng)
        if device.type == "cuda" and state.cuda_rng is not None:
            torch.cuda.set_rng_state(state.cuda_rng, device)
    else:
        warnings.warn(
            f"continuing a {state.device_type} checkpoint on {device.type}: weights, optimizer and "
            "schedule carry over, the random streams are reseeded (not bit-identical)",
            stacklevel=3,
        )
        gen.manual_seed(state.seed * 1_000_003 + state.epoch)
        torch.manual_seed(state.seed * 1_000_003 + state.epoch)
