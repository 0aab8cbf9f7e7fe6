"""Round two of hostile inputs (issue 14): every one ends in our one-line error (exit 2) or in a normal
finish, before anything large is allocated or read. Each test names what it did before the fix."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import struct
import time
import zlib
from pathlib import Path

import pytest

from nas.storage import Storage
from fault_tools import (
    SMALL_CONFIG,
    _image_folder,
    _search_argv,
    address_space_guard,
    assert_our_error,
    call,
    fake_training,
    temp_leftovers,
)


def _search(space, out, *extra, trials="2"):
    return _search_argv(space, out, trials, *extra)


SMALL_SPACE = """
params:
- name: stem
  type: group
  params:
  - {{name: channels, type: categorical, choices: {channels}}}
- name: stages
  type: repeat
  min: 1
  max: 1
  params:
  - {{name: block, type: constant, value: Conv}}
  - {{name: channels, type: constant, value: 8}}
  - {{name: stride, type: constant, value: 2}}
- name: optimizer
  type: group
  params: [{{name: name, type: constant, value: sgd}}]
- {{name: lr, type: {lr}}}
- {{name: batch_size, type: constant, value: 64}}
- {{name: epochs, type: constant, value: 1}}
"""


def _space(tmp_path: Path, channels="[8, 16]", lr="float, low: 0.01, high: 0.1", name="space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(SMALL_SPACE.format(channels=channels, lr=lr))
    return p


# ------------------------------------------------------------------------------ space and config files
@pytest.mark.parametrize(
    "text, needle",
    [
        ("params:\n- {name: x, type: int, low: 0, high: 99999999999999999999999999}\n", "64-bit"),  # was OverflowError
        ("params:\n- {name: x, type: categorical, choices: [.nan, .nan]}\n", "not a finite number"),  # was accepted
        ("params:\n- {name: x, type: float, low: 1e-4, high: 0.1}\n", "write 1.0e-4 or 0.0001"),  # no hint
        (
            "params:\n- {name: x, type: float, low: 0, high: 1}\nparams:\n- {name: y, type: float, low: 0, high: 1}\n",
            "appears twice",
        ),  # first list dropped
    ],
    ids=["int_beyond_int64", "nan_choices", "exponent_string", "duplicate_key"],
)
def test_bad_space_files_are_one_line_in_space_and_search(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, err = call(["space", path])
    assert_our_error(code, err, str(path), needle)
    with fake_training() as calls:
        code, _, err = call(_search(path, tmp_path / "s"))
    assert_our_error(code, err, needle)
    assert not calls


def test_a_large_json_space_is_not_blamed_on_yaml_aliases(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"params": [{"name": "x", "type": "constant", "value": list(range(200_000))}]}))
    code, _, err = call(["space", path])
    line = assert_our_error(code, err, "100,000 values")
    assert "alias" not in line.lower()


@pytest.mark.parametrize("command", ["space", "inspect", "search"])
@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge_sparse"])
def test_non_regular_and_huge_files_are_refused_before_reading(tmp_path, command, kind):
    """Was: /dev/zero grew memory without end, a FIFO blocked for ever, a 300 MB YAML was read whole."""
    if kind == "dev_zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "pipe.yaml"
        os.mkfifo(path)
    else:
        path = tmp_path / "huge.yaml"
        with open(path, "wb") as f:
            f.truncate(300 << 20)  # sparse: costs no disk
    argv = {"space": ["space", path], "inspect": ["inspect", path], "search": _search(path, tmp_path / "s")}[command]
    t0 = time.perf_counter()
    with address_space_guard(headroom=512 << 20), fake_training() as calls:
        code, _, err = call(argv)
    assert_our_error(code, err, str(path), "regular file" if kind != "huge_sparse" else "limit")
    assert not calls and time.perf_counter() - t0 < 10


def test_inspect_of_5000_stages_is_refused_at_once(tmp_path):
    """Was: minutes in fvcore's tracer (only blocks per stage were capped)."""
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({**SMALL_CONFIG, "stages": [SMALL_CONFIG["stages"][0]] * 5000}))
    t0 = time.perf_counter()
    code, _, err = call(["inspect", path, "--input-shape", "1,8,8"])
    assert_our_error(code, err, "5000 stages")
    assert time.perf_counter() - t0 < 10


