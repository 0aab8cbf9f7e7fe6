"""Storage (SQLite) on real files in tmp_path: round trips, the schema from the Trial dataclass, old files, errors."""

import dataclasses
import json
import math
import multiprocessing as mp
import sqlite3
import threading
import time

import numpy as np
import pytest

from nas.errors import StudyError
from nas.storage import SCHEMA_VERSION, Storage, open_study
from nas.trial import COMPLETE, FAILED, INTERRUPTED, PENDING, RUNNING, Trial

CONFIG = {
    "stem": {"channels": 16, "kernel": 3, "stride": 1, "activation": "relu"},
    "stages": [
        {"block": "Conv", "channels": 32, "stride": 2, "repeats": 1, "kernel": 3, "activation": "relu"},
        {
            "block": "InvertedResidual",
            "channels": 64,
            "stride": 1,
            "repeats": 2,
            "kernel": 5,
            "expansion": 6,
            "se_ratio": 0.25,
            "activation": "hardswish",
        },
    ],
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "lr": 0.05,
    "weight_decay": 0.0005,
    "batch_size": 64,
    "epochs": 10,
}


@pytest.fixture
def db(tmp_path):
    return tmp_path / "study" / "study.db"


# --- round trips ---------------------------------------------------------------------------------


def test_trial_round_trip_and_reopen(db):
    with Storage(db) as st:
        t = st.add_trial(CONFIG, status=RUNNING, seed=7, known={"macs": 123, "params": 45}, started_at=100.5)
        assert t.id == 1 and t.config == CONFIG and t.status == RUNNING
        t.status, t.value, t.score, t.attempts, t.finished_at = COMPLETE, 0.8125, 0.75, 1, 160.5
        t.metrics = {"val_acc": 0.8125, "test_acc": 0.8, "curve": [0.1, 0.5, 0.8], "nested": {"a": [1, {"b": 2}]}}
        st.update_trial(t)
        t2 = st.add_trial({"lr": 0.1}, status=PENDING)
        assert t2.id == 2
    with Storage(db) as st:  # a fresh connection sees exactly what was written
        got = st.get_trial(1)
        assert got == t
        assert got.duration == pytest.approx(60.0)
        assert [x.id for x in st.trials()] == [1, 2]
        assert [x.id for x in st.trials(COMPLETE)] == [1]
        assert st.count() == 2 and st.count(PENDING) == 1 and st.count(FAILED) == 0
        assert st.get_trial(99) is None


def test_meta_round_trip(db):
    values = {
        "direction": "maximize",
        "space": {"lr": {"type": "float", "low": 1e-4, "log": True}},
        "budget": 12,
        "objectives": ["value", "macs"],
        "flag": None,
    }
    with Storage(db) as st:
        for k, v in values.items():
            st.set_meta(k, v)
        st.set_meta("budget", 20)  # replaces
        assert st.get_meta("missing", "dflt") == "dflt"
    with Storage(db, read_only=True) as st:
        assert st.meta() == {**values, "budget": 20, "schema_version": SCHEMA_VERSION}


def test_non_finite_and_numpy_values(db):
    with Storage(db) as st:
        t = st.add_trial({"lr": np.float32(0.5), "ch": np.int64(3)}, status=RUNNING, known={"macs": np.int64(10)})
        t.status, t.value, t.score, t.error = FAILED, float("nan"), float("inf"), "diverged"
        t.metrics = {"curve": np.array([0.1, np.inf]), "val_acc": np.float64(0.25), "loss": -math.inf}
        st.update_trial(t)
        st.update_trial(st.get_trial(t.id))  # writing the stored record again does not repeat the note
        got = st.get_trial(t.id)
        raw = st._conn.execute("SELECT config, metrics FROM trials").fetchone()
    assert got.value is None and got.score is None
    assert got.metrics == {"curve": [0.1, None], "val_acc": 0.25, "loss": None}
    assert got.config == {"lr": 0.5, "ch": 3} and got.macs == 10
    assert got.error.startswith("diverged; non-finite values stored as null:")
    for where in ("value=nan", "score=inf", "metrics.curve[1]=inf", "metrics.loss=-inf"):
        assert where in got.error
    assert got.error.count("non-finite") == 1
    for text in raw:  # strict JSON: no NaN / Infinity tokens
        json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_mark_running_as_interrupted(db):
    with Storage(db) as st:
        for s in (RUNNING, COMPLETE, RUNNING, PENDING):
            st.add_trial({}, status=s)
        assert st.mark_running_as_interrupted() == 2
        assert [t.status for t in st.trials()] == [INTERRUPTED, COMPLETE, INTERRUPTED, PENDING]
        assert st.mark_running_as_interrupted() == 0


