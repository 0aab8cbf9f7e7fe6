"""Rungs, the report() API, the ASHA scheduler (against a brute-force restatement) and the GP over
(config, resource) in the Optimizer, tested by properties."""

import json
import math
import random

import numpy as np
import pytest
from scipy.stats import spearmanr

from nas.errors import NasError
from nas.fidelity import ASHA, PAUSED, RUNNING, Fidelity, Reporter, blend_keys, read_live
from nas.optimizer import Optimizer
from nas.space import Categorical, Float, Space


# ------------------------------------------------------------------------------------------- rungs
@pytest.mark.parametrize(
    "lo, hi, eta, rungs",
    [
        (1, 27, 3, (1, 3, 9, 27)),
        (1, 20, 3, (1, 3, 9, 20)),
        (5, 5, 3, (5,)),
        (1, 10, 2, (1, 2, 4, 8, 10)),
        (3, 4, 3, (3, 4)),
        (2, 18, 3, (2, 6, 18)),
    ],
)
def test_rungs(lo, hi, eta, rungs):
    assert Fidelity(lo, hi, eta).rungs == rungs


def test_rung_properties_on_a_grid():
    for lo in (1, 2, 3, 7):
        for hi in range(lo, 200, 7):
            for eta in (2, 3, 4, 5):
                r = Fidelity(lo, hi, eta).rungs
                assert r[0] == lo and r[-1] == hi and all(isinstance(x, int) for x in r)
                assert all(b > a for a, b in zip(r, r[1:]))
                # r_k = lo * eta^k exactly, below the cap
                assert list(r[:-1]) == [lo * eta**k for k in range(len(r) - 1)]
                assert r[-1] <= lo * eta ** (len(r) - 1)
    f = Fidelity(0.1, 1.0, 3)
    assert np.allclose(f.rungs, (0.1, 0.3, 0.9, 1.0))


def test_scaled_resource_is_log_scale_in_unit_interval():
    f = Fidelity(1, 27, 3)
    assert [round(f.scaled(r), 12) for r in f.rungs] == [0.0, round(1 / 3, 12), round(2 / 3, 12), 1.0]
    assert Fidelity(4, 4).scaled(4) == 1.0
    assert f.rung_index(9) == 2
    with pytest.raises(NasError, match="not a rung"):
        f.rung_index(5)


@pytest.mark.parametrize(
    "args, needle",
    [
        ((0, 5), "must be positive"),
        ((-1, 5), "must be positive"),
        ((5, 3), "above max resource"),
        ((1, 9, 1), "eta must be at least 2"),
        ((1, 9, 1.9), "eta must be at least 2"),
        ((True, 9), "finite number"),
        ((1, float("nan")), "finite number"),
        (("1", 9), "finite number"),
    ],
)
def test_bad_fidelity_is_one_line_nas_error(args, needle):
    with pytest.raises(NasError, match=needle) as e:
        Fidelity(*args)
    assert "\n" not in str(e.value)


def test_fidelity_round_trips_through_a_dict():
    f = Fidelity(1, 20, 3)
    assert Fidelity.from_dict(json.loads(json.dumps(f.to_dict()))) == f


# ---------------------------------------------------------------------------------------- reporter
def test_reporter_goes_on_until_resource_to_then_refuses_more(tmp_path):
    live = tmp_path / "t" / "live.json"
    rep = Reporter(3, 9, live_path=live)
    answers = [rep(e, 0.1 * e) for e in range(4, 10)]
    assert answers == [True] * 5 + [False]
    assert rep.curve == [(e, pytest.approx(0.1 * e)) for e in range(4, 10)]
    assert read_live(live)["resource"] == 9 and read_live(live)["resource_to"] == 9
    with pytest.raises(NasError, match="told to stop"):
        rep(10, 1.0)


@pytest.mark.parametrize("first, second", [(5, 5), (5, 4)])
def test_reporter_refuses_a_resource_that_does_not_increase(first, second):
    rep = Reporter(0, 9)
    assert rep(first, 0.5)
    with pytest.raises(NasError, match="must increase"):
        rep(second, 0.6)
    assert rep.curve == [(first, 0.5)]  # nothing recorded is lost


