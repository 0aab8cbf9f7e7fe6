"""The multi-fidelity search loop: trials run as *segments* between rungs, scheduled by ASHA.

A job trains one trial from ``resource_from`` (0 for a new trial) to ``resource_to`` (the next rung) and
returns; the rung's value is committed at once, the checkpoint the objective returned is stored under
``trials/<id>/checkpoint.pt``, and the trial is *paused* (``complete`` at the top rung). Whenever a worker
is free, ASHA promotes a paused trial that is in the top 1/eta of its rung by an even blend of its own rung
score and the GP's predicted top-rung score (``nas.fidelity.blend_keys``); if none is, the optimizer proposes
a new config (UCB at max_resource). No worker ever waits. Once the epochs left cannot take a new trial to the
top, the paused trial with the best predicted top-rung score (never below its own latest score) that can
still reach the top goes on instead (``ASHA.finishing_promotion``), so the budget ends on finished trials;
with a time budget the same holds in seconds, each trial costed at its own seconds per epoch. Once a finite
space has no new config, the best paused trial by the same key goes on past the 1/eta cap
(``ASHA.exhausted_promotion``).

Budget: ``--trials N`` buys ``N * max_resource`` epochs (the cost of N full trainings); a job starts while
the epochs trained plus the epochs of running jobs are below it (so the last jobs may overrun it by at most
one segment per worker), and no job starts after the time budget. Epochs count completed segments, and a
failed segment is charged the epochs it was to train.

Crash safety: the row of a trial always holds its last recorded rung (value, resource, rung, curve).
A kill during a segment leaves it "running"; ``--resume`` marks it interrupted and runs that segment again
from the checkpoint of the last recorded rung. The checkpoint file is written under a staged name
(``checkpoint.<resource>.pt``) before the rung is committed and renamed to ``checkpoint.pt`` after, so
``checkpoint.pt`` never runs ahead of the database and a staged file for the committed resource (a kill
between the commit and the rename) is taken as the real one.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.errors import NasError, SpaceExhausted
from nas.fidelity import ASHA, Fidelity, blend_keys, read_live
from nas.fsutil import atomic_write_bytes, fsync_dir, remove_stale_temps
from nas.options import shown
from nas.trial import COMPLETE, FAILED, INTERRUPTED, PAUSED, RUNNING, Trial

MAX_ATTEMPTS = 2  # a segment whose worker is lost is run once more, then the trial is recorded as failed


def trial_dir(study_dir, trial_id: int) -> Path:
    return Path(study_dir) / "trials" / str(trial_id)


def _res_name(resource) -> str:
    return f"{resource:g}" if isinstance(resource, float) else str(resource)


def stage_checkpoint(study_dir, trial_id: int, resource, data: bytes) -> Path:
    """Write the checkpoint of ``resource`` under its staged name (before the rung is committed)."""
    folder = trial_dir(study_dir, trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint.{_res_name(resource)}.pt"
    remove_stale_temps(path)
    return atomic_write_bytes(path, bytes(data))


def publish_checkpoint(study_dir, trial_id: int, resource) -> None:
    """After the commit: the staged checkpoint becomes ``checkpoint.pt``."""
    folder = trial_dir(study_dir, trial_id)
    staged = folder / f"checkpoint.{_res_name(resource)}.pt"
    if staged.exists():
        os.replace(staged, folder / "checkpoint.pt")
        fsync_dir(folder)


def load_checkpoint(study_dir, trial_id: int, resource) -> bytes | None:
    """The checkpoint of the committed ``resource`` (see the module docstring), or None."""
    folder = trial_dir(study_dir, trial_id)
    publish_checkpoint(study_dir, trial_id, resource)  # a kill between commit and rename left it staged
    for stale in folder.glob("checkpoint.*.pt"):  # staged for a rung that was never committed
        with contextlib.suppress(OSError):
            stale.unlink()
    remove_stale_temps(folder / "checkpoint.pt")
    path = folder / "checkpoint.pt"
    return path.read_bytes() if path.is_file() else None


@dataclass
class Job:
    trial: Trial
    rung: int  # the rung index it trains to
    resource_from: float
    resource_to: float
    attempts: int = 1
    started: float = 0.0
    inserted: bool = False  # a new trial, written by add_trial as running with this attempt: no update needed


class SegmentLoop:
    """Runs a ``Study`` whose optimizer has a ``fidelity``; built and called by ``Study.run``."""

    def __init__(self, study, storage):
        self.study, self.storage = study, storage
        self.opt = study.opt
        self.fid: Fidelity = study.opt.fidelity
        self.sched = ASHA(self.fid, maximize=self.opt.direction == "maximize")
        self.trials: dict[int, Trial] = {}
        self.running: dict[int, Job] = {}
        b = study.budget
        self.epoch_budget = None if b.trials is None else b.trials * self.fid.max_resource

    # ------------------------------------------------------------------ resume
    def _replay(self) -> list[Job]:
        self.storage.mark_running_as_interrupted()
        again = []
        for t in self.storage.trials():
            self.trials[t.id] = t
            self.sched.start(t.id)
            for entry in t.metrics.get("rungs", []):
                r, v = entry["resource"], entry["value"]
                if v is None or not math.isfinite(v):
                    continue
                self.opt.tell(t.config, v, resource=r)
                self.sched.record(t.id, self.fid.rung_index(r), v)
            if t.status == FAILED:
                self.opt.tell_failed(t.config, t.error or "")
                self.sched.fail(t.id)
            elif t.status == INTERRUPTED:
                k = self.sched.target(t.id)
                again.append(self._job(t, k))
                self.opt.add_pending(t.config, resource=self.fid.rungs[k])
            elif t.status == PAUSED and not t.metrics.get("rungs"):
                self.sched.fail(t.id)  # a paused row without a rung value was edited by hand
        return again

    def _job(self, trial: Trial, k: int) -> Job:
        start = 0 if k == 0 else self.fid.rungs[k - 1]
        return Job(trial, k, start, self.fid.rungs[k])

    # ------------------------------------------------------------------ budget
    def epochs_trained(self) -> float:
        """Epochs charged to the budget: those of every committed segment, plus the planned epochs of each
        segment that failed (else an objective that always fails would never spend the budget)."""
        return sum((t.resource or 0) + float(t.metrics.get("failed_epochs", 0) or 0) for t in self.trials.values())

    def _in_flight(self) -> float:
        return sum(j.resource_to - j.resource_from for j in self.running.values())

    def budget_left(self, spent: float) -> bool:
        b = self.study.budget
        if self.epoch_budget is not None and self.epochs_trained() + self._in_flight() >= self.epoch_budget:
            return False
        return b.seconds is None or spent < b.seconds

    # ------------------------------------------------------------------ the loop
    def run(self, prog, start: float, elapsed0: float):
        queue = self._replay()
        ex = self.study.executor

        def spent() -> float:
            return elapsed0 + time.monotonic() - start

        try:
            while True:
                while len(self.running) < ex.capacity and self.budget_left(spent()):
                    try:
                        job = queue.pop(0) if queue else self._next_job(spent())
                    except SpaceExhausted as e:  # nothing new and nothing paused: wait for what runs, then end
                        self.study.stop_reason = str(e)
                        break
                    self._submit(job)
                self.report(prog, spent())
                if not self.running:
                    break
                for key, outcome in ex.wait(timeout=1.0):
                    job = self.running.pop(key, None)
                    if job is None:
                        continue
                    if outcome.kind == "lost" and job.attempts < MAX_ATTEMPTS:
                        job.attempts += 1
                        self._submit(job, again=True)
                        continue
                    self._record(job, outcome)
                self.storage.set_meta("elapsed", spent())
        except KeyboardInterrupt:
            ex.shutdown()
            for job in self.running.values():
                t = job.trial
                t.status, t.error = INTERRUPTED, "interrupted (Ctrl-C); --resume runs its segment again"
                self.storage.update_trial(t)
            self.storage.set_meta("elapsed", spent())
            raise
        self.storage.set_meta("elapsed", spent())
        self.report(prog, spent())
        return prog

    def _rank(self, k: int, tids: list) -> list:
        """ASHA's key at rung k (higher is better): ``blend_keys`` of each trial's own rung value and the GP's
        predicted value at max_resource, both through the score; the raw rung values while there is no model."""
        configs = [self.trials[t].config for t in tids]
        own = self.sched._default_rank(k, tids)
        pred = self.opt.predict_top(configs)
        if pred is None:
            return own
        if self.opt.direction == "minimize":
            return blend_keys(own, [-p for p in pred])
        own = self.opt.score_of(configs, [self.sched.values[k][t] for t in tids])
        return blend_keys(list(own), list(self.opt.score_of(configs, pred)))

    def _finish_key(self, tids: list) -> list | None:
        """Paused trials compared across rungs (higher is better): the score of the GP's predicted top-rung value,
        never worse than the trial's own latest rung value; None without a model (ASHA then prefers the highest
        rung reached, then its value).

        The floor is the prior that training on does not undo what a run has reached. Without it a model fitted
        on a top rung full of runs that never learnt (on the TaskSet tables: validation loss ln 2 from the first
        checkpoint, promoted early because learners start with a bump above it) predicted ln 2 at the top for
        every config, a trial at 0.556 after 9 checkpoints included, and the budget's last epochs went to runs
        at ln 2 (bench/RESULTS.md)."""
        configs = [self.trials[t].config for t in tids]
        pred = self.opt.predict_top(configs)
        if pred is None:
            return None
        own = [self.sched.latest(t) for t in tids]
        if self.opt.direction == "minimize":
            return [-min(p, v) for p, v in zip(pred, own)]
        return list(self.opt.score_of(configs, [max(p, v) for p, v in zip(pred, own)]))

    def _left(self) -> float | None:
        if self.epoch_budget is None:
            return None
        return self.epoch_budget - self.epochs_trained() - self._in_flight()

    def _time_finish(self, spent: float):
        """The finishing promotion for a time budget: what a trial costs is its own seconds per epoch times the
        epochs it still needs; a new trial, the median seconds per epoch so far times max_resource."""
        seconds = self.study.budget.seconds
        if seconds is None:
            return None
        rate = {}  # trial id -> seconds per epoch of its committed segments
        for tid, t in self.trials.items():
            secs, done = float(t.metrics.get("segment_seconds") or 0.0), float(t.resource or 0.0)
            if secs > 0 and done > 0:
                rate[tid] = secs / done
        if not rate:
            return None
        top = self.fid.max_resource
        new_cost = float(np.median(list(rate.values()))) * top
        return self.sched.finishing_promotion(
            seconds - spent,
            self._finish_key,
            cost=lambda t: rate.get(t, math.inf) * (top - float(self.trials[t].resource or 0.0)),
            new_cost=new_cost,
        )

    def _next_job(self, spent: float = 0.0) -> Job:
        left = self._left()
        promo = None if left is None else self.sched.finishing_promotion(left, self._finish_key)
        promo = promo or self._time_finish(spent)
        promo = promo or self.sched.next_promotion(self._rank)
        if promo is None:
            try:
                (config,) = self.opt.ask(1)
            except SpaceExhausted:  # every config tried: the budget left goes on the paused trials, best first
                promo = self.sched.exhausted_promotion(self._finish_key)
                if promo is None:
                    raise
        if promo is not None:
            tid, k = promo
            return self._job(self.trials[tid], k)
        trial = self.storage.add_trial(
            config,
            status=RUNNING,
            seed=self.study._seed_of,
            attempts=1,
            resource=0,
            known=self.opt.known(config),
            started_at=time.time(),
        )
        self.trials[trial.id] = trial
        self.sched.start(trial.id)
        job = self._job(trial, 0)
        job.inserted = True
        return job

    def _submit(self, job: Job, *, again: bool = False) -> None:
        t = job.trial
        if not again:
            if t.attempts == 0 and t.seed == 0:  # a study.db from before one-write inserts, killed between them
                t.seed = self.study._seed_of(t.id)
            self.sched.resume(t.id)
            self.opt.add_pending(t.config, resource=job.resource_to)
        if job.inserted:
            job.inserted = False  # a lost worker's rerun (again=True) is written as usual
        else:
            t.status, t.error = RUNNING, None
            t.attempts += 1
            self.storage.update_trial(t)
        job.started = time.time()
        checkpoint = None
        if job.resource_from > 0:
            checkpoint = load_checkpoint(self.study.folder, t.id, job.resource_from)
        spec = self.study.make_spec(
            t,
            resource_from=job.resource_from,
            resource_to=job.resource_to,
            max_resource=self.fid.max_resource,
            checkpoint=checkpoint,
        )
        self.running[t.id] = job
        self.study.executor.submit(t.id, self.study.objective, spec)

    def _record(self, job: Job, outcome) -> None:
        t = job.trial
        t.finished_at = time.time()
        if outcome.kind != "ok":
            t.status = FAILED
            prefix = "worker lost twice: " if outcome.kind == "lost" else ""
            t.error = (prefix + outcome.error)[:2000]
            if outcome.traceback:
                t.metrics = {**t.metrics, "traceback": outcome.traceback[-4000:]}
            return self._fail(t, job)
        result = outcome.result if isinstance(outcome.result, dict) else {"value": outcome.result}
        try:
            value = float(result.get("value"))
        except (TypeError, ValueError):
            value = float("nan")
        reached = result.get("resource", job.resource_to)
        seg = dict(result.get("metrics") or {})
        curve = list(t.metrics.get("curve") or []) + list(seg.pop("curve", None) or [])
        t.metrics = {
            **t.metrics,
            **seg,
            "curve": curve,
            "segment_seconds": float(t.metrics.get("segment_seconds", 0.0)) + (t.finished_at - job.started),
        }
        if not isinstance(reached, (int, float)) or not math.isclose(reached, job.resource_to):
            t.status = FAILED
            t.error = (
                f"the objective returned resource {reached!r} for a segment to {job.resource_to}; "
                "train exactly to spec['resource_to'] and return it as 'resource'"
            )
            return self._fail(t, job)
        if not math.isfinite(value):
            t.status, t.error = FAILED, f"objective returned a non-finite value ({value}) at resource {reached}"
            return self._fail(t, job)
        data = result.get("checkpoint")
        if data is not None:  # kept at the top rung too: checkpoint.pt is always the state at trial.resource
            if not isinstance(data, (bytes, bytearray, memoryview)):
                t.status = FAILED
                t.error = f"the objective's checkpoint is a {type(data).__name__}; return bytes (or None)"
                return self._fail(t, job)
            stage_checkpoint(self.study.folder, t.id, job.resource_to, data)
        t.metrics["rungs"] = list(t.metrics.get("rungs") or []) + [{"resource": job.resource_to, "value": value}]
        t.value, t.rung, t.resource = value, job.rung, job.resource_to
        t.score = float(self.opt.score_of([t.config], [value])[0])
        t.status = COMPLETE if job.rung == self.fid.top else PAUSED
        self.storage.update_trial(t)  # the rung is committed here
        publish_checkpoint(self.study.folder, t.id, job.resource_to)
        self.opt.tell(t.config, value, resource=job.resource_to)
        self.sched.record(t.id, job.rung, value)

    def _fail(self, t: Trial, job: Job) -> None:
        t.metrics = {**t.metrics, "failed_epochs": job.resource_to - job.resource_from}
        self.storage.update_trial(t)
        self.opt.tell_failed(t.config, t.error or "")
        self.sched.fail(t.id)

    # ------------------------------------------------------------------ progress
    def report(self, prog, spent: float) -> None:
        st = self.study
        if st.on_progress is None:
            return
        prog.done, prog.failed = self.storage.count(COMPLETE), self.storage.count(FAILED)
        prog.paused = self.storage.count(PAUSED)
        prog.running, prog.elapsed = len(self.running), spent
        best = self.opt.best
        prog.best = float(self.opt.score_of([best[0]], [best[1]])[0]) if best else None
        prog.epochs, prog.epoch_budget = self.epochs_trained(), self.epoch_budget
        prog.jobs = []
        for tid, job in sorted(self.running.items()):
            live = read_live(trial_dir(st.folder, tid) / "live.json")
            entry = {"trial": tid, "resource_to": job.resource_to, "resource": None, "value": None}
            if live and live.get("resource_to") == job.resource_to and (live.get("time") or 0) >= job.started - 1:
                entry["resource"], entry["value"] = live.get("resource"), live.get("value")
            prog.jobs.append(entry)
        lefts = []
        if st.budget.seconds is not None:
            lefts.append(max(0.0, st.budget.seconds - spent))
        if self.epoch_budget and prog.epochs:
            rate = prog.epochs / max(spent, 1e-9)  # epochs per second, all workers together
            lefts.append(max(0.0, self.epoch_budget - prog.epochs) / rate)
        prog.left = min(lefts) if lefts else None
        st.on_progress(prog)


def check_fidelity_meta(old: dict | None, new: Fidelity | None) -> None:
    """``--resume`` must keep the study's fidelity settings: the rungs recorded mean nothing otherwise."""
    new_d = new.to_dict() if new is not None else None
    if old is None and new_d is None:
        return
    if old != new_d:

        def say(d):
            return "off" if d is None else f"min {d['min_resource']}, max {d['max_resource']}, eta {d['eta']}"

        raise NasError(
            f"{shown('resume')} with other fidelity settings ({say(new_d)}) than the study's ({say(old)}); "
            f"use the study's settings, or another {shown('out')}"
        )
