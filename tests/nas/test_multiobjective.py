"""Optimizer(objectives=...): the Pareto search on a small black box, its limits and its bad input."""

import math

import numpy as np
import pytest

from nas import Limit, NasError, Optimizer
from nas.multiobjective import cost_features, parse_objectives, reference_point, value_reference, with_cost_scale
from nas.space import Categorical, Float, Integer, Space


def _space():
    return Space([Integer("w", 1, 64, log=True), Float("x", 0.0, 1.0), Categorical("act", ["relu", "tanh"])])


def _known(c):
    return {"macs": 1000.0 * c["w"] ** 2, "params": 10.0 * c["w"]}


def _acc(c):  # more width helps, with diminishing returns; x has an optimum at 0.3
    return 1.0 - 0.5 / (1 + c["w"]) - 0.2 * (c["x"] - 0.3) ** 2 - 0.05 * (c["act"] == "tanh")


def _run(opt, n, k=1):
    while opt.n_observed < n:
        for c in opt.ask(k):
            opt.tell(c, _acc(c))


@pytest.mark.parametrize("pareto,pending", [("ehvi", "variance"), ("ucb", "variance"), ("ehvi", "fantasy")])
def test_front_is_nondominated_and_limits_hold(pareto, pending):
    opt = Optimizer(
        _space(),
        seed=0,
        n_warmup=5,
        objectives={"acc": "maximize", "macs": "minimize"},
        known=_known,
        constraints=[Limit("macs", 1e6)],
        value_bounds=(0.0, 1.0),
        pareto=pareto,
        pending=pending,
    )
    asked = []
    while opt.n_observed < 20:
        batch = opt.ask(2)
        asked += batch
        for c in batch:
            opt.tell(c, _acc(c))
    assert all(_known(c)["macs"] <= 1e6 for c in asked)  # the hard limit: w <= 31
    front = opt.pareto_front()
    assert front and [v for _, v, _ in front] == sorted((v for _, v, _ in front), reverse=True)
    obs = [(c, _acc(c), _known(c)["macs"]) for c in asked]
    for _c, v, k in front:
        assert not any(v2 >= v and m2 <= k["macs"] and (v2 > v or m2 < k["macs"]) for _, v2, m2 in obs)
    # on a front sorted by accuracy, the cost falls too
    macs = [k["macs"] for _, _, k in front]
    assert macs == sorted(macs, reverse=True)


def test_pareto_search_spreads_over_costs_and_beats_random():
    from nas.hypervolume import hypervolume

    def hv(configs):
        Q = np.array([[-_acc(c), math.log(_known(c)["macs"])] for c in configs])
        return hypervolume(Q, [0.0, math.log(64**2 * 1000 * 1.1)])

    opt = Optimizer(
        _space(),
        seed=1,
        n_warmup=5,
        objectives={"acc": "maximize", "macs": "minimize"},
        known=_known,
        value_bounds=(0.0, 1.0),
    )
    _run(opt, 25)
    ours = hv([c for c, _ in opt._obs])
    rng = np.random.default_rng(1)
    rand = np.median([hv(_space().sample_many(25, seed=int(s))) for s in rng.integers(0, 1000, 5)])
    assert ours > rand
    assert len({_known(c)["macs"] for c, _, _ in opt.pareto_front()}) >= 4


def test_three_objectives_and_a_minimised_model():
    opt = Optimizer(
        _space(),
        seed=0,
        n_warmup=4,
        objectives={"err": "minimize", "macs": "minimize", "params": "minimize"},
        known=_known,
    )
    while opt.n_observed < 10:
        for c in opt.ask(1):
            opt.tell(c, 1.0 - _acc(c))
    assert opt.direction == "minimize"
    assert opt.best[1] == min(v for _, v in opt._obs)
    assert len(opt.pareto_front()) >= 1


