"""The multi-fidelity study loop on a cheap contract-following objective: segments, checkpoints, budgets,
resume after a crash mid-segment, bad objectives, old study files."""

import math
import os
import pickle
import sqlite3

import pytest

from nas.errors import NasError
from nas.executors import ProcessExecutor
from nas.fidelity import Fidelity, Reporter
from nas.optimizer import Optimizer
from nas.segments import load_checkpoint, stage_checkpoint
from nas.space import Categorical, Float, Space
from nas.storage import Storage
from nas.study import Budget, Progress, Study
from nas.trial import COMPLETE, FAILED, PAUSED, RUNNING

SPACE = Space([Float("x", 0.0, 1.0), Categorical("mode", ["ok", "ok2"])])


def level(x):
    return 1.0 - (x - 0.3) ** 2


def objective(spec):
    """Follows MF_CONTRACT: continues from the checkpoint (which records the epochs already trained and
    every epoch's value) and fails loudly if handed the wrong one."""
    state = pickle.loads(spec["checkpoint"]) if spec["checkpoint"] is not None else {"epoch": 0, "trace": []}
    if state["epoch"] != spec["resource_from"]:
        raise RuntimeError(f"checkpoint at epoch {state['epoch']}, segment starts at {spec['resource_from']}")
    x = spec["config"]["x"]
    live = os.path.join(spec["study_dir"], "trials", str(spec["trial_id"]), "live.json")
    report = Reporter(spec["resource_from"], spec["resource_to"], live_path=live)
    curve, epoch = [], state["epoch"]
    while True:
        epoch += 1
        acc = level(x) * (1 - 0.7 * math.exp(-3 * epoch / spec["max_resource"]))
        curve.append({"epoch": epoch, "val_acc": acc})
        state["trace"].append(epoch)
        if not report(epoch, acc):
            break
    state["epoch"] = epoch
    return {
        "value": acc,
        "metrics": {"curve": curve, "val_acc": acc},
        "checkpoint": pickle.dumps(state),
        "resource": epoch,
    }


def wrong_resource(spec):
    return {"value": 0.5, "resource": spec["resource_to"] + 1}


def nan_at_rung_1(spec):
    if spec["resource_from"] > 0:
        return {"value": float("nan"), "resource": spec["resource_to"]}
    return objective(spec)


FID = Fidelity(1, 9, 3)


def make(folder, trials=4, *, fid=FID, fn=objective, resume=False, executor=None, on_progress=None):
    opt = Optimizer(SPACE, seed=0, n_warmup=3, fidelity=fid)
    return Study(
        folder,
        optimizer=opt,
        objective=fn,
        budget=Budget(trials=trials),
        executor=executor,
        meta={"space": SPACE.to_dict(), "direction": "maximize"},
        resume=resume,
        on_progress=on_progress,
    )


def rows(folder):
    with Storage(folder / "study.db", read_only=True) as st:
        return st.trials(), st.meta()


def check_consistent(trials, fid):
    """What every row must satisfy: rungs in order, a curve of epochs 1..resource with none repeated,
    status matching the rung, the checkpoint file at the trial's resource."""
    for t in trials:
        rv = t.metrics.get("rungs", [])
        assert [e["resource"] for e in rv] == list(fid.rungs[: len(rv)]), (t.id, rv)
        if rv:
            assert t.resource == rv[-1]["resource"] and t.rung == len(rv) - 1 and t.value == rv[-1]["value"]
            assert [p["epoch"] for p in t.metrics["curve"]] == list(range(1, int(t.resource) + 1))
            assert t.status in ((COMPLETE,) if t.rung == fid.top else (PAUSED, FAILED, RUNNING, "interrupted"))


