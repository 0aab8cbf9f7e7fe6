"""Real searches killed with SIGKILL at seeded random moments (between trials, mid-write, mid-segment) and
resumed: no finished trial is lost or changed, nothing half-written is left under a real name."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from nas.storage import Storage
from fault_tools import (
    assert_weights_load,
    call,
    fake_training,
    integrity,
    logs_of,
    reaped,
    _search_argv,
    snapshot,
    spawn,
    _started_since,
    temp_leftovers,
    trials_of,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc, RLIMIT_AS and process groups as Linux has them"
)


def _check_after_kill(folder: Path, before: dict) -> dict:
    """What a kill may never do: lose or change a finished trial, corrupt the database, or leave a
    half-written file under a real name."""
    after = snapshot(folder)
    lost = {i: v for i, v in before.items() if after.get(i) != v}
    assert not lost, f"finished trials changed or vanished: {sorted(lost)}"
    if (folder / "study.db").exists():
        assert integrity(folder) == "ok"
    assert_weights_load(folder)
    return after


def test_kill_9_at_random_moments_then_resume_finishes(tmp_path, tiny_space):
    """Three SIGKILLs at seeded random moments (right after start, while a trial trains, mid-search after
    some trials), each followed by `--resume`; the last resume must finish the budget."""
    rng = random.Random(20240917)
    out, logs, budget = tmp_path / "study", tmp_path / "logs", 5
    argv = _search_argv(tiny_space, out, budget, "--warmup", "3", "--seed", "7", "--resume")

    def right_after_start(proc, t0):
        time.sleep(rng.uniform(0.05, 2.0))  # imports, data loading, the study set-up or the first trial
        return True

    def while_a_trial_trains(proc, t0):
        if not wait_for(lambda: _started_since(out, t0), timeout=180, proc=proc, what="a trial to start"):
            return False
        time.sleep(rng.uniform(0.0, 0.5))
        return True

    def mid_search(proc, t0):
        goal = len(snapshot(out)) + rng.randint(1, 2)
        if not wait_for(lambda: len(snapshot(out)) >= goal, timeout=180, proc=proc, what=f"{goal} finished trials"):
            return False
        time.sleep(rng.uniform(0.0, 0.4))
        return True

    kept: dict = {}
    killed = 0
    for i, moment in enumerate([right_after_start, while_a_trial_trains, mid_search]):
        t0 = time.time()
        with reaped(spawn(argv, logs, f"run{i}")) as proc:
            alive = moment(proc, t0)
            if alive and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole session: a worker must not outlive it
                killed += 1
                assert proc.wait(timeout=30) == -signal.SIGKILL
            else:  # finished before the moment came: then it must have finished cleanly
                assert proc.wait(timeout=180) == 0, logs_of(logs, f"run{i}")
        kept = _check_after_kill(out, kept)
    assert killed >= 2, "the searches ended before they could be killed; the test proved nothing"

    with reaped(spawn(argv, logs, "final")) as proc:
        assert proc.wait(timeout=300) == 0, logs_of(logs, "final")
    final = _check_after_kill(out, kept)
    trials = trials_of(out)
    assert len(final) == len(trials) == budget, [(t.id, t.status) for t in trials]
    assert all(t.status == "complete" for t in trials), [(t.id, t.status, t.error) for t in trials]
    for t in trials:
        # The seed a trial trains with does not depend on kills: study.py gives trial i seed * 100003 + i.
        # (A kill between the trial's insert and its first update once left seed 0 for the resume to use.)
        assert t.seed == 7 * 100_003 + t.id, (t.id, t.seed, t.attempts)
        assert t.attempts >= 1 and (out / t.metrics["weights"]).is_file()
    assert assert_weights_load(out) == budget
    assert not temp_leftovers(out), temp_leftovers(out)


# A `nas` that SIGKILLs itself at the worst moment of a weights write: the bytes are in the temp file,
# the rename has not happened. Patches os.replace, which nas.fsutil.atomic_write_bytes calls.
_KILL_AT_RENAME = r"""
import os, signal, sys
_replace = os.replace
def replace(src, dst, *a, **k):
    if str(dst).endswith(os.path.join("trials", sys.argv[1], "weights.pt")):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **k)
