"""nas.api: searches on the user's own data, training function and space, with real study folders.

The user functions are module-level so that the process-executor test can send them to spawned workers.
"""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nas import api
from nas.errors import DataError, NasError, SpaceError, StudyError
from nas.space import Float, Integer, Space
from nas.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
N = 400  # digits images used: enough for every class in every split, small enough for 1-second trials


def _digits(n=N):
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images[:n, None] / 16, dtype=torch.float32), torch.tensor(d.target[:n])


class Pairs(torch.utils.data.Dataset):
    """A user Dataset of (image, label) pairs, as torchvision's are."""

    def __init__(self, n=N, *, item=None):
        self.x, self.y = _digits(n)
        self.item = item

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self.item is not None:
            return self.item(self.x[i], int(self.y[i]))
        return self.x[i], self.y[i]


def _as_dict(x, y):
    return {"image": x, "label": y}


def _label_plus_20(x, y):
    return x, y + 20


def train_adam(model, config, data, report):
    opt = torch.optim.Adam(model.parameters(), lr=float(config.get("lr", 1e-2)))
    acc = 0.0
    for epoch in range(1, int(config.get("epochs", 2)) + 1):
        for xb, yb in data.loader("train", batch_size=64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb.to(data.device)), yb.to(data.device)).backward()
            opt.step()
        acc = data.accuracy(model, "val")
        if not report(epoch, acc):
            break
    return acc


def train_odd_fails(model, config, data, report):
    """Raises in every trial with an odd seed (trial ids 1, 3, ... with seed 0)."""
    if data.seed % 2:
        raise ValueError("odd trial")
    return train_adam(model, config, data, report)


def train_raises(model, config, data, report):
    raise RuntimeError("out of ideas")


def train_nan(model, config, data, report):
    report(1, 0.5)
    return float("nan")


def train_no_report(model, config, data, report):
    return 0.5


def train_returns_text(model, config, data, report):
    report(1, 0.5)
    return "great"


def train_percent(model, config, data, report):
    report(1, 0.5)
    return 95.0


def mlp(config, data):
    c, h, w = data.input_shape
    return nn.Sequential(
        nn.Flatten(), nn.Linear(c * h * w, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], data.num_classes)
    )


def quadratic(config):
    return (config["x"] - 0.3) ** 2


TINY = dict(trials=2, warmup=2, seed=0)


# ------------------------------------------------------------------------------------------ README


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python: your own data, training code and space", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    exec(compile(_readme_block(), "README.md", "exec"), namespace)
    view = namespace["view"]
    assert len(view.trials) == 3 and all(t.status == "complete" for t in view.trials), [t.error for t in view.trials]
    assert all(t.metrics["epochs_run"] == 3 and len(t.metrics["curve"]) == 3 for t in view.trials)
    assert view.best.value > 0.5  # 10 classes: chance is 0.1
    assert (tmp_path / "exported/my-digits/model.py").is_file() and (tmp_path / "results/my-digits/data.pt").is_file()


# ------------------------------------------------------------------------------------------ data kinds


def test_builtin_trainer_on_tensors_with_the_users_own_validation_split(tmp_path):
    x, y = _digits()
    xv, yv = _digits(520)
    xv, yv = xv[N:], yv[N:]  # 120 images the search never trains on
    view = api.search(
        data=(x, y), val_data=(xv.numpy(), yv.numpy()), space=api.small_cnn_space(), out=tmp_path / "s", **TINY
    )
    assert [t.status for t in view.trials] == ["complete"] * 2
    assert view.meta["trainer"] == "builtin" and view.meta["dataset"] == "user"
    saved = torch.load(tmp_path / "s/data.pt", weights_only=True)
    assert len(saved["y_val"]) == 120 and len(saved["y_train"]) + len(saved["y_test"]) == N
    # Export retrains on the saved data (train + the user's validation split).
    written = api.export(tmp_path / "s", out=tmp_path / "e", progress=False)
    assert any(p.endswith("model.py") for p in written)


def test_a_dataset_in_two_worker_processes(tmp_path):
    """The user's Dataset and train function reach spawned workers; every trial records its curve and weights."""
    view = api.search(
        data=Pairs(),
        train=train_adam,
        space=api.small_cnn_space(),
        out=tmp_path / "s",
        workers=2,
        executor="process",
        trials=2,
        warmup=2,
    )
    assert [t.status for t in view.trials] == ["complete"] * 2, [t.error for t in view.trials]
    for t in view.trials:
        assert len(t.metrics["curve"]) == t.config["epochs"] and (tmp_path / "s" / t.metrics["weights"]).is_file()
        assert t.metrics["val_acc"] == t.value and 0 <= t.metrics["test_acc"] <= 1
    assert len({t.metrics["pid"] for t in view.trials}) >= 1


