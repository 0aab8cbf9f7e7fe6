"""Acquisition functions as objects: the GP-UCB beta schedule, UCB, GP-BUCB for pending points, and the Pareto
hypervolume improvement (EHVI, or the HVI of the UCB).

Notation and shapes
    m          candidate configs; an acquisition maps a list of m configs to (m,) values, higher is better
    posterior  ``posterior(configs) -> (mean, std)``, each (m,), of the modelled objective in the GP's units
               (``nas.surrogate.ConfigPosterior``); ``posterior.with_pending(configs, zs)`` conditions it
    beta       exploration weight; the bound is ``mean + sqrt(beta) * std``
    t          1-based round: the number of the point being chosen
    D          the finite set the bound is taken over; ``size`` = |D|
    delta      the probability with which Srinivas et al.'s regret bound may fail

The GP always models a "higher is better" objective (a minimised one negated), so only the upper bound is
needed. Known objectives (MACs, parameters) are applied afterwards: ``utility(configs, bound)`` turns the
bound into the optimistic score (the score is monotone increasing in the modelled value).

>>> import numpy as np
>>> ucb(np.array([0.5, 0.7]), np.array([0.2, 0.0]), beta=4.0).tolist()
[0.9, 0.7]
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from nas import multiobjective as mo
from nas.ehvi import CostGrid

__all__ = ["beta_srinivas", "beta_for_round", "ucb", "UCB", "BUCB", "HypervolumeImprovement"]

# Srinivas et al. 2010 (section 6) scale the theoretical beta_t down by a factor of 5 in their own
# experiments: the bound holds for every t at once and is far more cautious than needed in practice.
DEFAULT_BETA_SCALE = 0.2
DEFAULT_DELTA = 0.1  # the delta Srinivas et al. use in their experiments


def beta_srinivas(t: int, *, size: float, delta: float = DEFAULT_DELTA, scale: float = DEFAULT_BETA_SCALE) -> float:
    """``scale * 2 log(|D| t^2 pi^2 / (6 delta))``: GP-UCB's beta for a finite D (Srinivas et al. 2010, Thm 1).

    ``size`` is |D| (e.g. ``space.size()``, or the number of candidates scored per round for a continuous
    space); it enters only through its log, so astronomically large sizes are fine.
    """
    if not t >= 1:
        raise ValueError(f"beta_srinivas: t={t!r} must be >= 1 (rounds count from 1)")
    if not (0.0 < delta < 1.0):
        raise ValueError(f"beta_srinivas: delta={delta!r} must lie in (0, 1)")
    if not scale > 0:
        raise ValueError(f"beta_srinivas: scale={scale!r} must be > 0")
    if not (size >= 1 and (isinstance(size, int) or math.isfinite(size))):  # ints may exceed float range
        raise ValueError(
            f"beta_srinivas: size={size!r} must be a finite number >= 1; for a continuous "
            f"space pass the number of candidates scored per round"
        )
    log_size = math.log(size)  # math.log takes Python ints beyond float range
    return scale * 2.0 * (log_size + 2.0 * math.log(t) + math.log(math.pi**2 / (6.0 * delta)))


def beta_for_round(t: int, *, space_size, n_candidates: int, scale: float = DEFAULT_BETA_SCALE) -> float:
    """``beta_srinivas`` with |D| the space's size, or for a continuous space the candidates scored per round."""
    return beta_srinivas(t, size=space_size if space_size != math.inf else n_candidates, scale=scale)


def _check_beta(beta: float) -> float:
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r} must be finite and >= 0")
    return float(beta)


def ucb(mean, std, beta: float) -> np.ndarray:
    """Upper confidence bound ``mean + sqrt(beta) std``, for maximisation (Srinivas et al. 2010, eq. 6)."""
    return np.asarray(mean, float) + math.sqrt(_check_beta(beta)) * np.asarray(std, float)


def _identity(configs: list, bound: np.ndarray) -> np.ndarray:
    return bound


class UCB:
    """``utility(configs, mean + sqrt(beta) std)``: the optimistic score of each config (GP-UCB).

    ``utility`` defaults to the bound itself; the optimiser passes "back to the objective's units, then score".
    """

    def __init__(self, posterior, *, beta: float, utility: Callable | None = None):
        self.posterior, self.beta, self.utility = posterior, _check_beta(beta), utility or _identity

    def __call__(self, configs: list) -> np.ndarray:
        mean, std = self.posterior(configs)
        return self.utility(configs, ucb(mean, std, self.beta))


def _with_pending(posterior, pending: list, pending_zs):
    return posterior.with_pending(pending, pending_zs) if pending else posterior


class BUCB(UCB):
    """GP-BUCB (Desautels, Krause & Burdick 2014): UCB on the posterior that also conditions on the pending
    configs (asked, not told yet) as if observed at its own mean. The mean stays and the variance shrinks
    near them, so the points of one batch, or of parallel workers, spread out. ``pending_zs``: the resource
    each pending job trains to (multi-fidelity only). With nothing pending it is UCB."""

    def __init__(self, posterior, pending: list, *, beta: float, pending_zs=None, utility: Callable | None = None):
        super().__init__(_with_pending(posterior, pending, pending_zs), beta=beta, utility=utility)
        self.pending = list(pending)


class HypervolumeImprovement:
    """Pareto search: how much the dominated hypervolume of (modelled value, known costs) grows with a config.

    ``kind="ehvi"`` is its expectation under the posterior, ``"ucb"`` its value at the upper confidence
    bound; both exact (``nas.ehvi.CostGrid``). The posterior conditions on the pending configs as BUCB's does;
    ``fantasy=True`` also puts them on the front at their posterior mean, so the next pick is worth something
    beyond them. ``front_values`` (n,) are in the GP's units, ``costs(configs) -> (n, k)`` in "lower is better"
    units; ``ref_value`` and ``ref_costs`` (k,) the reference point.
    """

    def __init__(
        self,
        posterior,
        pending: list,
        *,
        beta: float,
        front_configs: list,
        front_values,
        costs: Callable,
        ref_value: float,
        ref_costs,
        kind: str = "ehvi",
        fantasy: bool = True,
        pending_zs=None,
    ):
        self.posterior = _with_pending(posterior, pending, pending_zs)
        self.costs, self.kind, self.root_beta = costs, kind, math.sqrt(_check_beta(beta))
        cfgs, vals = list(front_configs), np.asarray(front_values, dtype=float)
        if pending and fantasy:
            cfgs, vals = cfgs + list(pending), np.concatenate([vals, self.posterior(pending)[0]])
        U = costs(cfgs)
        keep = mo.pareto_indices(vals, U)
        self.grid = CostGrid(vals[keep], U[keep], ref_value, ref_costs)

    def __call__(self, configs: list) -> np.ndarray:
        mean, std = self.posterior(configs)
        Uc = self.costs(configs)
        if self.kind == "ucb":
            return self.grid.hvi(mean + self.root_beta * std, Uc)
        return self.grid.ehvi(mean, std, Uc)
