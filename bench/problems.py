"""Benchmark problems, each both as a ``nas.space.Space`` + function and as an Optuna define-by-run objective.

The conditional problem (``conditional_space`` / ``conditional_value``) has a known optimum and more
conditional than unconditional dimensions, so a method that ignores the conditional structure (Optuna's
``GPSampler`` falls back to independent sampling for parameters outside the intersection search space)
sees most of the problem as noise.

Notation
    x in [0, 1], n in {1..8}      shared by every family
    family in {a, b, c}           each family brings its own 3-5 parameters, one of them a nested choice
    d^2                           a family's squared, width-scaled distance to its optimum
    f = top_family * exp(-d^2/2)  so f <= top_family, with equality only at that family's optimum

    top_a = 1.0 (the global maximum, reached only through the nested choice a_mode = boost),
    top_b = 0.85 and top_c = 0.7 (broad decoys: easy to get near, never above 0.85).

    >>> conditional_value(CONDITIONAL_OPTIMUM) == CONDITIONAL_MAX
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from nas.space import Categorical, Constant, Float, Integer, Space

CONDITIONAL_MAX = 1.0

# The one config at which f = 1.0: every term of d^2 for family a is exactly zero there (log10(0.01) is -2.0
# exactly in IEEE arithmetic, so no rounding keeps it below 1).
CONDITIONAL_OPTIMUM = {"x": 0.3, "n": 6, "family": "a", "a_lr": 0.01, "a_depth": 7, "a_mode": "boost", "a_gain": 0.8}


def conditional_space() -> Space:
    """16 encoded dims, 13 of them conditional (every a_/b_/c_ parameter)."""
    return Space(
        [
            Float("x", 0.0, 1.0),
            Integer("n", 1, 8),
            Categorical(
                "family",
                {
                    "a": [
                        Float("a_lr", 1e-4, 1e-1, log=True),
                        Integer("a_depth", 1, 10),
                        Categorical("a_mode", {"plain": [], "boost": [Float("a_gain", 0.0, 1.0)]}),
                    ],
                    "b": [
                        Float("b_u", 0.0, 1.0),
                        Float("b_v", 0.0, 1.0),
                        Integer("b_k", 0, 6),
                        Categorical("b_kind", ["p", "q", "r"]),
                    ],
                    "c": [
                        Float("c_w", -1.0, 1.0),
                        Integer("c_m", 1, 5),
                        Categorical("c_opt", {"s": [Float("c_s", 0.0, 1.0)], "t": [Integer("c_t", 0, 4)]}),
                    ],
                },
            ),
        ],
        name="conditional",
    )


def _sq(v: float, target: float, width: float) -> float:
    return ((v - target) / width) ** 2


def conditional_value(c: dict) -> float:
    """f(config) in (0, 1]; see the module docstring. Widths set how hard each family's peak is to hit."""
    fam = c["family"]
    if fam == "a":  # narrow in every parameter: the prize
        d2 = (
            _sq(c["x"], 0.3, 0.2)
            + _sq(c["n"], 6, 2.5)
            + _sq(math.log10(c["a_lr"]), -2.0, 0.6)
            + _sq(c["a_depth"], 7, 3.0)
        )
        d2 += _sq(c["a_gain"], 0.8, 0.25) if c["a_mode"] == "boost" else 1.0
        top = 1.0
    elif fam == "b":  # broad: a decoy most random configs of b score well on
        d2 = (
            _sq(c["x"], 0.7, 0.35)
            + _sq(c["n"], 2, 4.0)
            + _sq(c["b_u"], 0.2, 0.5)
            + _sq(c["b_v"], 0.8, 0.5)
            + _sq(c["b_k"], 3, 4.0)
            + {"p": 0.0, "q": 0.5, "r": 1.5}[c["b_kind"]]
        )
        top = 0.85
    elif fam == "c":
        d2 = _sq(c["x"], 0.5, 0.4) + _sq(c["n"], 4, 3.0) + _sq(c["c_w"], -0.4, 0.6) + _sq(c["c_m"], 4, 2.0)
        d2 += _sq(c["c_s"], 0.5, 0.4) if c["c_opt"] == "s" else _sq(c["c_t"], 1, 2.0) + 0.3
        top = 0.7
    else:
        raise ValueError(f"family must be a, b or c, got {fam!r}")
    return top * math.exp(-0.5 * d2)


# ------------------------------------------------------------------------------------ Optuna bridge
def suggest(trial, space: Space) -> dict:
    """The config an Optuna ``trial`` suggests for ``space``, define-by-run: a categorical's branch
    parameters are suggested only when that choice is taken, so they are conditional for Optuna too.
    Handles Float, Integer, Categorical and Constant at the top level (what the benchmark spaces use);
    parameter names must be unique across branches (Optuna keys parameters by name)."""
    return _suggest_level(trial, space.root)


def _suggest_level(trial, level) -> dict:
    cfg: dict = {}
    for p in level.params:
        if isinstance(p, Float):
            cfg[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
        elif isinstance(p, Integer):
            cfg[p.name] = trial.suggest_int(p.name, p.low, p.high, step=p.step, log=p.log)
        elif isinstance(p, Categorical):
            cfg[p.name] = trial.suggest_categorical(p.name, p.choices)
            cfg.update(_suggest_level(trial, p.branches[p.index(cfg[p.name])]))
        elif isinstance(p, Constant):
            cfg[p.name] = p.value
        else:
            raise TypeError(f"suggest: {type(p).__name__} {p.name!r} is not supported by the Optuna bridge")
    return cfg


def optuna_distributions(space: Space, config: dict) -> dict:
    """``{name: optuna distribution}`` of the parameters present in ``config`` (for ``create_trial``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}

    def walk(level):
        for p in level.params:
            if isinstance(p, Float):
                out[p.name] = FloatDistribution(p.low, p.high, log=p.log)
            elif isinstance(p, Integer):
                out[p.name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, Categorical):
                out[p.name] = CategoricalDistribution(p.choices)
                walk(p.branches[p.index(config[p.name])])

    walk(space.root)
    return out


def conditional_objective(trial) -> float:
    """Optuna define-by-run objective of the conditional problem (maximise)."""
    return conditional_value(suggest(trial, conditional_space()))


# ------------------------------------------------------------------------------------ problem records
@dataclass
class Problem:
    """A maximisation problem: ``evaluate(config) -> {"value": ..., other columns}``; ``best`` is the
    exact maximum of ``value``."""

    name: str
    space: Space
    evaluate: Callable[[dict], dict]
    best: float


def conditional_problem() -> Problem:
    return Problem("conditional", conditional_space(), lambda c: {"value": conditional_value(c)}, CONDITIONAL_MAX)
