"""How the modelled objective (accuracy) combines with the known ones (MACs, parameters).

MACs and parameters are exact and free before training, so they are never learned: the GP models
accuracy alone, and a score is applied to it exactly, inside the acquisition (on the optimistic
bound of accuracy) and on every finished trial. Every score here is monotone increasing in accuracy,
so ``score(UCB(acc))`` is the optimistic score of a config.

Scores (``parse_score`` reads the CLI's ``--score`` spec):

    acc                                   accuracy alone
    mnas[:macs=T,params=P,alpha=a,beta=b] acc * prod_k (c_k / T_k) ** w_k, w_k = a if c_k <= T_k else b
                                          (Tan et al. 2019, MnasNet, Eq. 2; default a=-0.01, b=-0.07)
    weighted:macs=w1,params=w2[,ref_macs=R,ref_params=R]
                                          acc - w1*log2(macs/R1) - w2*log2(params/R2)

Why the default is ``mnas`` with a small alpha: a fixed log penalty on size (``weighted`` with 0.02 per
halving) rewards shrinking without end; in a quick measurement it drove searches on digits to 2k-parameter
networks with 86-94 % accuracy. MnasNet's soft constraint instead barely rewards being below the target
(alpha=-0.01: halving the MACs below the target is worth 0.7 % of accuracy, relative) and punishes going
over it (beta=-0.07: doubling above the target costs 4.7 %), so the search first finds accurate networks
and then prefers the smaller of two equally accurate ones. Hard limits (``--max-macs``, ``--max-params``)
are constraints, not scores: configs over them are never proposed nor trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from nas.errors import NasError
from nas.options import shown

KNOWN = ("macs", "params")


class Score:
    """``score(value, known) -> array``; ``known`` maps names in ``self.needs`` to arrays."""

    name = "score"
    needs: tuple = ()

    def __call__(self, value, known: dict | None = None) -> np.ndarray:
        raise NotImplementedError

    def spec(self) -> str:
        return self.name


class Identity(Score):
    name = "acc"

    def __call__(self, value, known=None):
        return np.asarray(value, dtype=float)


@dataclass
class MnasScore(Score):
    """MnasNet's soft constraint: ``acc * prod (c / T) ** w``, w = alpha below the target, beta above."""

    targets: dict = field(default_factory=dict)  # e.g. {"macs": 1e5}; objectives without a target are ignored
    alpha: float = -0.01  # below target: a tiny reward for being smaller, so accuracy stays first
    beta: float = -0.07  # above target: MnasNet's soft-constraint exponent
    name = "mnas"

    @property
    def needs(self):
        return tuple(self.targets)

    def __call__(self, value, known=None):
        value = np.asarray(value, dtype=float)
        factor = np.ones_like(value)
        for k, target in self.targets.items():
            c = np.maximum(np.asarray(known[k], dtype=float), 1e-12)  # guards log(0) only: latencies < 1 are real
            ratio = c / target
            factor = factor * ratio ** np.where(ratio <= 1.0, self.alpha, self.beta)
        return value * factor

    def spec(self):
        parts = [f"{k}={v:g}" for k, v in self.targets.items()] + [f"alpha={self.alpha:g}", f"beta={self.beta:g}"]
        return "mnas:" + ",".join(parts)


@dataclass
class WeightedScore(Score):
    """``acc - sum_k w_k * log2(c_k / ref_k)``: a fixed price per halving of each cost."""

    weights: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)
    name = "weighted"

    @property
    def needs(self):
        return tuple(self.weights)

    def __call__(self, value, known=None):
        out = np.asarray(value, dtype=float).copy()
        for k, w in self.weights.items():
            c = np.maximum(np.asarray(known[k], dtype=float), 1e-12)  # guards log(0) only: latencies < 1 are real
            out = out - w * np.log2(c / self.refs.get(k, 1.0))
        return out

    def spec(self):
        parts = [f"{k}={v:g}" for k, v in self.weights.items()]
        parts += [f"ref_{k}={v:g}" for k, v in self.refs.items()]
        return "weighted:" + ",".join(parts)


def _number(text: str, where: str) -> float:
    mult = {"k": 1e3, "m": 1e6, "g": 1e9}
    t = text.strip().lower()
    try:
        v = float(t[:-1]) * mult[t[-1]] if t and t[-1] in mult else float(t)
    except ValueError:
        raise NasError(f"{shown('score')} {where}: {text!r} is not a number (e.g. 2e5 or 200k)") from None
    if not math.isfinite(v):
        raise NasError(f"{shown('score')} {where}: {text!r} must be finite")
    return v


def parse_score(spec: str, *, default_targets: dict | None = None) -> Score:
    """Parse ``--score``: ``acc``, ``mnas[:macs=200k,params=50k,alpha=-0.01,beta=-0.07]`` or
    ``weighted:macs=0.02,params=0.02[,ref_macs=1e5,ref_params=1e4]``. ``default_targets`` fills the
    targets of ``mnas`` that the spec leaves out."""
    if not isinstance(spec, str) or not spec.strip():
        raise NasError(f"{shown('score')}: empty; use acc, mnas or weighted:macs=W,params=W")
    name, _, rest = spec.strip().partition(":")
    kv = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        k, eq, v = part.partition("=")
        if not eq:
            raise NasError(f"{shown('score')} {spec!r}: {part!r} should be key=value")
        kv[k.strip()] = _number(v, spec)
    if name == "acc":
        if kv:
            raise NasError(f"{shown('score')} {spec!r}: acc takes no options")
        return Identity()
    if name == "mnas":
        targets = {k: v for k, v in (default_targets or {}).items() if k in KNOWN}
        for k in list(kv):
            if k in KNOWN:
                targets[k] = kv.pop(k)
        alpha, beta = kv.pop("alpha", -0.01), kv.pop("beta", -0.07)
        if kv:
            raise NasError(
                f"{shown('score')} {spec!r}: unknown option {next(iter(kv))!r} (expected macs, params, alpha, beta)"
            )
        if any(t <= 0 for t in targets.values()):
            raise NasError(f"{shown('score')} {spec!r}: targets must be positive")
        return MnasScore(targets=targets, alpha=alpha, beta=beta)
    if name == "weighted":
        weights = {k: kv.pop(k) for k in KNOWN if k in kv}
        refs = {k[4:]: kv.pop(k) for k in list(kv) if k.startswith("ref_") and k[4:] in KNOWN}
        if kv:
            raise NasError(
                f"{shown('score')} {spec!r}: unknown option {next(iter(kv))!r} (expected macs, params, ref_macs, ref_params)"
            )
        if not weights:
            raise NasError(f"{shown('score')} {spec!r}: give at least one weight, e.g. weighted:macs=0.02")
        return WeightedScore(weights=weights, refs=refs)
    raise NasError(f"{shown('score')}: unknown score {name!r}; use acc, mnas or weighted")
