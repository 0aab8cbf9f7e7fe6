"""Exact hypervolume of a point set, any number of objectives, all minimised.

Notation and shapes
    Q      (n, m) points, every objective to be minimised (flip the sign of one to maximise first)
    r      (m,) reference point; only the region {y : q <= y <= r for some q in Q} counts
    HV(Q)  the Lebesgue measure of that region

Points not strictly better than ``r`` in every objective add nothing. The computation slices along the last
objective (the "hypervolume by slicing objectives" scheme of While et al. 2006): sorted by it, each point opens
a slab in which the (m-1)-dimensional hypervolume of the points so far is constant. O(n^(m-1) log n): exact and
fast for the fronts a search holds (tens of points, two or three objectives).

>>> hypervolume([[1.0, 2.0], [2.0, 1.0]], ref=[3.0, 3.0])
3.0
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def nondominated(Q) -> np.ndarray:
    """Mask (n,) of the rows of ``Q`` (n, m, all minimised) that no other row dominates; duplicates are kept."""
    Q = np.asarray(Q, dtype=float)
    le = (Q[None, :, :] <= Q[:, None, :]).all(-1)  # le[i, j]: q_j <= q_i everywhere
    lt = (Q[None, :, :] < Q[:, None, :]).any(-1)
    return ~(le & lt).any(axis=1)


def hypervolume(Q, ref: Sequence[float]) -> float:
    """Exact hypervolume of ``Q`` (n, m) against ``ref`` (m,), every objective minimised."""
    Q = np.asarray(Q, dtype=float)
    r = np.asarray(ref, dtype=float)
    if Q.ndim != 2 or Q.shape[1] != r.shape[0]:
        raise ValueError(f"hypervolume: points {Q.shape} and ref {r.shape} disagree; give (n, m) and (m,)")
    Q = Q[(Q < r).all(axis=1)]  # NaN rows drop out too
    if len(Q) == 0:
        return 0.0
    Q = Q[nondominated(Q)]
    return float(_hv(Q, r))


def _hv(Q: np.ndarray, r: np.ndarray) -> float:
    m = Q.shape[1]
    if m == 1:
        return float(r[0] - Q[:, 0].min())
    if m == 2:
        P = Q[np.lexsort((Q[:, 1], Q[:, 0]))]  # by the first objective, then the second
        best2 = np.minimum.accumulate(P[:, 1])  # the lowest second objective reached so far
        x_next = np.append(P[1:, 0], r[0])
        return float(np.sum((x_next - P[:, 0]) * (r[1] - best2)))
    order = np.argsort(Q[:, -1], kind="stable")
    P = Q[order]
    total = 0.0
    for i in range(len(P)):
        top = P[i + 1, -1] if i + 1 < len(P) else r[-1]
        depth = top - P[i, -1]
        if depth > 0:
            S = P[: i + 1, :-1]
            total += depth * _hv(S[nondominated(S)], r[:-1])
    return total


def hypervolume_improvement(q, Q, ref: Sequence[float]) -> float:
    """``HV(Q + {q}) - HV(Q)``: what one more point adds."""
    Q = np.asarray(Q, dtype=float).reshape(-1, len(ref))
    return hypervolume(np.vstack([Q, np.asarray(q, dtype=float)[None, :]]), ref) - hypervolume(Q, ref)
