"""nas.acquisition against hand-computed values, a fake posterior, and GP-BUCB's defining property."""

import math

import numpy as np
import pytest

from nas.acquisition import BUCB, UCB, HypervolumeImprovement, beta_for_round, beta_srinivas, ucb
from nas.ehvi import CostGrid
from nas.gp import GP


class FakePosterior:
    """Fixed mean and std at configs 0, 1, 2, ... (a config is its own index)."""

    def __init__(self, mean, std):
        self.mean, self.std = np.asarray(mean, float), np.asarray(std, float)

    def __call__(self, configs):
        idx = np.asarray(configs, dtype=int)
        return self.mean[idx], self.std[idx]


class GPOnFloats:
    """A 1-d GP as an acquisition posterior: a config is a float in [0, 1]."""

    def __init__(self, gp):
        self.gp = gp

    def __call__(self, configs):
        return self.gp.predict(np.asarray(configs, float)[:, None], None)

    def with_pending(self, configs, zs=None):
        assert zs is None
        return GPOnFloats(self.gp.with_pending(np.asarray(configs, float)[:, None], None))


def test_beta_srinivas_hand_values():
    # t = 3, |D| = 100, delta = 0.1: 2 log(100 * 9 * pi^2 / 0.6) = 2 log(1500 pi^2) = 19.21...
    expected = 2 * math.log(1500 * math.pi**2)
    assert beta_srinivas(3, size=100, delta=0.1, scale=1.0) == pytest.approx(expected, rel=1e-12)
    assert beta_srinivas(3, size=100, delta=0.1) == pytest.approx(0.2 * expected, rel=1e-12)
    # grows with t and |D|; a space too large for a float still works (only its log enters)
    assert beta_srinivas(10, size=100) > beta_srinivas(3, size=100)
    big = 10**400
    assert beta_srinivas(1, size=big, scale=1.0) == pytest.approx(
        2 * (400 * math.log(10) + math.log(math.pi**2 / 0.6)), rel=1e-12
    )


def test_beta_for_round_counts_the_candidates_of_a_continuous_space():
    assert beta_for_round(4, space_size=math.inf, n_candidates=256) == beta_srinivas(4, size=256)
    assert beta_for_round(4, space_size=30, n_candidates=256) == beta_srinivas(4, size=30)


@pytest.mark.parametrize(
    "bad",
    [
        dict(t=0, size=10),
        dict(t=1, size=0.5),
        dict(t=1, size=math.inf),
        dict(t=1, size=10, delta=1.0),
        dict(t=1, size=10, scale=0.0),
    ],
)
def test_beta_srinivas_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        beta_srinivas(bad.pop("t"), **bad)


def test_ucb_hand_values():
    mean, std = np.array([0.5, 0.7, 0.1]), np.array([0.2, 0.0, 0.5])
    np.testing.assert_allclose(ucb(mean, std, 4.0), [0.9, 0.7, 1.1])
    np.testing.assert_allclose(ucb(mean, std, 0.0), mean)
    with pytest.raises(ValueError):
        ucb(mean, std, -1.0)


def test_ucb_object_on_a_fake_posterior_and_its_utility():
    post = FakePosterior([0.80, 0.85, 0.60], [0.10, 0.01, 0.30])
    np.testing.assert_allclose(UCB(post, beta=2.25)([0, 1, 2]), [0.95, 0.865, 1.05])  # sqrt(beta) = 1.5
    np.testing.assert_allclose(UCB(post, beta=2.25)([2, 0]), [1.05, 0.95])
    # the utility sees the configs and the bound: here a cost that grows with the config's index
    halve_odd = UCB(post, beta=2.25, utility=lambda cs, b: b * np.where(np.asarray(cs) % 2, 0.5, 1.0))
    np.testing.assert_allclose(halve_odd([0, 1, 2]), [0.95, 0.4325, 1.05])
    with pytest.raises(ValueError, match="beta"):
        UCB(post, beta=math.nan)


def _gp_1d(seed=0, noise_var=1e-4):
    rng = np.random.default_rng(seed)
    X = rng.random((6, 1))
    gp = GP(["float"]).set_params(length_scales=0.15, signal_var=1.0, noise_var=noise_var)
    return gp.fit(X, None, 0.1 * np.sin(6 * X[:, 0]), optimize=False)


