"""Pareto dominance and the 2-D hypervolume.

Notation
    P      (n, m) array: n points, m objectives
    s      (m,) signs, +1 for an objective to minimise, -1 for one to maximise; Q = P * s is all-minimise
    q_j ≺ q_i   q_j dominates q_i: q_j <= q_i in every objective and q_j < q_i in at least one
    ref    reference point of the hypervolume; only the region between the front and ref counts

Equal points do not dominate each other, so duplicates on the front are all kept.
Rows with NaN are never on the front and dominate nothing (an unknown objective compares with nothing).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_CHUNK = 512  # rows compared at once: each (512, n) bool block is ~5 MB at n = 10k


def _as_minimise(points, maximize: Sequence[bool]) -> np.ndarray:
    P = np.asarray(points, dtype=float)
    if P.ndim != 2:
        raise ValueError(f"points must be a 2-D (n, m) array, got shape {P.shape}")
    if len(maximize) != P.shape[1]:
        raise ValueError(f"maximize has {len(maximize)} entries for {P.shape[1]} objectives; give one per column")
    s = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)  # (m,)
    return P * s  # Q: (n, m), smaller is better everywhere


def pareto_mask(points, *, maximize: Sequence[bool]) -> np.ndarray:
    """Boolean mask (n,) of the non-dominated rows of `points` (n, m). O(n² m) time, chunked memory.

    >>> pareto_mask([[0.9, 100], [0.8, 50], [0.7, 80]], maximize=[True, False]).tolist()
    [True, True, False]
    """
    Q = _as_minimise(points, maximize)  # (n, m)
    n = Q.shape[0]
    valid = ~np.isnan(Q).any(axis=1)  # (n,)
    Qv = Q[valid]  # (k, m): only valid rows can dominate
    mask = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(valid)
    for start in range(0, len(idx), _CHUNK):
        rows = Qv[start : start + _CHUNK]  # (c, m)
        le = np.ones((len(rows), len(Qv)), dtype=bool)  # (c, k): q_j <= q_i in every objective so far
        lt = np.zeros((len(rows), len(Qv)), dtype=bool)  # (c, k): q_j < q_i in some objective so far
        for d in range(Q.shape[1]):  # one objective at a time keeps temporaries 2-D and contiguous
            col, row = Qv[None, :, d], rows[:, d, None]
            le &= col <= row
            lt |= col < row
        mask[idx[start : start + _CHUNK]] = ~(le & lt).any(axis=1)
    return mask


def hypervolume_2d(points, ref: Sequence[float], maximize: Sequence[bool]) -> float:
    """Area dominated by `points` (n, 2) and bounded by `ref` (2,); points not better than ref add nothing.

    >>> hypervolume_2d([[1, 1]], ref=[0, 2], maximize=[True, False])
    1.0
    """
    Q = _as_minimise(points, maximize)
    if Q.shape[1] != 2:
        raise ValueError(f"hypervolume_2d needs 2 objectives, got {Q.shape[1]}")
    r = np.asarray(ref, dtype=float) * np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)  # (2,)
    Q = Q[(Q < r).all(axis=1)]  # NaN rows drop out here too
    if len(Q) == 0:
        return 0.0
    front = Q[pareto_mask(Q, maximize=[False, False])]
    front = front[np.lexsort((front[:, 1], front[:, 0]))]  # by x, then y; on a 2-D front y falls as x rises
    # Sweep in x: each front point owns the slab from its x to the next point's x, down to height ref_y.
    x_next = np.append(front[1:, 0], r[0])  # (f,)
    return float(np.sum((x_next - front[:, 0]) * (r[1] - front[:, 1])))