def test_reporter_refuses_resource_at_or_below_its_start_and_bad_ranges():
    with pytest.raises(NasError, match="must increase"):
        Reporter(3, 9)(3, 0.1)
    with pytest.raises(NasError, match="must be above"):
        Reporter(9, 9)
    with pytest.raises(NasError, match="resource_to"):
        Reporter(0)


# -------------------------------------------------------------------------------------------- ASHA
def brute_force_promotion(values, state, reached, keys, eta, top):
    """An independent statement of Li et al.'s rule: a trial paused at rung k is promotable iff fewer than
    floor(n_k / eta) trials at rung k rank strictly above it and fewer than floor(n_k / eta) went on from
    rung k already; take the highest such rung, then its best."""
    for k in range(top - 1, -1, -1):
        members = list(values[k])
        n_top = math.floor(len(members) / eta)
        if sum(1 for t in members if reached[t] > k or state[t] == RUNNING) >= n_top:
            continue

        key = keys[k]
        ok = [
            t
            for t in members
            if state[t] == PAUSED and reached[t] == k and sum(1 for u in members if (key[u], -u) > (key[t], -t)) < n_top
        ]
        if ok:
            return max(ok, key=lambda t, key=key: (key[t], -t)), k + 1
    return None


def test_asha_matches_brute_force_on_random_small_cases():
    rng = random.Random(0)
    checked = promoted = 0
    for case in range(300):
        fid = Fidelity(1, rng.choice([3, 9, 27]), rng.choice([2, 3]))
        sched = ASHA(fid)
        ids = list(range(1, rng.randint(2, 14)))
        for t in ids:
            sched.start(t)
        # each trial reaches a random rung with random values (ties included: values on a coarse grid)
        for t in ids:
            for k in range(rng.randint(0, fid.top)):
                sched.record(t, k, rng.randint(0, 4) / 4)
            if sched.reached[t] >= 0 and rng.random() < 0.2:
                sched.resume(t)  # running again: not promotable
        keys = [
            {t: (rng.random() if case % 2 else v) for t, v in sched.values[k].items()} for k in range(len(fid.rungs))
        ]
        got = sched.next_promotion(lambda k, tids, keys=keys: [keys[k][t] for t in tids])
        want = brute_force_promotion(sched.values, sched.state, sched.reached, keys, fid.eta, fid.top)
        assert got == want, (case, got, want)
        checked += 1
        promoted += got is not None
    assert checked == 300 and 50 < promoted < 300  # both outcomes were exercised


def test_asha_never_waits_for_a_rung_to_fill():
    sched = ASHA(Fidelity(1, 9, 3))
    for t, v in [(1, 0.9), (2, 0.1)]:
        sched.start(t)
        sched.record(t, 0, v)
    assert sched.next_promotion() is None  # 2 < eta at rung 0: start a new config instead of waiting
    sched.start(3)
    sched.record(3, 0, 0.5)
    assert sched.next_promotion() == (1, 1)
    sched.resume(1)
    assert sched.next_promotion() is None  # the top third is running already


def test_asha_promotes_by_the_rank_it_is_given_not_the_raw_value():
    sched = ASHA(Fidelity(1, 9, 3))
    for t, v in [(1, 0.9), (2, 0.5), (3, 0.1)]:
        sched.start(t)
        sched.record(t, 0, v)
    assert sched.next_promotion() == (1, 1)
    prediction = {1: 0.2, 2: 0.3, 3: 0.8}  # e.g. the GP's top-rung prediction disagrees with rung 0
    assert sched.next_promotion(lambda k, tids: [prediction[t] for t in tids]) == (3, 1)


def test_asha_minimize_and_highest_rung_first():
    sched = ASHA(Fidelity(1, 9, 3), maximize=False)
    for t in range(1, 10):
        sched.start(t)
        sched.record(t, 0, t)
    for t in (1, 2, 3):
        sched.record(t, 1, 10 - t)
    assert sched.next_promotion() == (3, 2)  # rung 1 before rung 0; lowest loss there is trial 3
    with pytest.raises(NasError, match="rungs must increase"):
        sched.record(3, 1, 0.0)


def _order(keys):
    return sorted(range(len(keys)), key=lambda i: (-keys[i], i))


