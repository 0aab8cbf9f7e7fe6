"""The search loop on cheap black-box objectives, with real SQLite files and real worker processes."""

import math
import os
import signal
import time

import pytest

from nas.errors import StudyError
from nas.executors import InProcessExecutor, ProcessExecutor
from nas.optimizer import Optimizer
from nas.space import Categorical, Float, Integer, Space
from nas.storage import Storage
from nas.study import Budget, Study
from nas.trial import COMPLETE, FAILED, INTERRUPTED

SPACE = Space([Float("x", 0.0, 1.0), Integer("n", 1, 4), Categorical("mode", ["ok", "crash", "nan"])])


def objective(spec):
    cfg = spec["config"]
    if cfg["mode"] == "crash":
        raise RuntimeError("boom in trial")
    if cfg["mode"] == "nan":
        return {"value": float("nan")}
    return {"value": 1.0 - (cfg["x"] - 0.3) ** 2 - 0.01 * cfg["n"], "metrics": {"pid": os.getpid()}}


def killer_objective(spec):
    """Kills its own worker the first time it sees a given trial id (flag file), then succeeds."""
    flag = os.path.join(spec["study_dir"], f"killed-{spec['trial_id']}")
    if spec["trial_id"] == 2 and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"value": spec["config"]["x"]}


def always_killed(spec):
    if spec["trial_id"] == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"value": spec["config"]["x"]}


def make(folder, budget, executor=None, objective_fn=objective, resume=False, seed=0):
    opt = Optimizer(SPACE, seed=seed, n_warmup=4)
    return Study(
        folder,
        optimizer=opt,
        objective=objective_fn,
        budget=budget,
        executor=executor,
        meta={"space": SPACE.to_dict(), "direction": "maximize"},
        resume=resume,
    )


def test_study_runs_to_budget_and_records_every_trial(tmp_path):
    make(tmp_path / "s", Budget(trials=12)).run()
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        trials = st.trials()
    assert len(trials) == 12
    assert all(t.status in (COMPLETE, FAILED) for t in trials)
    for t in trials:
        SPACE.validate(t.config)
        if t.config["mode"] == "crash":
            assert t.status == FAILED and "boom in trial" in t.error
        elif t.config["mode"] == "nan":
            assert t.status == FAILED and "non-finite" in t.error
        else:
            assert t.status == COMPLETE and math.isclose(t.value, objective({"config": t.config})["value"])
            assert t.finished_at >= t.started_at
    keys = [str(sorted(t.config.items())) for t in trials]
    assert len(set(keys)) == len(keys), "a config was proposed twice"


def test_existing_study_needs_resume(tmp_path):
    from nas.options import as_flags

    make(tmp_path / "s", Budget(trials=2)).run()
    with pytest.raises(StudyError, match="pass resume=True to continue it"):
        make(tmp_path / "s", Budget(trials=4)).run()
    with as_flags(), pytest.raises(StudyError, match="pass --resume to continue it or choose another --out"):
        make(tmp_path / "s", Budget(trials=4)).run()  # the same check, as nas search words it


def test_resume_finishes_the_budget_and_keeps_finished_trials(tmp_path):
    make(tmp_path / "s", Budget(trials=5)).run()
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        before = {t.id: (t.config, t.value, t.status) for t in st.trials()}
    make(tmp_path / "s", Budget(trials=9), resume=True).run()
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        after = st.trials()
    assert len(after) == 9
    for t in after:
        if t.id in before:
            assert (t.config, t.value, t.status) == before[t.id]


def test_running_trials_of_a_dead_driver_are_run_again_on_resume(tmp_path):
    folder = tmp_path / "s"
    make(folder, Budget(trials=3)).run()
    with Storage(folder / "study.db") as st:  # what a kill -9 mid-trial leaves behind
        t = st.add_trial(SPACE.sample(seed=5), status="running", seed=1, started_at=time.time())
        dead_id = t.id
    make(folder, Budget(trials=5), resume=True).run()
    with Storage(folder / "study.db", read_only=True) as st:
        t = st.get_trial(dead_id)
        assert t.status in (COMPLETE, FAILED) and t.status != INTERRUPTED
        assert st.count() == 5


