"""Searches through a real local Ray (2 CPUs, no dashboard, one instance for the module): trials run in Ray
workers, come back to the driver, and only the driver writes the study's SQLite file; a worker killed
mid-trial is run once more; a trial lost twice is recorded failed and the search still reaches its budget.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from nas.optimizer import Optimizer
from nas.space import Categorical, Float, Integer, Space
from nas.storage import Storage
from nas.study import Budget, Study
from nas.trial import COMPLETE, FAILED

pytestmark = pytest.mark.timeout(300)  # generous for a loaded machine; a hung Ray task still fails its test

SPACE = Space([Float("x", 0.0, 1.0), Integer("n", 1, 4), Categorical("mode", ["a", "b"])])
DB_FILES = ("study.db", "study.db-wal", "study.db-journal")


# ---------------------------------------------------------------- objectives (module-level: shipped to Ray)


def value_of(config: dict) -> float:
    return 1.0 - (config["x"] - 0.3) ** 2 - 0.01 * config["n"] + 0.05 * (config["mode"] == "b")


def open_db_files() -> list[str]:
    """The study database files this process holds open (read from /proc, not from our own bookkeeping)."""
    held = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if Path(target).name in DB_FILES:
            held.append(target)
    return held


def cheap(spec: dict) -> dict:
    """Sleeps a little, so two workers overlap; reports where and when it ran."""
    start = time.time()
    time.sleep(0.4)
    return {
        "value": value_of(spec["config"]),
        "metrics": {"pid": os.getpid(), "start": start, "end": time.time(), "db_open": open_db_files()},
    }


def killed_once(spec: dict) -> dict:
    """Trial 3's first attempt writes its pid and sleeps until the test kills it; every other run is cheap."""
    pid_file = Path(spec["study_dir"]) / "victim.pid"
    if spec["trial_id"] == 3 and not pid_file.exists():
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)  # never finishes on its own: only the SIGKILL ends this attempt
        raise AssertionError("trial 3's first attempt was not killed")
    return cheap(spec)


def always_killed(spec: dict) -> dict:
    """Trial 2 kills its own worker on every attempt."""
    if spec["trial_id"] == 2:
        (Path(spec["study_dir"]) / f"attempt-{os.getpid()}").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return cheap(spec)


# ---------------------------------------------------------------- the module's Ray


@pytest.fixture(scope="module")
def ray_ex():
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized(), "another test left Ray running"
    # Ray workers import functions by module name, and pytest's test modules are not importable there:
    # ship this module's objectives by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    from nas.executors import RayExecutor, get_executor

    ex = get_executor("ray", workers=2)
    assert isinstance(ex, RayExecutor) and ex.capacity == 2
    assert ray.cluster_resources().get("CPU") == 2
    try:
        yield ex
    finally:
        ex.shutdown()  # it started Ray, so it stops it
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert not ray.is_initialized()


def make_study(folder: Path, executor, objective, trials: int) -> Study:
    return Study(
        folder,
        optimizer=Optimizer(SPACE, seed=0, n_warmup=4),
        objective=objective,
        budget=Budget(trials=trials),
        executor=executor,
        meta={"space": SPACE.to_dict()},
    )


def read_trials(folder: Path):
    with Storage(folder / "study.db", read_only=True) as st:
        return st.trials()


def kill_when_written(pid_file: Path, timeout: float = 60.0) -> threading.Thread:
    """A watcher that SIGKILLs the pid written to ``pid_file`` as soon as it appears (the trial is mid-sleep)."""

    def watch():
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pid_file.exists() and pid_file.read_text():
                time.sleep(0.2)  # well inside its 60 s sleep
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


# ---------------------------------------------------------------- tests


def test_two_ray_workers_run_the_search_and_only_the_driver_writes(ray_ex, tmp_path):
    folder = tmp_path / "s"
    make_study(folder, ray_ex, cheap, trials=8).run()
    trials = read_trials(folder)
    assert [t.id for t in trials] == list(range(1, 9))
    for t in trials:
        assert t.status == COMPLETE, t.error
        assert t.value == pytest.approx(value_of(t.config), abs=1e-12)
        assert t.attempts == 1
        assert t.metrics["pid"] != os.getpid()  # ran in a Ray worker, not here
        assert t.metrics["db_open"] == []  # no worker ever opened the database
    assert len({t.metrics["pid"] for t in trials}) >= 2
    spans = sorted((t.metrics["start"], t.metrics["end"]) for t in trials)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), "no two trials ever ran at the same time"
    assert len({str(sorted(t.config.items())) for t in trials}) == 8  # asynchronous proposals stay distinct
    with Storage(folder / "study.db", read_only=True):
        assert open_db_files(), "the /proc probe must see an open database (else db_open == [] proves nothing)"