def _paused_asha(seed: int, maximize: bool = True):
    """An ASHA over Fidelity(1, 27, 3) with random trials paused at random rungs, some running, one failed."""
    rng = random.Random(seed)
    sched = ASHA(Fidelity(1, 27, 3), maximize=maximize)
    for tid in range(rng.randint(1, 12)):
        sched.start(tid)
        for k in range(rng.randint(0, 3)):  # 0..2 rungs recorded: paused below the top
            sched.record(tid, k, rng.random())
    if rng.random() < 0.3:
        sched.resume(next(iter(sched.state)))  # one goes on: running, not paused
    return sched, rng


def test_finishing_and_exhausted_promotions_match_brute_force_on_random_small_cases():
    def best_of(can, keys):  # the best key among the candidates, on to its next rung
        best = max(can, key=lambda t: (keys[t], sched.reached[t], -t))
        return best, sched.reached[best] + 1

    for seed in range(300):
        sched, rng = _paused_asha(seed, maximize=seed % 2 == 0)
        left = rng.choice([0.5, 5, 18, 24, 26, 27, 40])
        keys = {t: rng.random() for t in sched.state}

        def key(tids, keys=keys):
            return [keys[t] for t in tids]

        rungs = sched.fidelity.rungs
        paused = [t for t, st in sched.state.items() if st == PAUSED and 0 <= sched.reached[t] < sched.fidelity.top]
        can = [t for t in paused if 27 - rungs[sched.reached[t]] <= left]  # can still reach the top within left
        got = sched.finishing_promotion(left, key)
        assert got == (None if left >= 27 or not can else best_of(can, keys))
        # No new config can start: the best paused trial below the top goes on, whatever the 1/eta cap.
        assert sched.exhausted_promotion(key) == (best_of(paused, keys) if paused else None)


def _four_paused() -> ASHA:
    """Four paused trials, losses by rung: 0.9 | 0.5, 0.6 | 0.5, 0.4 | 0.1 (rungs 1/3/9/27)."""
    sched = ASHA(Fidelity(1, 27, 3), maximize=False)
    for tid, rungs in enumerate([[0.9], [0.5, 0.6], [0.5, 0.4], [0.1]]):
        sched.start(tid)
        for k, v in enumerate(rungs):
            sched.record(tid, k, v)
    return sched


def test_finishing_promotion_without_a_model_prefers_the_highest_rung_then_the_value():
    sched = _four_paused()
    assert sched.finishing_promotion(27) is None  # a new trial can still reach the top: plain ASHA decides
    assert sched.finishing_promotion(26) == (2, 2)  # every paused trial fits: the highest rung, the lower loss
    assert sched.finishing_promotion(24) == (2, 2)  # only rung-1 trials (24 epochs to go) fit
    sched.fail(2)
    sched.fail(1)
    assert sched.finishing_promotion(24) is None and sched.finishing_promotion(26) == (3, 1)  # rung 0: 0.1 < 0.9
    assert sched.finishing_promotion(23) is None  # nothing can reach the top any more


def test_exhausted_promotion_goes_past_the_cap_and_without_a_model_prefers_the_highest_rung():
    sched = _four_paused()
    assert sched.next_promotion() is None  # the cap: 4 trials at rung 0 and 2 at rung 1 allow no more
    assert sched.exhausted_promotion() == (2, 2)
    for t in (0, 1, 2, 3):
        sched.fail(t)
    assert sched.exhausted_promotion() is None


def test_blend_keys_interpolates_between_own_value_and_model_ranking():
    rng = random.Random(1)
    for _ in range(200):
        n = rng.randint(1, 9)
        own = [rng.randint(0, 3) / 3 for _ in range(n)]  # ties included
        model = [rng.random() if rng.random() > 0.1 else math.nan for _ in range(n)]
        # weight 1: the model's order (NaN last), ties broken by the own value; weight 0: the reverse
        m = [v if math.isfinite(v) else -math.inf for v in model]
        assert _order(blend_keys(own, model, 1.0)) == sorted(range(n), key=lambda i: (-m[i], -own[i], i))
        assert _order(blend_keys(own, model, 0.0)) == sorted(range(n), key=lambda i: (-own[i], -m[i], i))
        mixed = blend_keys(own, model, 0.5)
        for i in range(n):  # a trial ahead of another on both keys stays ahead in the blend
            for j in range(n):
                if own[i] > own[j] and m[i] > m[j]:
                    assert mixed[i] > mixed[j]


