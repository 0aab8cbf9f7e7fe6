"""Exact Gaussian-process regression over the ``(x, active)`` encodings of a conditional space.

The kernel and its embedding of conditional dims are explained in ``nas.kernel``, the hyper-parameter fit
in ``nas.gp_fit``; this module holds the data, the Cholesky posterior and its updates.

Notation and shapes
    n        conditioning rows: the observations, then any pending points (``with_pending``)
    m        query points
    d        encoded dims (``space.n_dims``)
    p        embedding columns (>= d): a conditional numeric dim takes 2, a categorical one per category
    X        (n, d) encoded values; ``active`` (n, d) bool, False where a config lacks the dim
    U        (n, p) unscaled embedding of (X, active); ``Phi = U / ell[col_dim]`` the scaled one
    col_dim  (p,) the dim each embedding column belongs to
    y        (n,) observations in original units; ``t = (y - y_mean) / y_std`` the standardised targets
    ell      (d,) length scales; ``s2`` signal variance; ``sn2`` noise variance (both on the standardised scale)
    theta    (d + 2,) ``[log ell_1 .. log ell_d, log s2, log sn2]``, what the optimiser moves
    r        (.., ..) Euclidean distance between rows of Phi
    K        (n, n) ``s2 * m52(r) + sn2 * I``; ``L`` its lower Cholesky factor; ``alpha = K^-1 t``

>>> import numpy as np
>>> X = np.linspace(0, 1, 8)[:, None]; active = np.ones_like(X, dtype=bool)
>>> gp = GP(["float"]).fit(X, active, np.sin(6 * X[:, 0]))
>>> mean, std = gp.predict(X[:3], active[:3])
>>> bool(np.allclose(mean, np.sin(6 * X[:3, 0]), atol=0.05))
True
"""

from __future__ import annotations

import copy
import math
import warnings

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky, solve_triangular

from nas.gp_fit import _ELL_BOUNDS, _PRIOR_LOC, GPFitWarning, _one_blas_thread, log_likelihood, optimize_hyperparameters
from nas.kernel import Embedding, m52, sqdist, sqdist_self

__all__ = ["GP", "GPFitWarning"]

_DEFAULT_S2 = 1.0
# Default noise: re-training the same net moves validation accuracy by roughly a tenth of the spread across
# configs, i.e. a noise standard deviation of 0.1 on the standardised scale.
_DEFAULT_SN2 = 1e-2


