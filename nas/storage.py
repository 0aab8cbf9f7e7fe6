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
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Iterator

from nas.errors import StudyError
from nas.fsutil import lock_held
from nas.trial import RUNNING, INTERRUPTED, STATUSES, Trial

DB_NAME = "study.db"  # the file a study folder holds
# 2: known objectives in one JSON column `known` (schema 1 had `macs` and `params` columns, still read).
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0  # a reader's checkpoint or a second writer can hold the file briefly; wait, don't fail

# The trials table comes from the Trial dataclass: one column per field, in field order.
_FIELDS = {f.name: f for f in fields(Trial)}
_COLUMNS = tuple(_FIELDS)
_JSON = tuple(n for n, f in _FIELDS.items() if f.metadata.get("json"))
_SQL_TYPES = {n: f.metadata["sql"] for n, f in _FIELDS.items()}
# SQLite keeps any type in any column: what a read checks each numeric column holds.
_NUMERIC = {
    n: {"INTEGER": int, "REAL": float}[t.split()[0]]
    for n, t in _SQL_TYPES.items()
    if t.split()[0] in ("INTEGER", "REAL") and n != "id"
}
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);\n"
    + "CREATE TABLE IF NOT EXISTS trials ("
    + ", ".join(f"{n} {t}" for n, t in _SQL_TYPES.items())
    + ");\n"
    + "CREATE INDEX IF NOT EXISTS trials_status ON trials(status);"
)
_INSERT = f"INSERT INTO trials ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_UPDATE = f"UPDATE trials SET {', '.join(f'{c}=?' for c in _COLUMNS if c != 'id')} WHERE id=?"
# Schema 1 kept the two CNN objectives in their own columns. A row with `known` NULL was written before the
# `known` column existed (by schema 1, or before this open added it): its objectives are read from these.
_LEGACY_KNOWN = ("macs", "params")