def test_bad_status_and_unknown_trial(db):
    with Storage(db) as st:
        with pytest.raises(ValueError, match="unknown trial status"):
            st.add_trial({}, status="done")
        with pytest.raises(StudyError, match="no trial with id 5"):
            st.update_trial(Trial(id=5, config={}))
        with pytest.raises(StudyError, match="cannot be stored as JSON"):
            st.add_trial({"f": object()}, status=PENDING)
        assert st.count() == 0  # nothing half-written


def test_pragmas_wal_and_full_sync(db):
    with Storage(db) as st:
        assert st._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert st._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert st._conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_threads_share_one_storage(db):
    with Storage(db) as st:

        def work():
            for _ in range(10):
                t = st.add_trial({}, status=RUNNING)
                t.status = COMPLETE
                st.update_trial(t)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert st.count(COMPLETE) == 40
        assert [t.id for t in st.trials()] == list(range(1, 41))


# --- one schema, one insert, old files ---------------------------------------------------------------


def test_the_table_is_the_trial_dataclass(db):
    with Storage(db) as st:
        cols = [r[1] for r in st._conn.execute("PRAGMA table_info(trials)")]
    assert cols == [f.name for f in dataclasses.fields(Trial)]
    assert "macs" not in cols and "params" not in cols  # known objectives live in one JSON column


def test_add_trial_is_one_write_and_takes_a_seed_of_its_id(db):
    with Storage(db) as st:
        st.add_trial({}, status=PENDING)
        before = st._conn.total_changes
        t = st.add_trial(
            {"a": 1},
            status=RUNNING,
            seed=lambda i: 1000 + i,
            attempts=1,
            resource=0,
            known={"flops": 7, "latency": None},
        )
        assert st._conn.total_changes - before == 1
        assert (t.id, t.seed, t.attempts, t.resource) == (2, 1002, 1, 0.0)
        assert st.get_trial(2) == t and t.known == {"flops": 7, "latency": None}
        with pytest.raises(StudyError, match="known objective 'flops' is 'many'; give a number"):
            st.add_trial({}, status=PENDING, known={"flops": "many"})


def _first_writes(tmp_path, monkeypatch, fidelity):
    """(trial id, status written) of every update_trial, and (trial id, "objective") when a trial starts."""
    from nas.optimizer import Optimizer
    from nas.space import Float, Space
    from nas.study import Budget, Study

    writes = []
    update = Storage.update_trial
    monkeypatch.setattr(Storage, "update_trial", lambda self, t: (writes.append((t.id, t.status)), update(self, t)))

    def objective(spec):
        writes.append((spec["trial_id"], "objective"))
        return {"value": spec["config"]["x"], **({"resource": spec["resource_to"]} if fidelity else {})}

    opt = Optimizer(Space([Float("x", 0.0, 1.0)]), seed=3, n_warmup=2, fidelity=fidelity)
    Study(tmp_path / "s", optimizer=opt, objective=objective, budget=Budget(trials=2)).run()
    with Storage(tmp_path / "s" / "study.db", read_only=True) as st:
        seeds = [(t.id, t.seed, t.attempts) for t in st.trials()]
    return writes, seeds


