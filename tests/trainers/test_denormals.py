"""Denormals are flushed inside running trials (in-process and in worker processes), the caller's mode is
restored, and flushing does not change what a tiny training learns."""

import pytest
import torch

from nas.executors import InProcessExecutor, ProcessExecutor
from search_spaces.numerics import denormals_flushed
from trainers import load_dataset, train_trial
from trainers.runner import run_trial

SGD = {
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "lr": 0.1,
    "batch_size": 64,
    "weight_decay": 5e-4,
}


def small_cnn():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


@pytest.fixture(autouse=True)
def caller_mode_off():
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def _spec(tmp_path):
    config = {
        "stem": {"channels": 8, "kernel": 3, "stride": 1, "activation": "relu"},
        "stages": [{"block": "Conv", "kernel": 3, "activation": "relu", "channels": 8, "stride": 1, "repeats": 1}],
        "head": {"channels": 0, "activation": "relu"},
        "classifier": {"dropout": 0.0},
        "optimizer": {"name": "adam", "beta1": 0.9, "beta2": 0.999},
        "lr": 0.01,
        "weight_decay": 0.0,
        "batch_size": 128,
        "epochs": 1,
        "label_smoothing": 0.0,
        "warmup_epochs": 0,
    }
    return {
        "trial_id": 1,
        "config": config,
        "seed": 1,
        "study_dir": str(tmp_path),
        "dataset": "digits",
        "threads": 1,
        "save_weights": False,
    }


def test_train_trial_flushes_while_training_and_restores_the_callers_mode():
    seen = []
    data = load_dataset("digits", seed=0)
    result = train_trial(
        {**SGD, "epochs": 1},
        data,
        model=small_cnn,
        device="cpu",
        num_threads=1,
        on_epoch=lambda e: seen.append(denormals_flushed()),
    )
    assert seen == [True] and result.denormals_flushed
    assert not denormals_flushed()  # a user's process gets its own mode back


def test_flush_can_be_left_to_the_caller():
    data = load_dataset("digits", seed=0)
    result = train_trial({**SGD, "epochs": 1}, data, model=small_cnn, device="cpu", num_threads=1, flush_denormal=False)
    assert not result.denormals_flushed


@pytest.mark.parametrize(
    "make", [InProcessExecutor, lambda: ProcessExecutor(workers=1, threads_per_worker=1)], ids=["inprocess", "process"]
)
def test_trials_run_with_denormals_flushed_where_they_run(make, tmp_path):
    with make() as ex:
        ex.submit(1, run_trial, _spec(tmp_path))
        outcomes = []
        while not outcomes:
            outcomes = ex.wait(timeout=60)
    ((key, outcome),) = outcomes
    assert outcome.kind == "ok", outcome.error
    assert outcome.result["metrics"]["denormals_flushed"] is True
    assert outcome.result["metrics"]["pid"] is not None


def test_flushing_does_not_change_a_tiny_trainings_accuracy():
    data = load_dataset("digits", seed=0)
    cfg = {**SGD, "epochs": 3}
    on = train_trial(cfg, data, model=small_cnn, seed=5, device="cpu", num_threads=1)
    off = train_trial(cfg, data, model=small_cnn, seed=5, device="cpu", num_threads=1, flush_denormal=False)
    assert on.denormals_flushed and not off.denormals_flushed
    assert abs(on.val_acc - off.val_acc) <= 1 / len(data.y_val)  # at most one image of the split differs
    assert on.val_acc > 0.5  # it learned something (chance is 0.1), so the comparison means something