def test_blend_keys_lets_own_evidence_overrule_a_confident_model():
    # Six trials at a rung: the model ranks trial 0 first, but its own value is the worst; trial 5 is second by
    # the model and best by its own value. The prediction alone (weight 1) promotes 0; an even blend (the
    # default) promotes 5.
    own = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9]
    model = [0.9, 0.1, 0.2, 0.3, 0.4, 0.8]
    assert _order(blend_keys(own, model, 1.0))[0] == 0 and _order(blend_keys(own, model))[0] == 5
    assert _order(blend_keys([0.1, 0.7], [0.5, 0.5]))[0] == 1  # a tie of the model goes to the own value
    with pytest.raises(NasError, match="predictions"):
        blend_keys([1.0, 2.0], [1.0])


# ------------------------------------------------------------------------- GP over (config, resource)
SPACE = Space([Float("x", 0.0, 1.0), Float("y", 0.0, 1.0)])


def quality(c):
    return 1.0 - (c["x"] - 0.3) ** 2 - 0.5 * (c["y"] - 0.6) ** 2


def curve(c, r, top=27):
    """A learning curve: saturating in the resource, its level set by the config."""
    return quality(c) * (1 - 0.6 * math.exp(-3 * r / top))


def test_top_rung_prediction_ranks_configs_seen_only_at_low_rungs():
    opt = Optimizer(SPACE, seed=1, n_warmup=1, fidelity=Fidelity(1, 27, 3))
    rng = np.random.default_rng(0)
    train = [{"x": float(a), "y": float(b)} for a, b in rng.random((30, 2))]
    for c in train:
        opt.tell(c, curve(c, 1), resource=1)
    for c in train[:4]:
        for r in (3, 9, 27):
            opt.tell(c, curve(c, r), resource=r)
    test = [{"x": float(a), "y": float(b)} for a, b in rng.random((40, 2))]
    pred = opt.predict_top(test)
    rho = spearmanr(pred, [curve(c, 27) for c in test]).statistic
    assert rho > 0.9, rho
    # and in the right units: within the range of the top-rung values (not the rung-1 level)
    top_vals = [curve(c, 27) for c in test]
    assert np.median(np.abs(pred - top_vals)) < 0.1, np.median(np.abs(pred - top_vals))


def test_top_rung_level_is_learnt_from_one_full_curve():
    """30 configs seen at rung 1 only, one trained to the top: predictions at the top rung for unseen
    configs must sit at the top-rung level (the resource trend), not fall back to the rung-1 level.
    Without the trend (a constant prior mean) this measured rho 0.50-0.96, median error 0.12-0.30."""
    errs, rhos = [], []
    for seed in range(3):
        opt = Optimizer(SPACE, seed=1, n_warmup=1, fidelity=Fidelity(1, 27, 3))
        rng = np.random.default_rng(seed)
        train = [{"x": float(a), "y": float(b)} for a, b in rng.random((30, 2))]
        for c in train:
            opt.tell(c, curve(c, 1), resource=1)
        for r in (3, 9, 27):
            opt.tell(train[0], curve(train[0], r), resource=r)
        test = [{"x": float(a), "y": float(b)} for a, b in rng.random((40, 2))]
        pred, truth = opt.predict_top(test), np.array([curve(c, 27) for c in test])
        errs.append(float(np.median(np.abs(pred - truth))))
        rhos.append(spearmanr(pred, truth).statistic)
    assert np.mean(errs) < 0.1 and min(rhos) > 0.9, (errs, rhos)


def test_low_rung_evidence_moves_the_top_rung_prediction():
    def fitted(extra):
        opt = Optimizer(SPACE, seed=0, n_warmup=1, fidelity=Fidelity(1, 27, 3), warp="none")
        for i, (a, b) in enumerate(np.random.default_rng(3).random((12, 2))):
            c = {"x": float(a), "y": float(b)}
            opt.tell(c, curve(c, 1), resource=1)
            if i < 3:
                opt.tell(c, curve(c, 27), resource=27)
        for v in extra:
            opt.tell(probe, v, resource=1)
        return float(opt.predict_top([probe])[0])

    probe = {"x": 0.95, "y": 0.05}
    base = fitted([])
    assert fitted([0.9]) > base + 0.05  # a high rung-1 value lifts the top-rung prediction ...
    assert fitted([0.05]) < base - 0.05  # ... a low one lowers it


