"""Export: the generated model.py against search_spaces' builder, weights and TorchScript round trips, a fresh
interpreter that sees only torch, retraining on train + val, and the refusals (bad trials, code in configs)."""

import ast
import importlib.util
import io
import itertools
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from nas.errors import ConfigError, NasError, StudyError
from nas.export import arch_literal, export_study, model_source
from nas.export_source import _ACT_SOURCE, _check_arch, _literal
from nas.storage import Storage
from nas.trial import COMPLETE, FAILED, RUNNING
from search_spaces import build_model, count, get_act
from search_spaces.blocks import ACTIVATIONS, BLOCKS
from trainers.runner import cached_dataset, run_trial, weights_path

SHAPE = (1, 8, 8)
NAMES = [str(i) for i in range(10)]
TRAIN = {
    "optimizer": {"name": "adam", "beta1": 0.9, "beta2": 0.999},
    "lr": 0.01,
    "weight_decay": 0.0,
    "batch_size": 128,
    "epochs": 1,
    "label_smoothing": 0.0,
    "warmup_epochs": 0,
}

# Together: all three blocks, SE on and off, every activation, head 0 and > 0, stem pool, dropout,
# BottleNeck with and without a projection shortcut, InvertedResidual with expansion 1 and a skip.
ARCHS = {
    "conv_head0": {"stem": {"channels": 8}, "stages": [{"block": "Conv", "channels": 16, "stride": 2, "repeats": 2}]},
    "bottleneck_relu6": {
        "stem": {"channels": 16, "kernel": 5, "stride": 2, "activation": "relu6", "pool": "max"},
        "stages": [
            {"block": "BottleNeck", "channels": 16, "repeats": 2, "expansion": 2, "activation": "relu6"},
            {"block": "BottleNeck", "channels": 32, "stride": 2, "kernel": 5, "expansion": 4},
        ],
        "head": {"channels": 64, "activation": "relu6"},
        "classifier": {"dropout": 0.2},
    },
    "ir_se_hardswish": {
        "stem": {"channels": 8, "activation": "hardswish"},
        "stages": [
            {
                "block": "InvertedResidual",
                "channels": 8,
                "repeats": 2,
                "expansion": 3,
                "se_ratio": 0.25,
                "activation": "hardswish",
            },
            {"block": "InvertedResidual", "channels": 24, "stride": 2, "kernel": 7, "expansion": 1},
        ],
        "head": {"channels": 32, "activation": "silu"},
    },
    "mixed_silu": {
        "stem": {"channels": 8, "activation": "silu"},
        "stages": [
            {"block": "Conv", "channels": 8, "kernel": 1, "activation": "silu"},
            {
                "block": "InvertedResidual",
                "channels": 16,
                "stride": 2,
                "expansion": 4.5,
                "se_ratio": 0.5,
                "activation": "relu",
            },
            {"block": "BottleNeck", "channels": 16, "expansion": 1, "activation": "silu"},
        ],
        "head": {"channels": 0, "activation": "hardswish"},
    },
    "no_stages": {"stem": {"channels": 8}, "stages": []},
}


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so a swapped or missing tensor changes outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


_ids = itertools.count()


def _import(path):
    name = f"_exported_model_{next(_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_source(tmp_path, config, **kw):
    args = {"input_shape": SHAPE, "mean": [0.3], "std": [0.4], "class_names": NAMES, **kw}
    path = tmp_path / "model.py"
    path.write_text(model_source(config, **args))
    return path


# --- the generated source ----------------------------------------------------------------------


def test_activation_spellings_match_the_registry():
    assert set(_ACT_SOURCE) == set(ACTIVATIONS)
    for name, src in _ACT_SOURCE.items():
        prefix, attr = src.split(".")
        assert prefix == "nn" and getattr(nn, attr) is get_act(name)


