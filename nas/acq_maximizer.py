"""Maximise an acquisition function over a conditional mixed space (and pick a space-filling warm-up config).

The space has categorical, integer, float and conditional dimensions, so gradient methods do not apply
directly. We do what works on such spaces (SMAC's local search, Optuna's ``optim_mixed``):

1. score many seeded random candidates that satisfy the hard constraints, plus the neighbours of the
   best configs seen so far;
2. from the best few, hill-climb through ``space.neighbours`` (one-parameter moves: a numeric nudge, a
   category switched, a stage added or removed) while the acquisition improves; float values are refined
   by the small moves that neighbours include;
3. return the best config that is not excluded (already evaluated or pending).

Every candidate that breaks a hard constraint is dropped before it is scored, so none is ever proposed.
Before there is a model, ``farthest`` picks the candidate farthest from every config taken so far.
"""

from __future__ import annotations

import json
import math
from typing import Callable

import numpy as np

from nas.errors import NasError, SpaceExhausted
from nas.space import Space


def config_key(config: dict) -> str:
    """A canonical string for a config: equal configs give equal keys."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def sample_feasible(
    space: Space, n: int, rng: np.random.Generator, feasible: Callable[[dict], bool], *, max_tries: int | None = None
) -> list[dict]:
    """Up to ``n`` random configs that pass ``feasible``. Raises NasError when none is found at all."""
    max_tries = max_tries if max_tries is not None else max(50 * n, 2000)
    out, tries = [], 0
    while len(out) < n and tries < max_tries:
        c = space.sample(rng)
        tries += 1
        if feasible(c):
            out.append(c)
    if not out:
        raise NasError(
            f"no config satisfies the constraints: {tries} random configs from the space all broke "
            "them (limits, size caps or other hard constraints); loosen the limits or shrink the space"
        )
    return out


def maximize(
    space: Space,
    acquisition: Callable[[list], np.ndarray],
    *,
    rng: np.random.Generator,
    feasible: Callable[[dict], bool],
    exclude: set,
    seeds: list | None = None,
    n_random: int = 256,
    n_starts: int = 4,
    n_rounds: int = 6,
) -> tuple[dict, float]:
    """The config with the highest acquisition found, and its value.

    ``acquisition(configs) -> (len(configs),)`` is vectorised; ``exclude`` holds ``config_key``s that
    may not be returned; ``seeds`` are configs whose neighbourhoods are searched too (the incumbents).
    """
    cands = sample_feasible(space, n_random, rng, feasible)
    for s in seeds or []:
        cands.append(s)
        cands.extend(c for c in space.neighbours(s, rng, validate=False) if feasible(c))
    cands, keys = _unique(cands)
    values = np.asarray(acquisition(cands), dtype=float)
    best_c, best_v = None, -np.inf
    order = np.argsort(-values)
    for i in order:
        if config_key(cands[i]) not in exclude:
            best_c, best_v = cands[i], values[i]
            break
    # Hill-climb from the top starts (excluded ones too: their neighbours are new); a config met before is not
    # scored again. ``config_key`` (JSON) is made only for the few configs that beat the best, to check
    # ``exclude``; the rest are told apart by ``_dedup_key``, which is cheaper.
    seen = set(keys)
    for i in order[:n_starts]:
        cur, cur_v = cands[i], values[i]
        for _ in range(n_rounds):
            nbrs, nkeys = [], []
            for c in space.neighbours(cur, rng, validate=False):
                k = _dedup_key(c)
                if k not in seen and feasible(c):
                    nbrs.append(c)
                    nkeys.append(k)
            if not nbrs:
                break
            seen.update(nkeys)
            nv = np.asarray(acquisition(nbrs), dtype=float)
            for j in np.argsort(-nv):
                if nv[j] <= best_v:
                    break
                if config_key(nbrs[j]) not in exclude:
                    best_c, best_v = nbrs[j], nv[j]
                    break
            j = int(np.argmax(nv))
            if nv[j] <= cur_v:
                break
            cur, cur_v = nbrs[j], nv[j]
    if best_c is None:  # everything seen was excluded: fall back to fresh random configs
        for c in sample_feasible(space, n_random, rng, feasible):
            if config_key(c) not in exclude:
                return c, float(np.asarray(acquisition([c]))[0])
        raise SpaceExhausted("the space seems exhausted: every candidate found was already evaluated")
    return best_c, float(best_v)


def _unique(configs: list) -> tuple[list, list]:
    """The configs without repeats, and their ``_dedup_key``s."""
    seen, out, keys = set(), [], []
    for c in configs:
        k = _dedup_key(c)
        if k not in seen:
            seen.add(k)
            out.append(c)
            keys.append(k)
    return out, keys


def _dedup_key(v):
    """A hashable key with ``config_key``'s equality (equal JSON gives equal keys, and the reverse), about ten
    times cheaper to make: the maximiser makes one for every candidate it meets."""
    if isinstance(v, dict):
        items = []
        for k, x in v.items():  # the common leaves inline (same keys as the calls below make): the hot path
            c = x.__class__
            if c is float:
                items.append((k, (float, x, math.copysign(1.0, x))))
            elif c is int or c is str or c is bool:
                items.append((k, (c, x)))
            else:
                items.append((k, _dedup_key(x)))
        items.sort()
        return tuple(items)
    if isinstance(v, (list, tuple)):
        return (list, tuple(_dedup_key(x) for x in v))
    if isinstance(v, float):  # JSON writes -0.0 and 0.0 apart
        return (float, float(v), math.copysign(1.0, v))
    return (v.__class__, v)


def farthest(space: Space, candidates: list, taken: list) -> dict:
    """The candidate farthest from its nearest config in ``taken`` (the warm-up's space-filling design)."""
    if not taken:
        return candidates[0]
    xc, ac = space.encode_many(candidates)
    xt, at = space.encode_many(taken)
    d = _mixed_distance(xc, ac, xt, at, np.array([k == "cat" for k in space.kinds]))
    return candidates[int(np.argmax(d.min(axis=1)))]


def _mixed_distance(xa, aa, xb, ab, is_cat) -> np.ndarray:
    """(n, m) distances for the warm-up: |dx| on shared numeric dims, 1 per differing category or
    per dimension present in only one of the two configs."""
    both = aa[:, None, :] & ab[None, :, :]
    one = aa[:, None, :] ^ ab[None, :, :]
    diff = np.abs(xa[:, None, :] - xb[None, :, :])
    diff = np.where(is_cat, diff > 0.5, diff)
    return (diff * both).sum(-1) + one.sum(-1)
