"""``Optimizer``: ask / tell GP-UCB over a conditional space, for any black-box function.

    >>> from nas import Optimizer, Space, Float, Categorical
    >>> space = Space([Float("x", -2.0, 2.0), Categorical("kind", ["a", "b"])])
    >>> opt = Optimizer(space, direction="minimize", seed=0, n_warmup=4)
    >>> for _ in range(8):
    ...     for cfg in opt.ask(2):
    ...         opt.tell(cfg, (cfg["x"] - 0.5) ** 2 + (cfg["kind"] == "b"))
    >>> round(opt.best[1], 1) <= 0.2
    True

The GP models the objective only. Known objectives (``known(config) -> {"macs": ..., "params": ...}``,
exact and free) enter through ``score`` and hard ``constraints`` (``Limit`` or any predicate on a
config), both applied exactly: the acquisition is ``score(UCB(value), known(config))``, and a config
that breaks a constraint is never proposed. Asked configs that are not told yet are *pending*: the next
``ask`` treats them as observed for the variance only (GP-BUCB), so parallel workers get spread-out
proposals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nas import acquisition as acq
from nas import multiobjective as mo
from nas.errors import NasError, SpaceError
from nas.gp import GP
from nas.optimize import config_key, maximize, sample_feasible
from nas.score import Identity, Score
from nas.space import Space


REFIT_ALWAYS_BELOW = 40  # observations: below this every tell refits the hyper-parameters
REFIT_GROWTH = 0.1  # above it, refit once the data have grown by this fraction


@dataclass(frozen=True)
class Limit:
    """A hard limit on a known objective: ``Limit("macs", 2e5)`` keeps configs with MACs <= 2e5."""

    name: str
    max: float

    def __call__(self, known: dict) -> bool:
        return known[self.name] <= self.max


class Optimizer:
    def __init__(self, space: Space, *, direction: str = "maximize", seed: int = 0,
                 constraints: Sequence = (), known: Callable[[dict], dict] | None = None,
                 score: Score | None = None, n_warmup: int = 10, beta_scale: float = 0.2,
                 kernel: str = "arc", n_candidates: int = 256, max_fit_points: int = 300,
                 value_bounds: tuple | None = None, warp: str = "copula", objectives=None,
                 pareto: str = "ehvi", reference: dict | None = None, pending: str = "fantasy",
                 log_costs: bool = True):
        self.objectives = None
        if objectives is not None:  # Pareto search (nas.multiobjective): the modelled objective's direction
            self.objectives = mo.parse_objectives(objectives, log_costs=log_costs)
            direction = "maximize" if self.objectives.modelled[1] else "minimize"
            if score is not None:
                raise NasError("objectives= searches the whole front; a score= collapses it to one number: "
                               "give one of the two")
        if direction not in ("maximize", "minimize"):
            raise NasError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
        self.space, self.direction, self.seed = space, direction, seed
        self.score = score or Identity()
        if self.score.needs and known is None:
            raise NasError(f"score {self.score.spec()} needs known objectives {self.score.needs}: pass known=")
        if self.objectives is not None and known is None:
            raise NasError(f"objectives {self.objectives.names[1:]} are known objectives: pass known=")
        if direction == "minimize" and not isinstance(self.score, Identity):
            raise NasError("a score combines accuracy-like objectives: use direction='maximize' with it")
        self.known_fn = known
        self.constraints = list(constraints)
        if any(isinstance(c, Limit) for c in self.constraints) and known is None:
            raise NasError("a Limit on a known objective needs known=")
        self.n_warmup = max(1, int(n_warmup))
        # 1.0 is Srinivas' theory, 0.2 their own experiments' choice. 0.05 did better on NAS-Bench-201
        # (a small discrete space) but got stuck on continuous conditional problems, so 0.2 stays.
        self.beta_scale = beta_scale
        self.kernel, self.n_candidates, self.max_fit_points = kernel, n_candidates, max_fit_points
        # Where the objective is bounded (accuracy in [0, 1]), the exact score gives a ceiling for every
        # config before it runs: one whose best possible score cannot beat the incumbent's is not proposed.
        self.value_bounds = value_bounds
        if warp not in ("copula", "none"):
            raise NasError(f"warp must be 'copula' or 'none', got {warp!r}")
        self.warp = warp
        self._warp: CopulaWarp | None = None
        self.rng = np.random.default_rng(seed)
        self._obs: list[tuple[dict, float]] = []  # (config, value as told), finite values only
        self._failed: list[tuple[dict, str]] = []
        self._pending: dict[str, dict] = {}
        self._seen: set[str] = set()  # keys of every config told or pending: never proposed again
        self._known_cache: dict[str, dict] = {}
        self._gp: GP | None = None
        self._gp_n = -1  # observations the GP holds
        self._gp_fit_n = 0  # observations at the last hyper-parameter fit
        self._best_score_n, self._best_score_cache = -1, -math.inf
        if self.objectives is not None:
            if pareto not in mo.ACQUISITIONS or pending not in mo.PENDING:
                raise NasError(f"pareto must be one of {mo.ACQUISITIONS} and pending one of {mo.PENDING}, "
                               f"got {pareto!r} and {pending!r}")
            self.pareto, self.pending = pareto, pending
            probe = sample_feasible(space, mo.REF_SAMPLES, np.random.default_rng(seed), self.feasible)
            self.objectives.check_known(self.known(probe[0]))
            limits = {c.name: c.max for c in self.constraints if isinstance(c, Limit)}
            self._ref_value, self._ref_costs = mo.reference_point(
                self.objectives, [self.known(c) for c in probe], limits=limits, value_bounds=value_bounds,
                reference=reference)

    # ------------------------------------------------------------------ known objectives
    def known(self, config: dict) -> dict:
        if self.known_fn is None:
            return {}
        k = config_key(config)
        if k not in self._known_cache:
            self._known_cache[k] = self.known_fn(config)
        return self._known_cache[k]

    def feasible(self, config: dict) -> bool:
        for c in self.constraints:
            ok = c(self.known(config)) if isinstance(c, Limit) else c(config)
            if not ok:
                return False
        return True

    def _ceiling(self, configs: list) -> np.ndarray:
        """The best score each config could reach (its value at the upper bound)."""
        return self.score_of(configs, np.full(len(configs), float(self.value_bounds[1])))

    def _worth_trying(self, config: dict) -> bool:
        if not self.feasible(config):
            return False
        if self.value_bounds is None or not self.score.needs or not self._obs:
            return True
        return bool(self._ceiling([config])[0] > self._best_score())

    def _best_score(self) -> float:
        # Asked once per candidate, thousands of times per proposal: recompute only when a tell added data.
        if self._best_score_n != len(self._obs):
            configs, values = zip(*self._obs)
            self._best_score_cache = float(np.max(self.score_of(list(configs), values)))
            self._best_score_n = len(self._obs)
        return self._best_score_cache

    def _candidate_filter(self):
        """``_worth_trying`` where some config passes it; plain feasibility otherwise."""
        if self.value_bounds is None or not self.score.needs or not self._obs:
            return self.feasible
        try:
            sample_feasible(self.space, 1, self.rng, self._worth_trying)
            return self._worth_trying
        except NasError:
            return self.feasible

    def score_of(self, configs: list, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if not self.score.needs:
            return self.score(values)
        ks = [self.known(c) for c in configs]
        return self.score(values, {n: np.array([k[n] for k in ks], dtype=float) for n in self.score.needs})

    # ------------------------------------------------------------------ ask / tell
    def ask(self, k: int = 1) -> list[dict]:
        """``k`` new configs; each is pending until told."""
        if k < 1:
            raise NasError(f"ask(k): k must be at least 1, got {k}")
        out = []
        for _ in range(k):
            cfg = self._warmup_one() if len(self._obs) < self.n_warmup else self._propose_one()
            key = config_key(cfg)
            self._pending[key] = cfg
            self._seen.add(key)
            out.append(cfg)
        return out

    def tell(self, config: dict, value: float) -> None:
        """Record the objective of ``config``. NaN or infinite values are recorded as failures and never
        reach the GP."""
        try:
            self.space.validate(config)
        except SpaceError as e:
            raise SpaceError(f"tell: the config is not in the space: {e}") from None
        key = config_key(config)
        self._pending.pop(key, None)
        self._seen.add(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise NasError(f"tell: value must be a number, got {value!r}") from None
        if not math.isfinite(value):
            self._failed.append((config, f"non-finite value {value}"))
            return
        self._obs.append((config, value))

    def tell_failed(self, config: dict, error: str = "") -> None:
        """Record a config whose evaluation failed: it is not proposed again and not modelled."""
        key = config_key(config)
        self._pending.pop(key, None)
        self._seen.add(key)
        self._failed.append((config, error))

    def forget(self, config: dict) -> None:
        """Drop a pending config (its trial was interrupted and will be asked again)."""
        key = config_key(config)
        self._pending.pop(key, None)
        self._seen.discard(key)

    def add_pending(self, config: dict) -> None:
        key = config_key(config)
        self._pending[key] = config
        self._seen.add(key)

    @property
    def n_observed(self) -> int:
        return len(self._obs)

    @property
    def best(self) -> tuple[dict, float] | None:
        """``(config, value)`` of the best told config by score (by value without a score)."""
        if not self._obs:
            return None
        configs, values = zip(*self._obs)
        s = self.score_of(list(configs), values)
        i = int(np.argmax(s) if self.direction == "maximize" else np.argmin(s))
        return configs[i], values[i]

    # ------------------------------------------------------------------ internals
    def _warmup_one(self) -> dict:
        """Space-filling warm-up: of 64 random feasible configs, the one farthest from all seen ones."""
        cands = [c for c in sample_feasible(self.space, 64, self.rng, self._candidate_filter())
                 if config_key(c) not in self._seen]
        if not cands:
            return self._propose_one()
        if self.value_bounds is not None and self.score.needs:
            # Before anything is known, prefer the half of the candidates that could score best.
            ceil = self._ceiling(cands)
            cands = [c for c, v in zip(cands, ceil) if v >= np.median(ceil)]
        taken = [c for c, _ in self._obs] + list(self._pending.values()) + [c for c, _ in self._failed]
        if not taken:
            return cands[0]
        xc, ac = self.space.encode_many(cands)
        xt, at = self.space.encode_many(taken)
        d = _mixed_distance(xc, ac, xt, at, np.array([k == "cat" for k in self.space.kinds]))
        return cands[int(np.argmax(d.min(axis=1)))]

    def _fit(self) -> GP:
        """The GP on every observation. Hyper-parameters are refitted while the data are few and then
        whenever the data have grown by a tenth, warm-started from the last fit; in between, new points
        are added with the hyper-parameters fixed (an exact posterior update, far cheaper than a fit)."""
        n = len(self._obs)
        if self._gp is not None and self._gp_n == n:
            return self._gp
        y = np.array([v for _, v in self._obs], dtype=float)
        if self.direction == "minimize":
            y = -y
        if self.warp == "copula":
            self._warp = CopulaWarp(y)
            y = self._warp(y)
        refit = self._gp is None or n <= REFIT_ALWAYS_BELOW or n >= (1 + REFIT_GROWTH) * self._gp_fit_n
        if not refit and self._warp is not None:
            # Ranks move with every new point, so every target changes: same hyper-parameters, all points.
            X, A = self.space.encode_many([c for c, _ in self._obs])
            self._gp.fit(X, A, y, optimize=False)
        elif not refit:
            Xn, An = self.space.encode_many([c for c, _ in self._obs[self._gp_n:]])
            self._gp.condition_on(Xn, An, y[self._gp_n:])
        else:
            X, A = self.space.encode_many([c for c, _ in self._obs])
            if self._gp is None:
                # Above max_fit_points the GP fits hyper-parameters on a subset, then conditions on all.
                self._gp = GP.from_space(self.space, conditional=self.kernel, seed=int(self.rng.integers(2**31)),
                                         max_fit_points=self.max_fit_points)
            else:
                self._gp.n_restarts = 1  # warm start from the last fit; the relevance probe still runs
            self._gp.fit(X, A, y)
            self._gp_fit_n = n
        self._gp_n = n
        return self._gp

    def _propose_one(self) -> dict:
        gp = self._fit()
        pend = list(self._pending.values())
        if pend:
            Xp, Ap = self.space.encode_many(pend)
            gp = gp.with_pending(Xp, Ap)
        t = len(self._obs) + len(pend) + 1
        size = self.space.size()
        # |D| of Srinivas et al.'s finite-D bound; a continuous space counts the candidates scored per round.
        size = size if size != math.inf else self.n_candidates
        beta = acq.beta_srinivas(t, size=size, scale=self.beta_scale)

        def acquisition(configs):
            # For "minimize" the GP models -value and the score is the identity: UCB of -f is -LCB of f.
            X, A = self.space.encode_many(configs, validate=False)  # all made by the space itself
            _, _, ucb = acq.ucb_bounds(gp, X, A, beta)
            if self._warp is not None:
                ucb = self._warp.inverse(ucb)  # back to the objective's units, where the score applies
            return self.score_of(configs, ucb)

        if self.objectives is not None:
            acquisition = self._pareto_acquisition(gp, beta, pend)
        incumbents = self._top_configs(3)
        cfg, _ = maximize(self.space, acquisition, rng=self.rng, feasible=self._candidate_filter(),
                          exclude=self._seen, seeds=incumbents, n_random=self.n_candidates)
        return cfg

    # ------------------------------------------------------------------ Pareto search
    def _front_observations(self) -> list:
        """The (config, value) pairs the front is made of. A multi-fidelity study keeps top-rung trials only."""
        return self._obs

    def _to_gp_units(self, values) -> np.ndarray:
        """Told values as the GP sees them: maximised, warped (monotone, so the front is the same)."""
        v = np.asarray(values, dtype=float)
        v = -v if self.direction == "minimize" else v
        return self._warp(v) if self._warp is not None else v

    def _pareto_acquisition(self, gp, beta: float, pending: list):
        """EHVI (or the HVI of the UCB) of (modelled value, known costs), in the GP's units."""
        from nas.ehvi import CostGrid

        obs = self._front_observations()
        cfgs, vals = [c for c, _ in obs], self._to_gp_units([v for _, v in obs])
        if self._ref_value is None:
            ref = float(vals.min())  # no bound given: the worst observation
        else:
            r = -self._ref_value if self.direction == "minimize" else self._ref_value
            ref = float(self._warp(np.array([r]))[0]) if self._warp is not None else r
        if pending and self.pending == "fantasy":  # pending points join the front at their posterior mean
            X, A = self.space.encode_many(pending, validate=False)
            cfgs, vals = cfgs + list(pending), np.concatenate([vals, gp.predict(X, A, return_std=False)])
        U = self.objectives.costs([self.known(c) for c in cfgs])
        keep = mo.pareto_indices(vals, U)
        grid = CostGrid(vals[keep], U[keep], ref, self._ref_costs)
        root_beta = math.sqrt(beta)

        def acquisition(configs):
            X, A = self.space.encode_many(configs, validate=False)
            mean, std = gp.predict(X, A)
            Uc = self.objectives.costs([self.known(c) for c in configs])
            if self.pareto == "ucb":
                return grid.hvi(mean + root_beta * std, Uc)
            return grid.ehvi(mean, std, Uc)

        return acquisition

    def pareto_front(self) -> list:
        """``[(config, value, known), ...]``: the told configs no other told config dominates in (value, known
        objectives); with ``objectives=`` only. Sorted by value, best first."""
        if self.objectives is None:
            raise NasError("pareto_front() needs objectives=; this optimizer searches one score")
        obs = self._front_observations()
        if not obs:
            return []
        vals = np.array([v for _, v in obs], dtype=float)
        vals = -vals if self.direction == "minimize" else vals
        U = self.objectives.costs([self.known(c) for c, _ in obs])
        idx = sorted(mo.pareto_indices(vals, U), key=lambda i: -vals[i])
        return [(obs[i][0], obs[i][1], self.known(obs[i][0])) for i in idx]

    def _top_configs(self, n: int) -> list:
        if not self._obs:
            return []
        configs, values = zip(*self._obs)
        s = self.score_of(list(configs), values)
        order = np.argsort(-s if self.direction == "maximize" else s)
        return [configs[i] for i in order[:n]]


