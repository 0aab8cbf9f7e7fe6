"""The search loop: warm-up, then GP-UCB proposals, until the trial or time budget is spent.

One driver process owns the study folder (a lock) and is the only writer of its SQLite file; trials run
through an executor (in-process, local processes or Ray) and come back as outcomes. Every finished trial
is committed as it finishes, so a killed search loses at most the trials that were running; ``resume``
marks those interrupted and runs them again.

The objective is any picklable ``objective(spec) -> {"value": float, "metrics": {...}}`` where ``spec`` is
a ``nas.spec.TrialSpec`` (``Study.make_spec``): trial id, config, seed, study folder, the config's known
costs, threads, and ``objective_args`` as its ``extra`` (it reads as a dict too). It may raise; the trial is
then recorded as failed with the error and the search goes on.

With an optimizer made with ``fidelity=Fidelity(...)`` the study runs trials as segments between rungs
under asynchronous successive halving (``nas.segments``): the spec then also sets ``resource_from``,
``resource_to``, ``max_resource`` and ``checkpoint``, and ``Budget(trials=N)`` buys ``N * max_resource``
units of resource (epochs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nas.defining import DEFINING, check_resume
from nas.errors import NasError, SpaceExhausted, StudyError
from nas.executors import Executor, InProcessExecutor
from nas.fsutil import StudyLock
from nas.optimizer import Optimizer
from nas.options import shown
from nas.progress import Progress, ProgressPrinter
from nas.spec import TrialSpec
from nas.storage import DB_NAME, Storage
from nas.trial import COMPLETE, FAILED, INTERRUPTED, RUNNING, Trial

MAX_ATTEMPTS = 2  # a trial whose worker is lost is run once more, then recorded as failed


@dataclass
class Budget:
    trials: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.trials is None and self.seconds is None:
            raise NasError(f"give a budget: {shown('trials')} and/or {shown('time_budget')} (seconds)")
        if self.trials is not None and self.trials < 1:
            raise NasError(f"{shown('trials')} must be at least 1, got {self.trials}")
        if self.seconds is not None and not self.seconds > 0:
            raise NasError(f"{shown('time_budget')} must be positive, got {self.seconds}")


class Study:
    """Run or resume the study in ``folder``. ``objective_args`` travel to every trial's spec."""

    def __init__(
        self,
        folder: str | Path,
        *,
        optimizer: Optimizer,
        objective: Callable[[dict], dict],
        objective_args: dict | None = None,
        budget: Budget,
        executor: Executor | None = None,
        meta: dict | None = None,
        resume: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        defining=DEFINING,
    ):
        self.folder = Path(folder)
        self.opt, self.objective = optimizer, objective
        self.objective_args = dict(objective_args or {})
        self.budget, self.executor = budget, executor or InProcessExecutor()
        self.meta, self.resume, self.on_progress = dict(meta or {}), resume, on_progress
        self.stop_reason: str | None = None  # why the search ended before its budget (space exhausted)
        self.defining = tuple(defining)  # nas.defining.Setting rows --resume may not change

    # ------------------------------------------------------------------ set-up
    def _open(self) -> Storage:
        db = self.folder / DB_NAME
        if db.exists() and not self.resume:
            raise StudyError(
                f"{self.folder} already holds a study; pass {shown('resume')} to continue it or choose "
                f"another {shown('out')}"
            )
        storage = Storage(db)
        fid = self.opt.fidelity
        self.meta["fidelity"] = fid.to_dict() if fid is not None else None
        recorded = storage.meta()
        if storage.count():  # trials exist: a different defining setting would mix two runs in one study
            from nas.segments import check_fidelity_meta

            check_fidelity_meta(recorded.get("fidelity"), fid)
            check_resume(recorded, self.meta, where=str(self.folder), settings=self.defining)
        keep = {"created_at"} | ({s.key for s in self.defining} if storage.count() else set())
        for k, v in self.meta.items():
            if k not in recorded or k not in keep:  # a defining setting is recorded once, never overwritten
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
            if self.stop_reason is not None:
                return False
            if self.budget.trials is not None and finished() + len(running) >= self.budget.trials:
                return False
            return self.budget.seconds is None or spent() < self.budget.seconds

        try:
            while True:
                while len(running) < self.executor.capacity and budget_left():
                    try:
                        trial = self._next_trial(storage, queue)
                    except SpaceExhausted as e:  # a normal end: the budget outlived the space
                        self.stop_reason = str(e)
                        break
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
            if trial.attempts == 0:  # an older study.db, killed between insert and update: seed 0
                trial.seed = self._seed_of(trial.id)
            trial.attempts += 1
            storage.update_trial(trial)
            return trial
        (config,) = self.opt.ask(1)
        return storage.add_trial(
            config, status=RUNNING, seed=self._seed_of, attempts=1, known=self.opt.known(config), started_at=time.time()
        )

    def _seed_of(self, trial_id: int) -> int:
        return self.opt.seed * 100_003 + trial_id  # distinct, reproducible per trial

    def make_spec(self, trial: Trial, **segment) -> TrialSpec:
        """What the objective is told about ``trial`` (``segment``: resource_from / resource_to /
        max_resource / checkpoint of a multi-fidelity job)."""
        extra = dict(self.objective_args)
        threads = extra.pop("threads", None)
        known = {k: getattr(trial, k) for k in ("macs", "params") if getattr(trial, k, None) is not None}
        return TrialSpec(
            config=trial.config,
            seed=trial.seed,
            trial_id=trial.id,
            study_dir=str(self.folder),
            known=known,
            threads=threads,
            extra=extra,
            **segment,
        )

    def _submit(self, trial: Trial) -> None:
        self.executor.submit(trial.id, self.objective, self.make_spec(trial))

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


def print_progress(total: int | None, stream=None) -> ProgressPrinter:
    """The progress callback the CLI uses (nas.progress.ProgressPrinter): a bar on a terminal, plain lines
    in a log."""
    return ProgressPrinter(total, stream)
