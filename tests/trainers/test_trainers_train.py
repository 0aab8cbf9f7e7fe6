"""The training loop: agreement with a hand-written loop, determinism, optimizers, schedule, failures, stops."""

import math

import pytest
import torch
import torch.nn as nn

from nas.errors import ConfigError
from trainers import TrialFailed, train_trial
from trainers.train import _flip_crop, build_optimizer, build_scheduler


def small_cnn(dropout=0.0):
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(32, 10),
    )


SGD = {
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "lr": 0.1,
    "batch_size": 64,
    "epochs": 5,
    "weight_decay": 5e-4,
    "label_smoothing": 0.0,
    "warmup_epochs": 1,
}


def test_matches_hand_written_loop(digits):
    """Plain SGD + cosine per step, written out by hand from the same seed, gives the same weights."""
    cfg = {
        "optimizer": {"name": "sgd", "momentum": 0.0},
        "lr": 0.1,
        "weight_decay": 0.0,
        "batch_size": 100,
        "epochs": 2,
        "label_smoothing": 0.1,
        "warmup_epochs": 0,
    }
    ours = train_trial(
        cfg, digits, model=small_cnn, seed=7, device="cpu", keep_weights=True, precision="fp32"
    )  # the hand loop is float32, whatever this CPU has

    torch.manual_seed(7)
    net = small_cnn()
    gen = torch.Generator().manual_seed(7)
    n, b = len(digits.y_train), 100
    steps = n // b
    total = steps * 2
    k = 0
    for _ in range(2):
        order = torch.randperm(n, generator=gen)
        for s in range(steps):
            idx = order[s * b : (s + 1) * b]
            loss = nn.functional.cross_entropy(net(digits.x_train[idx]), digits.y_train[idx], label_smoothing=0.1)
            net.zero_grad()
            loss.backward()
            lr = 0.5 * 0.1 * (1 + math.cos(math.pi * k / total))  # SGDR cosine, no restarts
            with torch.no_grad():
                for p in net.parameters():
                    p -= lr * p.grad
            k += 1
    for name, v in net.state_dict().items():
        assert torch.allclose(ours.state_dict[name].float(), v.float(), atol=1e-5), name
    net.eval()
    with torch.no_grad():
        val = (net(digits.x_val).argmax(1) == digits.y_val).float().mean().item()
    assert ours.val_acc == pytest.approx(val)


def test_learns_digits_quickly(digits):
    r = train_trial(SGD, digits, model=small_cnn, seed=0, device="cpu")
    assert r.val_acc > 0.8 and r.epochs_run == 5 and r.stopped is None
    assert [c["epoch"] for c in r.curve] == [1, 2, 3, 4, 5]
    assert r.curve[-1]["train_loss"] < r.curve[0]["train_loss"]
    assert 0.0 <= r.test_acc <= 1.0 and r.train_time > 0
    d = r.to_dict()
    assert "state_dict" not in d and d["val_acc"] == r.val_acc


def test_deterministic_under_seed(digits):
    cfg = {**SGD, "epochs": 2}
    a = train_trial(cfg, digits, model=lambda: small_cnn(0.3), seed=3, device="cpu", keep_weights=True)
    b = train_trial(cfg, digits, model=lambda: small_cnn(0.3), seed=3, device="cpu", keep_weights=True)
    c = train_trial(cfg, digits, model=lambda: small_cnn(0.3), seed=4, device="cpu", keep_weights=True)
    assert a.val_acc == b.val_acc and a.curve == b.curve
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert not all(torch.equal(a.state_dict[k], c.state_dict[k]) for k in a.state_dict)


def test_same_module_different_shuffle_seed(digits):
    """With a pre-built module the init is the caller's; the seed still drives the data order."""
    torch.manual_seed(0)
    base = small_cnn()
    import copy

    cfg = {**SGD, "epochs": 1}
    a = train_trial(cfg, digits, model=copy.deepcopy(base), seed=1, device="cpu", keep_weights=True)
    b = train_trial(cfg, digits, model=copy.deepcopy(base), seed=2, device="cpu", keep_weights=True)
    assert not torch.equal(a.state_dict["9.weight"], b.state_dict["9.weight"])


