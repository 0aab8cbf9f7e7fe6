"""nas.surrogate: the output warp, the refit policy (its shortcuts equal a full refit), the minimise sign."""

import numpy as np
import pytest

from nas.fidelity import Fidelity
from nas.space import Categorical, Float, Space
from nas.surrogate import REFIT_ALWAYS_BELOW, CopulaWarp, Surrogate

SPACE = Space([Float("x", 0.0, 1.0), Categorical("kind", {"a": [], "b": [Float("g", 0.0, 1.0)]})])


def _obs(n, seed=0):
    configs = SPACE.sample_many(n, seed=seed)
    return [(c, float(np.sin(5 * c["x"]) + c.get("g", 0.0))) for c in configs]


def test_copula_warp_is_monotone_gaussian_and_invertible_on_the_data():
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    y = np.concatenate([rng.uniform(0.9, 0.99, 40), [0.1, 0.12]])  # skewed: two diverged runs
    w = CopulaWarp(y)
    z = w(y)
    order = np.argsort(y)
    assert np.all(np.diff(z[order]) > 0)
    np.testing.assert_allclose(np.sort(z), norm.ppf((np.arange(1, 43) - 0.5) / 42))
    np.testing.assert_allclose(w.inverse(z), y)
    # Optimism survives the round trip: a bound above every observation maps above the best.
    assert w.inverse(np.array([z.max() + 1.0]))[0] > y.max()
    assert w.inverse(np.array([z.min() - 1.0]))[0] < y.min()
    grid = np.linspace(-4, 4, 50)
    assert np.all(np.diff(w.inverse(grid)) >= 0)


@pytest.mark.parametrize("warp", ["copula", "none"])
def test_adding_points_without_a_refit_equals_a_fit_with_the_same_hyper_parameters(warp):
    obs = _obs(REFIT_ALWAYS_BELOW + 6)
    s = Surrogate(SPACE, maximize=True, rng=np.random.default_rng(0), warp=warp)
    s.fit(obs[:-2], [])
    theta = s._gp.theta
    s.fit(obs, [])  # 2 more points: below a 10 % growth, so no hyper-parameter fit
    np.testing.assert_array_equal(s._gp.theta, theta)
    assert s._gp.n_obs == len(obs)
    full = Surrogate(SPACE, maximize=True, rng=np.random.default_rng(0), warp=warp)
    full.fit(obs, [])
    full._gp.set_params(length_scales=np.exp(theta[:-2]), signal_var=np.exp(theta[-2]), noise_var=np.exp(theta[-1]))
    query = SPACE.sample_many(20, seed=9)
    for a, b in zip(s.posterior()(query), full.posterior()(query)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_hyper_parameters_are_refitted_once_the_data_grow_by_a_tenth():
    obs = _obs(REFIT_ALWAYS_BELOW + 10)
    s = Surrogate(SPACE, maximize=True, rng=np.random.default_rng(0))
    s.fit(obs[: REFIT_ALWAYS_BELOW + 1], [])
    assert s._gp_fit_n == REFIT_ALWAYS_BELOW + 1
    s.fit(obs[: REFIT_ALWAYS_BELOW + 4], [])
    assert s._gp_fit_n == REFIT_ALWAYS_BELOW + 1
    s.fit(obs, [])  # 50 >= 1.1 * 41
    assert s._gp_fit_n == len(obs)


def test_minimising_turns_values_over_and_predicts_in_the_objectives_units():
    obs = [(c, -v) for c, v in _obs(12, seed=3)]
    up = Surrogate(SPACE, maximize=True, rng=np.random.default_rng(0), warp="none")
    down = Surrogate(SPACE, maximize=False, rng=np.random.default_rng(0), warp="none")
    up.fit([(c, -v) for c, v in obs], [])
    down.fit(obs, [])
    np.testing.assert_allclose(down.to_gp_units([1.0, -2.0]), [-1.0, 2.0])
    query = SPACE.sample_many(5, seed=4)
    np.testing.assert_allclose(down.posterior()(query)[0], up.posterior()(query)[0], rtol=1e-9)


def test_multi_fidelity_predicts_at_the_top_rung_with_the_trend():
    fid = Fidelity(1, 9)
    obs = _obs(16, seed=5)
    zs = [0.0] * 10 + [1.0] * 6
    # low rungs 1 lower than the top everywhere: the trend carries that, the top prediction is near the top data
    told = [(c, v - 1.0) for c, v in obs[:10]] + obs[10:]
    s = Surrogate(SPACE, maximize=True, rng=np.random.default_rng(0), warp="none", fidelity=fid)
    s.fit(told, zs)
    a, b = s._trend
    assert b == pytest.approx(1.0, abs=0.6)
    top = s.predict_top([c for c, _ in obs[10:]])
    np.testing.assert_allclose(top, [v for _, v in obs[10:]], atol=0.15)


def test_kept_encodings_equal_a_fresh_encoding_as_the_lists_grow_or_change():
    fid = Fidelity(1, 9)
    s = Surrogate(SPACE, maximize=True, rng=np.random.default_rng(0), fidelity=fid)
    obs = _obs(30)
    zs = [float(i % 3) / 2 for i in range(30)]
    for n in (5, 6, 6, 20, 30):  # grow, repeat, grow in a jump
        X, A = s._encoded_obs(obs[:n], zs[:n])
        Xf, Af = s.encode([c for c, _ in obs[:n]], zs[:n])
        np.testing.assert_array_equal(X, Xf)
        np.testing.assert_array_equal(A, Af)
    other = _obs(10, seed=7)  # another list of the same length as a prefix: encoded anew, not read from the cache
    X, _ = s._encoded_obs(other, zs[:10])
    np.testing.assert_array_equal(X, s.encode([c for c, _ in other], zs[:10])[0])