def test_arch_configs_cover_every_block_and_activation():
    archs = [arch_literal(c, num_classes=10, in_chans=1) for c in ARCHS.values()]
    stages = [s for a in archs for s in a["stages"]]
    assert {s["block"] for s in stages} == set(BLOCKS)
    acts = {a["stem"]["activation"] for a in archs} | {s["activation"] for s in stages}
    acts |= {a["head"]["activation"] for a in archs if a["head"]}
    assert acts == set(ACTIVATIONS)
    assert any(s.get("se_ratio", 0) > 0 for s in stages) and any(s.get("se_ratio") == 0 for s in stages)
    assert any(a["head"] is None for a in archs) and any(a["head"] for a in archs)


@pytest.mark.parametrize("name", list(ARCHS))
def test_generated_model_equals_builder(tmp_path, name):
    config = {**ARCHS[name], **TRAIN}
    ref = _randomised(build_model(config, num_classes=10, in_chans=1), seed=1)
    module = _import(_write_source(tmp_path, config))
    net = module.build_model()
    assert list(net.state_dict()) == list(ref.state_dict())  # same names in the same order
    net.load_state_dict(ref.state_dict())  # strict
    net.eval()
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), atol=1e-6, rtol=0)
    assert sum(p.numel() for p in net.parameters()) == count(config, input_shape=SHAPE, num_classes=10)["params"]
    assert module.ARCH == arch_literal(config, num_classes=10, in_chans=1)
    assert module.build_model(num_classes=3).fc.out_features == 3


def test_generated_source_imports_only_torch_and_carries_only_used_blocks(tmp_path):
    src = model_source(ARCHS["conv_head0"], input_shape=SHAPE, mean=[0.3], std=[0.4], class_names=NAMES)
    imported = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"torch"}
    assert "class ConvBlock" in src and "BottleNeck" not in src and "InvertedResidual" not in src
    assert "nn.SiLU" not in src  # only the activations the network uses


def test_constants_round_trip_awkward_class_names(tmp_path):
    names = [
        "cat",
        "it's",
        'say "hi"',
        "back\\slash",
        "new\nline",
        "tab\t",
        "\u00e9t\u00e9",
        "\U0001f600",
        "'''",
        '"""; import os',
        "x\x00y",
    ]
    module = _import(
        _write_source(
            tmp_path,
            ARCHS["conv_head0"],
            class_names=names,
            input_shape=(3, 16, 16),
            mean=[0.1, 0.2, 0.3],
            std=[1.0, 2.0, 0.25],
        )
    )
    assert module.CLASS_NAMES == names
    assert module.INPUT_SHAPE == (3, 16, 16) and module.MEAN == (0.1, 0.2, 0.3) and module.STD == (1.0, 2.0, 0.25)
    img = torch.rand(2, 3, 4, 4)
    expected = (img - torch.tensor([0.1, 0.2, 0.3])[:, None, None]) / torch.tensor([1.0, 2.0, 0.25])[:, None, None]
    torch.testing.assert_close(module.normalize(img), expected)


CODE = "__import__('os').system('echo pwned')"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["stages"][0].update(block=f"Conv'}}]\n{CODE}\n#"),
        lambda c: c["stages"][0].update(activation=CODE),
        lambda c: c["stem"].update(activation="relu\n" + CODE),
        lambda c: c["head"].update(activation=CODE),
        lambda c: c["stages"][0].update(channels=f"16); {CODE}"),
        lambda c: c["stages"][0].update(channels=True),
        lambda c: c["stem"].update(kernel=float("nan")),
        lambda c: c["classifier"].update(dropout=float("inf")),
        lambda c: c["stem"].update(**{"__class__": CODE}),
        lambda c: c["stem"].update(pool=CODE),
    ],
    ids=["block", "stage_act", "stem_act", "head_act", "str_channels", "bool_channels", "nan", "inf", "key", "pool"],
)
def test_code_in_a_config_is_refused(mutate):
    config = json.loads(json.dumps({**ARCHS["bottleneck_relu6"], "stages": [dict(ARCHS["conv_head0"]["stages"][0])]}))
    mutate(config)
    with pytest.raises(ConfigError) as e:
        model_source(config, input_shape=SHAPE, mean=[0.3], std=[0.4], class_names=NAMES)
    assert "\n" not in str(e.value)