def test_reference_point_from_bounds_and_limits():
    objs = parse_objectives({"acc": "maximize", "macs": "minimize"})
    sample = [{"macs": 10.0}, {"macs": 1000.0}]
    rv, rc = reference_point(objs, sample, limits={}, value_bounds=(0.0, 1.0))
    assert rv is None and rc[0] == pytest.approx(math.log(1100.0))  # the value's reference: from the data
    rv, _ = reference_point(objs, sample, limits={}, value_bounds=(0.0, 1.0), reference={"acc": 0.8})
    assert rv == 0.8  # a given one is kept as given
    _, rc = reference_point(objs, sample, limits={"macs": 500.0}, value_bounds=None)
    assert rc[0] == pytest.approx(math.log(550.0))
    lin = parse_objectives({"acc": "maximize", "macs": "minimize"}, log_costs=False)
    assert reference_point(lin, sample, limits={}, value_bounds=None)[1][0] == pytest.approx(1100.0)


def test_log_costs_are_offset_by_a_low_quantile_of_the_space():
    objs = parse_objectives({"acc": "maximize", "macs": "minimize", "params": "minimize"})
    sample = [{"macs": float(m), "params": 0.0} for m in [0] * 50 + list(range(1, 101))]
    scaled = with_cost_scale(objs, sample)
    off = float(np.quantile(np.arange(1, 101), 0.05))  # zeros left out; no positive params: no offset
    assert scaled.offsets == (pytest.approx(off), 0.0)
    U = scaled.costs([{"macs": 0.0, "params": 1.0}, {"macs": 99.0, "params": 1.0}])
    assert U[0, 0] == pytest.approx(math.log(off)) and U[1, 0] == pytest.approx(math.log(99.0 + off))
    # a zero cost no longer sits hundreds of log units below the rest
    assert U[1, 0] - U[0, 0] < math.log(100.0)
    lin = parse_objectives({"acc": "maximize", "macs": "minimize"}, log_costs=False)
    assert with_cost_scale(lin, sample) is lin


def test_cost_features_are_scaled_log_costs():
    sample = [{"macs": float(m), "params": 5.0} for m in [0] * 10 + list(range(1, 201))]
    f = cost_features(["macs", "params"], sample)
    F = f(sample)
    assert F.shape == (len(sample), 2) and np.isfinite(F).all()
    assert F[:, 0].min() == pytest.approx(0.0) and F[:, 0].max() == pytest.approx(1.0)  # spans [0, 1] over the space
    assert (np.diff(F[10:, 0]) > 0).all()  # monotone in the cost
    off = float(np.quantile(np.arange(1, 201), 0.05))  # the same offset as the log-cost scale
    assert F[50, 0] == pytest.approx((math.log(41 + off) - math.log(off)) / (math.log(200 + off) - math.log(off)))
    assert (F[:, 1] == 0).all()  # a constant cost: no spread, no division by zero
    assert f([]).shape == (0, 2)


def _size_only_problem():
    """Six slots, five operations each; the value depends on the known cost alone (a smooth function of it),
    not on which slots hold what: the case where the config encoding hides what the cost shows."""
    ops = ["none", "skip", "pool", "c1", "c3"]
    cost = {"none": 0.0, "skip": 0.0, "pool": 1.0, "c1": 4.0, "c3": 9.0}
    space = Space([Categorical(f"e{i}", ops) for i in range(6)])

    def known(c):
        return {"macs": sum(cost[c[f"e{i}"]] for i in range(6))}

    def acc(c):
        return 1.0 - 1.0 / (1.0 + known(c)["macs"])

    return space, known, acc