# ------------------------------------------------------------------------------ size caps in search
def test_configs_over_the_memory_cap_are_never_proposed(tmp_path):
    """A stem of 10^6 channels on 8x8 digits: ~49 GB of training activations at batch 64. Was: proposed and
    trained until the allocation failed."""
    space = _space(tmp_path, channels="[8, 1000000]")
    with fake_training(limit=10) as calls:
        code, out, err = call(_search(space, tmp_path / "s", "--warmup", "3", trials="3"))
    assert code == 0, err
    assert len(calls) == 3 and all(c["config"]["stem"]["channels"] == 8 for c in calls), [c["config"] for c in calls]


def test_a_space_entirely_over_the_caps_is_one_line(tmp_path):
    """MACs that overflow SQLite's INTEGER (was OverflowError at the insert)."""
    space = _space(tmp_path, channels="[100000000000]")
    with fake_training() as calls:
        code, _, err = call(_search(space, tmp_path / "s"))
    assert_our_error(code, err, "size caps")
    assert not calls


def test_a_trial_checks_the_caps_before_building(tmp_path):
    from nas.errors import ConfigError
    from trainers.runner import run_trial

    config = {**copy.deepcopy(SMALL_CONFIG), "stem": {"channels": 1_000_000}}
    with address_space_guard(headroom=512 << 20), pytest.raises(ConfigError, match="too large"):
        run_trial({"trial_id": 1, "config": config, "seed": 0, "study_dir": str(tmp_path), "dataset": "digits"})


def test_a_space_smaller_than_the_budget_finishes_normally(tmp_path):
    """Was: exit 2 and no summary once every config had been tried."""
    space = _space(tmp_path, channels="[8, 16]", lr="constant, value: 0.05")
    with fake_training(limit=10) as calls:
        code, out, err = call(_search(space, tmp_path / "s", "--warmup", "2", trials="5"))
    assert code == 0, err
    assert len(calls) == 2 and "top 2 trials" in out
    assert "ended before the budget" in err and "2 distinct configs" in err


# ------------------------------------------------------------------------------ search options
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--gpus-per-trial", "1"], "--gpus-per-trial"),  # was silently ignored
        (["--workers", str(len(os.sched_getaffinity(0)) + 1), "--executor", "process"], "--force"),  # no cap
    ],
)
def test_search_options_without_effect_or_over_the_machine(tmp_path, tiny_space, argv, needle):
    with fake_training() as calls:
        code, _, err = call(_search(tiny_space, tmp_path / "s", *argv, trials="20"))
    assert_our_error(code, err, needle)
    assert not calls and not (tmp_path / "s").exists()


def test_more_workers_than_trials_start_no_idle_workers(tmp_path, tiny_space):
    """Was: 16 workers for 1 trial, 18 processes and 3.3 GB. Capped at the trial count, one worker runs
    in-process (the fake objective sees the call)."""
    with fake_training() as calls:
        code, out, err = call(_search(tiny_space, tmp_path / "s", "--workers", "16", trials="1"))
    assert code == 0, err
    assert len(calls) == 1


@pytest.mark.parametrize("out", ["/", ".", "~"])
def test_a_dangerous_out_is_refused(tmp_path, tiny_space, out):
    before = sorted(os.listdir("."))
    with fake_training() as calls:
        code, _, err = call(_search(tiny_space, out))
    assert_our_error(code, err, "--out")
    assert not calls and sorted(os.listdir(".")) == before