def test_a_killed_ray_worker_is_retried_once_and_the_budget_is_reached(ray_ex, tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    watcher = kill_when_written(folder / "victim.pid")
    make_study(folder, ray_ex, killed_once, trials=6).run()
    watcher.join(timeout=1)
    victim = int((folder / "victim.pid").read_text())
    trials = read_trials(folder)
    assert len(trials) == 6 and all(t.status == COMPLETE for t in trials), [(t.id, t.error) for t in trials]
    t3 = next(t for t in trials if t.id == 3)
    assert t3.attempts == 2
    assert t3.metrics["pid"] != victim  # the second attempt ran in a fresh worker
    assert all(t.attempts == 1 for t in trials if t.id != 3)


def test_a_trial_lost_twice_is_failed_and_the_search_goes_on(ray_ex, tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    make_study(folder, ray_ex, always_killed, trials=5).run()
    trials = read_trials(folder)
    assert len(trials) == 5
    t2 = next(t for t in trials if t.id == 2)
    assert t2.status == FAILED and t2.attempts == 2
    assert t2.error.startswith("worker lost twice: worker lost:"), t2.error
    assert len(list(folder.glob("attempt-*"))) == 2  # two workers died, one per attempt
    assert [t.status for t in trials if t.id != 2] == [COMPLETE] * 4


def test_nas_search_cli_on_ray(ray_ex, tmp_path, capsys, tiny_space):
    """``nas search --executor ray --workers 2`` in-process: it joins the module's Ray and leaves it up.
    12 s on 2 idle cores, most of it the Ray workers' first import of torch and timm (minutes when
    the machine is overloaded: hence the module's generous timeout)."""
    import ray

    from nas.cli import main

    out = tmp_path / "digits"
    code = main(
        [
            "search",
            "--dataset",
            "digits",
            "--space",
            str(tiny_space),
            "--trials",
            "3",
            "--workers",
            "2",
            "--fidelity",
            "off",
            "--max-epochs",
            "2",
            "--executor",
            "ray",
            "--out",
            str(out),
            "--quiet",
            "--seed",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert ray.is_initialized()  # a Ray the CLI did not start is left running
    with Storage(out / "study.db", read_only=True) as st:
        trials, meta = st.trials(), st.meta()
    assert meta["dataset"] == "digits" and meta["trials"] == 3
    assert len(trials) == 3
    for t in trials:
        assert t.status == COMPLETE, t.error
        assert 0.0 <= t.value <= 1.0 and t.value == t.metrics["val_acc"]
        assert t.metrics["pid"] != os.getpid()
        assert (out / t.metrics["weights"]).is_file()  # weights are the worker's; the database is the driver's
    assert "(3 trials: complete 3" in printed  # the summary the CLI prints reads the same database


def test_nas_api_search_on_ray_with_a_users_train_function(ray_ex, tmp_path):
    """``nas.api.search(..., executor="ray", workers=2)`` on tensors, with a train function from the user's own
    module: both trials run in Ray workers, the study joins the module's Ray and leaves it up."""
    import ray

    import ray_user_fns as user
    from nas import api

    ray.cloudpickle.register_pickle_by_value(user)  # Ray's workers do not have tests/nas on their path
    try:
        view = api.search(
            data=user.digits(),
            train=user.train_one_epoch,
            space=api.small_cnn_space(epochs=1),
            executor="ray",
            workers=2,
            trials=2,
            warmup=2,
            out=tmp_path / "s",
        )
    finally:
        ray.cloudpickle.unregister_pickle_by_value(user)
    assert ray.is_initialized()
    assert view.meta["trainer"] == "user" and (tmp_path / "s/data.pt").is_file()  # the workers read the saved data
    assert len(view.trials) == 2
    for t in view.trials:
        assert t.status == "complete", t.error
        assert t.metrics["pid"] != os.getpid() and t.metrics["curve"] == [{"epoch": 1, "val_acc": t.value}]
        assert (tmp_path / "s" / t.metrics["weights"]).is_file()
