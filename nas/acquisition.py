"""Acquisition: upper / lower confidence bounds, the GP-UCB beta schedule, and GP-BUCB batches.

Notation and shapes
    m        candidate points; ``X`` (m, d) encodings and ``active`` (m, d) as in ``nas.gp``
    mean, std  (m,) posterior mean and standard deviation of the modelled objective, in its own units
    beta     exploration weight; the bounds are ``mean +- sqrt(beta) * std``
    t        1-based round: the number of the point (or batch) being chosen
    D        the finite set the bound is taken over; ``size`` = |D|
    delta    the probability with which Srinivas et al.'s regret bound may fail
    k        batch size

The acquisition is the optimistic value of the modelled objective (e.g. the UCB of validation accuracy).
Known objectives (MACs, parameters) are applied afterwards by the score module: a score monotone increasing
in accuracy turns ``ucb`` into the optimistic score, which is why ``ucb_bounds`` returns all three arrays.

>>> import numpy as np
>>> ucb(np.array([0.5, 0.7]), np.array([0.2, 0.0]), beta=4.0).tolist()
[0.9, 0.7]
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["beta_srinivas", "ucb", "lcb", "ucb_bounds", "UCB", "bucb_batch"]

# Srinivas et al. 2010 (section 6) scale the theoretical beta_t down by a factor of 5 in their own
# experiments: the bound holds for every t at once and is far more cautious than needed in practice.
DEFAULT_BETA_SCALE = 0.2
DEFAULT_DELTA = 0.1  # the delta Srinivas et al. use in their experiments


def beta_srinivas(t: int, *, size: float, delta: float = DEFAULT_DELTA,
                  scale: float = DEFAULT_BETA_SCALE) -> float:
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
        raise ValueError(f"beta_srinivas: size={size!r} must be a finite number >= 1; for a continuous "
                         f"space pass the number of candidates scored per round")
    log_size = math.log(size)  # math.log takes Python ints beyond float range
    return scale * 2.0 * (log_size + 2.0 * math.log(t) + math.log(math.pi**2 / (6.0 * delta)))


def _check_beta(beta: float) -> float:
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r} must be finite and >= 0")
    return float(beta)


def ucb(mean, std, beta: float) -> np.ndarray:
    """Upper confidence bound ``mean + sqrt(beta) std``, for maximisation (Srinivas et al. 2010, eq. 6)."""
    return np.asarray(mean, float) + math.sqrt(_check_beta(beta)) * np.asarray(std, float)


def lcb(mean, std, beta: float) -> np.ndarray:
    """Lower confidence bound ``mean - sqrt(beta) std``, the optimistic value for minimisation."""
    return np.asarray(mean, float) - math.sqrt(_check_beta(beta)) * np.asarray(std, float)


def ucb_bounds(gp, X, active, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, std, ucb)`` at the candidates, each (m,): what the score module turns into optimistic scores."""
    mean, std = gp.predict(X, active)
    return mean, std, ucb(mean, std, beta)


class UCB:
    """The optimistic value of the objective at candidates: UCB when maximising, LCB when minimising.

    ``UCB(gp, beta=beta_srinivas(t, size=space.size()))(X, active)`` -> (m,) values.
    """

    def __init__(self, gp, *, beta: float, maximize: bool = True):
        self.gp, self.beta, self.maximize = gp, _check_beta(beta), bool(maximize)

    def __call__(self, X, active) -> np.ndarray:
        mean, std = self.gp.predict(X, active)
        return ucb(mean, std, self.beta) if self.maximize else lcb(mean, std, self.beta)


def bucb_batch(gp, X, active, k: int, *, beta: float, maximize: bool = True, return_std: bool = False):
    """Indices (k,) of a batch picked greedily from the candidates by GP-BUCB (Desautels et al. 2014).

    ``gp`` is a fitted ``nas.gp.GP``. Each pick is the best optimistic value; it then counts as pending:
    observed at the posterior mean, so the mean stays and the variance shrinks around it, and the next pick
    goes elsewhere. Equivalent to calling
    ``gp.with_pending`` after each pick, but updates only the candidates' variances: for pick ``p`` with
    covariance ``c(x, p)`` given everything so far, ``var(x) -= c(x, p)^2 / (var(p) + noise)`` (the rank-one
    Gaussian conditioning update, R&W eq. A.6), with ``c`` kept by a partial Cholesky over the picks.
    With ``return_std`` also returns the std (k,) each pick had when it was picked, given the earlier picks.
    """
    m = len(X)
    if not 1 <= k <= m:
        raise ValueError(f"bucb_batch: k={k!r} must lie in 1..{m} (the number of candidates)")
    beta = _check_beta(beta)
    post = gp.posterior(X, active)
    mean, var = post.mean, post.std**2
    noise = gp.noise_var * gp.y_std**2  # in the objective's units, like var
    sign = 1.0 if maximize else -1.0
    G = np.zeros((k, m))  # G[i] = c_i(., p_i) / sqrt(var_i(p_i) + noise): the partial Cholesky rows
    picks: list[int] = []
    picked_std = np.zeros(k)
    for i in range(k):
        value = sign * (mean + sign * math.sqrt(beta) * np.sqrt(np.maximum(var, 0.0)))
        value[picks] = -np.inf
        p = int(np.argmax(value))
        picks.append(p)
        picked_std[i] = math.sqrt(max(var[p], 0.0))
        if i == k - 1:
            break
        # covariance of every candidate with p given the data and the earlier picks
        c = post.cov(p) - G[:i].T @ G[:i, p]
        s = max(c[p], 0.0) + noise
        G[i] = c / math.sqrt(s) if s > 0 else 0.0  # a noiseless pick already known exactly teaches nothing
        var = var - G[i] ** 2
    picks = np.array(picks, dtype=int)
    return (picks, picked_std) if return_std else picks
