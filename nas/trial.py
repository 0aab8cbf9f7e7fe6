"""The trial record: one evaluated (or failed) config. Imports nothing of ours but errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Status values. "interrupted" trials are run again by --resume; "infeasible" ones broke a hard
# budget and were never trained. Multi-fidelity: "paused" trials stopped at a rung below the top and may
# still be promoted; "complete" ones reached the top rung (only they count for "best").
PENDING, RUNNING, COMPLETE, FAILED, INTERRUPTED, INFEASIBLE, PAUSED = (
    "pending", "running", "complete", "failed", "interrupted", "infeasible", "paused")
STATUSES = (PENDING, RUNNING, COMPLETE, FAILED, INTERRUPTED, INFEASIBLE, PAUSED)


@dataclass
class Trial:
    id: int
    config: dict
    status: str = PENDING
    value: float | None = None  # what the optimiser models (validation accuracy for NAS)
    score: float | None = None  # value combined with the known objectives (MACs, params)
    macs: int | None = None
    params: int | None = None
    metrics: dict = field(default_factory=dict)  # val_acc, test_acc, train_time, curve, ...
    error: str | None = None
    seed: int = 0
    attempts: int = 0
    started_at: float | None = None  # unix seconds
    finished_at: float | None = None
    # Multi-fidelity only (None otherwise): the index of the last rung recorded and the resource trained
    # so far (epochs). metrics["rungs"] holds [{"resource", "value"}] and metrics["curve"] the whole run.
    rung: int | None = None
    resource: float | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
