"""Multi-fidelity search: rungs, the ``report(resource, value)`` API, and asynchronous successive halving.

Any black box whose quality can be read at increasing *resource* levels (epochs, steps, a data fraction)
can stop a poor run early and continue a promising one. Rungs sit at ``r_k = min_resource * eta**k``
(k = 0, 1, ...) capped at ``max_resource``; the last rung *is* ``max_resource``.

Stop and go. A study hands out *jobs*: one trial trained from ``resource_from`` (0 for a new trial) to
``resource_to`` (a rung). The job returns; the driver records the rung's value, and the scheduler decides
later, whenever a worker is free, whether the trial goes on from its checkpoint to the next rung. So no
worker ever waits for a rung to fill (ASHA, Li et al. 2020, "A system for massively parallel
hyper-parameter tuning", Alg. 2), and no worker calls back into the driver (works on every executor).

Within a job, any training loop asks a ``Reporter`` whether to go on:

    >>> from nas.fidelity import Fidelity, Reporter
    >>> fid = Fidelity(1, 27, eta=3)
    >>> fid.rungs
    (1, 3, 9, 27)
    >>> report = Reporter(resource_from=3, resource_to=9)      # this job trains epochs 4..9
    >>> epoch = 3
    >>> while True:
    ...     epoch += 1
    ...     acc = 0.5 + 0.01 * epoch                            # train one epoch, evaluate
    ...     if not report(epoch, acc):
    ...         break
    >>> epoch, report.curve[-1]
    (9, (9, 0.59))

The objective of a multi-fidelity ``Study`` gets ``resource_from``, ``resource_to``, ``max_resource`` and
``checkpoint`` (the bytes its previous segment returned, or None) in its spec, and returns
``{"value": v at resource_to, "metrics": {"curve": [...]}, "checkpoint": bytes | None, "resource": resource_to}``.

The engine side: ``Optimizer(space, fidelity=Fidelity(1, 27))`` models (config, resource) jointly and
proposes new configs by UCB on the predicted value at ``max_resource``; ``ASHA`` decides promotions, ranking
the trials at a rung by a key the caller passes (the study uses ``blend_keys``: each trial's own rung value
blended with the GP's predicted top-rung score):

    >>> sched = ASHA(Fidelity(1, 9, eta=3))
    >>> for tid, v in [(1, 0.2), (2, 0.9), (3, 0.5)]:
    ...     sched.start(tid)
    ...     sched.record(tid, 0, v)
    >>> sched.next_promotion()                                  # top 1/3 of rung 0: trial 2, to rung 1
    (2, 1)
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from nas.errors import NasError

__all__ = ["Fidelity", "Reporter", "ASHA", "blend_keys"]

DEFAULT_ETA = 3  # Li et al. 2020 and Hyperband's default: keep the top third at each rung
# Promotion keys: the weight of the model's predicted top-rung value against the trial's own rung value. On the
# TaskSet tables 0.5 and 1 (the model's ranking alone) tie pair by pair; on real training (cifar10-dev, where one
# epoch of nine says little) the model alone kept promoting fast starters and 0.5 did better (bench/RESULTS.md).
MODEL_WEIGHT = 0.5


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise NasError(f"{what} must be a finite number, got {v!r}")
    return v


class Fidelity:
    """Rungs from ``min_resource`` to ``max_resource`` spaced by a factor ``eta``.

    Integer bounds give integer rungs (epochs); the last rung is always ``max_resource``.
    """

    def __init__(self, min_resource, max_resource, eta=DEFAULT_ETA):
        lo, hi = _number(min_resource, "min resource"), _number(max_resource, "max resource")
        eta = _number(eta, "eta")
        if not lo > 0:
            raise NasError(f"min resource must be positive, got {lo}")
        if hi < lo:
            raise NasError(f"min resource ({lo}) is above max resource ({hi}); lower the min or raise the max")
        if eta < 2:
            raise NasError(f"eta must be at least 2 (each rung keeps the top 1/eta), got {eta}")
        self.min_resource, self.max_resource, self.eta = lo, hi, eta
        integral = isinstance(lo, int) and isinstance(hi, int)
        rungs, k = [], 0
        while True:
            r = lo * eta**k
            r = int(round(r)) if integral else float(r)
            if r >= hi:
                break
            if not rungs or r > rungs[-1]:
                rungs.append(r)
            k += 1
        rungs.append(hi)
        self.rungs: tuple = tuple(rungs)

    @property
    def top(self) -> int:
        """Index of the last rung (max_resource)."""
        return len(self.rungs) - 1

    def rung_index(self, resource) -> int:
        """The index of the rung equal to ``resource``; NasError when it is not a rung."""
        for k, r in enumerate(self.rungs):
            if math.isclose(r, resource, rel_tol=1e-9, abs_tol=1e-12):
                return k
        raise NasError(f"resource {resource!r} is not a rung (rungs: {', '.join(map(str, self.rungs))})")

    def scaled(self, resource) -> float:
        """``log(r / min) / log(max / min)`` in [0, 1]: the GP's resource input (1 = max_resource)."""
        if self.max_resource == self.min_resource:
            return 1.0
        r = min(max(float(resource), self.min_resource), self.max_resource)
        return math.log(r / self.min_resource) / math.log(self.max_resource / self.min_resource)

    def to_dict(self) -> dict:
        return {
            "min_resource": self.min_resource,
            "max_resource": self.max_resource,
            "eta": self.eta,
            "rungs": list(self.rungs),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Fidelity":
        return cls(d["min_resource"], d["max_resource"], d.get("eta", DEFAULT_ETA))

    def __eq__(self, other) -> bool:
        return isinstance(other, Fidelity) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Fidelity({self.min_resource}, {self.max_resource}, eta={self.eta})"


class Reporter:
    """``report(resource, value) -> bool``: records ``value`` and says whether to go on (True while
    ``resource < resource_to``). NasError when the resource does not increase, or when called again after it
    answered False. ``curve`` holds the (resource, value) pairs of this job.

    ``live_path``: where to write ``{"resource", "value", "resource_to", "time"}`` as JSON after each report
    (atomically), so the driver can show a running trial's progress; None writes nothing.
    """

    def __init__(self, resource_from=0, resource_to=None, *, live_path: str | Path | None = None):
        start = _number(resource_from, "resource_from")
        if resource_to is None:
            raise NasError("Reporter: give resource_to (the rung this job trains to)")
        end = _number(resource_to, "resource_to")
        if not end > start:
            raise NasError(f"Reporter: resource_to ({end}) must be above resource_from ({start})")
        self.resource_from, self.resource_to = start, end
        self.live_path = Path(live_path) if live_path is not None else None
        self.curve: list[tuple] = []
        self._stopped = False

    @property
    def last(self):
        return self.curve[-1][0] if self.curve else self.resource_from

    def report(self, resource, value) -> bool:
        if self._stopped:
            raise NasError(
                f"report({resource!r}) after this trial was told to stop at {self.last}; "
                "end the training loop when report() returns False"
            )
        resource = _number(resource, "resource")
        if not resource > self.last:
            raise NasError(f"report: the resource must increase, got {resource} after {self.last}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise NasError(f"report: value must be a number, got {value!r}") from None
        self.curve.append((resource, value))
        go_on = resource < self.resource_to
        self._stopped = not go_on
        if self.live_path is not None:
            _write_live(
                self.live_path,
                {
                    "resource": resource,
                    "value": value if math.isfinite(value) else None,
                    "resource_to": self.resource_to,
                    "time": time.time(),
                },
            )
        return go_on

    __call__ = report


def _write_live(path: Path, data: dict) -> None:
    from nas.fsutil import atomic_write_text

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data))
    except OSError:  # progress display only: a full disk must not kill the training
        pass