def test_does_not_disturb_callers_rng(digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_trial({**SGD, "epochs": 1}, digits, model=small_cnn, seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "opt, cls, check",
    [
        ({"name": "sgd", "momentum": 0.8, "nesterov": False}, torch.optim.SGD, {"momentum": 0.8, "nesterov": False}),
        ({"name": "sgd", "momentum": 0.0, "nesterov": True}, torch.optim.SGD, {"momentum": 0.0, "nesterov": False}),
        ({"name": "nesterov", "momentum": 0.7}, torch.optim.SGD, {"momentum": 0.7, "nesterov": True}),
        ({"name": "momentum"}, torch.optim.SGD, {"momentum": 0.9, "nesterov": False}),
        ({"name": "adam", "beta1": 0.8, "beta2": 0.99}, torch.optim.Adam, {"betas": (0.8, 0.99)}),
        ({"name": "adamw", "beta1": 0.85, "beta2": 0.95}, torch.optim.AdamW, {"betas": (0.85, 0.95)}),
        ({"name": "rmsprop", "alpha": 0.95, "momentum": 0.5}, torch.optim.RMSprop, {"alpha": 0.95, "momentum": 0.5}),
    ],
)
def test_each_optimizer_gets_its_own_parameters(opt, cls, check):
    net = small_cnn()
    o = build_optimizer(net, {"optimizer": opt, "lr": 0.02, "weight_decay": 1e-3})
    assert type(o) is cls
    for k, v in check.items():
        assert all(g[k] == v for g in o.param_groups), (k, [g[k] for g in o.param_groups])
    assert all(g["lr"] == 0.02 for g in o.param_groups)
    # weight decay on conv/linear weights only, never on biases and BatchNorm parameters
    decayed = {id(p) for g in o.param_groups if g["weight_decay"] == 1e-3 for p in g["params"]}
    for name, p in net.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1), name


def test_unknown_optimizer():
    with pytest.raises(ConfigError, match="choose one of: sgd"):
        build_optimizer(small_cnn(), {"optimizer": {"name": "lbfgs"}})


def test_schedule_warmup_then_cosine():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.2)
    sched = build_scheduler(opt, epochs=4, steps_per_epoch=5, warmup_epochs=1, lr=0.2)
    lrs = [opt.param_groups[0]["lr"]]
    for k in range(1, 21):
        sched.step_update(num_updates=k)
        lrs.append(opt.param_groups[0]["lr"])
    start = 0.2 / 100
    for k, lr in enumerate(lrs):
        want = start + k * (0.2 - start) / 5 if k < 5 else 0.5 * 0.2 * (1 + math.cos(math.pi * k / 20))
        assert lr == pytest.approx(want, abs=1e-12), k
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)


class NanAfter(nn.Module):
    def __init__(self, calls):
        super().__init__()
        self.left = calls

    def forward(self, x):
        self.left -= 1
        return x * float("nan") if self.left < 0 and self.training else x


def test_nan_loss_fails_the_trial(digits):
    def net():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10), NanAfter(40))  # ~18 steps per epoch at 64

    with pytest.raises(TrialFailed, match="loss became nan at epoch 3") as e:
        train_trial({**SGD, "epochs": 5}, digits, model=net, device="cpu")
    assert isinstance(e.value, RuntimeError) and "epoch 3" in e.value.reason


def test_huge_lr_fails_the_trial(digits):
    cfg = {"optimizer": {"name": "sgd", "momentum": 0.0}, "lr": 1e12, "epochs": 3, "weight_decay": 0.0}
    net = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))  # noqa: E731
    with pytest.raises(TrialFailed, match=r"loss became (nan|inf) at epoch 1"):
        train_trial(cfg, digits, model=net, device="cpu")