def test_a_study_writes_a_new_trial_once_before_it_runs(tmp_path, monkeypatch):
    writes, seeds = _first_writes(tmp_path, monkeypatch, None)
    assert writes == [(1, "objective"), (1, COMPLETE), (2, "objective"), (2, COMPLETE)]
    assert seeds == [(1, 3 * 100_003 + 1, 1), (2, 3 * 100_003 + 2, 1)]


def test_a_multi_fidelity_study_writes_a_new_trial_once_before_it_runs(tmp_path, monkeypatch):
    from nas.fidelity import Fidelity

    writes, seeds = _first_writes(tmp_path, monkeypatch, Fidelity(1, 3, 3))
    for tid, _, _ in seeds:
        mine = [w for w in writes if w[0] == tid]
        assert mine[0] == (tid, "objective"), mine  # no update between its insert and its first segment
    assert [s[:2] for s in seeds] == [(i, 3 * 100_003 + i) for i in range(1, len(seeds) + 1)]


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE trials (id INTEGER PRIMARY KEY, status TEXT NOT NULL, config TEXT NOT NULL,
    value REAL, score REAL, macs INTEGER, params INTEGER, metrics TEXT, error TEXT,
    seed INTEGER, attempts INTEGER, started_at REAL, finished_at REAL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO trials VALUES (1, 'complete', '{"lr":0.1}', 0.5, 0.4, 1200, 34, '{}', NULL, 7, 1, 1.0, 2.0);
INSERT INTO trials VALUES (2, 'failed', '{"lr":0.2}', NULL, NULL, NULL, NULL, '{}', 'boom', 8, 1, 3.0, 4.0);
"""


def _old_study(db):
    """A study.db as the first release wrote it: macs / params columns, no rung / resource / known."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(_SCHEMA_1)
    conn.close()


def test_an_old_study_reads_the_same_read_only_and_after_its_upgrade(db):
    _old_study(db)
    before = db.read_bytes()
    with open_study(db.parent) as ro:
        old = ro.trials()
        assert ro.get_meta("schema_version") == 1
    assert db.read_bytes() == before  # a read-only open changes nothing
    assert [(t.known, t.macs, t.params, t.rung) for t in old] == [
        ({"macs": 1200, "params": 34}, 1200, 34, None),
        ({}, None, None, None),
    ]
    with open_study(db.parent, write=True) as st:  # a resume: columns added, version raised, rows kept
        assert st.trials() == old
        assert st.get_meta("schema_version") == SCHEMA_VERSION
        t = st.add_trial({"lr": 0.3}, status=RUNNING, known={"macs": 5})
        old[0].value = 0.6
        st.update_trial(old[0])
    with open_study(db.parent) as ro:
        assert ro.get_trial(1) == old[0] and ro.get_trial(3) == t and t.params is None


def test_open_study_takes_the_folder_or_the_file(tmp_path):
    with pytest.raises(StudyError, match="does not exist; pass the folder given to `nas search --out`"):
        open_study(tmp_path / "nope")
    with open_study(tmp_path / "s", write=True) as st:
        st.add_trial({}, status=PENDING)
    for where in (tmp_path / "s", tmp_path / "s" / "study.db"):
        with open_study(where) as ro:
            assert ro.read_only and ro.count() == 1


# --- bad files and failed writes -----------------------------------------------------------------


def test_read_only_missing_study_names_the_folder(tmp_path):
    with pytest.raises(StudyError, match=r"results_x is not a study \(no study.db\)"):
        Storage(tmp_path / "results_x" / "study.db", read_only=True)


@pytest.mark.parametrize("read_only", [False, True])
def test_corrupt_file_is_a_study_error(tmp_path, read_only):
    db = tmp_path / "study.db"
    db.write_bytes(b"this is not sqlite at all " * 100)
    with pytest.raises(StudyError, match="not a readable study database") as e:
        Storage(db, read_only=read_only)
    assert "\n" not in str(e.value)
    assert db.read_bytes() == b"this is not sqlite at all " * 100  # left alone


def test_foreign_sqlite_file_is_not_a_study(tmp_path):
    db = tmp_path / "study.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE other (x)")
    c.close()
    with pytest.raises(StudyError, match="not a lightnas study"):
        Storage(db, read_only=True)