def test_second_gate_refuses_what_validate_arch_would_not_see():
    # _check_arch runs on ARCH after validate_arch; these are shapes validate_arch never returns.
    good = arch_literal(ARCHS["ir_se_hardswish"], num_classes=10, in_chans=1)
    _check_arch(good)
    bad = [
        lambda a: a["stages"][0].update(block="Evil"),
        lambda a: a["stages"][0].update(activation="os.system"),
        lambda a: a["stages"][0].update(expansion="6"),
        lambda a: a["stages"][0].update(kernel=3.0),
        lambda a: a["stages"][0].update(repeats=False),
        lambda a: a["stages"][0].update(extra=1),
        lambda a: a["stem"].pop("pool"),
        lambda a: a["head"].update(channels=float("nan")),
        lambda a: a.update(more={}),
    ]
    for change in bad:
        arch = json.loads(json.dumps(good))
        change(arch)
        with pytest.raises(ConfigError):
            _check_arch(arch)


def test_literal_writes_plain_values_only():
    value = {"a": [1, 2.5, None, True, "x'y"], "b": (3,)}
    assert eval(_literal(value)) == {"a": [1, 2.5, None, True, "x'y"], "b": (3,)}

    class Sneaky(str):
        def __repr__(self):
            return CODE

    for v in (Sneaky("relu"), float("nan"), object(), {1: 2}, b"bytes"):
        with pytest.raises(ConfigError):
            _literal(v)


def test_bad_constants_are_refused():
    cfg = ARCHS["conv_head0"]
    for kw in (
        {"class_names": [1, 2]},
        {"class_names": []},
        {"mean": [0.1, 0.2]},
        {"std": [0.0]},
        {"std": [float("nan")]},
        {"input_shape": (1, 8)},
        {"input_shape": (1, 8, True)},
        {"trial_id": "1; import os"},
    ):
        args = {"input_shape": SHAPE, "mean": [0.3], "std": [0.4], "class_names": NAMES, **kw}
        with pytest.raises(ConfigError):
            model_source(cfg, **args)


# --- studies -----------------------------------------------------------------------------------


def _meta(st):
    data = cached_dataset("digits", None, 0, False, None)
    meta = {
        "dataset": "digits",
        "data_dir": None,
        "input_shape": list(data.input_shape),
        "num_classes": 10,
        "class_names": list(data.class_names),
        "augment": None,
        "norm_mean": list(data.mean),
        "norm_std": list(data.std),
        "seed": 0,
        "score": "acc",
        "space": {},
        "direction": "maximize",
    }
    for k, v in meta.items():
        st.set_meta(k, v)