def test_max_epochs_callback_and_time_limit(digits):
    r = train_trial({**SGD, "epochs": 10}, digits, model=small_cnn, max_epochs=2, device="cpu")
    assert r.epochs_run == 2 and r.stopped is None and r.curve[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    seen = []
    r = train_trial(
        {**SGD, "epochs": 5},
        digits,
        model=small_cnn,
        device="cpu",
        on_epoch=lambda e: seen.append(e) or e["epoch"] == 2,
    )
    assert r.epochs_run == 2 and r.stopped == "callback" and [e["epoch"] for e in seen] == [1, 2]
    assert "elapsed" in seen[0]
    r = train_trial({**SGD, "epochs": 5}, digits, model=small_cnn, device="cpu", time_limit=0.0)
    steps = len(digits.y_train) // SGD["batch_size"]
    assert r.epochs_run == 1 and r.stopped == "time_limit" and r.curve[0]["fraction"] == pytest.approx(1 / steps)


def test_num_threads_is_set_and_restored(digits):
    before = torch.get_num_threads()  # 1, from the fixture
    seen = []
    linear = lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # noqa: E731  tiny: 2 threads spin on a busy box
    train_trial(
        {**SGD, "epochs": 1},
        digits,
        model=linear,
        device="cpu",
        num_threads=2,
        on_epoch=lambda e: seen.append(torch.get_num_threads()),
    )
    assert seen == [2] and torch.get_num_threads() == before


def test_bad_training_keys(digits):
    with pytest.raises(ConfigError, match="batch_size"):
        train_trial({**SGD, "batch_size": 0}, digits, model=small_cnn, device="cpu")
    with pytest.raises(ConfigError, match="augment"):
        train_trial(SGD, digits, model=small_cnn, device="cpu", augment="mixup")


def test_flip_crop_matches_pad_and_slice():
    """Each augmented sample equals flip-then-pad-then-slice done one sample at a time."""
    x = torch.randn(6, 2, 8, 8)
    out = _flip_crop(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    flip = torch.rand(6, generator=g) < 0.5
    dy = torch.randint(0, 3, (6,), generator=g)
    dx = torch.randint(0, 3, (6,), generator=g)
    for i in range(6):
        xi = x[i].flip(2) if flip[i] else x[i]
        xi = nn.functional.pad(xi, (1, 1, 1, 1))
        assert torch.equal(out[i], xi[:, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8])
    assert flip.any() and not flip.all()


def test_training_with_augmentation_runs(digits):
    r = train_trial({**SGD, "epochs": 2}, digits, model=small_cnn, device="cpu", augment="flip_crop")
    assert r.epochs_run == 2 and 0.1 < r.val_acc <= 1.0


def test_sampled_config_end_to_end(digits):
    """A config drawn from the shipped space with the digits preset builds and trains for an epoch."""
    ss = pytest.importorskip("search_spaces")
    from trainers import get_preset

    config = ss.default_space(**get_preset("digits").space_bounds).sample(seed=1)
    r = train_trial(
        config, digits, max_epochs=1, device="cpu", model=lambda: ss.build_model(config, num_classes=10, in_chans=1)
    )
    assert r.epochs_run == 1 and 0.0 <= r.val_acc <= 1.0


def test_the_optimizer_s_own_lr_and_weight_decay_win_over_the_top_level_keys():
    from trainers.train import TRAIN_DEFAULTS, optimizer_lr_wd

    net = nn.Linear(4, 2)
    cfg = {"optimizer": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.05}, "lr": 0.5, "weight_decay": 1e-6}
    assert optimizer_lr_wd(cfg) == (3e-3, 0.05)
    opt = build_optimizer(net, cfg)
    assert type(opt).__name__ == "AdamW" and opt.param_groups[0]["lr"] == 3e-3
    assert max(g["weight_decay"] for g in opt.param_groups) == 0.05
    assert optimizer_lr_wd({"lr": 0.2}) == (0.2, TRAIN_DEFAULTS["weight_decay"])  # old configs still read
