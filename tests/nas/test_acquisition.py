"""nas.acquisition against hand-computed values, a fake posterior, and GP-BUCB's defining property."""
import math

import numpy as np
import pytest

from nas.acquisition import UCB, beta_srinivas, bucb_batch, lcb, ucb, ucb_bounds
from nas.gp import GP


class FakeGP:
    """A posterior with fixed mean and std at fixed candidates, indexed by X[:, 0]."""

    def __init__(self, mean, std):
        self.mean, self.std = np.asarray(mean, float), np.asarray(std, float)

    def predict(self, X, active):
        idx = np.asarray(X, float)[:, 0].astype(int)
        return self.mean[idx], self.std[idx]


def test_beta_srinivas_hand_values():
    # t = 3, |D| = 100, delta = 0.1: 2 log(100 * 9 * pi^2 / 0.6) = 2 log(1500 pi^2) = 19.21...
    expected = 2 * math.log(1500 * math.pi**2)
    assert beta_srinivas(3, size=100, delta=0.1, scale=1.0) == pytest.approx(expected, rel=1e-12)
    assert beta_srinivas(3, size=100, delta=0.1) == pytest.approx(0.2 * expected, rel=1e-12)
    # grows with t and |D|; a space too large for a float still works (only its log enters)
    assert beta_srinivas(10, size=100) > beta_srinivas(3, size=100)
    big = 10**400
    assert beta_srinivas(1, size=big, scale=1.0) == pytest.approx(
        2 * (400 * math.log(10) + math.log(math.pi**2 / 0.6)), rel=1e-12)


@pytest.mark.parametrize("bad", [dict(t=0, size=10), dict(t=1, size=0.5), dict(t=1, size=math.inf),
                                 dict(t=1, size=10, delta=1.0), dict(t=1, size=10, scale=0.0)])
def test_beta_srinivas_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        beta_srinivas(bad.pop("t"), **bad)


def test_ucb_and_lcb_hand_values():
    mean, std = np.array([0.5, 0.7, 0.1]), np.array([0.2, 0.0, 0.5])
    np.testing.assert_allclose(ucb(mean, std, 4.0), [0.9, 0.7, 1.1])
    np.testing.assert_allclose(lcb(mean, std, 4.0), [0.1, 0.7, -0.9])
    np.testing.assert_allclose(ucb(mean, std, 0.0), mean)
    with pytest.raises(ValueError):
        ucb(mean, std, -1.0)


def test_ucb_class_and_bounds_on_a_fake_posterior():
    gp = FakeGP([0.80, 0.85, 0.60], [0.10, 0.01, 0.30])
    X = np.array([[0.0], [1.0], [2.0]])
    values = UCB(gp, beta=2.25)(X, None)  # sqrt(beta) = 1.5
    np.testing.assert_allclose(values, [0.95, 0.865, 1.05])
    np.testing.assert_allclose(UCB(gp, beta=2.25, maximize=False)(X, None), [0.65, 0.835, 0.15])
    mean, std, bound = ucb_bounds(gp, X[[2, 0]], None, 2.25)
    np.testing.assert_allclose(mean, [0.60, 0.80])
    np.testing.assert_allclose(std, [0.30, 0.10])
    np.testing.assert_allclose(bound, [1.05, 0.95])


def _gp_1d(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((6, 1))
    gp = GP(["float"]).set_params(length_scales=0.15, signal_var=1.0, noise_var=1e-4)
    return gp.fit(X, None, 0.1 * np.sin(6 * X[:, 0]), optimize=False)


def test_bucb_first_pick_is_the_ucb_argmax_and_minimise_uses_lcb():
    gp = _gp_1d()
    C = np.linspace(0, 1, 101)[:, None]
    mean, std = gp.predict(C, None)
    assert bucb_batch(gp, C, None, 1, beta=4.0)[0] == np.argmax(mean + 2 * std)
    assert bucb_batch(gp, C, None, 1, beta=4.0, maximize=False)[0] == np.argmin(mean - 2 * std)


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("noise_var", [1e-4, 0.5])
def test_bucb_equals_picking_with_pending_points_one_by_one(maximize, noise_var):
    gp = _gp_1d(1).set_params(noise_var=noise_var)
    C = np.linspace(0, 1, 61)[:, None]
    picks, picked_std = bucb_batch(gp, C, None, 5, beta=4.0, maximize=maximize, return_std=True)
    slow, slow_std, current = [], [], gp
    for _ in range(5):
        mean, std = current.predict(C, None)
        value = mean + 2 * std if maximize else -(mean - 2 * std)
        value[slow] = -np.inf
        slow.append(int(np.argmax(value)))
        slow_std.append(std[slow[-1]])
        current = current.with_pending(C[slow[-1:]], None)
    assert picks.tolist() == slow
    np.testing.assert_allclose(picked_std, slow_std, rtol=1e-7)


def test_bucb_batch_is_distinct_and_spread_out():
    # flat posterior mean and equal std everywhere: only the pending-point variance drives the spread
    gp = GP(["float"]).set_params(length_scales=0.1, signal_var=1.0, noise_var=1e-4)
    gp.fit(np.zeros((0, 1)), None, np.zeros(0))  # the prior
    C = np.linspace(0, 1, 201)[:, None]
    picks = bucb_batch(gp, C, None, 5, beta=4.0)
    x = np.sort(C[picks, 0])
    assert len(set(picks.tolist())) == 5
    assert np.min(np.diff(x)) > 0.15  # greedy variance picks land about a length scale or more apart


def test_bucb_rejects_a_batch_larger_than_the_candidates():
    with pytest.raises(ValueError, match="k=4"):
        bucb_batch(_gp_1d(), np.zeros((3, 1)), None, 4, beta=1.0)
