"""Helpers the fault tests share: run `nas` in-process or as a real process, read a study's finished trials,
check what a kill left, fake the trainer, fuzz settings.

Glossary: "finished" = a trial whose status is complete or failed (it is never run again); a "snapshot"
is {trial id: every stored field} of the finished trials, read with Storage(read_only=True).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings, strategies as st

from nas.cli import main
from nas.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
_BIN = Path(sys.executable).parent / "nas"
NAS = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "nas.cli"]
FINISHED = ("complete", "failed")

# Deterministic fuzzing by default: the same examples every run (no flaky CI), no .hypothesis folder left
# behind. LIGHTNAS_FUZZ=N runs N fresh random examples per target instead (a deeper local hunt).
_HUNT = int(os.environ.get("LIGHTNAS_FUZZ", "0"))
FUZZ = settings(
    max_examples=_HUNT or 60,
    deadline=None,
    derandomize=not _HUNT,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate] + ([] if _HUNT else [Phase.shrink]),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
FUZZ_SEARCH = settings(FUZZ, max_examples=_HUNT or 40)  # each example makes a whole study: fewer of them


def call(argv: list[str]) -> tuple[int, str, str]:
    """`nas ARGV` in-process: (exit code, stdout, stderr). argparse's SystemExit becomes the code;
    any other exception propagates and fails the test (that is the point)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def assert_our_error(code, err: str, *needles: str) -> str:
    """Exit 2, exactly one non-empty line on stderr, ours ("nas ..."), no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("nas"), err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[int, tuple]:
    """Every stored field of the finished trials (an absent study is empty)."""
    if not (folder / "study.db").is_file():
        return {}
    with Storage(folder / "study.db", read_only=True) as st:
        return {
            t.id: (
                t.status,
                t.value,
                t.score,
                json.dumps(t.known, sort_keys=True),
                json.dumps(t.config, sort_keys=True),
                json.dumps(t.metrics, sort_keys=True),
                t.error,
                t.seed,
                t.attempts,
                t.started_at,
                t.finished_at,
            )
            for t in st.trials()
            if t.status in FINISHED
        }


def trials_of(folder: Path) -> list:
    if not (folder / "study.db").is_file():
        return []
    with Storage(folder / "study.db", read_only=True) as st:
        return st.trials()


def integrity(folder: Path) -> str:
    # Read-only: checks what a kill left behind without letting this connection repair anything.
    uri = (folder / "study.db").resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def temp_leftovers(folder: Path) -> list[Path]:
    """Files a writer meant to rename (atomic_write's `.NAME.XXXX.tmp`) or any other temp-looking name.
    SQLite's own -wal / -shm and the lock file are not temp files: they belong to a live study."""
    keep = {".lock"}
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name not in keep and (".tmp" in p.name or p.name.startswith((".", "tmp")))
    ]


def assert_weights_load(folder: Path) -> int:
    """Every weights file in the study loads with weights_only=True into a dict of tensors."""
    import torch

    n = 0
    for p in folder.rglob("*.pt"):
        state = torch.load(p, map_location="cpu", weights_only=True)
        assert isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()), p
        n += 1
    return n


def wait_for(cond, *, timeout: float, proc: subprocess.Popen | None = None, what: str = ""):
    """Poll `cond()` until it is truthy; fail if `proc` exits first or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            return None
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def spawn(argv: list, logs: Path, name: str, *, prefix: list | None = None) -> subprocess.Popen:
    """Start `nas ARGV` (or `prefix + ARGV`) with stdout/stderr in files (pipes could fill and block)."""
    logs.mkdir(parents=True, exist_ok=True)
    out = open(logs / f"{name}.out", "w")
    err = open(logs / f"{name}.err", "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    try:
        return subprocess.Popen(
            (prefix or NAS) + [str(a) for a in argv], stdout=out, stderr=err, cwd=ROOT, env=env, start_new_session=True
        )
    finally:
        out.close()
        err.close()


def logs_of(logs: Path, name: str) -> tuple[str, str]:
    return (logs / f"{name}.out").read_text(), (logs / f"{name}.err").read_text()


@contextlib.contextmanager
def reaped(proc: subprocess.Popen):
    """Never leave a search running when a test fails."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _nested_repeats(levels: int) -> str:
    p = "{name: x, type: float, low: 0, high: 1}"
    for i in range(levels):
        p = f"{{name: r{i}, type: repeat, min: 1, max: 64, params: [{p}]}}"
    return f"params: [{p}]\n"