class Storage:
    """One study's database. `read_only=True` never writes and works while another process writes."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()  # one connection shared by the study's threads
        self._has_schema = True
        self._select = ", ".join(_COLUMNS)
        self._legacy: tuple[str, ...] = ()  # schema-1 columns this file has (read where `known` is NULL)
        if read_only and not self.path.is_file():
            raise StudyError(
                f"{self.path.parent} is not a study (no {self.path.name}); pass the folder given to `nas search --out`"
            )
        if read_only and self.path.stat().st_size == 0 and not lock_held(self.path.parent):
            # 0 bytes and no search writing it: not a study that has not started, a damaged copy
            raise StudyError(
                f"{self.path} is empty (0 bytes), not a study; restore it from a copy, or pass "
                "the folder given to `nas search --out`"
            )
        try:
            if read_only:
                # as_uri percent-escapes '?', '#' and spaces, which would otherwise end the file name.
                uri = self.path.resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(
                    uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._conn = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
                )
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
            tables = {
                r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }  # first read: fails on a non-SQLite file
            if self.read_only:
                if not tables:  # created a moment ago by a search that has not written its schema yet
                    self._has_schema = False
                    return
                if not {"meta", "trials"} <= tables:
                    raise StudyError(
                        f"{self.path} is a SQLite file but not a lightnas study "
                        "(no meta/trials tables); pass a folder written by `nas search`"
                    )
                have = self._trial_columns()
                self._select = ", ".join(c if c in have else f"NULL AS {c}" for c in _COLUMNS)
            else:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StudyError(
                        f"{self.path}: SQLite refused WAL mode (got {mode!r}); "
                        "put the study on a local disk, not a network share"
                    )
                self._conn.execute("PRAGMA synchronous = FULL")
                with self._transaction():
                    self._upgrade()
                have = self._trial_columns()
            self._legacy = tuple(c for c in _LEGACY_KNOWN if c in have)
            if self._legacy:
                self._select += ", " + ", ".join(self._legacy)
        version = self.get_meta("schema_version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise StudyError(
                f"{self.path}: damaged study (schema_version is {version!r}, not a number); "
                "restore the file from a backup, or start a new study in another folder"
            )
        if version is not None and version > SCHEMA_VERSION:
            raise StudyError(
                f"{self.path} was written by a newer lightnas (schema {version}, "
                f"this one reads {SCHEMA_VERSION}); upgrade lightnas"
            )

    def _trial_columns(self) -> set[str]:
        return {r[1] for r in self._conn.execute("PRAGMA table_info(trials)")}

    def _upgrade(self) -> None:
        """Create the tables, or bring an older study.db up to this schema (inside the open's transaction)."""
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._conn.execute(statement)
        have = self._trial_columns()
        for col, kind in _SQL_TYPES.items():
            if col not in have:  # a column added after the file was written (rung, resource, known): NULL
                self._conn.execute(f"ALTER TABLE trials ADD COLUMN {col} {kind}")
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
        # An older version number is raised: its readers would miss the objectives new rows keep in `known`.
        # A damaged one (not a number) is left for the check after the open to name.
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        with contextlib.suppress(TypeError, ValueError):
            old = json.loads(row[0])
            if type(old) is int and old < SCHEMA_VERSION:
                self._conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (json.dumps(SCHEMA_VERSION),)
                )

    # --- errors and transactions ---------------------------------------------------------------

    def _translate(self, e: sqlite3.Error) -> StudyError:
        """sqlite3 errors -> one-line StudyErrors that say what to do."""
        msg = str(e)
        low = msg.lower()
        where = self.path
        if "readonly" in low or "read-only" in low:
            return StudyError(
                f"{where}: cannot write the study database ({msg}); "
                "make the file and its folder writable or choose another --out"
            )
        if "disk is full" in low or "disk i/o" in low:
            return StudyError(
                f"{where}: cannot write the study database ({msg}); free disk space or choose another --out"
            )
        # A reader (report, export) has no --out of its own to change: its way out is another study path.
        if "locked" in low or "busy" in low:
            return StudyError(
                f"{where}: database stayed locked for {BUSY_TIMEOUT_S:.0f} s ({msg}); "
                "another process holds it: wait for it and try again"
                + ("" if self.read_only else ", or choose another --out")
            )
        if "not a database" in low or "malformed" in low or "encrypted" in low:
            return StudyError(
                f"{where} is not a readable study database ({msg}); "
                + (
                    "restore it from a copy, or pass another study folder"
                    if self.read_only
                    else "move the file away or choose another --out"
                )
            )
        if "unable to open" in low:
            return StudyError(
                f"{where}: cannot open the study database ({msg}); check that the folder exists and is accessible"
            )
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

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        if self.read_only:
            raise StudyError(f"{self.path} was opened read-only; open it without read_only to change it")
        with self._guard():
            yield

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._writing(), self._transaction():
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
            raise StudyError(
                f"{self.path}: {what} is not valid JSON ({e}); the database was edited or damaged: "
                "restore it from a copy or move it away"
            ) from None

    # --- trials ---------------------------------------------------------------------------------

    def add_trial(
        self,
        config: dict,
        *,
        status: str,
        seed: int | Callable[[int], int] = 0,
        known: dict | None = None,
        started_at: float | None = None,
        attempts: int = 0,
        resource: float | None = None,
    ) -> Trial:
        """Insert a new trial in one write; its id is the next integer (ids start at 1, in insertion order).

        ``seed`` may be a function of that id (a study's per-trial seeds); ``known`` holds the objectives known
        before training, by name."""
        _, bad = _to_json(config, "config")
        if bad:
            raise StudyError(f"config has non-finite numbers at {', '.join(bad)}; use finite values")
        trial = Trial(
            id=0,
            config=config,
            status=status,
            known=dict(known or {}),
            attempts=attempts,
            started_at=started_at,
            resource=resource,
        )
        with self._writing(), self._transaction():
            trial.id = self._conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM trials").fetchone()[0]
            trial.seed = seed(trial.id) if callable(seed) else seed
            row = self._row(trial)
            self._conn.execute(_INSERT, row)
        return _row_to_trial(row)

    def update_trial(self, trial: Trial) -> None:
        """Write every field of `trial` (found by id). NaN/inf become NULL, and `error` says where."""
        row = self._row(trial)
        cur = self._write(_UPDATE, row[1:] + row[:1])
        if cur.rowcount != 1:
            raise StudyError(f"{self.path}: no trial with id {trial.id}; add it with add_trial first")

    def _row(self, trial: Trial) -> tuple:
        """The column values of `trial`, in _COLUMNS order: JSON text for mappings, checked numbers."""
        _check_status(trial.status)
        d = {c: getattr(trial, c) for c in _COLUMNS}
        bad: list[str] = []
        for col in _JSON:
            d[col], b = _to_json(d[col] or {}, col)
            bad += b
        for name, v in json.loads(d["known"]).items():  # numpy numbers are plain ones here
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise StudyError(
                    f"known objective {name!r} is {trial.known[name]!r}; give a number (or None when unknown)"
                )
        for col, kind in _NUMERIC.items():
            d[col] = _opt_int(d[col], col) if kind is int else _finite_or_none(d[col], col, bad)
        d["id"], d["seed"], d["attempts"] = int(trial.id), int(d["seed"] or 0), int(d["attempts"] or 0)
        if bad:
            note = f"non-finite values stored as null: {', '.join(bad)}"
            if not d["error"] or note not in d["error"]:
                d["error"] = f"{d['error']}; {note}" if d["error"] else note
        return tuple(d[c] for c in _COLUMNS)

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
            return _row_to_trial(row, self._legacy)
        except (TypeError, ValueError) as e:  # edited by hand or by another tool
            raise StudyError(
                f"{self.path}: trial {row[0]} is damaged ({e}); the database was edited: "
                "restore it from a copy or move it away"
            ) from None

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


