"""Training arithmetic: bfloat16 autocast and channels-last are chosen by hardware, can be forced or turned
off, and train as well as float32 NCHW on a tiny problem."""

import pytest
import torch

from nas.errors import ConfigError
from trainers import train_trial
import trainers.train as train_mod
from trainers.train import fast_defaults

CFG = {"optimizer": {"name": "adam"}, "lr": 0.01, "weight_decay": 0.0, "batch_size": 64, "epochs": 2}


def net():
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


@pytest.mark.parametrize("amx, native", [(True, True), (False, True), (False, False)])
def test_auto_uses_bf16_only_with_amx_and_cuda_keeps_float32(monkeypatch, amx, native):
    # AVX512-BF16 without AMX measured slower than float32 (bench/results_precision.md): auto stays fp32 there.
    monkeypatch.setattr(train_mod, "amx_bf16", lambda: amx)
    monkeypatch.setattr(train_mod, "native_bf16", lambda: native)
    assert fast_defaults(torch.device("cpu")) == {"bf16": amx and native, "channels_last": True}
    assert fast_defaults(torch.device("cuda")) == {"bf16": False, "channels_last": False}
    assert fast_defaults(torch.device("cpu"), precision="bf16", channels_last=False) == {
        "bf16": True,
        "channels_last": False,
    }
    assert fast_defaults(torch.device("cpu"), precision="fp32")["bf16"] is False


def test_hardware_probes_answer_booleans():
    assert isinstance(train_mod.amx_bf16(), bool) and isinstance(train_mod.native_bf16(), bool)


def test_unknown_precision_is_a_config_error(digits):
    with pytest.raises(ConfigError, match="unknown precision 'half'"):
        train_trial(CFG, digits, model=net, device="cpu", precision="half")


@pytest.mark.parametrize("channels_last", [True, False])
def test_memory_format_reaches_the_weights(digits, channels_last):
    r = train_trial(
        {**CFG, "epochs": 1},
        digits,
        model=net,
        device="cpu",
        num_threads=1,
        keep_weights=True,
        channels_last=channels_last,
        precision="fp32",
    )
    w = r.state_dict["3.weight"]  # (32, 16, 3, 3): the two formats differ (unlike a 1-channel input conv)
    assert w.is_contiguous(memory_format=torch.channels_last) is channels_last


def test_bf16_and_channels_last_train_as_well_as_float32(digits):
    accs = {}
    for precision, cl in (("fp32", False), ("fp32", True), ("bf16", False)):
        r = train_trial(
            CFG, digits, model=net, seed=3, device="cpu", num_threads=1, precision=precision, channels_last=cl
        )
        accs[(precision, cl)] = r.val_acc
    base = accs[("fp32", False)]
    assert base > 0.6
    for key, acc in accs.items():
        assert abs(acc - base) < 0.1, (key, accs)