def test_segments_run_to_the_epoch_budget_and_each_promotion_continues_the_same_run(tmp_path):
    fid = Fidelity(1, 9, 3)
    seen = []
    study = make(
        tmp_path / "s",
        trials=4,
        fid=fid,
        on_progress=lambda p: seen.append((p.epochs, p.epoch_budget, [dict(j) for j in p.jobs])),
    )
    study.run()
    trials, meta = rows(tmp_path / "s")
    assert meta["fidelity"] == fid.to_dict()
    assert all(t.status in (COMPLETE, PAUSED) for t in trials), [(t.id, t.status, t.error) for t in trials]
    check_consistent(trials, fid)
    trained = sum(t.resource for t in trials)
    assert 36 <= trained < 36 + 9  # the budget is 4 * 9 epochs; the last segment may overrun it
    assert any(t.status == COMPLETE for t in trials) and any(t.status == PAUSED for t in trials)
    for t in trials:  # the checkpoint on disk is the state at the trial's resource
        state = pickle.loads((tmp_path / "s" / "trials" / str(t.id) / "checkpoint.pt").read_bytes())
        assert state["epoch"] == t.resource and state["trace"] == list(range(1, int(t.resource) + 1))
    reached = [sum(1 for t in trials if t.rung is not None and t.rung >= k) for k in range(len(fid.rungs))]
    assert reached[0] > reached[1] > reached[2] > 0, reached  # stopped early at every rung, some to the top
    assert seen[-1][0] == trained and seen[-1][1] == 36
    assert any(j["resource_to"] > 1 for _, _, jobs in seen for j in jobs)  # promotions were shown running
    assert Study.__doc__ and study.opt.best[1] == max(t.value for t in trials if t.status == COMPLETE)


def test_resume_with_a_larger_budget_promotes_paused_trials_from_their_checkpoints(tmp_path):
    fid = Fidelity(1, 9, 3)
    make(tmp_path / "s", trials=2, fid=fid).run()
    before, _ = rows(tmp_path / "s")
    make(tmp_path / "s", trials=6, fid=fid, resume=True).run()
    after, _ = rows(tmp_path / "s")
    check_consistent(after, fid)
    assert all(t.status != FAILED for t in after), [(t.id, t.error) for t in after]
    by_id = {t.id: t for t in after}
    for t in before:  # nothing recorded is lost: every rung value recorded stays, in order
        assert by_id[t.id].metrics["rungs"][: len(t.metrics["rungs"])] == t.metrics["rungs"]
    # The resumed scheduler counts the trials paused before it: each rung one of them still waits at has sent
    # up its share, floor(n_k / eta) of all trials that reached it (which ones is the ranking's business).
    waiting = {t.rung for t in before if t.status == PAUSED and by_id[t.id].rung == t.rung}
    assert waiting
    for k in waiting:
        at_k = [t for t in after if t.rung is not None and t.rung >= k]
        assert sum(1 for t in at_k if t.rung > k) >= len(at_k) // fid.eta, k


def test_a_segment_killed_mid_run_continues_from_its_last_rung(tmp_path):
    """As after kill -9 during a promotion: the row is left "running" with its last rung committed, and a
    checkpoint for the next rung may be staged but never committed. --resume must rerun that segment from
    the committed checkpoint (the objective raises otherwise)."""
    fid = Fidelity(1, 9, 3)
    make(tmp_path / "s", trials=2, fid=fid).run()
    folder = tmp_path / "s"
    with Storage(folder / "study.db") as st:
        victim = next(t for t in st.trials() if t.status == PAUSED and t.rung == 0)
        victim.status = RUNNING
        st.update_trial(victim)
    stage_checkpoint(folder, victim.id, 3, pickle.dumps({"epoch": 3, "trace": [9, 9, 9]}))  # uncommitted
    make(folder, trials=6, fid=fid, resume=True).run()
    after, _ = rows(folder)
    check_consistent(after, fid)
    t = next(t for t in after if t.id == victim.id)
    assert t.status in (PAUSED, COMPLETE) and t.rung >= 1 and t.error is None, (t.status, t.error)
    assert not list((folder / "trials" / str(t.id)).glob("checkpoint.*.pt"))


def test_a_checkpoint_staged_for_the_committed_rung_is_taken(tmp_path):
    """Killed after the commit but before the rename: the staged file is the committed rung's state."""
    stage_checkpoint(tmp_path, 7, 3, b"rung-3")
    (tmp_path / "trials" / "7" / "checkpoint.pt").write_bytes(b"rung-1")
    assert load_checkpoint(tmp_path, 7, 3) == b"rung-3"
    assert (tmp_path / "trials" / "7" / "checkpoint.pt").read_bytes() == b"rung-3"
    stage_checkpoint(tmp_path, 7, 9, b"rung-9, never committed")
    assert load_checkpoint(tmp_path, 7, 3) == b"rung-3"