def test_time_budget_stops_the_search(tmp_path):
    t0 = time.monotonic()
    make(tmp_path / "s", Budget(seconds=1.5)).run()
    assert time.monotonic() - t0 < 20
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        assert st.count() >= 1


def test_process_workers_and_a_killed_worker_is_retried(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    with ProcessExecutor(workers=2) as ex:
        make(folder, Budget(trials=6), executor=ex, objective_fn=killer_objective).run()
    with Storage(folder / "study.db", read_only=True) as st:
        trials = st.trials()
    assert len(trials) == 6 and all(t.status == COMPLETE for t in trials)
    assert st is not None
    assert (folder / "killed-2").exists()
    assert [t.attempts for t in trials if t.id == 2] == [2]


def test_a_worker_lost_twice_is_recorded_as_failed_and_the_search_goes_on(tmp_path):
    with ProcessExecutor(workers=1) as ex:
        make(tmp_path / "s", Budget(trials=4), executor=ex, objective_fn=always_killed).run()
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        t1 = st.get_trial(1)
        assert t1.status == FAILED and "worker lost" in t1.error
        assert st.count(COMPLETE) == 3


def test_second_driver_on_the_same_folder_is_refused(tmp_path):
    from nas.fsutil import StudyLock

    folder = tmp_path / "s"
    folder.mkdir()
    with StudyLock(folder):
        with pytest.raises(StudyError, match="in use"):
            make(folder, Budget(trials=2)).run()


def test_inprocess_executor_is_default():
    s = Study("x", optimizer=Optimizer(SPACE), objective=objective, budget=Budget(trials=1))
    assert isinstance(s.executor, InProcessExecutor)


def spec_probe(spec):
    """Reports what the study told it: the typed spec survives the trip to a worker process."""
    from nas.spec import TrialSpec

    assert isinstance(spec, TrialSpec)
    return {
        "value": spec.config["x"],
        "metrics": {
            "known": spec.known,
            "threads": spec.threads,
            "extra": spec.extra,
            "segment": spec.segment,
            "as_dict": sorted(dict(spec)),
        },
    }


def test_the_objective_gets_a_typed_spec_with_the_studys_known_costs(tmp_path):
    known = lambda c: {"macs": int(c["n"] * 1000), "params": 7}  # noqa: E731
    opt = Optimizer(SPACE, seed=0, n_warmup=3, known=known)
    Study(
        tmp_path / "s",
        optimizer=opt,
        objective=spec_probe,
        budget=Budget(trials=3),
        executor=ProcessExecutor(workers=1),
        objective_args={"threads": 2, "dataset": "digits"},
        meta={"space": SPACE.to_dict()},
    ).run()
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        trials = st.trials()
    assert [t.status for t in trials] == [COMPLETE] * 3
    for t in trials:
        m = t.metrics
        assert m["known"] == {"macs": t.config["n"] * 1000, "params": 7} == {"macs": t.macs, "params": t.params}
        assert m["threads"] == 2 and m["extra"] == {"dataset": "digits"} and m["segment"] is False
        assert m["as_dict"] == sorted(["trial_id", "config", "seed", "study_dir", "known", "threads", "dataset"])


def test_a_trial_spec_reads_as_the_dict_objectives_were_written_for():
    import pickle

    from nas.spec import TrialSpec

    s = TrialSpec(
        config={"x": 1},
        seed=5,
        trial_id=2,
        study_dir="/s",
        resource_from=0,
        resource_to=3,
        max_resource=9,
        checkpoint=None,
        extra={"epochs": 4},
    )
    assert s["config"] == {"x": 1} and s.get("epochs") == 4 and "resource_to" in s and s["checkpoint"] is None
    assert "threads" not in s and s.get("threads") is None and "known" not in s
    back = pickle.loads(pickle.dumps(s))
    assert back == s and TrialSpec.of(dict(s)) == s and TrialSpec.of(s) is s
    plain = TrialSpec.of({"config": {}, "seed": 1, "dataset": "digits"})
    assert not plain.segment and "resource_to" not in plain and plain.extra == {"dataset": "digits"}
