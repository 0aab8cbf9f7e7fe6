"""``Optimizer``: ask / tell GP-UCB over a conditional space, for any black-box function.

It keeps the trials (told, failed, pending) and composes the pieces that do the work: the surrogate
(``nas.surrogate``: GP, output warp, refit policy), the constraints and known objectives
(``nas.constraints``), the acquisition functions (``nas.acquisition``: BUCB, or the hypervolume improvement
for a Pareto search) and the acquisition maximiser (``nas.acq_maximizer``).

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

Pareto search (``objectives={"acc": "maximize", "macs": "minimize"}``): the acquisition is the expected
hypervolume improvement of (modelled value, known costs) (``nas.multiobjective``), and each known cost,
``log(cost + offset)`` scaled to [0, 1] over the space, is also an input of the GP: accuracy tracks network
size, and the model reads it before any training. ``cost_features`` (None: on in a Pareto search, off for a
score) turns this on or off; on the scalar path it takes every numeric key of ``known(config)``
(``use_cost_features(names)`` picks some). On real training with a score it measured worse than without
(cifar10-dev, bench/results_mf_real.md), so the scalar default stays off.

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
from typing import Callable, Sequence

import numpy as np

from nas import acquisition as acq
from nas import multiobjective as mo
from nas.acq_maximizer import config_key, farthest, maximize, sample_feasible
from nas.constraints import Constraints, Limit
from nas.errors import NasError, SpaceError, SpaceExhausted
from nas.fidelity import Fidelity
from nas.score import Identity, Score
from nas.space import Space
from nas.surrogate import Surrogate

__all__ = ["Optimizer", "Limit"]


class Optimizer:
    """Ask / tell over ``space`` (see the module docstring). It holds the trials (told, failed, pending, each
    config's resource) and the options; ``self.surrogate`` models, ``self.constraints`` filters and scores,
    an acquisition object (``BUCB`` or ``HypervolumeImprovement``) ranks and ``maximize`` searches."""

    def __init__(
        self,
        space: Space,
        *,
        direction: str = "maximize",
        seed: int = 0,
        constraints: Sequence = (),
        known: Callable[[dict], dict] | None = None,
        score: Score | None = None,
        n_warmup: int = 10,
        beta_scale: float = 0.2,
        kernel: str = "arc",
        n_candidates: int = 256,
        max_fit_points: int = 300,
        value_bounds: tuple | None = None,
        warp: str = "copula",
        fidelity: Fidelity | None = None,
        objectives=None,
        pareto: str = "ehvi",
        reference: dict | None = None,
        pending: str = "fantasy",
        log_costs: bool = True,
        cost_features: bool | None = None,
    ):
        self.objectives = None
        if objectives is not None:  # Pareto search (nas.multiobjective): the modelled objective's direction
            self.objectives = mo.parse_objectives(objectives, log_costs=log_costs)
            direction = "maximize" if self.objectives.modelled[1] else "minimize"
            if score is not None:
                raise NasError(
                    "objectives= searches the whole front; a score= collapses it to one number: give one of the two"
                )
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
        # Where the objective is bounded (accuracy in [0, 1]), the exact score gives a ceiling for every
        # config before it runs: one whose best possible score cannot beat the incumbent's is not proposed.
        self.constraints = Constraints(constraints, known, self.score, value_bounds)
        self.n_warmup = max(1, int(n_warmup))
        # 1.0 is Srinivas' theory, 0.2 their own experiments' choice. 0.05 did better on NAS-Bench-201
        # (a small discrete space) but got stuck on continuous conditional problems, so 0.2 stays.
        self.beta_scale = beta_scale
        self.n_candidates = n_candidates
        if warp not in ("copula", "none"):
            raise NasError(f"warp must be 'copula' or 'none', got {warp!r}")
        if fidelity is not None and not isinstance(fidelity, Fidelity):
            raise NasError(f"fidelity must be a nas.fidelity.Fidelity or None, got {fidelity!r}")
        self.fidelity = fidelity
        self.rng = np.random.default_rng(seed)
        self.surrogate = Surrogate(
            space,
            maximize=direction == "maximize",
            rng=self.rng,
            kernel=kernel,
            max_fit_points=max_fit_points,
            warp=warp,
            fidelity=fidelity,
        )
        self._obs: list[tuple[dict, float]] = []  # (config, value as told), finite values only
        self._obs_keys: set[str] = set()  # config_key of every config in _obs (one per config, any rung)
        self._obs_z: list[float] = []  # multi-fidelity only: each observation's scaled resource
        self._pending_z: dict[str, float] = {}  # multi-fidelity only: the resource each pending job trains to
        self._failed: list[tuple[dict, str]] = []
        self._pending: dict[str, dict] = {}
        self._seen: set[str] = set()  # keys of every config told or pending: never proposed again
        if self.objectives is not None:
            if pareto not in mo.ACQUISITIONS or pending not in mo.PENDING:
                raise NasError(
                    f"pareto must be one of {mo.ACQUISITIONS} and pending one of {mo.PENDING}, "
                    f"got {pareto!r} and {pending!r}"
                )
            self.pareto, self.pending = pareto, pending
            probe_known = self._probe_known()
            self.objectives.check_known(probe_known[0])
            self.objectives = mo.with_cost_scale(self.objectives, probe_known)
            if cost_features is not False:
                self._cost_inputs([n for n, _ in self.objectives.known], probe_known)
            self._ref_value, self._ref_costs = mo.reference_point(
                self.objectives,
                probe_known,
                limits=self.constraints.limits(),
                value_bounds=value_bounds,
                reference=reference,
            )
        elif cost_features:
            self.use_cost_features()

    # ------------------------------------------------------------------ known objectives as GP inputs
    def use_cost_features(self, names: Sequence[str] | None = None) -> None:
        """Make the known costs ``names`` (default: every numeric key of ``known(config)``) GP inputs, each
        ``log(cost + offset)`` scaled to [0, 1] over 1,000 random feasible configs (``nas.multiobjective
        .cost_features``). Call it before the first ``tell``."""
        if self._obs or self._failed:
            raise NasError("use_cost_features(): call it before the first tell")
        probe_known = self._probe_known()
        if not probe_known or not probe_known[0]:
            raise NasError("use_cost_features() needs known= (a function giving each config's costs)")
        if names is None:
            names = [n for n, v in probe_known[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        self._cost_inputs(list(names), probe_known)

    def _probe_known(self) -> list:
        """The known objectives of ``mo.REF_SAMPLES`` seeded random feasible configs: the sample that scales the
        costs (log offsets, GP inputs) and, in a Pareto search, places the reference point."""
        probe = sample_feasible(self.space, mo.REF_SAMPLES, np.random.default_rng(self.seed), self.feasible)
        return [self.known(c) for c in probe]

    def _cost_inputs(self, names: list, probe_known: list) -> None:
        feats = mo.cost_features(names, probe_known)
        self.surrogate.set_features(lambda cs: feats([self.known(c) for c in cs]), len(names))

    # ------------------------------------------------------------------ known objectives
    def known(self, config: dict) -> dict:
        return self.constraints.known(config)

    def feasible(self, config: dict) -> bool:
        return self.constraints.feasible(config)

    def score_of(self, configs: list, values) -> np.ndarray:
        return self.constraints.score_of(configs, values)

    def _candidate_filter(self):
        return self.constraints.candidate_filter(self.space, self.rng, self._top_obs(), len(self._obs))

    # ------------------------------------------------------------------ ask / tell
    def ask(self, k: int = 1) -> list[dict]:
        """``k`` new configs; each is pending until told."""
        if k < 1:
            raise NasError(f"ask(k): k must be at least 1, got {k}")
        out = []
        for _ in range(k):
            if len(self._seen) >= self.space.size():  # a finite space, every config asked already
                raise SpaceExhausted(f"the space holds {len(self._seen)} distinct configs and every one was tried")
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
        self._obs_keys.add(key)
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
        if (
            isinstance(resource, bool)
            or not isinstance(resource, (int, float))
            or not (f.min_resource <= resource <= f.max_resource)
        ):
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
        self._fit()
        return self.surrogate.predict_top(configs)

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
        return len(self._obs_keys)

    def _fit(self):
        return self.surrogate.fit(self._obs, self._obs_z)

    def _warmup_one(self) -> dict:
        """Space-filling warm-up: of 64 random feasible configs, the one farthest from all seen ones."""
        cands = [
            c
            for c in sample_feasible(self.space, 64, self.rng, self._candidate_filter())
            if config_key(c) not in self._seen
        ]
        if not cands:
            if not self._obs:  # nothing to fit a GP on, and random draws find only configs already tried
                raise SpaceExhausted(
                    f"64 random configs were all tried already ({len(self._seen)} tried); the space seems exhausted"
                )
            return self._propose_one()
        # No preference by the score's ceiling here: with a soft cost penalty (the mnas score) the half that
        # could score best is simply the smaller half of the networks, and a warm-up drawn from it left the
        # large networks that win on real images untried (cifar10-dev, bench/results_mf_real.md). Configs that
        # cannot beat the incumbent are still excluded by the candidate filter.
        taken = [c for c, _ in self._obs] + list(self._pending.values()) + [c for c, _ in self._failed]
        return farthest(self.space, cands, taken)

    def _propose_one(self) -> dict:
        self._fit()
        pend = list(self._pending.values())
        zs = [self._pending_z.get(k, 1.0) for k in self._pending] if self.fidelity is not None else None
        t = self._n_configs() + len(pend) + 1
        beta = acq.beta_for_round(
            t, space_size=self.space.size(), n_candidates=self.n_candidates, scale=self.beta_scale
        )
        posterior = self.surrogate.posterior()
        if self.objectives is not None:
            acquisition = self._pareto_acquisition(posterior, beta, pend, zs)
        else:
            # For "minimize" the GP models -value and the score is the identity: UCB of -f is -LCB of f.
            acquisition = acq.BUCB(
                posterior,
                pend,
                beta=beta,
                pending_zs=zs,
                utility=lambda cs, bound: self.score_of(cs, self.surrogate.to_objective(bound)),
            )
        incumbents = self._top_configs(3)
        cfg, _ = maximize(
            self.space,
            acquisition,
            rng=self.rng,
            feasible=self._candidate_filter(),
            exclude=self._seen,
            seeds=incumbents,
            n_random=self.n_candidates,
        )
        return cfg

    # ------------------------------------------------------------------ Pareto search
    def _front_observations(self) -> list:
        """The (config, value) pairs the front is made of: top-rung values only in a multi-fidelity study."""
        return self._top_obs()

    def _pareto_acquisition(self, posterior, beta: float, pending: list, zs):
        """EHVI (or the HVI of the UCB) of (modelled value, known costs), in the GP's units."""
        obs = self._front_observations() or self._obs  # no top-rung value yet: the front of what there is
        cfgs, vals = [c for c, _ in obs], self.surrogate.to_gp_units([v for _, v in obs])
        if self._ref_value is None:
            ref = mo.value_reference(vals)
        else:
            ref = float(self.surrogate.to_gp_units(np.array([self._ref_value]))[0])
        return acq.HypervolumeImprovement(
            posterior,
            pending,
            beta=beta,
            pending_zs=zs,
            front_configs=cfgs,
            front_values=vals,
            costs=lambda cs: self.objectives.costs([self.known(c) for c in cs]),
            ref_value=ref,
            ref_costs=self._ref_costs,
            kind=self.pareto,
            fantasy=self.pending == "fantasy",
        )

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
