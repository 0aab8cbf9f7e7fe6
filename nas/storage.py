"""SQLite store of one study: `study.db` in the study folder holds the meta data and every trial.

Crash safety: WAL journal, `synchronous=FULL`. With WAL, NORMAL already survives a killed process, but a
power cut or OS crash can drop the last commits; FULL syncs the WAL on every commit so a trial reported
"complete" stays complete. A study commits a handful of rows per trial (trials take seconds to hours), so
the extra fsync costs nothing we could measure against training time.

Readers (`nas report` on a running search) open the file with `mode=ro`; WAL lets them read the last
committed state while the search keeps writing, and they can never write.

>>> with Storage("/tmp/_lightnas_doctest.db") as st:
...     t = st.add_trial({"lr": 0.1}, status="running")
...     t.status, t.value = "complete", 0.9
...     st.update_trial(t)
"""
from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterator

from nas.errors import StudyError
from nas.fsutil import lock_held
from nas.trial import RUNNING, INTERRUPTED, STATUSES, Trial

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # a reader's checkpoint or a second writer can hold the file briefly; wait, don't fail

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    config TEXT NOT NULL,
    value REAL, score REAL, macs INTEGER, params INTEGER,
    metrics TEXT, error TEXT,
    seed INTEGER, attempts INTEGER,
    started_at REAL, finished_at REAL,
    rung INTEGER, resource REAL
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status);
"""
_COLUMNS = ("id", "status", "config", "value", "score", "macs", "params", "metrics", "error",
            "seed", "attempts", "started_at", "finished_at", "rung", "resource")
# Columns added after the first release: a study.db written before them gets them on its first writable
# open (ALTER TABLE ... ADD COLUMN, NULL for old rows); a read-only open reads NULL in their place.
_ADDED_COLUMNS = {"rung": "INTEGER", "resource": "REAL"}


class Storage:
    """One study's database. `read_only=True` never writes and works while another process writes."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()  # one connection shared by the study's threads
        self._has_schema = True
        self._select = ", ".join(_COLUMNS)
        if read_only and not self.path.is_file():
            raise StudyError(f"{self.path.parent} is not a study (no {self.path.name}); "
                             "pass the folder given to `nas search --out`")
        if read_only and self.path.stat().st_size == 0 and not lock_held(self.path.parent):
            # 0 bytes and no search writing it: not a study that has not started, a damaged copy
            raise StudyError(f"{self.path} is empty (0 bytes), not a study; restore it from a copy, or pass "
                             "the folder given to `nas search --out`")
        try:
            if read_only:
                # as_uri percent-escapes '?', '#' and spaces, which would otherwise end the file name.
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S,
                                             isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                             isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise self._translate(e) from None
        try:
            self._open()
        except BaseException:
            self._conn.close()
            raise

    def _open(self) -> None:
        with self._guard():
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            tables = {r[0] for r in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}  # first read: fails on a non-SQLite file
            if self.read_only:
                if not tables:  # created a moment ago by a search that has not written its schema yet
                    self._has_schema = False
                    return
                if not {"meta", "trials"} <= tables:
                    raise StudyError(f"{self.path} is a SQLite file but not a lightnas study "
                                     "(no meta/trials tables); pass a folder written by `nas search`")
                have = {r[1] for r in self._conn.execute("PRAGMA table_info(trials)")}
                self._select = ", ".join(c if c in have else f"NULL AS {c}" for c in _COLUMNS)
            else:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StudyError(f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                                     "put the study on a local disk, not a network share")
                self._conn.execute("PRAGMA synchronous = FULL")
                with self._transaction():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    have = {r[1] for r in self._conn.execute("PRAGMA table_info(trials)")}
                    for col, kind in _ADDED_COLUMNS.items():
                        if col not in have:  # a study.db from before multi-fidelity
                            self._conn.execute(f"ALTER TABLE trials ADD COLUMN {col} {kind}")
                    self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                                       (json.dumps(SCHEMA_VERSION),))
        version = self.get_meta("schema_version")
        if version is not None and version > SCHEMA_VERSION:
            raise StudyError(f"{self.path} was written by a newer lightnas (schema {version}, "
                             f"this one reads {SCHEMA_VERSION}); upgrade lightnas")

    # --- errors and transactions ---------------------------------------------------------------

    def _translate(self, e: sqlite3.Error) -> StudyError:
        """sqlite3 errors -> one-line StudyErrors that say what to do."""
        msg = str(e)
        low = msg.lower()
        where = self.path
        if "readonly" in low or "read-only" in low:
            return StudyError(f"{where}: cannot write the study database ({msg}); "
                              "make the file and its folder writable or choose another --out")
        if "disk is full" in low or "disk i/o" in low:
            return StudyError(f"{where}: cannot write the study database ({msg}); "
                              "free disk space or choose another --out")
        # A reader (report, export) has no --out of its own to change: its way out is another study path.
        if "locked" in low or "busy" in low:
            return StudyError(f"{where}: database stayed locked for {BUSY_TIMEOUT_S:.0f} s ({msg}); "
                              "another process holds it: wait for it and try again"
                              + ("" if self.read_only else ", or choose another --out"))
        if "not a database" in low or "malformed" in low or "encrypted" in low:
            return StudyError(f"{where} is not a readable study database ({msg}); "
                              + ("restore it from a copy, or pass another study folder" if self.read_only
                                 else "move the file away or choose another --out"))
        if "unable to open" in low:
            return StudyError(f"{where}: cannot open the study database ({msg}); "
                              "check that the folder exists and is accessible")
        return StudyError(f"{where}: database error ({msg})")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialise use of the connection across threads; sqlite3 errors leave as StudyErrors."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as e:
                raise self._translate(e) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        # BEGIN IMMEDIATE takes the write lock up front, so a busy database waits at BEGIN (busy_timeout)
        # instead of failing half-way through; any error rolls the whole write back.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            raise

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        if self.read_only:
            raise StudyError(f"{self.path} was opened read-only; open it without read_only to change it")
        with self._guard(), self._transaction():
            return self._conn.execute(sql, args)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        if not self._has_schema:
            return []
        with self._guard():
            return self._conn.execute(sql, args).fetchall()

    # --- meta -----------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-able value under `key` (replaces the old one)."""
        text, bad = _to_json(value, key)
        if bad:
            raise StudyError(f"meta {key!r}: non-finite number at {', '.join(bad)}; store a finite value")
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return self._json(rows[0][0], f"meta {key!r}") if rows else default

    def meta(self) -> dict[str, Any]:
        return {k: self._json(v, f"meta {k!r}") for k, v in self._read("SELECT key, value FROM meta ORDER BY key")}

    def _json(self, text: Any, what: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError) as e:  # edited by hand or by another tool
            raise StudyError(f"{self.path}: {what} is not valid JSON ({e}); the database was edited or damaged: "
                             "restore it from a copy or move it away") from None

    # --- trials ---------------------------------------------------------------------------------

    def add_trial(self, config: dict, *, status: str, seed: int = 0, macs: int | None = None,
                  params: int | None = None, started_at: float | None = None) -> Trial:
        """Insert a new trial; its id is the next integer (ids start at 1, in insertion order)."""
        _check_status(status)
        cfg, bad = _to_json(config, "config")
        if bad:
            raise StudyError(f"config has non-finite numbers at {', '.join(bad)}; use finite values")
        cur = self._write(
            "INSERT INTO trials (status, config, macs, params, metrics, seed, attempts, started_at) "
            "VALUES (?, ?, ?, ?, '{}', ?, 0, ?)",
            (status, cfg, _opt_int(macs), _opt_int(params), int(seed), _opt_float(started_at)))
        return Trial(id=cur.lastrowid, config=json.loads(cfg), status=status, macs=_opt_int(macs),
                     params=_opt_int(params), seed=int(seed), started_at=_opt_float(started_at))

    def update_trial(self, trial: Trial) -> None:
        """Write every field of `trial` (found by id). NaN/inf become NULL, and `error` says where."""
        _check_status(trial.status)
        bad: list[str] = []
        cfg, b = _to_json(trial.config, "config")
        bad += b
        metrics, b = _to_json(trial.metrics or {}, "metrics")
        bad += b
        value, score = (_finite_or_none(getattr(trial, k), k, bad) for k in ("value", "score"))
        error = trial.error
        if bad:
            note = f"non-finite values stored as null: {', '.join(bad)}"
            if not error or note not in error:
                error = f"{error}; {note}" if error else note
        cur = self._write(
            "UPDATE trials SET status=?, config=?, value=?, score=?, macs=?, params=?, metrics=?, error=?, "
            "seed=?, attempts=?, started_at=?, finished_at=?, rung=?, resource=? WHERE id=?",
            (trial.status, cfg, value, score, _opt_int(trial.macs), _opt_int(trial.params), metrics, error,
             int(trial.seed), int(trial.attempts), _opt_float(trial.started_at),
             _opt_float(trial.finished_at), _opt_int(trial.rung), _opt_float(trial.resource), int(trial.id)))
        if cur.rowcount != 1:
            raise StudyError(f"{self.path}: no trial with id {trial.id}; add it with add_trial first")

    def get_trial(self, trial_id: int) -> Trial | None:
        rows = self._read(f"SELECT {self._select} FROM trials WHERE id = ?", (int(trial_id),))
        return self._trial(rows[0]) if rows else None

    def trials(self, status: str | None = None) -> list[Trial]:
        """All trials (or those with `status`), ordered by id."""
        sql = f"SELECT {self._select} FROM trials"
        if status is None:
            return [self._trial(r) for r in self._read(sql + " ORDER BY id")]
        _check_status(status)
        return [self._trial(r) for r in self._read(sql + " WHERE status = ? ORDER BY id", (status,))]

    def _trial(self, row: tuple) -> Trial:
        try:
            t = _row_to_trial(row)
            for what in ("config", "metrics"):  # add_trial / update_trial only ever store mappings
                if not isinstance(getattr(t, what), dict):
                    raise TypeError(f"{what} is a {type(getattr(t, what)).__name__}, not a mapping")
            return t
        except (TypeError, ValueError) as e:  # edited by hand or by another tool
            raise StudyError(f"{self.path}: trial {row[0]} is damaged ({e}); the database was edited: "
                             "restore it from a copy or move it away") from None

    def count(self, status: str | None = None) -> int:
        if status is None:
            rows = self._read("SELECT COUNT(*) FROM trials")
        else:
            _check_status(status)
            rows = self._read("SELECT COUNT(*) FROM trials WHERE status = ?", (status,))
        return rows[0][0] if rows else 0

    def mark_running_as_interrupted(self) -> int:
        """After a crash: trials left "running" become "interrupted" (resume runs them again)."""
        return self._write("UPDATE trials SET status = ? WHERE status = ?", (INTERRUPTED, RUNNING)).rowcount

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- JSON and row helpers ----------------------------------------------------------------------