# ----------------------------------------------------------------------------------------------- GP
class GP:
    """Exact GP regression of one objective over encoded configs; see the module docstring.

    ``kinds``: per dim "float" | "int" | "cat"; ``conditional_mask``: per dim, True where some configs lack
    it; ``n_choices``: per dim, the number of choices of a cat dim. ``GP.from_space(space)`` reads all three.
    ``conditional``: "arc" or the "impute" baseline. ``noise_bounds``: for the noise variance on the
    standardised scale; the floor 1e-6 keeps K well conditioned. ``n_restarts``: random starts per fit;
    ``seed`` makes them (and the subset) reproducible. ``max_fit_points``: above this the hyper-parameters
    are fitted on a random subset; a few hundred points pin ~100 length scales, and each of the hundreds of
    likelihood evaluations costs O(n^3). ``max_iter``: per L-BFGS-B run (fits converge in 40-150).
    ``prior``: False for plain type-II maximum likelihood.
    """

    def __init__(
        self,
        kinds,
        *,
        conditional_mask=None,
        n_choices=None,
        conditional: str = "arc",
        noise_bounds: tuple = (1e-6, 1.0),
        n_restarts: int = 3,
        seed: int = 0,
        max_fit_points: int = 256,
        max_iter: int = 200,
        prior: bool = True,
    ):
        kinds = [str(k) for k in kinds]
        d = len(kinds)
        if d == 0:
            raise ValueError("GP: kinds is empty; a space needs at least one encoded dim")
        for j, k in enumerate(kinds):
            if k not in ("float", "int", "cat"):
                raise ValueError(f"GP: kinds[{j}] = {k!r} is not one of 'float', 'int', 'cat'")
        cond = np.zeros(d, bool) if conditional_mask is None else np.asarray(conditional_mask, dtype=bool)
        if cond.shape != (d,):
            raise ValueError(f"GP: conditional_mask has shape {cond.shape}, expected ({d},) like kinds")
        nch = np.zeros(d, int) if n_choices is None else np.asarray(n_choices, dtype=int)
        if nch.shape != (d,):
            raise ValueError(f"GP: n_choices has shape {nch.shape}, expected ({d},) like kinds")
        for j, k in enumerate(kinds):
            if k == "cat" and nch[j] < 1:
                raise ValueError(
                    f"GP: categorical dim {j} needs n_choices[{j}] >= 1; pass n_choices "
                    f"or build the GP with GP.from_space(space)"
                )
        if conditional not in ("arc", "impute"):
            raise ValueError(f"GP: conditional={conditional!r} is not one of 'arc', 'impute'")
        lo, hi = (float(b) for b in noise_bounds)
        if not 0.0 < lo <= hi:
            raise ValueError(f"GP: noise_bounds={noise_bounds!r} must satisfy 0 < low <= high")
        self.kinds, self.conditional_mask, self.n_choices = kinds, cond, nch
        self.conditional = conditional
        self.noise_bounds = (lo, hi)
        self.n_restarts, self.seed = int(n_restarts), int(seed)
        self.max_fit_points, self.max_iter, self.prior = int(max_fit_points), int(max_iter), bool(prior)
        self._emb = Embedding(kinds, cond, nch, conditional)
        self._prior_mu = _PRIOR_LOC + 0.5 * math.log(d)
        self._ell = np.full(d, float(np.clip(math.exp(self._prior_mu), *_ELL_BOUNDS)))  # the prior median
        self._s2 = _DEFAULT_S2
        self._sn2 = self._sn2_default()
        self._reset_data()

    def _sn2_default(self) -> float:
        return float(np.clip(_DEFAULT_SN2, *self.noise_bounds))

    @classmethod
    def from_space(cls, space, **options) -> "GP":
        """A GP for ``space`` (anything with ``.dims`` of ``.kind``, ``.conditional``, ``.n_choices``)."""
        dims = space.dims
        return cls(
            [dm.kind for dm in dims],
            conditional_mask=[dm.conditional for dm in dims],
            n_choices=[dm.n_choices for dm in dims],
            **options,
        )

    def _reset_data(self) -> None:
        self._y_obs, self._U_obs = np.zeros(0), np.zeros((0, self._emb.p))  # raw y, embedded X
        self._y_mean, self._y_std = 0.0, 1.0
        self._U_rows, self._t_rows = np.zeros((0, self._emb.p)), np.zeros(0)  # what the posterior conditions on
        self._L, self._alpha = np.zeros((0, 0)), np.zeros(0)
        self._n_pending = 0
        self._jitter = 0.0

    # ---------------------------------------------------------------- hyper-parameters
    @property
    def n_dims(self) -> int:
        return len(self.kinds)

    @property
    def n_obs(self) -> int:
        return len(self._y_obs)

    @property
    def n_pending(self) -> int:
        return self._n_pending

    @property
    def length_scales(self) -> np.ndarray:
        return self._ell.copy()

    @property
    def signal_var(self) -> float:
        """On the standardised scale; multiply by ``y_std**2`` for original units."""
        return self._s2

    @property
    def noise_var(self) -> float:
        """On the standardised scale; multiply by ``y_std**2`` for original units."""
        return self._sn2

    @property
    def y_mean(self) -> float:
        return self._y_mean

    @property
    def y_std(self) -> float:
        return self._y_std

    @property
    def theta(self) -> np.ndarray:
        """(d + 2,) ``[log ell, log s2, log sn2]``; ``log sn2`` is -inf where ``noise_var`` was set to 0."""
        with np.errstate(divide="ignore"):
            return np.concatenate([np.log(self._ell), [math.log(self._s2)], [np.log(self._sn2)]])

    def set_params(self, *, length_scales=None, signal_var=None, noise_var=None) -> "GP":
        """Set hyper-parameters without fitting (standardised scale); the posterior is recomputed.

        ``length_scales`` may be a scalar or (d,); ``noise_var=0`` (interpolation) is allowed here, not in a fit.
        """
        if self._n_pending:
            raise ValueError(
                "set_params: this GP holds pending points; set the parameters on the GP "
                "without pending points, then call with_pending again"
            )
        if length_scales is not None:
            ell = np.broadcast_to(np.asarray(length_scales, dtype=float), (self.n_dims,)).copy()
            if not (np.all(np.isfinite(ell)) and np.all(ell > 0)):
                raise ValueError("set_params: length_scales must be finite and > 0")
            self._ell = ell
        if signal_var is not None:
            if not (math.isfinite(signal_var) and signal_var > 0):
                raise ValueError(f"set_params: signal_var={signal_var!r} must be finite and > 0")
            self._s2 = float(signal_var)
        if noise_var is not None:
            if not (math.isfinite(noise_var) and noise_var >= 0):
                raise ValueError(f"set_params: noise_var={noise_var!r} must be finite and >= 0")
            self._sn2 = float(noise_var)
        self._refactor()
        return self

    def _set_theta(self, theta: np.ndarray) -> None:
        d = self.n_dims
        self._ell, self._s2, self._sn2 = np.exp(theta[:d]), float(np.exp(theta[d])), float(np.exp(theta[d + 1]))

    # ---------------------------------------------------------------- input checks
    def _check_X(self, X, active, what: str) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_dims:
            raise ValueError(
                f"{what}: X has shape {X.shape}, expected (n, {self.n_dims}); encode configs with Space.encode_many"
            )
        a = np.ones(X.shape, bool) if active is None else np.asarray(active, dtype=bool)
        if a.ndim == 1:
            a = a[None, :]
        if a.shape != X.shape:
            raise ValueError(f"{what}: active has shape {a.shape}, expected {X.shape} like X")
        if not np.all(np.isfinite(X)):
            row = int(np.argwhere(~np.isfinite(X))[0, 0])
            raise ValueError(f"{what}: X holds NaN or inf (row {row}); encode configs with Space.encode_many")
        return X, a

    @staticmethod
    def _check_y(y, n: int, what: str) -> np.ndarray:
        y = np.asarray(y, dtype=float).reshape(-1)
        if y.shape != (n,):
            raise ValueError(f"{what}: y has {y.size} values for {n} rows of X")
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise ValueError(
                f"{what}: y holds NaN or inf at rows {bad[:5].tolist()}; drop failed trials before fitting the GP"
            )
        return y

    # ---------------------------------------------------------------- fit
    def fit(self, X, active, y, *, optimize: bool = True) -> "GP":
        """Condition on ``(X, active, y)``; with ``optimize`` also fit the hyper-parameters first.

        Fewer than 2 observations: the GP stays at its prior (mean ``mean(y)``, std ``sqrt(signal_var)``).
        """
        X, a = self._check_X(X, active, "GP.fit")
        y = self._check_y(y, X.shape[0], "GP.fit")
        self._reset_data()
        self._y_obs, self._U_obs = y.copy(), self._emb(X, a)
        self._standardise()
        with _one_blas_thread():
            if optimize and self.n_obs >= 2:
                optimize_hyperparameters(self)
            self._refactor()
        return self

    def _standardise(self) -> None:
        y = self._y_obs
        self._y_mean = float(y.mean()) if y.size else 0.0
        sd = float(y.std()) if y.size >= 2 else 0.0
        self._y_std = sd if sd > 1e-12 * max(1.0, abs(self._y_mean)) else 1.0  # constant y: nothing to scale

    def _t_obs(self) -> np.ndarray:
        return (self._y_obs - self._y_mean) / self._y_std

    # ---------------------------------------------------------------- likelihood
    def _kf(self, UA: np.ndarray, UB: np.ndarray | None = None, ell=None, s2=None) -> np.ndarray:
        """Noise-free kernel matrix ``s2 * m52(r)`` between rows of UA and UB (UB None: UA with itself)."""
        ell = self._ell if ell is None else ell
        s2 = self._s2 if s2 is None else s2
        scale = 1.0 / ell[self._emb.col_dim]
        A = UA * scale
        r2 = sqdist_self(A) if UB is None else sqdist(A, UB * scale)
        return s2 * m52(r2)

    def log_marginal_likelihood(self, theta=None, *, eval_gradient: bool = False):
        """log p(t | X, theta) of the standardised observations (no prior; pending points excluded).

        ``theta`` (d + 2,) ``[log ell, log s2, log sn2]``, default the current ones. With ``eval_gradient``
        returns ``(lml, grad)``, the gradient with respect to ``theta``.
        """
        if self.n_obs == 0:
            raise ValueError("log_marginal_likelihood: the GP has no observations; call fit first")
        theta = self.theta if theta is None else np.asarray(theta, dtype=float)
        if theta.shape != (self.n_dims + 2,):
            raise ValueError(
                f"log_marginal_likelihood: theta has shape {theta.shape}, expected "
                f"({self.n_dims + 2},) = [log length scales, log signal_var, log noise_var]"
            )
        return log_likelihood(self, theta, self._U_obs, self._t_obs(), eval_gradient=eval_gradient)

    # ---------------------------------------------------------------- posterior
    def _refactor(self) -> None:
        """Recompute L and alpha over all conditioning rows from scratch."""
        obs = self.n_obs >= 2  # with fewer the GP stays at its prior
        self._U_rows = self._U_obs if obs else np.zeros((0, self._emb.p))
        self._t_rows = self._t_obs() if obs else np.zeros(0)
        self._n_pending = 0
        self._jitter = 0.0
        self._L = self._cholesky(self._kf(self._U_rows) if len(self._t_rows) else np.zeros((0, 0)))
        self._alpha = cho_solve((self._L, True), self._t_rows) if len(self._t_rows) else np.zeros(0)

    def _cholesky(self, Kf: np.ndarray) -> np.ndarray:
        """Lower factor of ``Kf + (sn2 + jitter) I``; grows the jitter (with a warning) until it factors."""
        n = Kf.shape[0]
        if n == 0:
            return np.zeros((0, 0))
        base = self._sn2
        jitter = self._jitter
        for _ in range(8):
            K = Kf.copy()
            K[np.diag_indices(n)] += base + jitter
            try:
                L = self._checked_cholesky(K)
            except LinAlgError:
                jitter = max(10.0 * jitter, 1e-10 * self._s2)
                continue
            if jitter > self._jitter:
                warnings.warn(
                    f"GP kernel matrix was not positive definite; added jitter {jitter:.1e} to its "
                    f"diagonal. Duplicate configs with noise_var=0 cause this; use a positive "
                    f"noise_var.",
                    GPFitWarning,
                    stacklevel=4,
                )
            self._jitter = jitter
            return L
        raise ValueError(
            "GP kernel matrix is not positive definite even with jitter "
            f"{jitter:.1e}; check X and the hyper-parameters (set_params) for extreme values"
        )

    def _checked_cholesky(self, K: np.ndarray) -> np.ndarray:
        """Lower Cholesky factor; a pivot below 1e-6 sqrt(s2) counts as failure too. Whether round-off makes
        the pivot of an exactly singular K tiny-positive or negative is luck; either way K is singular to 12
        digits, and the answer must not depend on whether rows came in one by one or all at once."""
        L = cholesky(K, lower=True)
        if np.min(np.diag(L)) ** 2 <= 1e-12 * self._s2:
            raise LinAlgError("kernel matrix is singular to working precision")
        return L

    def _append_rows(self, U_new: np.ndarray, t_new: np.ndarray) -> None:
        """Extend L by new rows (block Cholesky update, O(n^2 k)), then alpha."""
        if len(self._t_rows) == 0:
            self._U_rows, self._t_rows = U_new, t_new
            self._L = self._cholesky(self._kf(U_new))
        else:
            K12 = self._kf(self._U_rows, U_new)  # (n, k)
            K22 = self._kf(U_new)
            K22[np.diag_indices(len(t_new))] += self._sn2 + self._jitter
            L21 = solve_triangular(self._L, K12, lower=True).T  # (k, n)
            try:
                L22 = self._checked_cholesky(K22 - L21 @ L21.T)
            except LinAlgError:  # the new rows are (near) copies of old ones: refactor with jitter
                self._U_rows = np.vstack([self._U_rows, U_new])
                self._t_rows = np.concatenate([self._t_rows, t_new])
                self._L = self._cholesky(self._kf(self._U_rows))
            else:
                n, k = len(self._t_rows), len(t_new)
                L = np.zeros((n + k, n + k))
                L[:n, :n], L[n:, :n], L[n:, n:] = self._L, L21, L22
                self._L = L
                self._U_rows = np.vstack([self._U_rows, U_new])
                self._t_rows = np.concatenate([self._t_rows, t_new])
        self._alpha = cho_solve((self._L, True), self._t_rows)

    def condition_on(self, X, active, y) -> "GP":
        """Add observations with the hyper-parameters fixed; equals ``fit(all, optimize=False)``.

        The standardisation is recomputed over all observations (cheap: it only changes alpha, not L).
        """
        X, a = self._check_X(X, active, "GP.condition_on")
        y = self._check_y(y, X.shape[0], "GP.condition_on")
        return self.extend(X, a, np.concatenate([self._y_obs, y]), what="GP.condition_on")

    def extend(self, X, active, y_all, *, what: str = "GP.extend") -> "GP":
        """Add the observations ``X`` with the hyper-parameters fixed and replace every target by ``y_all``
        (the old ones, then the new; a monotone output warp moves them all); equals
        ``fit(all X, y_all, optimize=False)`` up to round-off: the factor grows by a block update, O(n^2 k),
        instead of a new O(n^3) factorisation."""
        if self._n_pending:
            raise ValueError(
                f"{what}: this GP holds pending points; condition the GP without pending "
                "points, then call with_pending again"
            )
        X, a = self._check_X(X, active, what)
        y_all = self._check_y(y_all, self.n_obs + X.shape[0], what)
        U = self._emb(X, a)
        had_rows = len(self._t_rows) > 0
        self._y_obs, self._U_obs = y_all.copy(), np.vstack([self._U_obs, U])
        self._standardise()
        if not had_rows:
            self._refactor()
            return self
        if len(U):
            self._append_rows(U, np.zeros(len(U)))
        self._t_rows = self._t_obs()
        self._alpha = cho_solve((self._L, True), self._t_rows)
        return self

    def with_pending(self, X_pending, active_pending) -> "GP":
        """A copy whose posterior also conditions on pending points observed at its own mean (GP-BUCB).

        The mean is unchanged and the variance shrinks near the pending points (Desautels, Krause & Burdick
        2014, "Parallelizing exploration-exploitation tradeoffs in Gaussian process bandit optimization").
        """
        X, a = self._check_X(X_pending, active_pending, "GP.with_pending")
        U = self._emb(X, a)
        new = copy.copy(self)  # arrays are replaced, never written in place, so sharing them is safe
        new._append_rows(U, self._mean_t(U))
        new._n_pending = self._n_pending + len(X)
        return new

    def _mean_t(self, U: np.ndarray) -> np.ndarray:
        if len(self._t_rows) == 0:
            return np.zeros(len(U))
        return self._kf(U, self._U_rows) @ self._alpha  # Alg. 2.1, line 4

    def predict(self, X, active, *, return_std: bool = True):
        """Posterior mean (m,) and, with ``return_std``, std (m,) of the latent objective, in y's units."""
        X, a = self._check_X(X, active, "GP.predict")
        U = self._emb(X, a)
        if not return_std:
            return self._y_mean + self._y_std * self._mean_t(U)
        return self._posterior(U)

    def _posterior(self, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._t_rows) == 0:
            V = np.zeros((0, len(U)))
            mean = np.full(len(U), self._y_mean)
        else:
            Ks = self._kf(U, self._U_rows)  # (m, n)
            mean = self._y_mean + self._y_std * (Ks @ self._alpha)  # Alg. 2.1, line 4
            V = solve_triangular(self._L, Ks.T, lower=True, check_finite=False)  # line 5, (n, m); finite by make
        var = np.maximum(self._s2 - np.einsum("nm,nm->m", V, V), 0.0)  # line 6; k(x, x) = s2
        return mean, np.sqrt(var) * self._y_std

    def kernel_matrix(self, XA, active_A, XB=None, active_B=None) -> np.ndarray:
        """Prior kernel ``s2 * m52(r)`` (no noise) between encodings; ``XB`` None means XA with itself."""
        XA, aA = self._check_X(XA, active_A, "GP.kernel_matrix")
        if XB is None:
            return self._kf(self._emb(XA, aA))
        XB, aB = self._check_X(XB, active_B, "GP.kernel_matrix")
        return self._kf(self._emb(XA, aA), self._emb(XB, aB))

    def __repr__(self) -> str:
        return (
            f"GP(d={self.n_dims}, n_obs={self.n_obs}, n_pending={self._n_pending}, "
            f"conditional={self.conditional!r}, signal_var={self._s2:.3g}, noise_var={self._sn2:.3g})"
        )