def _trained_trial(st, folder, config, *, seed, save_weights=True, score=None):
    t = st.add_trial(config, status=RUNNING, seed=seed, known=count(config, input_shape=SHAPE, num_classes=10))
    out = run_trial(
        {
            "trial_id": t.id,
            "config": config,
            "seed": seed,
            "study_dir": str(folder),
            "dataset": "digits",
            "data_seed": 0,
            "save_weights": save_weights,
            "threads": 1,
        }
    )
    t.status, t.value, t.metrics = COMPLETE, out["value"], out["metrics"]
    t.score = out["value"] if score is None else score
    st.update_trial(t)
    return t


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Trial 1: IR + SE (weights kept); 2: Conv + BottleNeck, the best; 3: failed; 4: no weights kept."""
    folder = tmp_path_factory.mktemp("study")
    with Storage(folder / "study.db") as st:
        _meta(st)
        _trained_trial(st, folder, {**ARCHS["ir_se_hardswish"], **TRAIN}, seed=11, score=0.5)
        _trained_trial(st, folder, {**ARCHS["bottleneck_relu6"], **TRAIN, "epochs": 2}, seed=12, score=0.9)
        t = st.add_trial({**ARCHS["conv_head0"], **TRAIN}, status=RUNNING, seed=13)
        t.status, t.error = FAILED, "loss became nan at epoch 1 (lr=10)\nTraceback ..."
        st.update_trial(t)
        _trained_trial(st, folder, {**ARCHS["conv_head0"], **TRAIN}, seed=14, save_weights=False, score=0.1)
    return folder


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_no_retrain_exports_the_trials_own_weights(study, tmp_path):
    out = tmp_path / "exp"
    written = export_study(study, out=out, trial_id=1, retrain=False)
    onnx = ["model.onnx"] if importlib.util.find_spec("onnx") else []
    assert [p.rsplit("/", 1)[-1] for p in written] == ["model.py", "weights.pt", "model.ts", *onnx, "config.json"]

    saved = torch.load(weights_path(study, 1), weights_only=True)
    exported = torch.load(out / "weights.pt", weights_only=True)
    assert list(exported) == list(saved)
    assert all(torch.equal(exported[k], saved[k]) for k in saved)

    with Storage(study / "study.db", read_only=True) as st:
        trial = st.get_trial(1)
    module = _import(out / "model.py")
    net = module.load(str(out / "weights.pt"))
    ref = build_model(trial.config, num_classes=10, in_chans=1)
    ref.load_state_dict(saved)
    ref.eval()
    x = torch.randn(7, *SHAPE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = net(x)
        torch.testing.assert_close(y, ref(x), atol=1e-6, rtol=0)
        ts = torch.jit.load(str(out / "model.ts"))
        torch.testing.assert_close(ts(x), y, atol=1e-6, rtol=0)
        torch.testing.assert_close(ts(x[:1]), y[:1], atol=1e-6, rtol=0)  # the batch size is free

    meta = json.loads((out / "config.json").read_text())
    assert meta["trial_id"] == 1 and meta["retrained"] is False and meta["retrain"] is None
    assert meta["config"] == trial.config
    assert meta["test_acc"] == trial.metrics["test_acc"] and meta["val_acc"] == trial.metrics["val_acc"]
    assert meta["params"] == sum(p.numel() for p in net.parameters()) and meta["macs"] == trial.macs
    data = cached_dataset("digits", None, 0, False, None)
    assert meta["input_shape"] == list(SHAPE) and meta["class_names"] == data.class_names
    assert meta["mean"] == pytest.approx(data.mean) and meta["std"] == pytest.approx(data.std)
    assert module.MEAN == pytest.approx(data.mean) and module.CLASS_NAMES == data.class_names
    if importlib.util.find_spec("onnx") is None:
        assert any("onnx" in n for n in meta["notes"]) and not (out / "model.onnx").exists()


FRESH = """
import sys
sys.path.insert(0, ".")
import torch
import model
net = model.load()
torch.save(net(torch.load(sys.argv[1], weights_only=True)).detach(), sys.argv[2])
ours = sorted(m for m in sys.modules if m.split(".")[0] in {"lightnas", "nas", "search_spaces", "trainers", "timm"})
print(model.__file__, ours)
assert not ours, ours
"""


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_onnx_file_gives_the_pytorch_outputs(study, tmp_path):
    """model.onnx run by onnxruntime, at two batch sizes (the batch axis is dynamic), against the module."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "exp"
    export_study(study, out=out, trial_id=1, retrain=False)
    net = _import(out / "model.py").load(str(out / "weights.pt"))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    for batch in (1, 5):
        x = torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = net(x).numpy()
        (got,) = session.run(["logits"], {"input": x.numpy()})
        assert got.shape == expected.shape
        assert abs(got - expected).max() <= 1e-5


