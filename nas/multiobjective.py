"""Pareto search: one modelled objective, any number of known ones, and the acquisition that ranks candidates.

    Optimizer(space, objectives={"acc": "maximize", "macs": "minimize", "params": "minimize"}, known=count)

The first objective is the one ``tell`` reports and the GP models; every other name is a key of
``known(config)``, exact before evaluation. The acquisition is the expected hypervolume improvement of
(modelled value, known costs), exact in closed form (``nas.ehvi``), or its UCB variant: the hypervolume
improvement of the upper confidence bound.

Costs are compared on a log scale by default (``log_costs``): halving the MACs is worth the same at 10k as
at 10M, as it is to a user choosing a network for a device. The log is taken of ``cost + offset``, the offset
being the 5 % quantile of the cost over 1,000 seeded random feasible configs: below the space's cheapest few
percent, savings count in absolute terms, so a near-zero cost (a cell of "none" operations, 0.003 ms) does not
claim most of the axis.

The reference point: for each known cost, its worst value over the space (the hard limit where a ``Limit``
gives one, else the worst over those 1,000 configs), moved 10 % further out so that the extreme configs still
add volume. For the modelled objective, the median of the values observed so far, recomputed at every
proposal in the GP's units (under the copula warp, the GP's zero): a network has to beat half of what was
tried to add volume, so the search does not spend trials on tiny networks whose accuracy no one would take.
(The worst observed value, the earlier default, rewarded exactly those; ``value_bounds`` no longer sets it.)
``reference=`` sets any of them by name, fixed; one that no config can dominate is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np

from nas.errors import NasError

ACQUISITIONS = ("ehvi", "ucb")
PENDING = ("variance", "fantasy")
REF_MARGIN = 1.1  # the reference lies 10 % beyond the worst cost, so the worst configs still count
REF_SAMPLES = 1000  # random feasible configs that estimate each cost's worst value over the space
REF_QUANTILE = 0.5  # the modelled objective's reference: this quantile of the values observed so far
OFFSET_QUANTILE = 0.05  # log costs: log(cost + this quantile of the space's positive costs)


@dataclass(frozen=True)
class Objectives:
    """``modelled``: (name, maximize); ``known``: ((name, maximize), ...)."""

    modelled: tuple
    known: tuple
    log_costs: bool = True
    offsets: tuple = ()  # per known objective: log(cost + offset) where log_costs (see ``with_cost_scale``)

    @property
    def names(self) -> list:
        return [self.modelled[0]] + [n for n, _ in self.known]

    def check_known(self, known: Mapping) -> None:
        """One-line NasError when a known objective is not among the keys of ``known(config)``."""
        for name, _ in self.known:
            if name not in known:
                have = ", ".join(sorted(known)) or "nothing"
                raise NasError(
                    f"objective {name!r} is neither the modelled one ({self.modelled[0]!r}, the value "
                    f"passed to tell) nor a known objective (known(config) gives {have}); "
                    f"use one of those names"
                )

    def transform(self, name_values: Mapping) -> np.ndarray:
        """(n, k) costs in "lower is better" units: log where ``log_costs``, negated for a maximised one."""
        cols = []
        for j, (name, mx) in enumerate(self.known):
            c = np.asarray(name_values[name], dtype=float)
            if self.log_costs:
                off = self.offsets[j] if self.offsets else 0.0
                c = np.log(np.maximum(c + off, 1e-300))  # 0 MACs is a legal cost: the floor keeps it finite
            cols.append(-c if mx else c)
        return np.stack(cols, axis=-1)

    def costs(self, knowns: Sequence[Mapping]) -> np.ndarray:
        return self.transform({n: [k[n] for k in knowns] for n, _ in self.known})


def parse_objectives(objectives, *, log_costs: bool = True) -> Objectives:
    """``{"acc": "maximize", "macs": "minimize"}`` or ``[("acc", "maximize"), ...]``: the first is modelled."""
    items = list(objectives.items()) if isinstance(objectives, Mapping) else list(objectives or [])
    try:
        pairs = [(str(n), str(d)) for n, d in items]
    except (TypeError, ValueError):
        raise NasError("objectives: give a mapping such as {'acc': 'maximize', 'macs': 'minimize'}") from None
    if len(pairs) < 2:
        raise NasError(
            "objectives: give the modelled objective first and at least one known one, e.g. "
            "{'acc': 'maximize', 'macs': 'minimize'}"
        )
    for name, d in pairs:
        if d not in ("minimize", "maximize"):
            raise NasError(f"objective {name!r}: direction must be 'minimize' or 'maximize', got {d!r}")
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names):
        raise NasError(f"objectives: {names} names one objective twice; give each once")
    (m, md), rest = pairs[0], pairs[1:]
    return Objectives((m, md == "maximize"), tuple((n, d == "maximize") for n, d in rest), bool(log_costs))


def with_cost_scale(objs: Objectives, sample_known: Sequence[Mapping]) -> Objectives:
    """``objs`` with each log-scaled cost's offset: the ``OFFSET_QUANTILE`` quantile of its positive values over
    ``sample_known`` (random feasible configs), 0 where none is positive. ``log(cost + offset)`` keeps the ratio
    scale above the space's cheapest few percent and stops near-zero costs (a cell of "none" operations
    measured at 0.003 ms) from spanning most of the log axis."""
    if not objs.log_costs:
        return objs
    offs = [_cost_offset([float(k[name]) for k in sample_known]) for name, _ in objs.known]
    return replace(objs, offsets=tuple(0.0 if o is None else o for o in offs))


def _cost_offset(values) -> float | None:
    """The ``OFFSET_QUANTILE`` quantile of the positive ``values``; None where none is positive."""
    pos = np.asarray(values, dtype=float)
    pos = pos[pos > 0]
    return float(np.quantile(pos, OFFSET_QUANTILE)) if len(pos) else None


def value_reference(values) -> float:
    """The modelled objective's default reference: the median of the observed values, in the units given (the
    GP's: maximised and warped). Recomputed at every proposal, so it follows the data."""
    return float(np.quantile(np.asarray(values, dtype=float), REF_QUANTILE))


