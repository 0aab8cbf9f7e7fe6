"""The search loop: warm-up, then GP-UCB proposals, until the trial or time budget is spent.

One driver process owns the study folder (a lock) and is the only writer of its SQLite file; trials run
through an executor (in-process, local processes or Ray) and come back as outcomes. Every finished trial
is committed as it finishes, so a killed search loses at most the trials that were running; ``resume``
marks those interrupted and runs them again.

The objective is any picklable ``objective(spec) -> {"value": float, "metrics": {...}}`` where ``spec`` is
``{"trial_id", "config", "seed", "study_dir", **objective_args}``. It may raise; the trial is then
recorded as failed with the error and the search goes on.

With an optimizer made with ``fidelity=Fidelity(...)`` the study runs trials as segments between rungs
under asynchronous successive halving (``nas.segments``): the spec then also holds ``resource_from``,
``resource_to``, ``max_resource`` and ``checkpoint``, and ``Budget(trials=N)`` buys ``N * max_resource``
units of resource (epochs).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nas.errors import NasError, StudyError
from nas.executors import Executor, InProcessExecutor
from nas.fsutil import StudyLock
from nas.optimizer import Optimizer
from nas.storage import Storage
from nas.trial import COMPLETE, FAILED, INTERRUPTED, RUNNING, Trial

DB_NAME = "study.db"
MAX_ATTEMPTS = 2  # a trial whose worker is lost is run once more, then recorded as failed


@dataclass
class Budget:
    trials: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.trials is None and self.seconds is None:
            raise NasError("give a budget: --trials N and/or --time-budget SECONDS")
        if self.trials is not None and self.trials < 1:
            raise NasError(f"--trials must be at least 1, got {self.trials}")
        if self.seconds is not None and not self.seconds > 0:
            raise NasError(f"--time-budget must be positive, got {self.seconds}")


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    running: int = 0
    best: float | None = None
    elapsed: float = 0.0
    left: float | None = None
    events: list = field(default_factory=list)
    # Multi-fidelity only: trials paused at a rung, epochs (resource) trained out of the budget, and per
    # running job {"trial", "resource_to", "resource", "value"} (the last two from its live file, or None).
    paused: int = 0
    epochs: float | None = None
    epoch_budget: float | None = None
    jobs: list = field(default_factory=list)


class Study:
    """Run or resume the study in ``folder``. ``objective_args`` travel to every trial's spec."""

    def __init__(self, folder: str | Path, *, optimizer: Optimizer, objective: Callable[[dict], dict],
                 objective_args: dict | None = None, budget: Budget, executor: Executor | None = None,
                 meta: dict | None = None, resume: bool = False,
                 on_progress: Callable[[Progress], None] | None = None):
        self.folder = Path(folder)
        self.opt, self.objective = optimizer, objective
        self.objective_args = dict(objective_args or {})
        self.budget, self.executor = budget, executor or InProcessExecutor()
        self.meta, self.resume, self.on_progress = dict(meta or {}), resume, on_progress

    # ------------------------------------------------------------------ set-up
    def _open(self) -> Storage:
        db = self.folder / DB_NAME
        if db.exists() and not self.resume:
            raise StudyError(f"{self.folder} already holds a study; pass --resume to continue it or choose another --out")
        storage = Storage(db)
        if db.exists() and storage.count() and self.resume:
            old = storage.get_meta("space")
            if old is not None and old != self.meta.get("space", old):
                raise StudyError(f"{self.folder}: --resume with a different search space than the study's; "
                                 "use the same --space, or another --out")
        fid = self.opt.fidelity
        if db.exists() and storage.count() and self.resume:
            from nas.segments import check_fidelity_meta

            check_fidelity_meta(storage.get_meta("fidelity"), fid)
        self.meta["fidelity"] = fid.to_dict() if fid is not None else None
        for k, v in self.meta.items():
            if storage.get_meta(k) is None or k not in ("created_at",):
                storage.set_meta(k, v)
        if storage.get_meta("created_at") is None:
            storage.set_meta("created_at", time.time())
        return storage

    def _replay(self, storage: Storage) -> list[Trial]:
        """Feed finished trials to the optimiser; return the interrupted ones, to run again."""
        storage.mark_running_as_interrupted()
        again = []
        for t in storage.trials():
            if t.status == COMPLETE and t.value is not None and math.isfinite(t.value):
                self.opt.tell(t.config, t.value)
            elif t.status == FAILED:
                self.opt.tell_failed(t.config, t.error or "")
            elif t.status == INTERRUPTED:
                self.opt.add_pending(t.config)
                again.append(t)
        return again

    # ------------------------------------------------------------------ the loop
    def run(self) -> Progress:
        with StudyLock(self.folder):  # creates the folder, or says in one line why it cannot
            storage = self._open()
            try:
                return self._loop(storage)
            finally:
                storage.close()

    def _loop(self, storage: Storage) -> Progress:
        prog = Progress()
        start = time.monotonic()
        elapsed0 = float(storage.get_meta("elapsed", 0.0) or 0.0)
        if self.opt.fidelity is not None:
            from nas.segments import SegmentLoop

            return SegmentLoop(self, storage).run(prog, start, elapsed0)
        queue = self._replay(storage)
        running: dict[int, Trial] = {}
        finished = lambda: storage.count(COMPLETE) + storage.count(FAILED)  # noqa: E731

        def spent() -> float:
            return elapsed0 + time.monotonic() - start

        def budget_left() -> bool:
            if self.budget.trials is not None and finished() + len(running) >= self.budget.trials:
                return False
            return self.budget.seconds is None or spent() < self.budget.seconds

        try:
            while True:
                while len(running) < self.executor.capacity and budget_left():
                    trial = self._next_trial(storage, queue)
                    running[trial.id] = trial
                    self._submit(trial)
                self._report(storage, prog, running, spent())  # after the refill: shows busy workers
                if not running:
                    break
                for key, outcome in self.executor.wait(timeout=1.0):
                    trial = running.pop(key, None)
                    if trial is None:
                        continue
                    if outcome.kind == "lost" and trial.attempts < MAX_ATTEMPTS:
                        trial.attempts += 1
                        storage.update_trial(trial)
                        running[trial.id] = trial
                        self._submit(trial)
                        continue
                    self._record(storage, trial, outcome)
                storage.set_meta("elapsed", spent())
        except KeyboardInterrupt:
            self.executor.shutdown()
            for trial in running.values():
                trial.status, trial.error = INTERRUPTED, "interrupted (Ctrl-C); --resume runs it again"
                storage.update_trial(trial)
            storage.set_meta("elapsed", spent())
            raise
        storage.set_meta("elapsed", spent())
        self._report(storage, prog, running, spent())
        return prog

    def _next_trial(self, storage: Storage, queue: list) -> Trial:
        if queue:
            trial = queue.pop(0)
            trial.status, trial.started_at, trial.error = RUNNING, time.time(), None
            if trial.attempts == 0:  # killed between add_trial and the update below: it still has seed 0
                trial.seed = self._seed_of(trial.id)
            trial.attempts += 1
            storage.update_trial(trial)
            return trial
        (config,) = self.opt.ask(1)
        known = self.opt.known(config)
        trial = storage.add_trial(config, status=RUNNING, seed=0, macs=known.get("macs"),
                                  params=known.get("params"), started_at=time.time())
        trial.seed = self._seed_of(trial.id)
        trial.attempts = 1
        storage.update_trial(trial)
        return trial

    def _seed_of(self, trial_id: int) -> int:
        return self.opt.seed * 100_003 + trial_id  # distinct, reproducible per trial

    def _submit(self, trial: Trial) -> None:
        spec = {"trial_id": trial.id, "config": trial.config, "seed": trial.seed,
                "study_dir": str(self.folder), **self.objective_args}
        self.executor.submit(trial.id, self.objective, spec)

    def _record(self, storage: Storage, trial: Trial, outcome) -> None:
        trial.finished_at = time.time()
        value = None
        if outcome.kind == "ok":
            result = outcome.result if isinstance(outcome.result, dict) else {"value": outcome.result}
            value = result.get("value")
            trial.metrics = dict(result.get("metrics") or {})
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = float("nan")
            if not math.isfinite(value):
                trial.status, trial.error = FAILED, f"objective returned a non-finite value ({value})"
            else:
                trial.status, trial.value = COMPLETE, value
                trial.score = float(self.opt.score_of([trial.config], [value])[0])
        else:
            trial.status = FAILED
            prefix = "worker lost twice: " if outcome.kind == "lost" else ""
            trial.error = (prefix + outcome.error)[:2000]
            if outcome.traceback:
                trial.metrics = {**trial.metrics, "traceback": outcome.traceback[-4000:]}
        storage.update_trial(trial)
        if trial.status == COMPLETE:
            self.opt.tell(trial.config, trial.value)
        else:
            self.opt.tell_failed(trial.config, trial.error or "")

    def _report(self, storage: Storage, prog: Progress, running: dict, spent: float) -> None:
        if self.on_progress is None:
            return
        prog.done, prog.failed = storage.count(COMPLETE), storage.count(FAILED)
        prog.running, prog.elapsed = len(running), spent
        best = self.opt.best
        prog.best = float(self.opt.score_of([best[0]], [best[1]])[0]) if best else None
        lefts = []
        if self.budget.seconds is not None:
            lefts.append(max(0.0, self.budget.seconds - spent))
        if self.budget.trials is not None and prog.done + prog.failed:
            per = spent / (prog.done + prog.failed)
            remaining = self.budget.trials - prog.done - prog.failed
            lefts.append(per * max(0, remaining) / max(1, self.executor.capacity))
        prog.left = min(lefts) if lefts else None
        self.on_progress(prog)