def test_model_py_runs_alone_in_a_fresh_interpreter(study, tmp_path):
    out = tmp_path / "exp"
    export_study(study, out=out, trial_id=1, retrain=False)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(4))
    torch.save(x, tmp_path / "x.pt")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", FRESH, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("[]") and str(out / "model.py") in proc.stdout
    with torch.no_grad():
        expected = _import(out / "model.py").load(str(out / "weights.pt"))(x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt", weights_only=True), expected, atol=1e-6, rtol=0)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_default_retrains_the_best_trial_on_train_and_val(study, tmp_path, monkeypatch):
    import trainers.train as train_mod

    seen = {}
    original = train_mod.train_trial

    def spy(config, data, **kw):
        seen.update(
            n_train=len(data.y_train),
            n_val=len(data.y_val),
            seed=kw["seed"],
            epochs=config["epochs"],
            threads=kw["num_threads"],
        )
        return original(config, data, **kw)

    monkeypatch.setattr(train_mod, "train_trial", spy)
    out = tmp_path / "exp"
    progress = io.StringIO()
    export_study(study, out=out, progress=progress)  # best = trial 2 (score 0.9)
    lines = progress.getvalue().splitlines()
    assert [ln.split(": epoch ")[1].split(",")[0] for ln in lines] == ["1/2", "2/2"], lines
    # The search's thread rule: a digits network is far below SMALL_BATCH_MACS, so one thread.
    assert seen.pop("threads") == 1

    data = cached_dataset("digits", None, 0, False, None)
    assert seen == {"n_train": len(data.y_train) + len(data.y_val), "n_val": 0, "seed": 12, "epochs": 2}
    meta = json.loads((out / "config.json").read_text())
    assert meta["trial_id"] == 2 and meta["retrained"] is True
    assert meta["retrain"]["train_images"] == seen["n_train"] and meta["retrain"]["epochs"] == 2

    # Test accuracy recomputed from the exported files alone agrees with what config.json reports.
    net = _import(out / "model.py").load(str(out / "weights.pt"))
    with torch.no_grad():
        acc = (net(data.x_test).argmax(1) == data.y_test).sum().item() / len(data.y_test)
    assert meta["test_acc"] == pytest.approx(acc, abs=1e-9) and acc > 0.3  # 10 classes: chance is 0.1

    saved = torch.load(weights_path(study, 2), weights_only=True)
    exported = torch.load(out / "weights.pt", weights_only=True)
    assert not torch.equal(saved["fc.weight"], exported["fc.weight"])  # new weights, more data


def test_errors_are_one_line_study_errors(study, tmp_path):
    out = tmp_path / "exp"
    cases = [
        (dict(study_dir=tmp_path, trial_id=None), StudyError, "not a study"),
        (dict(study_dir=tmp_path / "missing", trial_id=None), StudyError, "does not exist"),
        (dict(study_dir=study, trial_id=99), StudyError, "no trial 99"),
        (dict(study_dir=study, trial_id=3), StudyError, "trial 3 is failed"),
        (dict(study_dir=study, trial_id=4, retrain=False), StudyError, "kept no weights"),
    ]
    for kw, kind, text in cases:
        with pytest.raises(kind, match=text) as e:
            export_study(out=out, **kw)
        assert "\n" not in str(e.value)
    assert not out.exists()  # nothing was written

    empty = tmp_path / "empty"
    with Storage(empty / "study.db") as st:
        st.set_meta("direction", "maximize")
    with pytest.raises(StudyError, match="no complete trial"):
        export_study(empty, out=out)

    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(NasError, match="is a file"):
        export_study(study, out=afile, trial_id=1, retrain=False)


def test_a_config_holding_code_is_refused_before_anything_is_written(study, tmp_path):
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(study, folder)
    with Storage(folder / "study.db") as st:
        t = st.get_trial(1)
        t.config["stages"][0]["block"] = f"InvertedResidual'\n{CODE}"
        st.update_trial(t)
    out = tmp_path / "exp"
    with pytest.raises(ConfigError, match="unknown block") as e:
        export_study(folder, out=out, trial_id=1, retrain=False)
    assert "\n" not in str(e.value) and not out.exists()


def test_cli_prints_paths_and_one_line_errors(study, tmp_path, capsys):
    from nas.cli import main

    assert main(["export", str(study), "--trial", "1", "--no-retrain", "--out", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "e" / "weights.pt") in printed
    assert main(["export", str(study), "--trial", "3", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trial 3 is failed" in err