def reference_point(
    objs: Objectives,
    sample_known: Sequence[Mapping],
    *,
    limits: Mapping,
    value_bounds,
    reference: Mapping | None = None,
) -> tuple:
    """``(ref_value, ref_costs)``: the modelled objective's reference in its own units where ``reference`` gives
    it (None: ``value_reference`` of the observations, decided at each proposal) and the (k,) transformed cost
    reference. ``value_bounds`` only checks a given reference. ``sample_known`` are the
    known objectives of random feasible configs; ``limits`` the hard limit of each known objective."""
    reference = dict(reference or {})
    unknown = set(reference) - set(objs.names)
    if unknown:
        raise NasError(f"reference: {sorted(unknown)} is not an objective; use one of {objs.names}")
    raw = {}
    for name, mx in objs.known:
        seen = np.array([float(k[name]) for k in sample_known])
        best, worst = (seen.max(), seen.min()) if mx else (seen.min(), seen.max())
        if name in reference:
            r = float(reference[name])
            if not math.isfinite(r) or (r <= best if not mx else r >= best):
                raise NasError(
                    f"reference {name}={r:g}: no config can dominate it (the best of {len(seen)} "
                    f"sampled configs is {best:g}); give a {'larger' if not mx else 'smaller'} value "
                    f"or leave it out"
                )
        else:
            if name in limits and not mx:
                worst = float(limits[name])
            r = worst * REF_MARGIN if not mx else worst / REF_MARGIN
        raw[name] = [r]
    ref_costs = objs.transform(raw)[0]
    name, mx = objs.modelled
    ref_value = None
    if name in reference:
        ref_value = float(reference[name])
        if value_bounds is not None:
            top = value_bounds[1] if mx else value_bounds[0]
            if not math.isfinite(ref_value) or (ref_value >= top if mx else ref_value <= top):
                raise NasError(
                    f"reference {name}={ref_value:g}: no config can dominate it ({name} is at best "
                    f"{top:g}); give a {'smaller' if mx else 'larger'} value or leave it out"
                )
    return ref_value, ref_costs


def pareto_indices(values, U) -> np.ndarray:
    """Indices of the non-dominated rows of (value to maximise (n,), costs to minimise (n, k))."""
    from nas.hypervolume import nondominated

    values = np.asarray(values, dtype=float).reshape(-1)
    if len(values) == 0:
        return np.zeros(0, dtype=int)
    Q = np.column_stack([-values, np.asarray(U, dtype=float).reshape(len(values), -1)])
    return np.flatnonzero(nondominated(Q))


def cost_features(names: Sequence[str], sample_known: Sequence[Mapping]):
    """``f(knowns) -> (n, k)``: each known objective of ``names`` as a GP input, ``log(cost + offset)`` (the offset as in
    ``with_cost_scale``) scaled to [0, 1] over ``sample_known`` (random feasible configs). A network's accuracy
    tracks its size, so a cost the search knows before training is a feature the model can read."""
    cols = []
    for name in names:
        seen = np.array([float(k[name]) for k in sample_known])
        off = _cost_offset(seen)
        off = 1.0 if off is None else off  # no positive cost: any offset keeps log finite
        logs = np.log(np.maximum(seen, 0.0) + off)
        cols.append((name, off, float(logs.min()), float(max(np.ptp(logs), 1e-12))))

    def features(knowns: Sequence[Mapping]) -> np.ndarray:
        out = np.zeros((len(knowns), len(cols)))
        for j, (name, off, lo, span) in enumerate(cols):
            c = np.array([float(k[name]) for k in knowns])
            out[:, j] = (np.log(np.maximum(c, 0.0) + off) - lo) / span
        return out

    return features
