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

Multi-fidelity (``fidelity=Fidelity(min_resource, max_resource, eta)``, see ``nas.fidelity``): values are
told at a resource (``tell(config, value, resource=r)``; without ``resource`` a value counts as one at
``max_resource``). The GP takes the resource as one more always-active input, ``log(r / min) / log(max /
min)`` in [0, 1], so low-rung results inform the prediction at the top rung; ``ask`` maximises the score of
the UCB *at max_resource*; ``predict_top`` gives the posterior mean there (the study ranks promotions by it).
Only values at ``max_resource`` count for ``best`` and the incumbent. With ``fidelity=None`` nothing of this
runs and the optimizer behaves exactly as without the option.

    >>> from nas.fidelity import Fidelity
    >>> opt = Optimizer(space, seed=0, n_warmup=3, fidelity=Fidelity(1, 9))
    >>> for cfg in opt.ask(4):
    ...     opt.tell(cfg, -(cfg["x"] - 0.5) ** 2 - 0.3, resource=1)
    >>> opt.tell(cfg, -(cfg["x"] - 0.5) ** 2, resource=9)
    >>> opt.best[0] == cfg and len(opt.predict_top(opt.ask(2))) == 2
    True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nas import acquisition as acq
from nas import multiobjective as mo
from nas.errors import NasError, SpaceError, SpaceExhausted
from nas.fidelity import Fidelity
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
                 value_bounds: tuple | None = None, warp: str = "copula", fidelity: Fidelity | None = None,
                 objectives=None, pareto: str = "ehvi", reference: dict | None = None, pending: str = "fantasy",
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
        if fidelity is not None and not isinstance(fidelity, Fidelity):
            raise NasError(f"fidelity must be a nas.fidelity.Fidelity or None, got {fidelity!r}")
        self.fidelity = fidelity
        self._warp: CopulaWarp | None = None
        self._trend = (0.0, 0.0)  # multi-fidelity: (intercept, slope) of the modelled value in the scaled resource
        self.rng = np.random.default_rng(seed)
        self._obs: list[tuple[dict, float]] = []  # (config, value as told), finite values only
        self._obs_z: list[float] = []  # multi-fidelity only: each observation's scaled resource
        self._pending_z: dict[str, float] = {}  # multi-fidelity only: the resource each pending job trains to
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
            self.objectives = mo.with_cost_scale(self.objectives, [self.known(c) for c in probe])
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
        if self.value_bounds is None or not self.score.needs or not self._top_obs():
            return True
        return bool(self._ceiling([config])[0] > self._best_score())

    def _best_score(self) -> float:
        # Asked once per candidate, thousands of times per proposal: recompute only when a tell added data.
        if self._best_score_n != len(self._obs):
            configs, values = zip(*self._top_obs())
            self._best_score_cache = float(np.max(self.score_of(list(configs), values)))
            self._best_score_n = len(self._obs)
        return self._best_score_cache

    def _candidate_filter(self):
        """``_worth_trying`` where some config passes it; plain feasibility otherwise."""
        if self.value_bounds is None or not self.score.needs or not self._top_obs():
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
            if len(self._seen) >= self.space.size():  # a finite space, every config asked already
                raise SpaceExhausted(f"the space holds {len(self._seen)} distinct configs and every one was "
                                     "tried")
            cfg = self._warmup_one() if self._n_configs() < self.n_warmup else self._propose_one()
            key = config_key(cfg)
            self._pending[key] = cfg
            if self.fidelity is not None:
                self._pending_z[key] = self.fidelity.scaled(self.fidelity.rungs[0])  # a new trial's first job
            self._seen.add(key)
            out.append(cfg)
        return out

    def tell(self, config: dict, value: float, *, resource=None) -> None:
        """Record the objective of ``config`` (at ``resource``, multi-fidelity only; default max_resource).
        NaN or infinite values are recorded as failures and never reach the GP."""
        try:
            self.space.validate(config)
        except SpaceError as e:
            raise SpaceError(f"tell: the config is not in the space: {e}") from None
        z = self._z_of(resource)
        key = config_key(config)
        self._pending.pop(key, None)
        self._pending_z.pop(key, None)
        self._seen.add(key)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise NasError(f"tell: value must be a number, got {value!r}") from None
        if not math.isfinite(value):
            self._failed.append((config, f"non-finite value {value}"))
            return
        self._obs.append((config, value))
        if self.fidelity is not None:
            self._obs_z.append(z)

    def _z_of(self, resource) -> float | None:
        if self.fidelity is None:
            if resource is not None:
                raise NasError("tell(resource=...) needs an Optimizer made with fidelity=Fidelity(...)")
            return None
        if resource is None:
            return 1.0
        f = self.fidelity
        if isinstance(resource, bool) or not isinstance(resource, (int, float)) or not (
                f.min_resource <= resource <= f.max_resource):
            raise NasError(f"tell: resource must lie in [{f.min_resource}, {f.max_resource}], got {resource!r}")
        return f.scaled(resource)

    def tell_failed(self, config: dict, error: str = "") -> None:
        """Record a config whose evaluation failed: it is not proposed again and not modelled."""
        key = config_key(config)
        self._pending.pop(key, None)
        self._pending_z.pop(key, None)
        self._seen.add(key)
        self._failed.append((config, error))

    def forget(self, config: dict) -> None:
        """Drop a pending config (its trial was interrupted and will be asked again)."""
        key = config_key(config)
        self._pending.pop(key, None)
        self._pending_z.pop(key, None)
        self._seen.discard(key)

    def add_pending(self, config: dict, *, resource=None) -> None:
        """``config`` is being evaluated (multi-fidelity: up to ``resource``, default max_resource)."""
        z = self._z_of(resource)
        key = config_key(config)
        self._pending[key] = config
        if z is not None:
            self._pending_z[key] = z
        self._seen.add(key)

    @property
    def n_observed(self) -> int:
        return len(self._obs)

    @property
    def best(self) -> tuple[dict, float] | None:
        """``(config, value)`` of the best told config by score (by value without a score); multi-fidelity:
        among values at max_resource only."""
        top = self._top_obs()
        if not top:
            return None
        configs, values = zip(*top)
        s = self.score_of(list(configs), values)
        i = int(np.argmax(s) if self.direction == "maximize" else np.argmin(s))
        return configs[i], values[i]

    def predict_top(self, configs: list) -> np.ndarray | None:
        """Multi-fidelity: the posterior mean at (config, max_resource) for each config, in the objective's
        units; None while fewer than 2 values are told (no model yet)."""
        if self.fidelity is None:
            raise NasError("predict_top needs an Optimizer made with fidelity=Fidelity(...)")
        if len(self._obs) < 2 or not configs:
            return None
        gp = self._fit()
        X, A = self._encode(configs, [1.0] * len(configs), validate=False)
        mean, _ = gp.predict(X, A)
        mean = mean + self._trend_at(1.0)
        if self._warp is not None:
            mean = self._warp.inverse(mean)
        return -mean if self.direction == "minimize" else mean

    # ------------------------------------------------------------------ internals
    def _top_obs(self) -> list:
        """Observations at max_resource (all of them without fidelity)."""
        if self.fidelity is None:
            return self._obs
        return [o for o, z in zip(self._obs, self._obs_z) if z >= 1.0]

    def _n_configs(self) -> int:
        """Configs with a value: the warm-up counts configs, not rungs."""
        if self.fidelity is None:
            return len(self._obs)
        return len({config_key(c) for c, _ in self._obs})

    def _encode(self, configs: list, zs=None, *, validate: bool = True):
        """``space.encode_many``, plus the scaled resource as the last column in multi-fidelity mode."""
        X, A = self.space.encode_many(configs, validate=validate)
        if self.fidelity is None:
            return X, A
        z = np.asarray(zs, dtype=float).reshape(-1, 1)
        return np.hstack([X, z]), np.hstack([A, np.ones_like(z, dtype=bool)])

    def _obs_encoded(self, start: int = 0):
        zs = self._obs_z[start:] if self.fidelity is not None else None
        return self._encode([c for c, _ in self._obs[start:]], zs)

    def _new_gp(self) -> GP:
        seed = int(self.rng.integers(2**31))
        if self.fidelity is None:
            return GP.from_space(self.space, conditional=self.kernel, seed=seed, max_fit_points=self.max_fit_points)
        dims = self.space.dims
        return GP([dm.kind for dm in dims] + ["float"], conditional_mask=[dm.conditional for dm in dims] + [False],
                  n_choices=[dm.n_choices for dm in dims] + [0], conditional=self.kernel, seed=seed,
                  max_fit_points=self.max_fit_points)

    def _trend_at(self, z):
        a, b = self._trend
        return a + b * np.asarray(z, dtype=float)

    def _warmup_one(self) -> dict:
        """Space-filling warm-up: of 64 random feasible configs, the one farthest from all seen ones."""
        cands = [c for c in sample_feasible(self.space, 64, self.rng, self._candidate_filter())
                 if config_key(c) not in self._seen]
        if not cands:
            if not self._obs:  # nothing to fit a GP on, and random draws find only configs already tried
                raise SpaceExhausted(f"64 random configs were all tried already ({len(self._seen)} tried); "
                                     "the space seems exhausted")
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
        if self.fidelity is not None:
            # A linear trend in the scaled resource, fitted first, and the GP on what it leaves: with a
            # constant prior mean, the prediction at max_resource for a config far from the top-rung data
            # falls back to the mean over all rungs (dominated by the low ones), so UCB would cling to the
            # few configs already trained to the top. The trend puts the prior at the typical top-rung level.
            self._trend = _linear_trend(np.array(self._obs_z), y)
            y = y - self._trend_at(np.array(self._obs_z))
        refit = self._gp is None or n <= REFIT_ALWAYS_BELOW or n >= (1 + REFIT_GROWTH) * self._gp_fit_n
        if not refit and (self._warp is not None or self.fidelity is not None):
            # Ranks move with every new point, so every target changes: same hyper-parameters, all points.
            X, A = self._obs_encoded()
            self._gp.fit(X, A, y, optimize=False)
        elif not refit:
            Xn, An = self._obs_encoded(self._gp_n)
            self._gp.condition_on(Xn, An, y[self._gp_n:])
        else:
            X, A = self._obs_encoded()
            if self._gp is None:
                # Above max_fit_points the GP fits hyper-parameters on a subset, then conditions on all.
                self._gp = self._new_gp()
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
            zs = None
            if self.fidelity is not None:
                zs = [self._pending_z.get(k, 1.0) for k in self._pending]
            Xp, Ap = self._encode(pend, zs)
            gp = gp.with_pending(Xp, Ap)
        t = self._n_configs() + len(pend) + 1
        size = self.space.size()
        # |D| of Srinivas et al.'s finite-D bound; a continuous space counts the candidates scored per round.
        size = size if size != math.inf else self.n_candidates
        beta = acq.beta_srinivas(t, size=size, scale=self.beta_scale)

        def acquisition(configs):
            # For "minimize" the GP models -value and the score is the identity: UCB of -f is -LCB of f.
            # All made by the space itself; multi-fidelity: scored at max_resource (scaled resource 1).
            X, A = self._encode(configs, [1.0] * len(configs), validate=False)
            if self.fidelity is None:
                _, _, ucb = acq.ucb_bounds(gp, X, A, beta)
            else:
                mean, std = gp.predict(X, A)
                ucb = acq.ucb(mean + self._trend_at(1.0), std, beta)
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
        """The (config, value) pairs the front is made of: top-rung values only in a multi-fidelity study."""
        return self._top_obs()

    def _predict_top(self, gp, configs: list) -> tuple:
        """Posterior (mean, std) in the GP's units at the top rung (multi-fidelity) or plainly."""
        X, A = self._encode(configs, [1.0] * len(configs), validate=False)
        mean, std = gp.predict(X, A)
        return (mean + self._trend_at(1.0) if self.fidelity is not None else mean), std

    def _to_gp_units(self, values) -> np.ndarray:
        """Told values as the GP sees them: maximised, warped (monotone, so the front is the same)."""
        v = np.asarray(values, dtype=float)
        v = -v if self.direction == "minimize" else v
        return self._warp(v) if self._warp is not None else v

    def _pareto_acquisition(self, gp, beta: float, pending: list):
        """EHVI (or the HVI of the UCB) of (modelled value, known costs), in the GP's units."""
        from nas.ehvi import CostGrid

        obs = self._front_observations() or self._obs  # no top-rung value yet: the front of what there is
        cfgs, vals = [c for c, _ in obs], self._to_gp_units([v for _, v in obs])
        if self._ref_value is None:
            ref = mo.value_reference(vals)
        else:
            r = -self._ref_value if self.direction == "minimize" else self._ref_value
            ref = float(self._warp(np.array([r]))[0]) if self._warp is not None else r
        if pending and self.pending == "fantasy":  # pending points join the front at their posterior mean
            cfgs, vals = cfgs + list(pending), np.concatenate([vals, self._predict_top(gp, pending)[0]])
        U = self.objectives.costs([self.known(c) for c in cfgs])
        keep = mo.pareto_indices(vals, U)
        grid = CostGrid(vals[keep], U[keep], ref, self._ref_costs)
        root_beta = math.sqrt(beta)

        def acquisition(configs):
            mean, std = self._predict_top(gp, configs)  # proposals on the predicted top-rung value
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
        obs = self._top_obs() or self._obs  # multi-fidelity before any top-rung value: the best at any rung
        if not obs:
            return []
        configs, values = zip(*obs)
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


def _linear_trend(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ~ a + b z``; slope 0 while every value comes from one resource level."""
    if len(y) == 0:
        return 0.0, 0.0
    if np.ptp(z) < 1e-9:
        return float(np.mean(y)), 0.0
    b, a = np.polyfit(z, y, 1)
    return float(a), float(b)


def _mixed_distance(xa, aa, xb, ab, is_cat) -> np.ndarray:
    """(n, m) distances for the warm-up: |dx| on shared numeric dims, 1 per differing category or
    per dimension present in only one of the two configs."""
    both = aa[:, None, :] & ab[None, :, :]
    one = aa[:, None, :] ^ ab[None, :, :]
    diff = np.abs(xa[:, None, :] - xb[None, :, :])
    diff = np.where(is_cat, diff > 0.5, diff)
    return (diff * both).sum(-1) + one.sum(-1)
