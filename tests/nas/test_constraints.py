"""nas.constraints: limits and predicates, the known-objective cache, and the score ceiling's filter."""

import numpy as np
import pytest

from nas.constraints import Constraints, Limit
from nas.errors import NasError
from nas.score import Identity, MnasScore
from nas.space import Float, Integer, Space

SPACE = Space([Float("x", 0.0, 1.0), Integer("w", 1, 10)])


class Counting:
    def __init__(self):
        self.calls = 0

    def __call__(self, c):
        self.calls += 1
        return {"macs": 100.0 * c["w"]}


def test_limits_and_predicates_both_constrain_and_known_is_computed_once_per_config():
    known = Counting()
    cons = Constraints([Limit("macs", 500.0), lambda c: c["x"] < 0.5], known, Identity())
    assert cons.feasible({"x": 0.1, "w": 5})
    assert not cons.feasible({"x": 0.1, "w": 6})
    assert not cons.feasible({"x": 0.7, "w": 1})
    assert cons.feasible({"x": 0.1, "w": 5}) and known.calls == 3  # the first config was not counted again
    assert cons.limits() == {"macs": 500.0}


def test_a_limit_needs_known_objectives():
    with pytest.raises(NasError, match="needs known="):
        Constraints([Limit("macs", 1.0)], None, Identity())


def test_the_ceiling_keeps_only_configs_that_could_beat_the_incumbent():
    score = MnasScore(targets={"macs": 300.0}, alpha=-0.01, beta=-0.5)
    cons = Constraints([], Counting(), score, value_bounds=(0.0, 1.0))
    rng = np.random.default_rng(0)
    top = [({"x": 0.5, "w": 3}, 0.9)]
    best = cons.score_of([top[0][0]], [0.9])[0]
    worth = cons.candidate_filter(SPACE, rng, top, 1)
    for c in SPACE.sample_many(40, seed=1):
        assert worth(c) == (cons.ceiling([c])[0] > best)
    # no config could beat a perfect incumbent: plain feasibility instead of proposing nothing
    assert cons.candidate_filter(SPACE, rng, [({"x": 0.5, "w": 1}, 1.0)], 2) == cons.feasible
    # no ceiling without value bounds
    plain = Constraints([], Counting(), score)
    assert plain.candidate_filter(SPACE, rng, top, 1) == plain.feasible