def test_a_streamed_dataset_goes_through_loaders(tmp_path):
    view = api.search(
        data=Pairs(),
        train=train_adam,
        in_memory=False,
        num_classes=10,
        space=api.small_cnn_space(),
        out=tmp_path / "s",
        **TINY,
    )
    assert all(t.status == "complete" for t in view.trials)
    assert not (tmp_path / "s/data.pt").exists()
    # the built-in trainer reads the same loaders (trainers.stream_train)
    view = api.search(
        data=Pairs(), in_memory=False, num_classes=10, space=api.small_cnn_space(epochs=2), out=tmp_path / "t", **TINY
    )
    assert view.meta["trainer"] == "builtin" and not (tmp_path / "t/data.pt").exists()
    for t in view.trials:
        assert t.status == "complete", t.error
        assert [e["epoch"] for e in t.metrics["curve"]] == [1, 2] and t.value == t.metrics["curve"][-1]["val_acc"]
    with pytest.raises(DataError, match="streamed from your Dataset, not saved"):
        api.export(tmp_path / "t", out=tmp_path / "e", progress=False)
    assert any(p.endswith("model.py") for p in api.export(tmp_path / "t", out=tmp_path / "e", retrain=False))
    with pytest.raises(NasError, match="needs the built-in trainer on data in memory"):
        api.prepare(data=Pairs(), in_memory=False, num_classes=10, fidelity="on", out=tmp_path / "u")


def test_a_space_that_is_not_a_cnn_with_the_users_model(tmp_path):
    space = Space([Integer("hidden", 8, 32, step=8), Float("lr", 1e-3, 3e-2, log=True)])
    view = api.search(data=Pairs(), model=mlp, train=train_adam, space=space, epochs=1, out=tmp_path / "s", **TINY)
    assert all(t.status == "complete" and t.macs is None for t in view.trials)
    assert view.meta["score"] == "acc"
    with pytest.raises(SpaceError, match="not a CNN"):
        api.prepare(data=Pairs(), space=space, out=tmp_path / "t")