@contextlib.contextmanager
def address_space_guard(headroom: int = 1536 << 20):
    """Cap this process's address space at its current size + `headroom` while fuzzing: a hostile config
    that asks for terabytes then fails to allocate instead of swapping the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        vm = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _space_file(text: str | bytes, fmt: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=f".{fmt}", prefix="fuzz_space_")
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return Path(name)


# A valid config of every block type, for `nas inspect` and export edits.
SMALL_CONFIG = {
    "stem": {"channels": 8, "kernel": 3, "stride": 1, "activation": "relu"},
    "stages": [
        {"block": "Conv", "channels": 8, "stride": 2, "repeats": 1, "kernel": 3, "activation": "relu"},
        {
            "block": "BottleNeck",
            "channels": 16,
            "stride": 1,
            "repeats": 1,
            "kernel": 3,
            "expansion": 4,
            "activation": "relu6",
        },
        {
            "block": "InvertedResidual",
            "channels": 16,
            "stride": 1,
            "repeats": 2,
            "kernel": 5,
            "expansion": 6,
            "se_ratio": 0.25,
            "activation": "hardswish",
        },
    ],
    "head": {"channels": 32, "activation": "relu"},
    "classifier": {"dropout": 0.1, "num_classes": 10},
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "lr": 0.05,
    "batch_size": 64,
    "epochs": 1,
}


class _Enough(BaseException):
    """Raised by the fake objective once a fuzzed search has run a few trials: it stops a valid but long
    budget (--trials 1000000) at once. A BaseException, so no `except Exception` on the way swallows it."""


@contextlib.contextmanager
def fake_training(limit: int = 2):
    """Swap the trial objective (read from trainers.runner when the study is made) for an instant one
    with config-dependent values, so fuzzed searches exercise storage, GP and reports but never train."""
    import zlib

    import trainers.runner as runner

    calls: list[dict] = []

    def fake(spec: dict) -> dict:
        calls.append(spec)
        if len(calls) > limit:
            raise _Enough()
        h = zlib.crc32(json.dumps(spec["config"], sort_keys=True).encode()) % 1000
        return {"value": 0.2 + 0.6 * h / 1000, "metrics": {"val_acc": 0.2 + 0.6 * h / 1000, "test_acc": 0.5}}

    real = runner.run_trial
    runner.run_trial = fake
    try:
        yield calls
    finally:
        runner.run_trial = real


NUM_TEXT = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-0",
            "1",
            "2",
            "-1",
            "1e309",
            "-1e309",
            "nan",
            "inf",
            "-inf",
            "1k",
            "2.5M",
            "1G",
            "5m",
            "1h",
            "90s",
            "0.0001s",
            "1e-300",
            "0x10",
            "1_000",
            "\u0663",
            "10**9",
            "1e3",
            "3.0",
            "k",
            "m",
            "  7  ",
            "1\n2",
            "\x00",
            "4294967295",
            "4294967296",
            "18446744073709551616",
        ]
    ),
    st.text(max_size=10),
)


def _search_argv(space: Path, out: Path, trials: int, *extra) -> list:
    # Single-fidelity: these tests count whole trials (multi-fidelity kills have their own argv).
    return [
        "search",
        "--dataset",
        "digits",
        "--space",
        space,
        "--trials",
        trials,
        "--out",
        out,
        "--quiet",
        "--fidelity",
        "off",
        "--max-epochs",
        "2",
        *extra,
    ]


def _started_since(folder: Path, t0: float) -> bool:
    """A trial is running that this process started (rows left "running" by a killed one do not count)."""
    return any(t.status == "running" and (t.started_at or 0) >= t0 for t in trials_of(folder))


def _image_folder(root: Path, *, classes: int = 3, per_class: int = 12, size: int = 8) -> Path:
    """A tiny ImageFolder of PNGs: one folder per class, class-dependent brightness plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size, size, 3)) + 60 * c
            Image.fromarray(pixels.astype(np.uint8)).save(d / f"{i}.png")
    return root