os.replace = replace
from nas.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_kill_9_between_temp_write_and_rename_leaves_nothing_half_written(tmp_path, tiny_space):
    out, logs = tmp_path / "study", tmp_path / "logs"
    argv = _search_argv(tiny_space, out, 2, "--warmup", "2", "--resume")
    with reaped(spawn(["2", *argv], logs, "killed", prefix=[sys.executable, "-c", _KILL_AT_RENAME])) as proc:
        assert proc.wait(timeout=300) == -signal.SIGKILL, logs_of(logs, "killed")
    kept = _check_after_kill(out, {})
    assert sorted(kept) == [1]
    assert not (out / "trials" / "2" / "weights.pt").exists()  # never a half-written file under the real name
    assert temp_leftovers(out), "the kill should have left trial 2's temp file (else this test proves nothing)"

    with reaped(spawn(argv, logs, "resume")) as proc:
        assert proc.wait(timeout=300) == 0, logs_of(logs, "resume")
    _check_after_kill(out, kept)
    assert [(t.id, t.status) for t in trials_of(out)] == [(1, "complete"), (2, "complete")]
    assert trials_of(out)[1].attempts == 2  # trial 2 ran again, under its own id
    assert assert_weights_load(out) == 2
    assert not temp_leftovers(out), temp_leftovers(out)


def test_a_trial_killed_before_its_first_update_resumes_with_its_own_seed(tmp_path, small_study, tiny_space):
    """Before one-write inserts, Study._next_trial inserted a trial, then wrote its seed: a kill in between
    left a running row with seed 0 and no attempts. A resume of such a study must run it with the seed it
    would have had."""
    folder = tmp_path / "study"
    shutil.copytree(small_study, folder)
    with Storage(folder / "study.db") as st:
        t = st.get_trial(1)
        half_made = st.add_trial(t.config, status="running", seed=0, known=t.known, started_at=time.time())
    with fake_training() as calls:
        code, _, err = call(_search_argv(tiny_space, folder, 3, "--resume", "--seed", "1"))
    assert code == 0, err
    expected = 1 * 100_003 + half_made.id  # what an uninterrupted run gives trial 3 (study.py, seed 1)
    assert [(c["trial_id"], c["seed"]) for c in calls] == [(half_made.id, expected)]
    rerun = trials_of(folder)[-1]
    assert (rerun.id, rerun.status, rerun.seed, rerun.attempts) == (half_made.id, "complete", expected, 1)


