"""Resumable training: a run stopped at rungs and continued is bit-identical (CPU) to one straight run,
also when the state crosses a process boundary as bytes; a checkpoint from another run is refused."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from nas.errors import ConfigError
from trainers import train_trial
from trainers.checkpoint import TrainingState

ROOT = Path(__file__).resolve().parents[2]


def net():
    # BatchNorm (buffers), dropout (global RNG) and a bias: every kind of state the loop touches.
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(32, 10),
    )


OPTIMIZERS = {
    "sgd": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "adam": {"name": "adam", "beta1": 0.85, "beta2": 0.99},
    "adamw": {"name": "adamw", "beta1": 0.9, "beta2": 0.999},
    "rmsprop": {"name": "rmsprop", "alpha": 0.95, "momentum": 0.5},
}


def config(opt):
    return {
        "optimizer": OPTIMIZERS[opt],
        "lr": 0.01 if opt != "sgd" else 0.1,
        "batch_size": 128,
        "weight_decay": 1e-3,
        "label_smoothing": 0.1,
        "warmup_epochs": 1,
    }


def run(cfg, data, **kw):
    return train_trial(cfg, data, model=net, seed=3, device="cpu", augment="flip_crop", **kw)


def in_segments(cfg, data, rungs, max_epochs, *, through_bytes=True):
    """Train to each rung in turn, each segment continuing from the previous one's state."""
    state, curve, last = None, [], None
    for r in rungs + [max_epochs]:
        last = run(
            cfg,
            data,
            max_epochs=max_epochs,
            stop_epoch=r,
            keep_state=True,
            keep_weights=True,
            resume=state.to_bytes() if (through_bytes and state is not None) else state,
        )
        assert last.start_epoch == (curve[-1]["epoch"] if curve else 0) and last.epoch == r
        curve += last.curve
        state = last.state
    return last, curve


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_stopping_at_every_rung_is_the_same_run(digits, opt):
    cfg = config(opt)
    straight = run(cfg, digits, max_epochs=3, keep_weights=True)
    last, curve = in_segments(cfg, digits, [1, 2], 3)
    assert_same_weights(straight.state_dict, last.state_dict)
    assert curve == straight.curve  # same train loss, val acc and lr at every epoch
    assert curve[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the schedule spans max_epochs, not a segment


def test_rungs_1_and_3_of_9(digits):
    """The eta = 3 ladder 1, 3, 9 on a linear model (cheap), in-memory states this time."""
    cfg = {**config("adamw"), "batch_size": 256}
    lin = lambda: nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10))  # noqa: E731
    straight = train_trial(cfg, digits, model=lin, seed=5, device="cpu", max_epochs=9, keep_weights=True)
    state = None
    for r in (1, 3, 9):
        seg = train_trial(
            cfg,
            digits,
            model=lin,
            seed=5,
            device="cpu",
            max_epochs=9,
            stop_epoch=r,
            resume=state,
            keep_state=True,
            keep_weights=True,
        )
        state = seg.state
    assert [e["epoch"] for e in seg.curve] == list(range(4, 10))
    assert_same_weights(straight.state_dict, seg.state_dict)


def test_a_lost_generator_state_is_detected(digits):
    """Control: the comparison can fail. Continuing with a reseeded data generator gives other weights."""
    cfg = config("sgd")
    straight = run(cfg, digits, max_epochs=2, keep_weights=True)
    first = run(cfg, digits, max_epochs=2, stop_epoch=1, keep_state=True)
    broken = first.state
    broken.data_rng = torch.Generator().manual_seed(99).get_state()
    cont = run(cfg, digits, max_epochs=2, resume=broken, keep_weights=True)
    assert not all(torch.equal(straight.state_dict[k], cont.state_dict[k]) for k in straight.state_dict)


CHILD = textwrap.dedent("""
    import sys, torch, torch.nn as nn
    from trainers import load_dataset, train_trial
    torch.set_num_threads(1)
    def net():
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(32, 10))
    cfg = eval(sys.argv[3])
    data = load_dataset("digits", seed=0)
    with open(sys.argv[1], "rb") as f:
        state = f.read()
    r = train_trial(cfg, data, model=net, seed=3, device="cpu", augment="flip_crop", max_epochs=3,
                    resume=state, keep_weights=True)
    torch.save(r.state_dict, sys.argv[2])
""")


def test_state_as_bytes_continues_in_another_process(digits, tmp_path):
    cfg = config("adam")
    straight = run(cfg, digits, max_epochs=3, keep_weights=True)
    first = run(cfg, digits, max_epochs=3, stop_epoch=1, keep_state=True)
    (tmp_path / "state.pt").write_bytes(first.state.to_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "state.pt"), str(tmp_path / "w.pt"), repr(cfg)],
        check=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert_same_weights(straight.state_dict, torch.load(tmp_path / "w.pt", weights_only=True))


def test_checkpoints_of_another_run_are_refused(digits):
    cfg = config("sgd")
    state = run(cfg, digits, max_epochs=3, stop_epoch=1, keep_state=True).state
    with pytest.raises(ConfigError, match="run of 3 epochs, not 5"):
        run(cfg, digits, max_epochs=5, resume=state)
    with pytest.raises(ConfigError, match="steps an epoch"):
        run({**cfg, "batch_size": 64}, digits, max_epochs=3, resume=state)
    with pytest.raises(ConfigError, match="already trained 1 epochs"):
        run(cfg, digits, max_epochs=3, stop_epoch=1, resume=state)
    with pytest.raises(ConfigError, match="does not fit"):
        train_trial(
            cfg,
            digits,
            model=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
            device="cpu",
            max_epochs=3,
            resume=state,
        )
    with pytest.raises(ConfigError, match="not a readable training checkpoint"):
        run(cfg, digits, max_epochs=3, resume=b"not a checkpoint")
    with pytest.raises(ConfigError, match="stop_epoch"):
        run(cfg, digits, max_epochs=3, stop_epoch=4)


def test_time_cut_epoch_keeps_no_state_and_bytes_round_trip(digits):
    cfg = config("sgd")
    cut = run(cfg, digits, max_epochs=3, time_limit=0.0, keep_state=True)
    assert "fraction" in cut.curve[-1] and cut.state is None
    full = run(cfg, digits, max_epochs=3, stop_epoch=1, keep_state=True).state
    again = TrainingState.from_bytes(full.to_bytes())
    assert (again.epoch, again.update, again.max_epochs, again.device_type) == (1, full.update, 3, "cpu")
    assert again.update == len(digits.y_train) // 128
