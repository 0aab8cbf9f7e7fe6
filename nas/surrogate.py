"""The surrogate: the GP on the told values, with its output warp, its refit policy and (multi-fidelity) its trend.

Notation
    y        told values, turned "higher is better" (negated when minimising), then warped (``CopulaWarp``)
    z        multi-fidelity only: the scaled resource ``log(r / min) / log(max / min)`` in [0, 1], one more
             always-active input column of the GP; 1 is max_resource, where every proposal is scored

``Surrogate.fit`` keeps one GP and decides when its hyper-parameters are refitted; ``posterior()`` gives
``(mean, std)`` at configs (at max_resource), in the GP's units, for the acquisition functions
(``nas.acquisition``); ``to_objective`` maps such a bound back to the objective's units, where the score applies.
"""

from __future__ import annotations

import numpy as np

from nas.fidelity import Fidelity
from nas.gp import GP
from nas.space import Space

REFIT_ALWAYS_BELOW = 40  # observations: below this every tell refits the hyper-parameters
REFIT_GROWTH = 0.1  # above it, refit once the data have grown by this fraction


class Surrogate:
    """One GP over ``space`` (plus the resource column with ``fidelity``), refitted as the data grow.

    ``rng`` is the optimiser's generator: the GP's seed is drawn from it when the GP is first made.
    """

    def __init__(
        self,
        space: Space,
        *,
        maximize: bool,
        rng: np.random.Generator,
        kernel: str = "arc",
        max_fit_points: int = 300,
        warp: str = "copula",
        fidelity: Fidelity | None = None,
        features=None,
        n_features: int = 0,
    ):
        self.space, self.maximize, self.rng = space, maximize, rng
        # Known features (``features(configs) -> (n, k)``, about [0, 1]): more always-active input columns,
        # such as the known costs of a Pareto search (accuracy tracks the size of a network).
        self.features, self.n_features = features, int(n_features) if features is not None else 0
        self.kernel, self.max_fit_points, self.warp, self.fidelity = kernel, max_fit_points, warp, fidelity
        self._warp: CopulaWarp | None = None
        self._trend = (0.0, 0.0)  # multi-fidelity: (intercept, slope) of the modelled value in the scaled resource
        self._gp: GP | None = None
        self._gp_n = -1  # observations the GP holds
        self._gp_fit_n = 0  # observations at the last hyper-parameter fit
        self._enc_X = self._enc_A = self._enc_last = None  # ``_encoded_obs``: the first _enc_n observations
        self._enc_n = 0

    def encode(self, configs: list, zs=None, *, validate: bool = True):
        """``space.encode_many``, plus the scaled resource as the last column in multi-fidelity mode."""
        X, A = self.space.encode_many(configs, validate=validate)
        extra = []
        if self.features is not None:
            extra.append(np.asarray(self.features(configs), dtype=float).reshape(len(configs), self.n_features))
        if self.fidelity is not None:
            extra.append(np.asarray(zs, dtype=float).reshape(-1, 1))
        if not extra:
            return X, A
        E = np.hstack(extra)
        return np.hstack([X, E]), np.hstack([A, np.ones_like(E, dtype=bool)])

    def set_features(self, features, n_features: int) -> None:
        """Known features as more GP input columns (see ``__init__``); the next ``fit`` starts a new GP."""
        self.features, self.n_features = features, int(n_features)
        self._gp, self._gp_n, self._enc_n = None, -1, 0

    def _encoded_obs(self, obs: list, obs_z: list):
        """The encodings of every observation, kept between fits: the lists only grow (an observation is
        never changed or dropped), so only the new rows are encoded. Told configs were validated by ``tell``."""
        n, done = len(obs), self._enc_n
        if done and (done > n or obs[done - 1][0] is not self._enc_last):  # not the lists encoded before
            done = 0
        if done < n:
            zs = obs_z[done:] if self.fidelity is not None else None
            X, A = self.encode([c for c, _ in obs[done:]], zs, validate=False)
            if done:
                X, A = np.vstack([self._enc_X[:done], X]), np.vstack([self._enc_A[:done], A])
            self._enc_X, self._enc_A, self._enc_n, self._enc_last = X, A, n, obs[n - 1][0]
        return self._enc_X[:n], self._enc_A[:n]

    def _new_gp(self) -> GP:
        seed = int(self.rng.integers(2**31))
        n_extra = (self.fidelity is not None) + self.n_features
        if not n_extra:
            return GP.from_space(self.space, conditional=self.kernel, seed=seed, max_fit_points=self.max_fit_points)
        dims = self.space.dims
        return GP(
            [dm.kind for dm in dims] + ["float"] * n_extra,
            conditional_mask=[dm.conditional for dm in dims] + [False] * n_extra,
            n_choices=[dm.n_choices for dm in dims] + [0] * n_extra,
            conditional=self.kernel,
            seed=seed,
            max_fit_points=self.max_fit_points,
        )

    def _trend_at(self, z):
        a, b = self._trend
        return a + b * np.asarray(z, dtype=float)

    def fit(self, obs: list, obs_z: list) -> GP:
        """The GP on every observation ``obs`` ((config, value as told) pairs; ``obs_z`` their scaled resources,
        multi-fidelity only). Hyper-parameters are refitted while the data are few and then whenever the data
        have grown by a tenth, warm-started from the last fit; in between, new points are added with the
        hyper-parameters fixed (an exact posterior update, far cheaper than a fit)."""
        n = len(obs)
        if self._gp is not None and self._gp_n == n:
            return self._gp
        X_all, A_all = self._encoded_obs(obs, obs_z)
        y = np.array([v for _, v in obs], dtype=float)
        if not self.maximize:
            y = -y
        if self.warp == "copula":
            self._warp = CopulaWarp(y)
            y = self._warp(y)
        if self.fidelity is not None:
            # A linear trend in the scaled resource, fitted first, and the GP on what it leaves: with a
            # constant prior mean, the prediction at max_resource for a config far from the top-rung data
            # falls back to the mean over all rungs (dominated by the low ones), so UCB would cling to the
            # few configs already trained to the top. The trend puts the prior at the typical top-rung level.
            self._trend = _linear_trend(np.array(obs_z), y)
            y = y - self._trend_at(np.array(obs_z))

        refit = self._gp is None or n <= REFIT_ALWAYS_BELOW or n >= (1 + REFIT_GROWTH) * self._gp_fit_n
        if not refit:
            # Same hyper-parameters: the new points added to the factor and every target replaced (with the warp
            # or the trend every target moves as ranks change; without, the old ones are as before).
            self._gp.extend(X_all[self._gp_n :], A_all[self._gp_n :], y)
        else:
            if self._gp is None:
                # Above max_fit_points the GP fits hyper-parameters on a subset, then conditions on all.
                self._gp = self._new_gp()
            else:
                self._gp.n_restarts = 1  # warm start from the last fit; the relevance probe still runs
            self._gp.fit(X_all, A_all, y)
            self._gp_fit_n = n
        self._gp_n = n
        return self._gp

    def posterior(self) -> "ConfigPosterior":
        """The posterior of the last ``fit``, on configs."""
        return ConfigPosterior(self, self._gp)

    def to_gp_units(self, values) -> np.ndarray:
        """Told values as the GP sees them: maximised, warped (monotone, so orders are kept)."""
        v = np.asarray(values, dtype=float)
        v = v if self.maximize else -v
        return self._warp(v) if self._warp is not None else v

    def to_objective(self, bound: np.ndarray) -> np.ndarray:
        """A bound in the GP's units back in the objective's (still maximised: -value when minimising)."""
        return self._warp.inverse(bound) if self._warp is not None else bound

    def predict_top(self, configs: list) -> np.ndarray:
        """Multi-fidelity: the posterior mean at (config, max_resource) for each config, in the objective's
        units (after ``fit``)."""
        X, A = self.encode(configs, [1.0] * len(configs), validate=False)
        mean = self._gp.predict(X, A, return_std=False) + self._trend_at(1.0)
        if self._warp is not None:
            mean = self._warp.inverse(mean)
        return mean if self.maximize else -mean


class ConfigPosterior:
    """``posterior(configs) -> (mean, std)``, each (m,), in the GP's units at max_resource (multi-fidelity)."""

    def __init__(self, surrogate: Surrogate, gp: GP):
        self.surrogate, self.gp = surrogate, gp

    def __call__(self, configs: list) -> tuple[np.ndarray, np.ndarray]:
        s = self.surrogate
        X, A = s.encode(configs, [1.0] * len(configs), validate=False)
        mean, std = self.gp.predict(X, A)
        return (mean + s._trend_at(1.0) if s.fidelity is not None else mean), std

    def with_pending(self, configs: list, zs=None) -> "ConfigPosterior":
        """Also conditioned on ``configs`` observed at the posterior mean (GP-BUCB; ``zs``: the resource each
        pending job trains to, multi-fidelity only): the mean stays, the variance shrinks near them."""
        X, A = self.surrogate.encode(configs, zs)
        return ConfigPosterior(self.surrogate, self.gp.with_pending(X, A))


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