# A `nas search` in multi-fidelity mode whose trainer is a contract-following stand-in: 0.15 s an epoch,
# the state (epochs trained, every epoch's number) torch.save'd as the checkpoint, and a loud failure if a
# segment is handed a checkpoint that is not the state at its resource_from (a repeated or skipped epoch).
_MF_SEARCH = r"""
import io, sys, time, zlib, json
import torch
import trainers.runner as runner
def fake(spec):
    state = {"epoch": torch.tensor(0), "trace": torch.zeros(0, dtype=torch.long)}
    if spec["checkpoint"] is not None:
        state = torch.load(io.BytesIO(spec["checkpoint"]), weights_only=True)
    if int(state["epoch"]) != spec["resource_from"]:
        raise RuntimeError(f"checkpoint at epoch {int(state['epoch'])}, segment from {spec['resource_from']}")
    level = 0.3 + 0.6 * (zlib.crc32(json.dumps(spec["config"], sort_keys=True).encode()) % 1000) / 1000
    curve = []
    for e in range(spec["resource_from"] + 1, spec["resource_to"] + 1):
        time.sleep(0.15)
        curve.append({"epoch": e, "val_acc": level * (1 - 0.5 / e)})
    trace = torch.cat([state["trace"], torch.arange(spec["resource_from"] + 1, spec["resource_to"] + 1)])
    buf = io.BytesIO()
    torch.save({"epoch": torch.tensor(spec["resource_to"]), "trace": trace}, buf)
    return {"value": curve[-1]["val_acc"], "metrics": {"curve": curve}, "checkpoint": buf.getvalue(),
            "resource": spec["resource_to"]}
runner.run_trial = fake
from nas.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _rung_values(folder: Path) -> dict:
    return {t.id: t.metrics.get("rungs", []) for t in trials_of(folder)}


def test_kill_9_during_a_promoted_segment_then_resume_continues_from_the_last_rung(tmp_path, tiny_space):
    """Multi-fidelity: SIGKILL while a promoted trial trains (its row is "running" with a rung recorded),
    then mid-search; each --resume must keep every rung value recorded, rerun the killed segment from the
    checkpoint of its last rung (the stand-in trainer fails on any other), and the last one must spend the
    epoch budget with no failed trial."""
    import torch

    rng = random.Random(20261201)
    out, logs = tmp_path / "study", tmp_path / "logs"
    argv = [
        "search",
        "--dataset",
        "digits",
        "--space",
        tiny_space,
        "--trials",
        3,
        "--min-epochs",
        1,
        "--max-epochs",
        9,
        "--eta",
        3,
        "--warmup",
        3,
        "--seed",
        3,
        "--out",
        out,
        "--quiet",
        "--resume",
    ]
    prefix = [sys.executable, "-c", _MF_SEARCH]

    def promoted_running(t0):
        return (
            any(
                t.status == "running" and (t.resource or 0) > 0 and (t.started_at or 0) > 0 and t.metrics.get("rungs")
                for t in trials_of(out)
            )
            and time.time() > t0
        )

    def n_rungs():
        return sum(len(v) for v in _rung_values(out).values())

    killed = 0
    for i, moment in enumerate(["promoted", "mid"]):
        before = _rung_values(out)
        kept = snapshot(out)
        t0 = time.time()
        with reaped(spawn(argv, logs, f"run{i}", prefix=prefix)) as proc:
            if moment == "promoted":
                alive = wait_for(lambda t0=t0: promoted_running(t0), timeout=240, proc=proc, what="a promoted segment")
                time.sleep(rng.uniform(0.0, 0.3))
            else:
                goal = n_rungs() + rng.randint(1, 2)
                alive = wait_for(
                    lambda goal=goal: n_rungs() >= goal, timeout=240, proc=proc, what=f"{goal} rung values"
                )
                time.sleep(rng.uniform(0.0, 0.2))
            if alive and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                killed += 1
                assert proc.wait(timeout=30) == -signal.SIGKILL
            else:
                assert proc.wait(timeout=240) == 0, logs_of(logs, f"run{i}")
        _check_after_kill(out, kept)
        after = _rung_values(out)
        for tid, rv in before.items():
            assert after[tid][: len(rv)] == rv, (tid, rv, after[tid])  # no rung value lost or changed
        if moment == "promoted":
            assert killed == 1, "the search ended before a promoted segment could be killed"
            assert any(t.status == "running" and t.resource for t in trials_of(out))  # the kill hit one

    with reaped(spawn(argv, logs, "final", prefix=prefix)) as proc:
        assert proc.wait(timeout=300) == 0, logs_of(logs, "final")
    trials = trials_of(out)
    assert all(t.status in ("complete", "paused") for t in trials), [(t.id, t.status, t.error) for t in trials]
    assert sum(t.resource for t in trials) >= 27 and any(t.status == "complete" for t in trials)
    for t in trials:
        assert [p["epoch"] for p in t.metrics["curve"]] == list(range(1, int(t.resource) + 1)), t.id
        state = torch.load(out / "trials" / str(t.id) / "checkpoint.pt", weights_only=True)
        assert state["trace"].tolist() == list(range(1, int(t.resource) + 1)), t.id  # no epoch ran twice
    assert not temp_leftovers(out), temp_leftovers(out)
    assert not list(out.rglob("checkpoint.*.pt"))