def test_process_workers_get_checkpoint_bytes_in_the_spec(tmp_path):
    fid = Fidelity(1, 4, 2)
    with ProcessExecutor(workers=2) as ex:
        make(tmp_path / "s", trials=3, fid=fid, executor=ex).run()
    trials, _ = rows(tmp_path / "s")
    check_consistent(trials, fid)
    assert all(t.status in (COMPLETE, PAUSED) for t in trials), [(t.id, t.error) for t in trials]
    assert any(t.rung and t.rung >= 1 for t in trials)


@pytest.mark.parametrize("fn, needle", [(wrong_resource, "returned resource"), (nan_at_rung_1, "non-finite")])
def test_bad_objectives_fail_the_trial_and_keep_what_was_recorded(tmp_path, fn, needle):
    make(tmp_path / "s", trials=2, fid=Fidelity(1, 4, 2), fn=fn).run()
    trials, _ = rows(tmp_path / "s")
    failed = [t for t in trials if t.status == FAILED]
    assert failed and all(needle in t.error for t in failed), [(t.id, t.status, t.error) for t in trials]
    if fn is nan_at_rung_1:
        assert all(t.metrics["rungs"][0]["resource"] == 1 for t in failed)  # the rung-0 value stays


def test_resume_with_other_fidelity_settings_is_refused(tmp_path):
    make(tmp_path / "s", trials=1, fid=Fidelity(1, 4, 2)).run()
    with pytest.raises(NasError, match="other fidelity settings"):
        make(tmp_path / "s", trials=2, fid=Fidelity(1, 9, 3), resume=True).run()
    with pytest.raises(NasError, match="other fidelity settings"):
        make(tmp_path / "s", trials=2, fid=None, resume=True).run()


def test_a_study_db_from_before_multi_fidelity_reads_and_resumes(tmp_path):
    db = tmp_path / "old" / "study.db"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE trials (id INTEGER PRIMARY KEY, status TEXT NOT NULL, config TEXT NOT NULL,
            value REAL, score REAL, macs INTEGER, params INTEGER, metrics TEXT, error TEXT,
            seed INTEGER, attempts INTEGER, started_at REAL, finished_at REAL);
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO trials (status, config, value, metrics, seed, attempts)
            VALUES ('complete', '{"x": 0.5, "mode": "ok"}', 0.9, '{}', 1, 1);""")
    con.commit()
    con.close()
    with Storage(db, read_only=True) as st:
        (t,) = st.trials()
    assert (t.value, t.rung, t.resource) == (0.9, None, None)
    with Storage(db) as st:  # a writable open adds the new columns
        t.rung, t.resource = 0, 1.0
        st.update_trial(t)
        assert (st.get_trial(1).rung, st.get_trial(1).resource) == (0, 1.0)


def test_progress_line_shows_epochs_and_running_targets():
    from nas.study import print_progress
    import io

    buf = io.StringIO()
    p = Progress(
        done=1,
        running=2,
        epochs=12,
        epoch_budget=36,
        paused=3,
        jobs=[
            {"trial": 4, "resource_to": 9, "resource": 5, "value": 0.8123},
            {"trial": 5, "resource_to": 1, "resource": None, "value": None},
        ],
    )
    print_progress(4, stream=buf)(p)
    line = buf.getvalue()
    assert "12/36 ep  1 full" in line and "#4:5/9ep 0.812" in line and "#5:->1ep" in line and "paused 3" in line


def test_a_finite_space_spends_the_budget_left_on_its_paused_trials(tmp_path):
    """Every config tried: instead of ending (or failing) with trials paused below the top, the best paused ones
    go on past the 1/eta cap; with epochs enough, every config is trained to the top and the search ends."""
    space = Space([Categorical("x", [0.1, 0.3, 0.5, 0.9]), Categorical("mode", ["ok"])])
    fid = Fidelity(1, 9, 3)
    study = Study(
        tmp_path / "s",
        optimizer=Optimizer(space, seed=0, n_warmup=2, fidelity=fid),
        objective=objective,
        budget=Budget(trials=6),  # 54 epochs for 4 configs of 9 epochs each
        meta={"space": space.to_dict(), "direction": "maximize"},
    )
    study.run()
    trials, _ = rows(tmp_path / "s")
    check_consistent(trials, fid)
    assert len(trials) == 4 and all(t.status == COMPLETE for t in trials), [(t.id, t.status) for t in trials]
    assert sum(t.resource for t in trials) == 36 and "tried" in study.stop_reason