def test_best_counts_only_the_top_rung_and_tell_defaults_to_it():
    opt = Optimizer(SPACE, seed=0, n_warmup=2, fidelity=Fidelity(1, 9, 3))
    a, b = {"x": 0.1, "y": 0.1}, {"x": 0.9, "y": 0.9}
    opt.tell(a, 0.99, resource=1)
    assert opt.best is None
    opt.tell(b, 0.5)  # no resource: a full-budget value
    assert opt.best == (b, 0.5)
    opt.tell(a, 0.7, resource=9)
    assert opt.best == (a, 0.7)


def test_resource_errors():
    plain = Optimizer(SPACE, seed=0)
    with pytest.raises(NasError, match="fidelity"):
        plain.tell({"x": 0.1, "y": 0.1}, 0.5, resource=3)
    with pytest.raises(NasError, match="fidelity"):
        plain.predict_top([{"x": 0.1, "y": 0.1}])
    opt = Optimizer(SPACE, seed=0, fidelity=Fidelity(1, 9, 3))
    for bad in (0, 10, "3", True):
        with pytest.raises(NasError, match=r"resource must lie in \[1, 9\]"):
            opt.tell({"x": 0.1, "y": 0.1}, 0.5, resource=bad)
    with pytest.raises(NasError, match="Fidelity"):
        Optimizer(SPACE, fidelity=(1, 9))


def test_ucb_proposals_are_scored_at_the_top_rung():
    """Configs whose rung-1 values are high but flatten (low top) vs the reverse: the proposal follows the
    top-rung data, not the rung-1 data."""
    opt = Optimizer(SPACE, seed=0, n_warmup=1, fidelity=Fidelity(1, 9, 3), beta_scale=1e-3)
    rng = np.random.default_rng(5)
    for a, b in rng.random((25, 2)):
        c = {"x": float(a), "y": float(b)}
        opt.tell(c, 1.0 - c["x"], resource=1)  # rung 1 says: small x
        opt.tell(c, c["x"], resource=9)  # the top rung says: large x
    (cfg,) = opt.ask(1)
    assert cfg["x"] > 0.7, cfg


def test_pending_jobs_spread_the_next_proposals():
    opt = Optimizer(SPACE, seed=0, n_warmup=1, fidelity=Fidelity(1, 9, 3))
    rng = np.random.default_rng(2)
    for a, b in rng.random((15, 2)):
        c = {"x": float(a), "y": float(b)}
        opt.tell(c, quality(c), resource=9)
    batch = opt.ask(3)  # each pending at rung 0 (its first job) while the next is chosen
    xs = np.array([[c["x"], c["y"]] for c in batch])
    assert len({json.dumps(c, sort_keys=True) for c in batch}) == 3
    assert min(np.linalg.norm(xs[i] - xs[j]) for i in range(3) for j in range(i)) > 1e-3
    opt.add_pending(batch[0], resource=9)
    assert opt._pending_z[json.dumps(batch[0], sort_keys=True, separators=(",", ":"))] == 1.0


def test_fidelity_none_is_the_plain_optimizer():
    """Same seeds, same asks, same tells: identical proposals with and without fidelity=None."""
    space = Space([Float("x", 0.0, 1.0), Categorical("k", ["a", "b"])])
    runs = []
    for kw in ({}, {"fidelity": None}):
        opt = Optimizer(space, seed=3, n_warmup=3, **kw)
        got = []
        for _ in range(7):
            (c,) = opt.ask(1)
            got.append(c)
            opt.tell(c, -((c["x"] - 0.4) ** 2) + (c["k"] == "a"))
        runs.append(got)
    assert runs[0] == runs[1]


