"""Exact expected hypervolume improvement when every objective but one is known before evaluation.

Notation and shapes (everything here in "better" orientation: the modelled value a is maximised, the known
costs u are minimised, already transformed, e.g. u = log(MACs))
    n        points on the current front; ``values`` (n,) their a, ``U`` (n, k) their k costs
    r_a      reference value of a; r_u (k,) reference costs: only a > r_a, u < r_u counts
    g^d      the grid of cost dimension d: -inf, the front's distinct costs below r_u[d] in order, r_u[d]
    cell     a box [g^1_j1, g^1_j1+1) x ... x [g^k_jk, g^k_jk+1) of that grid; C cells in all
    f_cell   the best a the front reaches at every cost v of the cell: max(r_a, max{a_i : u_i <= v}); it is
             constant on a cell because u_i <= v there iff u_i <= the cell's lower corner
    m        candidates, with known costs Uc (m, k) and a ~ N(mean, std^2) under the GP's posterior

For a candidate with costs u and value a, the region it adds to the dominated set is, over every cost point
v >= u (and below r_u), the interval of values (f(v), a]. So its hypervolume improvement is

    HVI(a, u) = sum over cells  vol(cell ∩ {v >= u}) * (a - f_cell)^+

a sum of hinge functions of the one uncertain number a, with weights known exactly. Its expectation is the
same sum of closed-form expected improvements (Jones et al. 1998, eq. 15):

    E[(a - f)^+] = (mean - f) Phi(z) + std phi(z),   z = (mean - f) / std

with no Monte Carlo and no integration over the costs. One proposal scores thousands of candidates as an
(m, C) product. ``hvi`` at a fixed a (e.g. the upper confidence bound) gives the UCB variant.

>>> g = CostGrid(values=[0.9], U=[[1.0]], ref_value=0.0, ref_costs=[2.0])
>>> round(float(g.hvi([0.95], [[0.5]])[0]), 6)  # cost 0.5..1 at height 0.95, plus 1..2 at height 0.95 - 0.9
0.525
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

_MAX_BLOCK = 2_000_000  # entries of one (candidates, cells) block: ~16 MB of float64
_SQRT_2PI = np.sqrt(2.0 * np.pi)


def expected_improvement(mean, std, f) -> np.ndarray:
    """``E[(a - f)^+]`` for ``a ~ N(mean, std^2)``, broadcast over the three; std 0 gives ``(mean - f)^+``."""
    mean, std, f = np.broadcast_arrays(*(np.atleast_1d(np.asarray(x, dtype=float)) for x in (mean, std, f)))
    d = mean - f
    out = np.maximum(d, 0.0)
    pos = std > 0
    s = std[pos]
    z = d[pos] / s
    out[pos] = d[pos] * ndtr(z) + s * np.exp(-0.5 * z * z) / _SQRT_2PI
    return out


class CostGrid:
    """The current front's cost grid and each cell's level ``f_cell`` (see the module docstring)."""

    def __init__(self, values, U, ref_value: float, ref_costs):
        values = np.asarray(values, dtype=float).reshape(-1)
        r_u = np.asarray(ref_costs, dtype=float).reshape(-1)
        U = np.asarray(U, dtype=float).reshape(len(values), len(r_u))
        keep = (values > ref_value) & (U < r_u).all(axis=1)  # points at or beyond the reference add nothing
        values, U = values[keep], U[keep]
        self.ref_value, self.ref_costs, self.k = float(ref_value), r_u, len(r_u)
        self.front_values, self.front_U = values, U
        # g^d: (c_d + 1,) edges of the c_d cells of dimension d
        self.edges = [np.concatenate([[-np.inf], np.unique(U[:, d]), [r_u[d]]]) for d in range(self.k)]
        shape = tuple(len(e) - 1 for e in self.edges)
        # below[i, cell]: front point i costs no more than the cell's lower corner in every dimension
        below = np.ones((len(values),) + shape, dtype=bool)
        for d, e in enumerate(self.edges):
            view = [1] * (self.k + 1)
            view[0], view[d + 1] = len(values), shape[d]
            below &= (U[:, d][:, None] <= e[:-1][None, :]).reshape(view)
        level = np.where(below, values.reshape((-1,) + (1,) * self.k), -np.inf).max(axis=0, initial=-np.inf)
        self.level = np.maximum(level, self.ref_value).reshape(-1)  # (C,) f_cell, C-order over the k dims
        self.shape = shape

    @property
    def n_cells(self) -> int:
        return int(self.level.size)

    def volumes(self, Uc) -> np.ndarray:
        """(m, C) volume of each cell that lies above each candidate's costs: vol(cell ∩ {v >= u})."""
        Uc = np.asarray(Uc, dtype=float).reshape(-1, self.k)
        vol = np.ones((len(Uc), 1))
        for d, e in enumerate(self.edges):
            lo = np.maximum(Uc[:, d][:, None], e[None, :-1])  # (m, c_d)
            side = np.clip(e[None, 1:] - lo, 0.0, None)
            vol = (vol[:, :, None] * side[:, None, :]).reshape(len(Uc), -1)  # C-order, like ``level``
        return vol

    def _blocks(self, m: int):
        step = max(1, _MAX_BLOCK // max(1, self.n_cells))
        for start in range(0, m, step):
            yield slice(start, min(m, start + step))

    def ehvi(self, mean, std, Uc) -> np.ndarray:
        """(m,) expected hypervolume improvement of candidates with costs ``Uc`` (m, k), a ~ N(mean, std^2)."""
        mean, std = np.asarray(mean, dtype=float).reshape(-1), np.asarray(std, dtype=float).reshape(-1)
        Uc = np.asarray(Uc, dtype=float).reshape(len(mean), self.k)
        out = np.zeros(len(mean))
        for b in self._blocks(len(mean)):
            vol = self.volumes(Uc[b])  # (mb, C)
            ei = expected_improvement(mean[b, None], std[b, None], self.level[None, :])  # (mb, C)
            out[b] = np.einsum("mc,mc->m", vol, ei)
        return out

    def hvi(self, a, Uc) -> np.ndarray:
        """(m,) exact hypervolume improvement of candidates with values ``a`` (m,) and costs ``Uc``."""
        a = np.asarray(a, dtype=float).reshape(-1)
        return self.ehvi(a, np.zeros_like(a), Uc)

    def hypervolume(self) -> float:
        """The front's own hypervolume (C cells: the dominated part of each is ``f_cell - r_a`` high)."""
        lo = [np.where(np.isinf(e[:-1]), e[1:], e[:-1]) for e in self.edges]  # the first cell has no front
        widths = [e[1:] - low for e, low in zip(self.edges, lo)]
        vol = np.ones(1)
        for w in widths:
            vol = (vol[:, None] * w[None, :]).reshape(-1)
        return float(np.sum(vol * (self.level - self.ref_value)))