def test_newer_schema_is_refused(db):
    with Storage(db) as st:
        st.set_meta("schema_version", SCHEMA_VERSION + 1)
    with pytest.raises(StudyError, match="newer lightnas"):
        Storage(db)


def test_read_only_refuses_writes_and_leaves_db_unchanged(db):
    with Storage(db) as st:
        st.add_trial(CONFIG, status=COMPLETE)
    before = db.read_bytes()
    with Storage(db, read_only=True) as ro:
        assert ro.count() == 1
        with pytest.raises(StudyError, match="opened read-only"):
            ro.add_trial({}, status=PENDING)
        with pytest.raises(StudyError, match="opened read-only"):
            ro.set_meta("k", 1)
    assert db.read_bytes() == before


def test_disk_full_is_a_clear_study_error(db):
    with Storage(db) as st:
        st.add_trial({}, status=PENDING)
        pages = st._conn.execute("PRAGMA page_count").fetchone()[0]
        st._conn.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: SQLITE_FULL on growth
        with pytest.raises(StudyError, match="disk is full.*free disk space"):
            st.add_trial({"big": "x" * 200_000}, status=PENDING)
        assert st.count() == 1  # the failed write was rolled back


def test_read_only_database_on_write_is_a_clear_study_error(db):
    # A real SQLITE_READONLY from SQLite: swap in a connection opened mode=ro (chmod does not stop root).
    with Storage(db) as st:
        st.add_trial({}, status=PENDING)
        st._conn.close()
        st._conn = sqlite3.connect(
            db.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        with pytest.raises(StudyError, match="readonly database.*make the file and its folder writable"):
            st.add_trial({}, status=PENDING)


# --- concurrency ---------------------------------------------------------------------------------


def _writer(db, n, started, release):
    with Storage(db) as st:
        st.set_meta("direction", "maximize")
        for i in range(n):
            t = st.add_trial({"i": i}, status=RUNNING, started_at=float(i))
            t.status, t.value, t.finished_at = COMPLETE, i / 100, float(i) + 1
            st.update_trial(t)
            if i == 4:
                started.set()
            time.sleep(0.002)
        release.wait(30)  # keep the connection (and the WAL) open: a "running" study


def test_reader_sees_consistent_growing_snapshots_while_a_process_writes(db):
    ctx = mp.get_context("spawn")  # a clean child: no SQLite handles inherited through fork
    started, release = ctx.Event(), ctx.Event()
    n = 60
    proc = ctx.Process(target=_writer, args=(db, n, started, release))
    proc.start()
    try:
        assert started.wait(60), "writer did not start"
        seen = []
        while True:
            with Storage(db, read_only=True) as ro:
                trials = ro.trials()
                seen.append(len(trials))
                assert [t.id for t in trials] == list(range(1, len(trials) + 1))
                for t in trials:  # each row is either the fresh insert or the full update, never a mix
                    assert (t.status, t.value) in ((RUNNING, None), (COMPLETE, (t.id - 1) / 100))
                if ro.count(COMPLETE) == n:
                    break
            time.sleep(0.005)
        assert seen == sorted(seen) and seen[0] >= 5
        # the writer is still connected: a read-only view of a running study works
        with Storage(db, read_only=True) as ro:
            assert ro.get_meta("direction") == "maximize" and ro.count() == n
    finally:
        release.set()
        proc.join(30)
    assert proc.exitcode == 0