def test_an_objective_search_is_torch_free(tmp_path):
    (tmp_path / "blackbox.py").write_text("def f(config):\n    return (config['x'] - 0.3) ** 2\n")
    code = (
        "import sys, nas.api\nfrom nas import Space, Float\nimport blackbox\n"
        "v = nas.api.search(objective=blackbox.f, space=Space([Float('x', 0, 1)]), trials=5, warmup=3, "
        "direction='minimize', out=sys.argv[1], workers=2)\n"
        "assert len(v.trials) == 5 and v.best.value == min(t.value for t in v.trials)\n"
        "print(sorted(m for m in ('torch', 'trainers', 'search_spaces') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PYTHONPATH": f"{ROOT}:{tmp_path}", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------ resume


def test_resume_keeps_the_data_and_refuses_other_data(tmp_path):
    x, y = _digits()
    out = tmp_path / "s"
    api.search(data=(x, y), space=api.small_cnn_space(), out=out, **TINY)
    with pytest.raises(StudyError, match="already holds a study"):
        api.prepare(data=(x, y), space=api.small_cnn_space(), out=out)
    view = api.search(data=(x, y), space=api.small_cnn_space(), out=out, resume=True, trials=3, warmup=2)
    assert len(view.trials) == 3
    with pytest.raises(StudyError, match="other data"):
        api.prepare(data=(x[:300], y[:300]), out=out, resume=True)
    from nas.cli import main

    assert main(["search", "--out", str(out), "--resume", "--trials", "4", "--quiet"]) == 0  # the saved data.pt
    with Storage(out / "study.db", read_only=True) as st:
        assert st.count() == 4 and st.meta()["dataset"] == "user"


def test_a_study_of_the_users_train_function_resumes_from_python_only(tmp_path, capsys):
    from nas.cli import main

    out = tmp_path / "s"
    api.search(data=Pairs(), train=train_adam, space=api.small_cnn_space(), out=out, trials=1, warmup=1)
    assert main(["search", "--out", str(out), "--resume", "--trials", "2", "--quiet"]) == 2
    assert "resume it from Python" in capsys.readouterr().err
    with pytest.raises(NasError, match="--no-retrain"):
        api.export(out, out=tmp_path / "e")
    assert any(p.endswith("weights.pt") for p in api.export(out, out=tmp_path / "e", retrain=False))


# ------------------------------------------------------------------------------------------ bad input


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    view = api.search(
        data=Pairs(), train=train_odd_fails, space=api.small_cnn_space(), out=tmp_path / "s", trials=3, warmup=3
    )
    assert [t.status for t in view.trials] == ["failed", "complete", "failed"]
    assert view.trials[0].error == (
        "UserFunctionError: train_odd_fails(model, config, data, report) raised ValueError: odd trial"
    )
    assert "ValueError: odd trial" in view.trials[0].metrics["traceback"]


@pytest.mark.parametrize(
    "train, needle",
    [
        (train_raises, "train_raises(model, config, data, report) raised RuntimeError: out of ideas"),
        (train_nan, "returned nan"),
        (train_no_report, "never called report(epoch, val_acc)"),
        (train_returns_text, "returned 'great' (a str)"),
        (train_percent, "outside [0, 1]; return accuracy as a fraction"),
    ],
)
def test_bad_user_functions_fail_each_trial_in_one_line(tmp_path, train, needle):
    with pytest.raises(NasError) as e:
        api.search(data=Pairs(), train=train, space=api.small_cnn_space(), out=tmp_path / "s", **TINY)
    assert "none of the 2 trials completed" in str(e.value) and needle in str(e.value)
    assert "\n" not in str(e.value)
    with Storage(tmp_path / "s/study.db", read_only=True) as st:
        assert all(t.status == "failed" and needle in t.error for t in st.trials())


def test_bad_objective_values():
    from nas.user_fn import CheckedReport, Report, UserFunctionError, check_value

    assert check_value(np.float32(0.5), "f") == 0.5 and check_value(torch.tensor(0.25), "f") == 0.25
    for bad in (None, True, "0.5", [0.5], torch.tensor([0.1, 0.2]), math.inf):
        with pytest.raises(UserFunctionError):
            check_value(bad, "f")
    rep = CheckedReport(Report())
    for args in ((0, 0.5), (1.5, 0.5), (1, float("nan")), (1, 2.0)):
        with pytest.raises(UserFunctionError, match="report"):
            rep(*args)
    rep(2, 0.5)
    with pytest.raises(UserFunctionError, match="must increase"):
        rep(2, 0.6)


@pytest.mark.parametrize(
    "kwargs, kind, needle",
    [
        (dict(data=Pairs(item=_as_dict)), DataError, "data item 0: expected an (image, label) pair, got a dict"),
        (dict(data=Pairs(item=_label_plus_20), num_classes=10), DataError, "label 20 is outside 0..9"),
        (dict(data=(torch.zeros(5, 1, 8, 8), torch.tensor([0, 1, -1, 0, 1]))), DataError, "label -1 is outside"),
        (dict(data=(torch.zeros(5, 1, 8, 8), torch.zeros(4))), DataError, "5 rows but y has 4 labels"),
        (dict(data=(torch.full((5, 4), math.nan), torch.zeros(5))), DataError, "NaN"),
        (dict(dataset="imagefolder", data_dir=ROOT, image_size=4), DataError, "image size 4"),
        (dict(dataset="imagefolder", data_dir=ROOT, image_size=2000), DataError, "image size 2000"),
        (dict(val_fraction=0.0), DataError, "val_fraction=0.0 must lie strictly between 0 and 1"),
        (dict(test_fraction=1.2), DataError, "test_fraction=1.2"),
        (dict(val_fraction=0.5, test_fraction=0.5), DataError, "leaves no training data"),
        (dict(data_dir=ROOT / "nas"), DataError, "is not an image folder"),
        (dict(dataset="digits", data_dir=ROOT), DataError, "would be ignored"),
        (dict(device="cuda:0" if not torch.cuda.is_available() else "tpu"), NasError, "device"),
        (dict(train=lambda m, c, d, r: 0.5, workers=2), NasError, "train cannot be sent to process workers"),
        (dict(objective=quadratic), SpaceError, "objective= needs space="),
    ],
)
def test_bad_input_is_refused_before_any_trial_in_one_line(tmp_path, kwargs, kind, needle):
    with pytest.raises(kind) as e:
        api.prepare(out=tmp_path / "s", **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "s/study.db").exists()


def test_nas_api_imports_the_application_only_lazily():
    """At module level nas.api imports the engine alone, so objective= searches never load torch."""
    import ast

    top = set()
    for node in ast.parse((ROOT / "nas/api.py").read_text()).body:
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top.add(node.module.split(".")[0])
    assert not top & {"torch", "timm", "search_spaces", "trainers"}, top
