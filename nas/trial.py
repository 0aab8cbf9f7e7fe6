"""The trial record: one evaluated (or failed) config. Imports nothing of ours.

The dataclass is also the schema of the ``trials`` table (``nas.storage`` builds its CREATE TABLE, INSERT and
UPDATE from these fields): each field's metadata holds its SQL type, and ``json`` marks the mappings stored as
JSON text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Status values. "interrupted" trials are run again by --resume; "infeasible" ones broke a hard
# budget and were never trained. Multi-fidelity: "paused" trials stopped at a rung below the top and may
# still be promoted; "complete" ones reached the top rung (only they count for "best").
PENDING, RUNNING, COMPLETE, FAILED, INTERRUPTED, INFEASIBLE, PAUSED = (
    "pending",
    "running",
    "complete",
    "failed",
    "interrupted",
    "infeasible",
    "paused",
)
STATUSES = (PENDING, RUNNING, COMPLETE, FAILED, INTERRUPTED, INFEASIBLE, PAUSED)


def _column(sql: str, default: Any = None) -> Any:
    return field(default=default, metadata={"sql": sql})


def _json_column(sql: str = "TEXT") -> Any:
    return field(default_factory=dict, metadata={"sql": sql, "json": True})


@dataclass
class Trial:
    id: int = field(metadata={"sql": "INTEGER PRIMARY KEY"})
    config: dict = field(metadata={"sql": "TEXT NOT NULL", "json": True})
    status: str = _column("TEXT NOT NULL", PENDING)
    value: float | None = _column("REAL")  # what the optimiser models (validation accuracy for NAS)
    score: float | None = _column("REAL")  # value combined with the known objectives
    # Objectives known before training, by name (a CNN study: {"macs": ..., "params": ...}); None = unknown.
    known: dict = _json_column()
    metrics: dict = _json_column()  # val_acc, test_acc, train_time, curve, ...
    error: str | None = _column("TEXT")
    seed: int = _column("INTEGER", 0)
    attempts: int = _column("INTEGER", 0)
    started_at: float | None = _column("REAL")  # unix seconds
    finished_at: float | None = _column("REAL")
    # Multi-fidelity only (None otherwise): the index of the last rung recorded and the resource trained
    # so far (epochs). metrics["rungs"] holds [{"resource", "value"}] and metrics["curve"] the whole run.
    rung: int | None = _column("INTEGER")
    resource: float | None = _column("REAL")

    # Read-only views for the CNN callers (export, benches) that read these two by name.
    @property
    def macs(self) -> int | None:
        return self.known.get("macs")

    @property
    def params(self) -> int | None:
        return self.known.get("params")

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