def read_live(path: str | Path) -> dict | None:
    """What a ``Reporter(live_path=...)`` wrote last, or None."""
    try:
        d = json.loads(Path(path).read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------------------- ASHA
def _unit_ranks(keys) -> list:
    """Ranks of ``keys`` scaled to [0, 1] (0 the lowest; ties share their mean rank; NaN counts lowest)."""
    k = [float(v) if math.isfinite(float(v)) else -math.inf for v in keys]
    order = sorted(range(len(k)), key=lambda i: k[i])
    out = [0.0] * len(k)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and k[order[j + 1]] == k[order[i]]:
            j += 1
        for m in range(i, j + 1):
            out[order[m]] = (i + j) / 2 / max(1, len(k) - 1)
        i = j + 1
    return out


def blend_keys(own, model, weight: float = MODEL_WEIGHT) -> list:
    """Promotion keys at one rung (higher is better) from each trial's own rung value ``own`` and a model's
    prediction of its top-rung value ``model``: ``(1 - weight) * rank(own) + weight * rank(model)``, ranks
    scaled to [0, 1]; ties of the blend go to the model, then to the own value.

    Ranking by the prediction alone trusts the model where it is weakest: a GP over (config, resource) predicts
    a config seen only at a low rung mostly from its neighbours at the top, so its own early value (the best
    single clue to its final one) counts little, and on the TaskSet tables runs that never learn (loss stuck at
    ln 2 from the first checkpoint, below the early bumps of runs that do learn) were ranked first. Ranking by
    the own value alone ignores what the other trials say about this region of the space.
    """
    own, model = list(own), list(model)
    if len(own) != len(model):
        raise NasError(f"blend_keys: {len(own)} rung values but {len(model)} predictions")
    ro, rm = _unit_ranks(own), _unit_ranks(model)
    return [(1 - weight) * a + weight * b + 1e-9 * b + 1e-12 * a for a, b in zip(ro, rm)]


RUNNING, PAUSED, DONE, FAILED = "running", "paused", "done", "failed"


class ASHA:
    """Asynchronous successive halving over trial ids (Li et al. 2020, Alg. 2 "get_job").

    ``start(tid)`` a new trial (it runs to rung 0), ``record(tid, k, value)`` its value at rung k (it is
    then paused, or done at the top rung), ``fail(tid)``. ``next_promotion(rank)``: the paused trial to run
    next, as ``(tid, rung to train to)``, or None (then start a new config). Rungs are tried from the
    highest down; at rung k the trials that reached it are ranked by ``rank(k, tids) -> keys`` (higher is
    better; default the recorded rung values, ``maximize`` saying which way) and one that is paused at k
    and among the top ``floor(n_k / eta)`` is promoted (ties: lower id first), while fewer than
    ``floor(n_k / eta)`` trials have gone on from rung k. That cap matters when the ranking is a model's
    prediction: the top set then changes as the model learns, and without the cap trial after trial passed
    through it (on the TaskSet benchmark 21 of 33 trials went on from the first rung instead of 11).
    """

    def __init__(self, fidelity: Fidelity, *, maximize: bool = True):
        self.fidelity, self.maximize = fidelity, bool(maximize)
        self.values: list[dict] = [{} for _ in fidelity.rungs]  # rung -> {tid: value}
        self.state: dict = {}  # tid -> RUNNING | PAUSED | DONE | FAILED
        self.reached: dict = {}  # tid -> highest rung index recorded (-1: none)

    def start(self, tid) -> None:
        if tid in self.state:
            raise NasError(f"ASHA: trial {tid} was started already")
        self.state[tid], self.reached[tid] = RUNNING, -1

    def target(self, tid) -> int:
        """The rung trial ``tid`` trains to next."""
        return self.reached[tid] + 1

    def record(self, tid, k: int, value: float) -> None:
        if tid not in self.state:
            self.start(tid)
        if not 0 <= k <= self.fidelity.top:
            raise NasError(f"ASHA: rung {k} is outside 0..{self.fidelity.top}")
        if k <= self.reached[tid]:
            raise NasError(f"ASHA: trial {tid} already has a value at rung {self.reached[tid]}; rungs must increase")
        self.values[k][tid] = float(value)
        self.reached[tid] = k
        self.state[tid] = DONE if k == self.fidelity.top else PAUSED

    def latest(self, tid) -> float:
        """Trial ``tid``'s value at the highest rung it has reached."""
        return self.values[self.reached[tid]][tid]

    def resume(self, tid) -> None:
        """A paused trial goes on (promotion, or a run interrupted by a crash)."""
        self.state[tid] = RUNNING

    def fail(self, tid) -> None:
        self.state[tid] = FAILED

    def _default_rank(self, k: int, tids: list) -> list:
        sign = 1.0 if self.maximize else -1.0
        return [sign * self.values[k][t] for t in tids]

    def next_promotion(self, rank: Callable[[int, list], Iterable] | None = None):
        rank = rank or self._default_rank
        for k in range(self.fidelity.top - 1, -1, -1):
            tids = sorted(self.values[k])
            n_top = int(len(tids) // self.fidelity.eta)
            if n_top < 1 or not any(self.state[t] == PAUSED and self.reached[t] == k for t in tids):
                continue
            gone_on = sum(1 for t in tids if self.reached[t] > k or self.state[t] == RUNNING)
            if gone_on >= n_top:  # this rung has sent its share up already
                continue
            keys = [float(v) if math.isfinite(float(v)) else -math.inf for v in rank(k, tids)]
            order = sorted(range(len(tids)), key=lambda i: (-keys[i], tids[i]))
            for i in order[:n_top]:
                t = tids[i]
                if self.state[t] == PAUSED and self.reached[t] == k:
                    return t, k + 1
        return None

    def finishing_promotion(
        self,
        left: float,
        key: Callable[[list], Iterable] | None = None,
        *,
        cost: Callable[[Any], float] | None = None,
        new_cost: float | None = None,
    ):
        """Near the end of a resource budget: the paused trial worth finishing, as ``(tid, next rung)``, or None.

        When ``left`` (the budget not yet spent or running) cannot take a new trial to the top rung, a new
        trial only informs the model, while continuing a paused one may give a better finished trial: the
        search would otherwise end with its best candidates paused below the top (seen on digits, where the
        best 9-epoch network beat every finished one on 4 of 5 seeds). Among the paused trials that can reach
        the top within ``left``, the one with the highest ``key(tids)`` (higher is better, comparable across
        rungs: the predicted top-rung value; without a key, or where it returns None, the highest rung reached,
        then its value) goes on, whatever the rung's 1/eta cap says. ``left`` is in resource units by default;
        with ``cost(tid)`` (what taking that trial to the top costs) and ``new_cost`` (what a new trial would) it
        can be anything else: seconds, for a time budget.
        """
        top = self.fidelity.max_resource
        rungs = self.fidelity.rungs
        if cost is None:
            cost, new_cost = (lambda t: top - rungs[self.reached[t]]), top
        if new_cost is None or left >= new_cost:
            return None
        tids = sorted(
            t
            for t, s in self.state.items()
            if s == PAUSED and 0 <= self.reached[t] < self.fidelity.top and cost(t) <= left
        )
        return self._best_paused(tids, key)

    def exhausted_promotion(self, key: Callable[[list], Iterable] | None = None):
        """When no new config can be started (a finite space, every config tried): the paused trial with the
        highest ``key`` (as in ``finishing_promotion``) goes on to its next rung, whatever the rung's 1/eta cap
        says, so the budget left is spent on the trials there are instead of ending the search early. None when
        no trial is paused below the top."""
        tids = sorted(t for t, s in self.state.items() if s == PAUSED and 0 <= self.reached[t] < self.fidelity.top)
        return self._best_paused(tids, key)

    def _best_paused(self, tids: list, key):
        """``(tid, next rung)`` of the best of ``tids`` by ``key(tids)`` (higher is better); without a key, or where
        it returns None, the highest rung reached, then the better value there. None when ``tids`` is empty."""
        if not tids:
            return None
        keys = None if key is None else key(tids)
        if keys is None:  # no model: the highest rung reached, then the better value there
            sign = 1.0 if self.maximize else -1.0
            order = [(self.reached[t], sign * self.latest(t)) for t in tids]
        else:
            order = [(float(v) if math.isfinite(float(v)) else -math.inf, self.reached[t]) for v, t in zip(keys, tids)]
        i = max(range(len(tids)), key=lambda j: (order[j], -tids[j]))
        return tids[i], self.reached[tids[i]] + 1

    def counts(self) -> list[int]:
        """Trials that reached each rung."""
        return [len(v) for v in self.values]