def open_study(folder: str | Path, *, write: bool = False) -> Storage:
    """The database of a study folder (or its study.db file), read-only unless ``write``: the one way the CLI,
    the report and export open a study.

    >>> with open_study("/tmp/_lightnas_doctest_study", write=True) as st:
    ...     st.count() >= 0
    True
    """
    path = Path(folder)
    if not write and not path.exists():
        raise StudyError(f"{path} does not exist; pass the folder given to `nas search --out`")
    db = path if path.is_file() else path / DB_NAME
    return Storage(db, read_only=not write)


# --- JSON and row helpers ----------------------------------------------------------------------


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown trial status {status!r}; use one of {', '.join(STATUSES)}")


_INT64 = (-(2**63), 2**63 - 1)  # SQLite's INTEGER


def _opt_int(x, name: str) -> int | None:
    if x is None:
        return None
    x = int(x)
    if not _INT64[0] <= x <= _INT64[1]:
        raise StudyError(f"{name} {x:.3e} does not fit a 64-bit integer column; store a smaller number")
    return x


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
    raise StudyError(
        f"{where} is a {type(obj).__name__}, which cannot be stored as JSON; "
        "convert it to a number, string, list or dict"
    )


def _to_json(obj: Any, where: str) -> tuple[str, list[str]]:
    bad: list[str] = []
    clean = _jsonable(obj, where, bad)
    return json.dumps(clean, allow_nan=False, separators=(",", ":")), bad


def _row_to_trial(row: tuple, legacy: tuple[str, ...] = ()) -> Trial:
    d = dict(zip(_COLUMNS + legacy, row))
    if d["known"] is None:  # written before the `known` column: schema 1 kept them in their own columns
        d["known"] = json.dumps({c: d[c] for c in legacy if d[c] is not None})
    for col in legacy:
        del d[col]
    for col, kind in _NUMERIC.items():  # SQLite keeps any type in any column: a tampered row may hold text
        _check_number(col, d[col], kind)
    for col in _JSON:
        d[col] = json.loads(d[col]) if d[col] else {}
        if not isinstance(d[col], dict):  # add_trial / update_trial only ever store mappings
            raise TypeError(f"{col} is a {type(d[col]).__name__}, not a mapping")
    for name, v in d["known"].items():
        _check_number(f"known {name}", v, float)
    d["seed"] = d["seed"] or 0
    d["attempts"] = d["attempts"] or 0
    return Trial(**d)


def _check_number(col: str, v: Any, kind: type) -> None:
    if v is not None and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int))
    ):
        raise TypeError(f"{col} is {v!r}, not a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{col} is {v!r}, not a finite number")