def test_finishing_by_time_costs_each_trial_at_its_own_speed():
    sched = ASHA(Fidelity(1, 27, 3))
    for tid in (0, 1):
        sched.start(tid)
        for k in range(3):
            sched.record(tid, k, 0.5 + 0.1 * tid)  # both paused at 9 epochs, 18 to go
    speed = {0: 1.0, 1: 10.0}  # seconds per epoch: trial 1 needs 180 s to finish, trial 0 18 s

    def cost(t):
        return speed[t] * (27 - 9)

    def key(tids):
        return [float(t) for t in tids]  # the model prefers trial 1

    assert sched.finishing_promotion(100, key, cost=cost, new_cost=300) == (0, 3)  # 1 cannot finish in 100 s
    assert sched.finishing_promotion(200, key, cost=cost, new_cost=300) == (1, 3)
    assert sched.finishing_promotion(200, key, cost=cost, new_cost=150) is None  # a new trial still fits


def test_the_segment_loop_finishes_by_time_from_measured_speeds():
    from types import SimpleNamespace

    from nas.segments import SegmentLoop
    from nas.study import Budget
    from nas.trial import Trial

    fid = Fidelity(1, 27, 3)
    loop = SegmentLoop.__new__(SegmentLoop)
    loop.fid, loop.sched = fid, ASHA(fid)
    loop.opt = Optimizer(Space([Float("x", 0.0, 1.0)]), fidelity=fid, seed=0)  # no model yet: highest rung first
    loop.study = SimpleNamespace(budget=Budget(seconds=1000))
    loop.trials = {}
    for tid, (rung, secs) in enumerate([(2, 9 * 2.0), (1, 3 * 1.0), (0, 1 * 50.0)]):
        loop.trials[tid] = Trial(
            id=tid, config={"x": tid / 3}, resource=fid.rungs[rung], metrics={"segment_seconds": secs}
        )
        loop.sched.start(tid)
        for k in range(rung + 1):
            loop.sched.record(tid, k, 0.5)
    # seconds per epoch 2, 1, 50: median 2, so a new trial costs 54 s
    assert loop._time_finish(spent=990) is None  # 10 s left: trial 1 needs 24 s, trial 0 36 s
    assert loop._time_finish(spent=970) == (1, 2)  # 30 s: only trial 1 (24 s) can finish
    assert loop._time_finish(spent=960) == (0, 3)  # 40 s: both can; the higher rung goes first
    assert loop._time_finish(spent=900) is None  # 100 s: a new trial (54 s) still fits


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_finishing_key_is_the_prediction_never_worse_than_the_trials_own_value(direction):
    """The model has seen the top rung only at a poor level (0.2, as a top rung filled with runs that never
    learnt); trial 0 has reached 0.8 at rung 1, trial 1 0.3, trial 2 0.25 at rung 0. The finishing key is each
    trial's predicted top-rung value floored at its own latest value (brute force below), so trial 0 goes on
    to finish although the model alone predicts it no better than the others."""
    from nas.segments import SegmentLoop
    from nas.trial import Trial

    sign = 1.0 if direction == "maximize" else -1.0  # values below are "higher is better"; minimised as -v
    fid = Fidelity(1, 27, 3)
    opt = Optimizer(Space([Float("x", 0.0, 1.0)]), fidelity=fid, seed=0, direction=direction, n_warmup=1)
    for i in range(8):
        opt.tell({"x": i / 7}, sign * 0.2, resource=27)
    loop = SegmentLoop.__new__(SegmentLoop)
    loop.fid, loop.opt = fid, opt
    loop.sched = ASHA(fid, maximize=direction == "maximize")
    loop.trials = {}
    for tid, (x, rung, value) in enumerate([(0.15, 1, 0.8), (0.5, 1, 0.3), (0.85, 0, 0.25)]):
        loop.trials[tid] = Trial(id=tid, config={"x": x}, resource=fid.rungs[rung])
        loop.sched.start(tid)
        for k in range(rung + 1):
            loop.sched.record(tid, k, sign * value)
    tids = [0, 1, 2]
    pred = opt.predict_top([loop.trials[t].config for t in tids])
    own = [loop.sched.values[loop.sched.reached[t]][t] for t in tids]
    better = [max(sign * p, sign * v) for p, v in zip(pred, own)]  # brute force, "higher is better" units
    keys = loop._finish_key(tids)
    assert np.allclose(keys, better), (keys, better)
    assert max(sign * p for p in pred) < 0.3  # the model alone sees no trial above the poor top level
    assert loop.sched.finishing_promotion(26, loop._finish_key) == (0, 2)
    assert loop.sched.exhausted_promotion(loop._finish_key) == (0, 2)
