"""What is known about a config before it runs: hard constraints, the known objectives and the score ceiling.

Known objectives (``known(config) -> {"macs": ..., "params": ...}``) are exact and free; they are computed
once per config. A constraint is a ``Limit`` on one of them or any predicate on a config; a config that
breaks one is never proposed. Where the objective is bounded (``value_bounds``, accuracy in [0, 1]), the
score at the upper bound is a *ceiling* every config has before it runs: one whose ceiling cannot beat the
incumbent's score is not worth trying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nas.acq_maximizer import config_key, sample_feasible
from nas.errors import NasError
from nas.score import Score
from nas.space import Space


@dataclass(frozen=True)
class Limit:
    """A hard limit on a known objective: ``Limit("macs", 2e5)`` keeps configs with MACs <= 2e5."""

    name: str
    max: float

    def __call__(self, known: dict) -> bool:
        return known[self.name] <= self.max


class Constraints:
    """Feasibility, known objectives (cached) and the score of (config, value) pairs, with its ceiling."""

    def __init__(
        self,
        constraints: Sequence,
        known: Callable[[dict], dict] | None,
        score: Score,
        value_bounds: tuple | None = None,
    ):
        self.constraints, self.known_fn, self.score, self.value_bounds = list(constraints), known, score, value_bounds
        if any(isinstance(c, Limit) for c in self.constraints) and known is None:
            raise NasError("a Limit on a known objective needs known=")
        self._cache: dict[str, dict] = {}
        self._best_n, self._best = -1, -math.inf

    def known(self, config: dict) -> dict:
        if self.known_fn is None:
            return {}
        k = config_key(config)
        if k not in self._cache:
            self._cache[k] = self.known_fn(config)
        return self._cache[k]

    def limits(self) -> dict:
        """``{name: max}`` of every ``Limit``."""
        return {c.name: c.max for c in self.constraints if isinstance(c, Limit)}

    def feasible(self, config: dict) -> bool:
        for c in self.constraints:
            ok = c(self.known(config)) if isinstance(c, Limit) else c(config)
            if not ok:
                return False
        return True

    def score_of(self, configs: list, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if not self.score.needs:
            return self.score(values)
        ks = [self.known(c) for c in configs]
        return self.score(values, {n: np.array([k[n] for k in ks], dtype=float) for n in self.score.needs})

    @property
    def has_ceiling(self) -> bool:
        return self.value_bounds is not None and bool(self.score.needs)

    def ceiling(self, configs: list) -> np.ndarray:
        """The best score each config could reach (its value at the upper bound)."""
        return self.score_of(configs, np.full(len(configs), float(self.value_bounds[1])))

    def _best_score(self, top_obs: list, n_obs: int) -> float:
        # Asked once per candidate, thousands of times per proposal: recompute only when a tell added data.
        if self._best_n != n_obs:
            configs, values = zip(*top_obs)
            self._best = float(np.max(self.score_of(list(configs), values)))
            self._best_n = n_obs
        return self._best

    def candidate_filter(self, space: Space, rng: np.random.Generator, top_obs: list, n_obs: int):
        """The predicate candidates must pass: feasible, and with a ceiling, able to beat the incumbents'
        best score (of ``top_obs``; ``n_obs`` counts every observation, to know when to recompute it);
        plain feasibility where no config can."""
        if not self.has_ceiling or not top_obs:
            return self.feasible

        def worth_trying(config: dict) -> bool:
            if not self.feasible(config):
                return False
            return bool(self.ceiling([config])[0] > self._best_score(top_obs, n_obs))

        try:
            sample_feasible(space, 1, rng, worth_trying)
            return worth_trying
        except NasError:
            return self.feasible