def test_bucb_without_pending_points_is_ucb():
    post, C = GPOnFloats(_gp_1d()), list(np.linspace(0, 1, 21))
    np.testing.assert_array_equal(BUCB(post, [], beta=4.0)(C), UCB(post, beta=4.0)(C))


@pytest.mark.parametrize("noise_var", [1e-4, 0.5])
def test_bucb_keeps_the_mean_and_shrinks_the_variance_at_pending_points(noise_var):
    post, C = GPOnFloats(_gp_1d(1, noise_var)), list(np.linspace(0, 1, 41))
    pending = [C[10], C[30]]
    b = BUCB(post, pending, beta=4.0)
    mean0, std0 = post(C)
    mean1, std1 = b.posterior(C)
    np.testing.assert_allclose(mean1, mean0, atol=1e-9)
    assert np.all(std1 <= std0 + 1e-12)
    assert std1[10] < std0[10] and std1[30] < std0[30]
    # the variance at a pending point is what observing it once more with noise leaves: var sn2 / (var + sn2)
    sn2 = post.gp.noise_var * post.gp.y_std**2
    expected = np.sqrt(std0[10] ** 2 * sn2 / (std0[10] ** 2 + sn2))
    assert std1[10] == pytest.approx(expected, rel=0.05)


def test_a_bucb_batch_is_distinct_and_spread_out():
    # flat posterior mean and equal std everywhere: only the pending-point variance drives the spread
    gp = GP(["float"]).set_params(length_scales=0.1, signal_var=1.0, noise_var=1e-4)
    gp.fit(np.zeros((0, 1)), None, np.zeros(0))  # the prior
    post, C, picks = GPOnFloats(gp), list(np.linspace(0, 1, 201)), []
    for _ in range(5):
        values = BUCB(post, picks, beta=4.0)(C)
        picks.append(C[int(np.argmax(values))])
    x = np.sort(picks)
    assert len(set(picks)) == 5
    assert np.min(np.diff(x)) > 0.15  # greedy variance picks land about a length scale or more apart


def test_hypervolume_improvement_matches_the_cost_grid_by_hand():
    # front: value 0.9 at cost 1; reference (0, 2). Candidates 0 and 1 cost 0.5 and 1.5.
    post = FakePosterior([0.95, 0.95], [0.0, 0.2])
    hvi = HypervolumeImprovement(
        post,
        [],
        beta=1.0,
        front_configs=["f"],
        front_values=[0.9],
        costs=lambda cs: np.array([[{0: 0.5, 1: 1.5, "f": 1.0}[c]] for c in cs]),
        ref_value=0.0,
        ref_costs=[2.0],
        kind="ehvi",
    )
    grid = CostGrid([0.9], [[1.0]], 0.0, [2.0])
    assert hvi([0])[0] == pytest.approx(0.525)  # std 0: exact; see nas.ehvi's example
    np.testing.assert_allclose(hvi([0, 1]), grid.ehvi([0.95, 0.95], [0.0, 0.2], [[0.5], [1.5]]))
    ucb_kind = HypervolumeImprovement(
        post,
        [],
        beta=1.0,
        front_configs=["f"],
        front_values=[0.9],
        costs=hvi.costs,
        ref_value=0.0,
        ref_costs=[2.0],
        kind="ucb",
    )
    np.testing.assert_allclose(ucb_kind([1]), grid.hvi([1.15], [[1.5]]))  # at mean + 1 * std


def test_hypervolume_improvement_puts_fantasy_pending_points_on_the_front():
    gp = GPOnFloats(_gp_1d(2))
    costs = lambda cs: np.array([[1.0 + float(c)] for c in cs])  # noqa: E731
    kw = dict(beta=1.0, front_configs=[0.0], front_values=[-0.5], costs=costs, ref_value=-2.0, ref_costs=[3.0])
    fantasy = HypervolumeImprovement(gp, [0.2], fantasy=True, **kw)
    variance = HypervolumeImprovement(gp, [0.2], fantasy=False, **kw)
    assert len(fantasy.grid.front_values) == 2 and len(variance.grid.front_values) == 1
    # the pending point's own region is already counted: a candidate on it gains less with fantasy
    assert fantasy([0.2])[0] < variance([0.2])[0]