class CopulaWarp:
    """A monotone output warping: ``z = Phi^-1((rank - 1/2) / n)`` (the Gaussian copula of Salinas et al.
    2020). Objectives such as accuracy are skewed (a few diverged runs near chance, most near the top); on
    their ranks the GP sees Gaussian-looking targets and outliers stop flattening the rest. ``inverse``
    maps a bound back by interpolating the observed (z, y) pairs, linearly beyond them, so an optimistic
    bound above the best observation stays above it."""

    def __init__(self, y: np.ndarray):
        from scipy.stats import norm, rankdata

        n = len(y)
        self._z_of = norm.ppf((rankdata(y) - 0.5) / n) if n > 1 else np.zeros(n)
        order = np.argsort(y, kind="stable")
        self.ys, self.zs = y[order], self._z_of[order]
        self._y = y

    def __call__(self, y: np.ndarray) -> np.ndarray:
        if y is self._y or (len(y) == len(self._y) and np.array_equal(y, self._y)):
            return self._z_of
        return np.interp(y, self.ys, self.zs)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        ys, zs = self.ys, self.zs
        if len(ys) < 2 or zs[-1] == zs[0]:
            return np.full_like(np.asarray(z, dtype=float), ys[-1] if len(ys) else 0.0)
        out = np.interp(z, zs, ys)
        mid = len(ys) // 2
        # Beyond the data, the slope from the median to each end: a robust scale for extrapolation.
        up = (ys[-1] - ys[mid]) / max(zs[-1] - zs[mid], 1e-12)
        lo = (ys[mid] - ys[0]) / max(zs[mid] - zs[0], 1e-12)
        out = np.where(z > zs[-1], ys[-1] + (z - zs[-1]) * up, out)
        return np.where(z < zs[0], ys[0] + (z - zs[0]) * lo, out)


def _mixed_distance(xa, aa, xb, ab, is_cat) -> np.ndarray:
    """(n, m) distances for the warm-up: |dx| on shared numeric dims, 1 per differing category or
    per dimension present in only one of the two configs."""
    both = aa[:, None, :] & ab[None, :, :]
    one = aa[:, None, :] ^ ab[None, :, :]
    diff = np.abs(xa[:, None, :] - xb[None, :, :])
    diff = np.where(is_cat, diff > 0.5, diff)
    return (diff * both).sum(-1) + one.sum(-1)