def print_progress(total: int | None, stream=sys.stderr) -> Callable[[Progress], None]:
    """A one-line progress bar: trials done, best score so far, time left."""

    def show(p: Progress) -> None:
        n = p.done + p.failed
        bar = ""
        if total:
            filled = int(20 * min(n, total) / total)
            bar = "[" + "#" * filled + "." * (20 - filled) + f"] {n}/{total}"
        else:
            bar = f"{n} trials"
        best = f"best {p.best:.4f}" if p.best is not None else "best -"
        left = f"left {_fmt_s(p.left)}" if p.left is not None else ""
        extra = f" failed {p.failed}" if p.failed else ""
        if p.epoch_budget:  # multi-fidelity: the budget is epochs; trials are counted as they come
            filled = int(20 * min(p.epochs, p.epoch_budget) / p.epoch_budget)
            bar = "[" + "#" * filled + "." * (20 - filled) + f"] {p.epochs:g}/{p.epoch_budget:g} ep  {p.done} full"
        if p.epochs is not None:
            extra += f" paused {p.paused}" if p.paused else ""
            extra += "".join(f" #{j['trial']}:{_fmt_job(j)}" for j in p.jobs)
        line = f"\r{bar}  {best}  running {p.running}{extra}  elapsed {_fmt_s(p.elapsed)}  {left}"
        stream.write(line.ljust(100))
        stream.flush()

    return show


def _fmt_job(j: dict) -> str:
    """"5/9ep 0.812": a running trial's live epoch and value out of its rung target ("->9ep" before its first)."""
    if j.get("resource") is None:
        return f"->{j['resource_to']:g}ep"
    v = f" {j['value']:.3f}" if j.get("value") is not None else ""
    return f"{j['resource']:g}/{j['resource_to']:g}ep{v}"


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
