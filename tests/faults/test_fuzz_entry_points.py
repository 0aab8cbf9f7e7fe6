"""Property-based fuzzing of the entry points the other fault modules do not reach: crafted image headers, tampered
study databases, report / export options and the progress output. Every example must end in exit 0 or in
our one-line error (exit 2): never a traceback, nothing finished changed, nothing written outside --out,
and (where a cap applies) no more memory than address_space_guard allows."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from nas.progress import Progress, ProgressPrinter
from fault_tools import (
    FUZZ,
    FUZZ_SEARCH,
    NUM_TEXT,
    _image_folder,
    address_space_guard,
    assert_our_error,
    call,
    fake_training,
    snapshot,
)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def crafted_image(fmt: str, w: int, h: int, tail: bytes) -> bytes:
    """An image file whose header declares w x h, followed by `tail` (random or no pixel data)."""
    if fmt == "png":
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(tail)) + _chunk(b"IEND", b"")
        )
    if fmt == "bmp":
        w, h = min(w, 2**31 - 1), min(h, 2**31 - 1)
        return (
            b"BM"
            + struct.pack("<IHHI", 54 + len(tail), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(tail), 2835, 2835, 0, 0)
            + tail
        )
    w, h = min(w, 65535), min(h, 65535)  # gif
    return b"GIF89a" + struct.pack("<HH", w, h) + b"\x00\x00\x00" + tail + b";"


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return _image_folder(tmp_path_factory.mktemp("imgs") / "images", classes=2, per_class=6)


@pytest.mark.filterwarnings("ignore:1 unreadable")
@FUZZ
@given(
    fmt=st.sampled_from(["png", "bmp", "gif"]),
    w=st.one_of(st.integers(1, 64), st.integers(1, 2**32 - 1), st.sampled_from([0, 100_000, 2**31 - 1])),
    h=st.one_of(st.integers(1, 64), st.integers(1, 2**32 - 1), st.sampled_from([0, 100_000, 2**31 - 1])),
    tail=st.binary(max_size=64),
)
def test_fuzz_crafted_image_headers(image_root, fmt, w, h, tail):
    """Any header: the image is read or skipped; the folder still loads; never more than 1 GiB."""
    from trainers.data import load_dataset

    bad = image_root / "class0" / f"crafted.{fmt}"
    bad.write_bytes(crafted_image(fmt, w, h, tail))
    try:
        with address_space_guard(headroom=1 << 30):
            data = load_dataset("imagefolder", data_dir=image_root, image_size=8)
    finally:
        bad.unlink()
    assert data.num_classes == 2 and len(data.y_train) + len(data.y_val) + len(data.y_test) in (12, 13)


@pytest.fixture(scope="module")
def fake_study(tmp_path_factory, tiny_space) -> Path:
    out = tmp_path_factory.mktemp("fuzzdb") / "study"
    with fake_training(limit=10):
        code, _, err = call(
            [
                "search",
                "--fidelity",
                "off",
                "--max-epochs",
                "2",
                "--dataset",
                "digits",
                "--space",
                tiny_space,
                "--trials",
                "3",
                "--out",
                out,
                "--quiet",
                "--warmup",
                "3",
            ]
        )
    assert code == 0, err
    return out


TAMPER_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.sampled_from(["{}", "[]", "null", '{"stem": 1}', "1e999"]),
)
COLUMNS = [
    "status",
    "config",
    "value",
    "score",
    "known",
    "metrics",
    "error",
    "seed",
    "attempts",
    "started_at",
    "finished_at",
]
META_KEYS = [
    "space",
    "input_shape",
    "num_classes",
    "class_names",
    "norm_mean",
    "norm_std",
    "direction",
    "dataset",
    "schema_version",
    "score",
]


@FUZZ_SEARCH
@given(data=st.data())
def test_fuzz_tampered_study_databases(fake_study, tiny_space, data):
    """Random edits of trial columns and meta values: report, export and resume each succeed or end in one
    line; export writes only its --out; a resume never changes a finished trial it did not fail on."""
    root = Path(tempfile.mkdtemp(prefix="fuzz_db_"))
    try:
        folder = root / "study"
        shutil.copytree(fake_study, folder, ignore=shutil.ignore_patterns("study.db-*"))
        conn = sqlite3.connect(folder / "study.db")
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            if data.draw(st.booleans(), label="meta?"):
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    (data.draw(TAMPER_VALUES, label="meta value"), data.draw(st.sampled_from(META_KEYS))),
                )
            else:
                col = data.draw(st.sampled_from(COLUMNS), label="column")
                try:
                    conn.execute(
                        f"UPDATE trials SET {col} = ? WHERE id = ?",
                        (data.draw(TAMPER_VALUES, label="value"), data.draw(st.integers(1, 3), label="id")),
                    )
                except sqlite3.IntegrityError:  # NOT NULL columns: SQLite itself refuses the edit
                    pass
        conn.commit()
        conn.close()
        before = sorted(p.name for p in root.iterdir())
        for argv in (
            ["report", folder, "--no-profile", "--no-files"],
            ["export", folder, "--no-retrain", "--out", root / "exported"],
        ):
            with address_space_guard():
                code, _, err = call(argv)
            if code != 0:
                assert_our_error(code, err)
            after = sorted(p.name for p in root.iterdir())
            assert set(after) - set(before) <= {"exported"}, after  # nothing beside --out (no .part left)
        with fake_training(limit=3):
            try:
                code, _, err = call(
                    [
                        "search",
                        "--fidelity",
                        "off",
                        "--max-epochs",
                        "2",
                        "--dataset",
                        "digits",
                        "--space",
                        tiny_space,
                        "--out",
                        folder,
                        "--quiet",
                        "--resume",
                        "--trials",
                        "4",
                    ]
                )
            except BaseException as e:  # _Enough: the fake objective's stop, a normal end here
                if type(e).__name__ != "_Enough":
                    raise
                code, err = 0, ""
        if code != 0:
            assert_our_error(code, err)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@FUZZ
@given(top=NUM_TEXT, trial=NUM_TEXT)
def test_fuzz_report_and_export_numeric_options(fake_study, top, trial):
    root = Path(tempfile.mkdtemp(prefix="fuzz_opts_"))
    try:
        kept = snapshot(fake_study)
        code, _, err = call(["report", fake_study, f"--top={top}", "--no-files", "--no-profile"])
        if code != 0:
            assert_our_error(code, err)
        code, _, err = call(["export", fake_study, f"--trial={trial}", "--no-retrain", "--out", root / "x"])
        if code != 0:
            assert_our_error(code, err)
            assert not (root / "x").exists()
        assert snapshot(fake_study) == kept
        assert set(os.listdir(root)) <= {"x"}
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------ progress output
progress = st.builds(
    Progress,
    done=st.integers(0, 50),
    failed=st.integers(0, 5),
    running=st.integers(0, 4),
    best=st.none() | st.floats(0, 1),
    elapsed=st.floats(0, 1e5),
    left=st.none() | st.floats(0, 1e5),
)


@FUZZ
@given(updates=st.lists(progress, min_size=1, max_size=20), total=st.none() | st.integers(1, 60))
def test_fuzz_plain_progress_has_no_carriage_returns_and_no_repeats(updates, total):
    """Was: carriage returns in logs, and the last line printed twice."""
    buf = io.StringIO()
    show = ProgressPrinter(total, buf, interval=0.0, tty=False)
    for p in updates:
        show(p)
    show(updates[-1])  # the final report repeats the last state
    show.close()
    lines = buf.getvalue().splitlines()
    assert "\r" not in buf.getvalue() and lines
    assert all(a != b for a, b in zip(lines, lines[1:])), lines
    last = updates[-1]
    assert lines[-1].startswith(
        f"{last.done + last.failed}/{total} trials" if total else f"{last.done + last.failed} trials"
    )
    assert f"running {last.running}" in lines[-1]


def test_progress_on_a_terminal_is_a_bar_with_the_same_fields():
    buf = io.StringIO()
    show = ProgressPrinter(10, buf, tty=True)
    show(Progress(done=3, failed=1, running=2, best=0.5, elapsed=61, left=30))
    show.close()
    text = buf.getvalue()
    assert "\r" in text and "4/10" in text and "|" in text
    for field in ("best 0.5000", "running 2", "failed 1", "elapsed 1m01s", "left 30s"):
        assert field in text, text


def test_plain_progress_is_periodic(monkeypatch):
    import nas.progress as progress_mod

    now = [0.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: now[0])
    buf = io.StringIO()
    show = ProgressPrinter(5, buf, interval=30.0, tty=False)
    for t in range(0, 100, 5):  # the same state every 5 s: a line only when it changes
        now[0] = float(t)
        show(Progress(done=1, elapsed=float(t)))
    lines = buf.getvalue().splitlines()
    assert 3 <= len(lines) <= 5, lines  # at 0, 30, 60, 90 s


# ------------------------------------------------------------------------------ search: options not in test_hostile_inputs
MORE_OPTIONS = {
    "--workers": NUM_TEXT,
    "--gpus-per-trial": NUM_TEXT,
    "--executor": st.sampled_from(["inprocess", "x", ""]),
    "--time-budget": NUM_TEXT,
    "--max-macs": NUM_TEXT,
    "--warmup": NUM_TEXT,
    "--out-name": st.sampled_from([".", "..", "/", "~", "s", "a/b", "-", "s\nx", "s" * 300]),
}


@FUZZ_SEARCH
@given(data=st.data())
def test_fuzz_search_writes_only_its_out(tiny_space, data):
    """Whatever the options (one trial, so any --workers is capped to one in-process worker): exit 0 or
    one line, nothing created beside --out, and no more memory than address_space_guard allows."""
    parent = Path(tempfile.mkdtemp(prefix="fuzz_out_"))
    cwd = os.getcwd()
    try:
        os.chdir(parent)  # a relative --out lands here; "." and ".." must be refused
        names = data.draw(st.lists(st.sampled_from(sorted(MORE_OPTIONS)), min_size=1, max_size=3, unique=True))
        opts = {n: data.draw(MORE_OPTIONS[n], label=n) for n in names}
        out = opts.pop("--out-name", "s")
        argv = [
            "search",
            "--fidelity",
            "off",
            "--max-epochs",
            "2",
            "--dataset",
            "digits",
            "--space",
            tiny_space,
            "--trials",
            "1",
            "--quiet",
            "--out",
            out,
            *[f"{k}={v}" for k, v in opts.items()],
        ]
        with address_space_guard(), fake_training(limit=3):
            code, stdout, err = call(argv)
        if code != 0:
            assert_our_error(code, err)
        top = Path(out).expanduser().parts[0] if out not in (".", "..", "/", "~") else None
        assert set(os.listdir(parent)) <= ({top} if top else set()), (argv, os.listdir(parent))
    finally:
        os.chdir(cwd)
        shutil.rmtree(parent, ignore_errors=True)