# ------------------------------------------------------------------------------ image folders
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (8-bit RGB) and whose data is a few bytes: PIL reads the
    size from the header; decoding would need width * height * 3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [100_000, 9_000])  # above PIL's bomb error; above our cap, below PIL's error
def test_an_image_declaring_huge_dimensions_is_skipped(tmp_path, side):
    """Was: PIL's DecompressionBombError ended the whole search (other unreadable images are skipped)."""
    from trainers.data import load_dataset

    root = _image_folder(tmp_path / "images")
    (root / "class0" / "bomb.png").write_bytes(_png_header(side, side))
    with address_space_guard(headroom=1 << 30), pytest.warns(UserWarning, match="1 unreadable"):
        data = load_dataset("imagefolder", data_dir=root, image_size=8)
    assert data.skipped == 1 and data.skipped_files[0].endswith("bomb.png")


def test_the_skipped_images_warning_is_one_line_without_source(tmp_path, tiny_space):
    """Was: Python's warning format printed trainers/data.py's source line after the message."""
    root = _image_folder(tmp_path / "images")
    (root / "class1" / "broken.png").write_bytes(b"not a png")
    with fake_training():
        code, _, err = call(
            [
                "search",
                "--fidelity",
                "off",
                "--max-epochs",
                "2",
                "--dataset",
                "imagefolder",
                "--data-dir",
                root,
                "--space",
                tiny_space,
                "--trials",
                "1",
                "--out",
                tmp_path / "s",
                "--quiet",
            ]
        )
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("nas search: warning:") for ln in lines), err
    assert "warnings.warn" not in err and "data.py" not in err


def test_an_image_folder_with_one_class_is_refused(tmp_path, tiny_space):
    """Was: accepted, and every trial reached validation accuracy 1.0."""
    root = _image_folder(tmp_path / "images", classes=1)
    with fake_training() as calls:
        code, _, err = call(
            [
                "search",
                "--fidelity",
                "off",
                "--max-epochs",
                "2",
                "--dataset",
                "imagefolder",
                "--data-dir",
                root,
                "--space",
                tiny_space,
                "--trials",
                "1",
                "--out",
                tmp_path / "s",
                "--quiet",
            ]
        )
    assert_our_error(code, err, "one class")
    assert not calls


def test_a_val_folder_with_other_classes_is_refused(tmp_path, tiny_space):
    root = tmp_path / "images"
    _image_folder(root / "train", classes=3)
    _image_folder(root / "val", classes=2)
    (root / "val" / "class1").rename(root / "val" / "dogs")
    with fake_training() as calls:
        code, _, err = call(
            [
                "search",
                "--fidelity",
                "off",
                "--max-epochs",
                "2",
                "--dataset",
                "imagefolder",
                "--data-dir",
                root,
                "--space",
                tiny_space,
                "--trials",
                "1",
                "--out",
                tmp_path / "s",
                "--quiet",
            ]
        )
    assert_our_error(code, err, "different classes", "dogs")
    assert not calls


# ------------------------------------------------------------------------------ tampered studies
@pytest.fixture(scope="module")
def fake_study(tmp_path_factory, tiny_space) -> Path:
    out = tmp_path_factory.mktemp("fake") / "study"
    with fake_training(limit=10):
        code, _, err = call(_search(tiny_space, out))
    assert code == 0, err
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("study.db-*"))
    return dst


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE trials SET value = 'abc'",
        "UPDATE trials SET score = x'00ff'",
        'UPDATE trials SET known = \'{"macs": "many"}\'',
        "UPDATE trials SET started_at = 'yesterday'",
    ],
    ids=["value_text", "score_blob", "macs_text", "time_text"],
)
def test_a_study_with_non_numbers_is_one_line(tmp_path, fake_study, sql):
    """Was: a TypeError / ValueError traceback out of report and export."""
    folder = _copy(fake_study, tmp_path / "study")
    conn = sqlite3.connect(folder / "study.db")
    conn.execute(sql)
    conn.commit()
    conn.close()
    for argv in (
        ["report", folder, "--no-profile", "--no-files"],
        ["export", folder, "--no-retrain", "--out", tmp_path / "exported"],
    ):
        code, _, err = call(argv)
        line = assert_our_error(code, err, "damaged")
        assert "--out" not in line.replace("nas search --out", "")
    assert not (tmp_path / "exported").exists()


