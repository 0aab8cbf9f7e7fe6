"""The TaskSet learning-curve tables (``../shared/benchmarks/taskset/``, see its README) as a fixed pool.

Twelve tasks share one pool of 1,000 Adam configurations (8 hyper-parameters, the same in every task; the
loader checks it) with 51 checkpoints of validation and test loss each. A method may only choose among the
pool, so every proposal is snapped to the nearest *unused* pool member in one encoding shared by all
methods: each hyper-parameter on a log scale, scaled to [0, 1] over the pool's range. beta1 and beta2 enter
as 1 - beta (the pool spreads them log-uniformly towards 1: 1 - beta1 spans 1e-4..1, 1 - beta2 1e-6..1).

Failures: 0 to 25 % of the runs of a task hold NaN from some checkpoint on; others blow up to ~1e15. A
method that trains a run to a NaN checkpoint sees a failed trial (never modelled); finite losses are shown
to every method capped at ``CAP`` (10, about 14x the untrained loss ln 2), so a 1e15 does not swamp a
model's standardisation. Regret always reads the true table: the pick's final validation loss (NaN counts
as ``CAP``) minus the pool's best final validation loss.
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; from a worktree one level deeper (/work/wt/NAME), ../../shared
DEFAULT_DIR = next(
    (
        d
        for d in (
            ROOT.parent / "shared" / "benchmarks" / "taskset",
            ROOT.parents[1] / "shared" / "benchmarks" / "taskset",
        )
        if d.is_dir()
    ),
    ROOT.parent / "shared" / "benchmarks" / "taskset",
)
HP = ("learning_rate", "beta1", "beta2", "epsilon", "l1", "l2", "linear_decay", "exponential_decay")
PARAM = {"beta1": "one_minus_beta1", "beta2": "one_minus_beta2"}  # searched as 1 - beta, on a log scale
CAP = 10.0
MAX_STEP = 50  # checkpoints 1..50 are the budget; index 0 is the untrained model


class TasksetMissing(RuntimeError):
    pass


@dataclass
class Task:
    name: str
    raw: np.ndarray  # (1000, 8) searched values (1 - beta for the betas), positive
    valid: np.ndarray  # (1000, 51) validation loss, NaN where the run diverged
    test: np.ndarray

    @property
    def best_valid(self) -> float:
        return float(np.nanmin(self.valid[:, MAX_STEP]))

    @property
    def best_test(self) -> float:
        return float(np.nanmin(self.test[:, MAX_STEP]))

    def seen(self, i: int, step: int) -> float:
        """What a method observes when run i reaches ``step``: NaN (failed) or the loss capped at CAP."""
        v = float(self.valid[i, step])
        return v if math.isnan(v) else min(v, CAP)

    def final(self, i: int, split: str = "valid") -> float:
        v = float((self.valid if split == "valid" else self.test)[i, MAX_STEP])
        return CAP if not math.isfinite(v) else min(v, CAP)


def task_files(directory=DEFAULT_DIR) -> list[Path]:
    files = sorted(Path(directory).glob("*.json.gz"))
    if not files:
        raise TasksetMissing(f"no TaskSet tables (*.json.gz) in {directory}")
    return files


def short_name(path: Path) -> str:
    return path.name.replace("FixedTextRNNClassification_imdb_", "").replace(".json.gz", "")


def load_task(path: Path) -> Task:
    with gzip.open(path, "rt") as f:
        entries = json.load(f)

    def col(e, k):
        v = float(e["hp"][k])
        return 1.0 - v if k in PARAM else v

    raw = np.array([[col(e, k) for k in HP] for e in entries], dtype=float)
    valid = np.array([e["valid"]["loss"] for e in entries], dtype=float)
    test = np.array([e["test"]["loss"] for e in entries], dtype=float)
    if valid.shape[1] != MAX_STEP + 1 or (raw <= 0).any():
        raise TasksetMissing(f"{path}: expected 51 checkpoints and positive hyper-parameters")
    return Task(short_name(path), raw, valid, test)


class Pool:
    """The pool's encoding and the nearest-unused lookup (one instance per run: it remembers what is used)."""

    def __init__(self, raw: np.ndarray):
        self.raw = raw
        self.log_lo, self.log_hi = np.log(raw.min(0)), np.log(raw.max(0))
        self.X = self.encode_raw(raw)
        self.used = np.zeros(len(raw), dtype=bool)

    @property
    def bounds(self) -> list[tuple[str, float, float]]:
        """(name, low, high) of each searched parameter, the pool's exact range."""
        return [(PARAM.get(k, k), float(lo), float(hi)) for k, lo, hi in zip(HP, self.raw.min(0), self.raw.max(0))]

    @property
    def names(self) -> list[str]:
        return [b[0] for b in self.bounds]

    def encode_raw(self, raw: np.ndarray) -> np.ndarray:
        return (np.log(np.asarray(raw, dtype=float)) - self.log_lo) / (self.log_hi - self.log_lo)

    def config(self, i: int) -> dict:
        return {n: float(v) for n, v in zip(self.names, self.raw[i])}

    def snap(self, config: dict) -> int | None:
        """The nearest unused member to ``config`` (a dict of the searched names), marked used; None when the
        pool is exhausted."""
        if self.used.all():
            return None
        x = self.encode_raw([[max(float(config[n]), 1e-300) for n in self.names]])[0]
        d = ((self.X - x) ** 2).sum(1)
        d[self.used] = np.inf
        i = int(np.argmin(d))
        self.used[i] = True
        return i

    def take(self, i: int) -> int:
        self.used[i] = True
        return i
