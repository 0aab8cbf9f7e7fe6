import numpy as np
import pytest

from nas.errors import NasError, SpaceError
from nas.acq_maximizer import config_key
from nas.optimizer import Limit, Optimizer
from nas.score import MnasScore, WeightedScore
from nas.space import Categorical, Float, Integer, Space

SPACE = Space([Float("x", 0.0, 1.0), Categorical("kind", {"a": [Float("y", 0.0, 1.0)], "b": [Integer("n", 1, 8)]})])


def f(c):
    """Maximum 1.0 at x=0.3, kind=a, y=0.7; branch b tops out at 0.6."""
    base = -((c["x"] - 0.3) ** 2)
    return base + (1.0 - (c["y"] - 0.7) ** 2 if c["kind"] == "a" else 0.6 * c["n"] / 8)


def cost(c):
    return {"macs": 100 * (1 + c.get("n", 0)) + 1000 * c["x"], "params": 10}


def run(opt, n, fn=f, k=1):
    while opt.n_observed < n:
        for c in opt.ask(k):
            opt.tell(c, fn(c))
    return opt


def test_asked_configs_are_valid_distinct_and_pending():
    opt = Optimizer(SPACE, seed=0, n_warmup=3)
    seen = set()
    for _ in range(6):
        batch = opt.ask(3)
        assert len(batch) == 3
        for c in batch:
            SPACE.validate(c)
            assert config_key(c) not in seen
            seen.add(config_key(c))
        for c in batch:
            opt.tell(c, f(c))


def test_hard_limits_and_predicates_are_never_broken():
    opt = Optimizer(SPACE, seed=1, n_warmup=4, known=cost, constraints=[Limit("macs", 600), lambda c: c["x"] < 0.8])
    for _ in range(15):
        (c,) = opt.ask(1)
        assert cost(c)["macs"] <= 600 and c["x"] < 0.8
        opt.tell(c, f(c))


def test_a_constraint_nothing_meets_is_a_clear_error():
    opt = Optimizer(SPACE, seed=0, known=cost, constraints=[Limit("macs", 1)])
    with pytest.raises(NasError, match="no config satisfies the constraints"):
        opt.ask(1)


def test_tell_rejects_configs_outside_the_space_and_keeps_nan_from_the_gp():
    opt = Optimizer(SPACE, seed=0)
    with pytest.raises(SpaceError, match="x: 2.0 is outside"):
        opt.tell({"x": 2.0, "kind": "a", "y": 0.1}, 1.0)
    (c,) = opt.ask(1)
    opt.tell(c, float("nan"))
    assert opt.n_observed == 0
    opt.tell(SPACE.sample(seed=3), float("inf"))
    assert opt.n_observed == 0 and opt.best is None
    with pytest.raises(NasError, match="must be a number"):
        opt.tell(SPACE.sample(seed=4), "high")


def test_failed_configs_are_not_proposed_again():
    opt = Optimizer(Space([Categorical("c", list(range(6)))]), seed=0, n_warmup=2)
    told = []
    for _ in range(6):
        (c,) = opt.ask(1)
        assert c not in told
        told.append(c)
        opt.tell_failed(c, "crashed") if c["c"] % 2 else opt.tell(c, float(c["c"]))


def test_gp_ucb_beats_random_search_on_a_conditional_function():
    budget, seeds = 25, range(3)
    ours, rand = [], []
    for s in seeds:
        ours.append(run(Optimizer(SPACE, seed=s, n_warmup=6), budget).best[1])
        rand.append(max(f(c) for c in SPACE.sample_many(budget, seed=100 + s)))
    assert np.median(ours) > np.median(rand)
    assert np.median(ours) > 0.97  # optimum 1.0


def test_minimize_finds_the_minimum():
    space = Space([Float("x", -2.0, 2.0)])
    opt = run(Optimizer(space, direction="minimize", seed=0, n_warmup=4), 15, fn=lambda c: (c["x"] - 0.5) ** 2)
    cfg, val = opt.best
    assert val < 0.01 and abs(cfg["x"] - 0.5) < 0.1


def test_score_ceiling_prunes_configs_that_cannot_win():
    score = MnasScore(targets={"macs": 300.0}, alpha=-0.01, beta=-0.5)
    opt = Optimizer(SPACE, seed=0, n_warmup=3, known=cost, score=score, value_bounds=(-2.0, 1.0))
    run(opt, 3)
    best_score = max(opt.score_of([c], [v])[0] for c, v in opt._obs)
    for _ in range(5):
        (c,) = opt.ask(1)
        assert opt.score_of([c], [1.0])[0] > best_score
        opt.tell(c, f(c))
        best_score = max(best_score, opt.score_of([c], [f(c)])[0])


def test_warm_up_covers_the_costs_a_soft_score_penalises():
    # The warm-up fills the space: with a soft cost penalty it does not keep to the cheaper configs (the score's
    # ceiling prefers them before anything is known, and that warm-up left large networks untried).
    score = MnasScore(targets={"macs": 300.0}, alpha=-0.07, beta=-0.07)
    opt = Optimizer(Space([Float("x", 0.0, 1.0)]), seed=0, n_warmup=8, known=cost, score=score, value_bounds=(0, 1))
    xs = [c["x"] for c in opt.ask(8)]
    assert max(xs) > 0.8 and min(xs) < 0.2


def test_best_uses_the_score():
    score = WeightedScore(weights={"macs": 1.0})
    opt = Optimizer(SPACE, seed=0, known=cost, score=score)
    cheap = {"x": 0.0, "kind": "b", "n": 1}
    dear = {"x": 1.0, "kind": "a", "y": 0.7}
    opt.tell(cheap, 0.5)
    opt.tell(dear, 0.6)  # higher value, but log2(1100/200) more MACs
    assert opt.best[0] == cheap


def test_option_errors():
    with pytest.raises(NasError, match="direction"):
        Optimizer(SPACE, direction="up")
    with pytest.raises(NasError, match="needs known objectives"):
        Optimizer(SPACE, score=MnasScore(targets={"macs": 1.0}))
    with pytest.raises(NasError, match="k must be at least 1"):
        Optimizer(SPACE).ask(0)


# ------------------------------------------------------------------------------------------ output warping
def test_warped_and_plain_models_both_find_the_optimum():
    for warp in ("copula", "none"):
        opt = run(Optimizer(SPACE, seed=0, n_warmup=6, warp=warp), 25)
        assert opt.best[1] > 0.95, warp


def test_the_maximisers_cheap_key_has_config_keys_equality():
    import itertools

    from nas.acq_maximizer import _dedup_key, config_key

    values = [1, 1.0, True, 0, 0.0, -0.0, False, None, "a", "1", [1, 2], (1, 2), [1.0, 2], {"x": 1}, {"x": True}, 2.5]
    values.append([{"a": 1, "b": [0.5]}, {"b": [0.5], "a": 1}])
    for a, b in itertools.product(values, values):
        same_json = config_key({"v": a}) == config_key({"v": b})
        assert (_dedup_key({"v": a}) == _dedup_key({"v": b})) == same_json, (a, b)
    assert _dedup_key({"a": 1, "b": 2}) == _dedup_key({"b": 2, "a": 1})  # key order does not matter