def test_an_empty_study_db_is_not_a_study(tmp_path):
    """Was: "no finished trials yet", as if a search were about to write it."""
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.db").write_bytes(b"")
    code, _, err = call(["report", tmp_path / "study"])
    assert_our_error(code, err, "empty (0 bytes)")


def test_a_damaged_database_report_does_not_say_choose_another_out(tmp_path, fake_study):
    folder = _copy(fake_study, tmp_path / "study")
    (folder / "study.db").write_bytes(b"x" * 5000)
    code, _, err = call(["report", folder, "--no-files"])
    line = assert_our_error(code, err, "not a readable study database")
    assert "--out" not in line


def test_export_does_not_echo_the_weights_only_false_hint(tmp_path, small_study_copy):
    import torch

    folder = small_study_copy
    path = folder / "trials" / "1" / "weights.pt"
    torch.save({"w": torch.zeros(1), "obj": Path("x")}, path)  # a pickled object weights_only refuses
    code, _, err = call(["export", folder, "--trial", "1", "--no-retrain", "--out", tmp_path / "exported"])
    line = assert_our_error(code, err, "objects other than tensors")
    assert "weights_only=False" not in line and not (tmp_path / "exported").exists()


@pytest.fixture
def small_study_copy(tmp_path, small_study):
    return _copy(small_study, tmp_path / "real")


@pytest.mark.parametrize("tamper", ["channels", "input_shape"])
def test_export_of_a_huge_tampered_study_is_refused_and_writes_nothing(tmp_path, small_study_copy, tamper):
    """Was: tens of gigabytes allocated, and a half-written export folder left behind."""
    folder = small_study_copy
    with Storage(folder / "study.db") as st:
        if tamper == "channels":
            t = st.get_trial(1)
            t.config["stem"]["channels"] = 30_000_000  # 7e9 parameters: over the 1e9 cap
            st.update_trial(t)
        else:
            st.set_meta("input_shape", [1, 16384, 16384])
    with address_space_guard(headroom=1 << 30):
        code, _, err = call(["export", folder, "--trial", "1", "--no-retrain", "--out", tmp_path / "exported"])
    assert_our_error(code, err, "too large")
    assert not (tmp_path / "exported").exists() and not list(tmp_path.glob(".exported*"))


def test_an_export_that_fails_half_way_leaves_nothing(tmp_path, small_study_copy, monkeypatch):
    import nas.export as export

    def broken(net):
        raise KeyboardInterrupt  # as Ctrl-C after model.py and weights.pt were written

    monkeypatch.setattr(export, "_script", broken)
    with pytest.raises(KeyboardInterrupt):
        export.export_study(small_study_copy, out=tmp_path / "exported", trial_id=1, retrain=False)
    assert not (tmp_path / "exported").exists() and not list(tmp_path.glob(".exported*"))
    monkeypatch.undo()
    written = export.export_study(small_study_copy, out=tmp_path / "exported", trial_id=1, retrain=False)
    assert {Path(p).name for p in written} >= {"model.py", "weights.pt", "model.ts", "config.json"}
    assert not temp_leftovers(tmp_path / "exported") and not list(tmp_path.glob(".exported*"))


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, tiny_space) -> Path:
    out = tmp_path_factory.mktemp("small") / "study"
    code, _, err = call(_search(tiny_space, out, "--warmup", "2", "--seed", "1", trials="1"))
    assert code == 0, err
    return out
