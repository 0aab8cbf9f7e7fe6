"""The trial objective: where the epochs come from, single-fidelity runs, and multi-fidelity segments that
continue the same run (weights.pt rewritten at every segment end, checkpoints as bytes)."""

import pytest
import torch

from nas.errors import ConfigError
from trainers.runner import epochs_for, run_trial, weights_path

CONFIG = {
    "stem": {"channels": 8},
    "stages": [{"block": "Conv", "channels": 16, "stride": 2, "repeats": 1}],
    "classifier": {"dropout": 0.2},
    "optimizer": {"name": "adam", "beta1": 0.9, "beta2": 0.999},
    "lr": 0.01,
    "weight_decay": 1e-4,
    "batch_size": 128,
    "label_smoothing": 0.0,
    "warmup_epochs": 1,
}


def spec(folder, **extra):
    return {
        "trial_id": 1,
        "config": CONFIG,
        "seed": 4,
        "study_dir": str(folder),
        "dataset": "digits",
        "data_seed": 0,
        "save_weights": True,
        "threads": 1,
        **extra,
    }


def weights(folder):
    return torch.load(weights_path(folder, 1), weights_only=True)


def test_where_the_epochs_come_from():
    assert epochs_for({"max_resource": 9, "max_epochs": 5}, {"epochs": 3}) == 9
    assert epochs_for({"max_epochs": 5}, {"epochs": 3}) == 5  # the search's length wins over an old config's
    assert epochs_for({"epochs": 4}, {"epochs": 3}) == 4  # what the CLI passes with --fidelity off
    assert epochs_for({}, {"epochs": 3}) == 3  # an old config, called directly
    assert epochs_for({"dataset": "digits"}, {}) == 27  # the preset's full length


def test_single_fidelity_trains_max_epochs(tmp_path):
    out = run_trial(spec(tmp_path, max_epochs=2))
    m = out["metrics"]
    assert [e["epoch"] for e in m["curve"]] == [1, 2] and m["max_epochs"] == 2
    assert out["resource"] == 2 and out["checkpoint"] is None and out["value"] == m["val_acc"]
    assert weights_path(tmp_path, 1).exists()


def test_segments_continue_the_same_run(tmp_path):
    straight = run_trial(spec(tmp_path / "straight", max_epochs=3))
    folder = tmp_path / "mf"
    ckpt, seen = None, []
    for start, stop in ((0, 1), (1, 3)):
        out = run_trial(
            spec(folder, max_epochs=99, resource_from=start, resource_to=stop, max_resource=3, checkpoint=ckpt)
        )
        assert [e["epoch"] for e in out["metrics"]["curve"]] == list(range(start + 1, stop + 1))
        assert out["resource"] == stop and weights_path(folder, 1).exists()
        seen.append(weights(folder))
        ckpt = out["checkpoint"]
        assert isinstance(ckpt, bytes) if stop < 3 else ckpt is None  # nothing to continue after max_resource
    final, ref = seen[-1], weights(tmp_path / "straight")
    assert final.keys() == ref.keys() and all(torch.equal(final[k], ref[k]) for k in ref)
    assert out["value"] == straight["value"]
    assert any(not torch.equal(seen[0][k], final[k]) for k in final)  # weights.pt was rewritten


def test_bad_segments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs the previous segment's checkpoint"):
        run_trial(spec(tmp_path, resource_from=1, resource_to=3, max_resource=3, checkpoint=None))
    with pytest.raises(ConfigError, match="resource_to"):
        run_trial(spec(tmp_path, resource_from=0, resource_to=4, max_resource=3))
    first = run_trial(spec(tmp_path, resource_from=0, resource_to=1, max_resource=3))
    with pytest.raises(ConfigError, match="holds 1 epochs"):
        run_trial(spec(tmp_path, resource_from=2, resource_to=3, max_resource=3, checkpoint=first["checkpoint"]))


class _Digits(torch.utils.data.Dataset):
    """400 digits images as (image, label) pairs, read item by item."""

    def __init__(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        self.x = torch.tensor(d.images[:400, None] / 16, dtype=torch.float32)
        self.y = torch.tensor(d.target[:400])

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def test_the_builtin_trainer_streams_a_dataset_through_loaders(tmp_path):
    """Data that is not in memory: the built-in trainer reads DataLoader batches; seeded, so a rerun repeats it."""
    from trainers.user_data import StreamData, prepare_data
    from trainers.user_trial import run_user_trial

    stream = prepare_data(_Digits(), in_memory=False, num_classes=10, seed=0)
    assert isinstance(stream, StreamData)
    config = {**CONFIG, "epochs": 4, "batch_size": 16}
    runs = [
        run_user_trial(
            {
                "trial_id": 1,
                "config": config,
                "seed": 4,
                "study_dir": str(tmp_path / str(i)),
                "stream_data": stream,
                "threads": 1,
                "precision": "fp32",
            }
        )
        for i in range(2)
    ]
    m = runs[0]["metrics"]
    assert [e["epoch"] for e in m["curve"]] == [1, 2, 3, 4] and m["epochs_run"] == 4
    assert runs[0]["value"] > 0.3  # 10 classes: chance is 0.1 (unnormalised pixels learn slower than in memory)
    assert runs[0]["value"] == runs[1]["value"] and m["curve"] == runs[1]["metrics"]["curve"]
    assert weights_path(tmp_path / "0", 1).is_file()


def test_a_trial_decodes_its_config_once(tmp_path, monkeypatch):
    import search_spaces.builder as builder
    import search_spaces.size as size

    calls = []
    real = size.validate_arch

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(size, "validate_arch", counting)
    monkeypatch.setattr(builder, "validate_arch", counting)
    out = run_trial(spec(tmp_path, max_epochs=1))
    assert out["value"] > 0 and len(calls) == 1  # the size check's decode is the one the network is built from