def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown trial status {status!r}; use one of {', '.join(STATUSES)}")


_INT64 = (-(2**63), 2**63 - 1)  # SQLite's INTEGER


def _opt_int(x) -> int | None:
    if x is None:
        return None
    x = int(x)
    if not _INT64[0] <= x <= _INT64[1]:
        raise StudyError(f"{x:.3e} does not fit a 64-bit integer column; such a count means a config far "
                         "beyond what can be trained (the size caps should have refused it)")
    return x


def _opt_float(x) -> float | None:
    return None if x is None else float(x)


def _finite_or_none(x, name: str, bad: list[str]) -> float | None:
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    bad.append(f"{name}={x}")
    return None


def _jsonable(obj: Any, where: str, bad: list[str]) -> Any:
    """A copy of `obj` that json.dumps accepts: numpy scalars/arrays unwrapped, NaN/inf -> None (noted)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isfinite(obj):
            return float(obj)
        bad.append(f"{where}={obj}")
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v, f"{where}.{k}", bad) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]", bad) for i, v in enumerate(obj)]
    if hasattr(obj, "tolist"):  # numpy scalar or array, without importing numpy here
        return _jsonable(obj.tolist(), where, bad)
    raise StudyError(f"{where} is a {type(obj).__name__}, which cannot be stored as JSON; "
                     "convert it to a number, string, list or dict")


def _to_json(obj: Any, where: str) -> tuple[str, list[str]]:
    bad: list[str] = []
    clean = _jsonable(obj, where, bad)
    return json.dumps(clean, allow_nan=False, separators=(",", ":")), bad


_NUMERIC = {"value": float, "score": float, "started_at": float, "finished_at": float, "macs": int,
            "params": int, "seed": int, "attempts": int}


def _row_to_trial(row: tuple) -> Trial:
    d = dict(zip(_COLUMNS, row))
    for col, kind in _NUMERIC.items():  # SQLite keeps any type in any column: a tampered row may hold text
        v = d[col]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or (kind is int and not isinstance(v, int))):
            raise TypeError(f"{col} is {v!r}, not a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{col} is {v!r}, not a finite number")
    d["config"] = json.loads(d["config"])
    d["metrics"] = json.loads(d["metrics"]) if d["metrics"] else {}
    d["seed"] = d["seed"] or 0
    d["attempts"] = d["attempts"] or 0
    return Trial(**d)