@pytest.mark.parametrize("pareto", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_known_costs_as_gp_inputs_predict_unseen_configs(seed, pareto):
    """In a Pareto search (on by default) and with a single score (off by default, on with cost_features=True)."""
    space, known, acc = _size_only_problem()
    train = space.sample_many(20, seed=seed)
    test = space.sample_many(300, seed=100 + seed)
    mode = {"objectives": {"acc": "maximize", "macs": "minimize"}} if pareto else {}
    errors = {}
    for feats in (True, False):
        opt = Optimizer(space, seed=seed, known=known, value_bounds=(0.0, 1.0), cost_features=feats, **mode)
        assert opt.surrogate.n_features == (1 if feats else 0)
        for c in train:
            opt.tell(c, acc(c))
        opt._fit()
        mean, _ = opt.surrogate.posterior()(test)
        pred = opt.surrogate.to_objective(mean)
        errors[feats] = float(np.median(np.abs(pred - np.array([acc(c) for c in test]))))
    assert errors[True] < 0.3 * errors[False]
    assert errors[True] < 0.01
    if not pareto:
        assert Optimizer(space, seed=seed, known=known).surrogate.n_features == 0  # the scalar default: off


def test_value_reference_is_the_median_and_moves_with_the_data():
    vals = np.array([0.1, 0.5, 0.6, 0.9])
    r = value_reference(vals)
    assert r == pytest.approx(0.55)
    assert (vals > r).sum() == 2  # half of what was seen adds volume, half does not
    assert value_reference(np.r_[vals, 0.95, 0.97]) > r  # better data raise the bar


def test_zero_cost_useless_configs_are_not_chased():
    # w = 0 costs nothing and is useless (chance accuracy) for every x: with the worst observation as the
    # reference and a 1e-300 floor under log(0), EHVI proposed such configs 6-8 times in 25 trials.
    space = Space([Integer("w", 0, 64), Float("x", 0.0, 1.0)])

    def acc(c):
        return 0.1 if c["w"] == 0 else 0.99 - 0.5 / (1 + c["w"]) - 0.2 * (c["x"] - 0.3) ** 2

    opt = Optimizer(
        space,
        seed=0,
        n_warmup=5,
        objectives={"acc": "maximize", "macs": "minimize"},
        known=lambda c: {"macs": 1000.0 * c["w"] ** 2},
        value_bounds=(0.0, 1.0),
    )
    asked = []
    while opt.n_observed < 25:
        for c in opt.ask(1):
            asked.append(c)
            opt.tell(c, acc(c))
    assert sum(c["w"] == 0 for c in asked) <= 3
    assert max(c["w"] for c in asked) >= 32  # and the accurate, costly end is searched


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"objectives": {"acc": "maximize", "latency": "minimize"}}, "latency"),
        ({"objectives": {"acc": "maximize", "macs": "smaller"}}, "minimize"),
        ({"objectives": {"acc": "maximize"}}, "at least one known"),
        ({"objectives": {"acc": "maximize", "macs": "minimize"}, "reference": {"macs": 1.0}}, "dominate"),
        ({"objectives": {"acc": "maximize", "macs": "minimize"}, "reference": {"acc": 1.0}}, "dominate"),
        ({"objectives": {"acc": "maximize", "macs": "minimize"}, "reference": {"flops": 1.0}}, "not an objective"),
        ({"objectives": {"acc": "maximize", "macs": "minimize"}, "pareto": "qehvi"}, "pareto must be"),
    ],
)
def test_bad_input_is_one_line(kwargs, match):
    with pytest.raises(NasError, match=match) as e:
        Optimizer(_space(), known=_known, value_bounds=(0.0, 1.0), **kwargs)
    assert "\n" not in str(e.value)


def test_scalar_path_is_untouched_by_the_hook():
    a = Optimizer(_space(), seed=3, n_warmup=4)
    b = Optimizer(_space(), seed=3, n_warmup=4, pareto="ucb", pending="fantasy")  # ignored without objectives
    for _ in range(8):
        ca, cb = a.ask(1)[0], b.ask(1)[0]
        assert ca == cb
        a.tell(ca, _acc(ca))
        b.tell(cb, _acc(cb))
    with pytest.raises(NasError, match="objectives"):
        a.pareto_front()


def test_use_cost_features_refuses_after_a_tell_or_without_known_costs():
    space, known, acc = _size_only_problem()
    opt = Optimizer(space, seed=0, known=known)
    opt.use_cost_features(["macs"])
    assert opt.surrogate.n_features == 1
    c = space.sample_many(1, seed=0)[0]
    opt.tell(c, acc(c))
    with pytest.raises(NasError, match="before the first tell"):
        opt.use_cost_features()
    with pytest.raises(NasError, match="known="):
        Optimizer(space, seed=0).use_cost_features()
    with pytest.raises(NasError, match="known="):  # asked for at construction: refused too, not ignored
        Optimizer(space, seed=0, cost_features=True)
