"""Properties of nas.gp: agreement with scikit-learn, gradients, updates, pending points, kernel geometry."""

import math

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

import nas.gp_fit as gp_fit
from nas.gp import GP, GPFitWarning
from nas.space import Categorical, Float, Integer, Repeat, Space


def _space() -> Space:
    """A small conditional space: branch parameters, a nested categorical, a variable-length list."""
    return Space(
        [
            Float("lr", 1e-4, 1e-1, log=True),
            Integer("epochs", 1, 10),
            Categorical(
                "opt",
                {
                    "sgd": [Float("momentum", 0.0, 0.99)],
                    "adam": [Float("beta1", 0.8, 0.99), Categorical("amsgrad", [True, False])],
                    "rms": [],
                },
            ),
            Repeat("layers", 1, 3, [Integer("ch", 8, 64), Categorical("act", ["relu", "gelu", "silu"])]),
        ]
    )


def _mixed_data(n: int, seed: int):
    space = _space()
    X, active = space.encode_many(space.sample_many(n, seed=seed))
    return space, X, active


def _fixed_gp(kinds, ell, s2, sn2, **kw) -> GP:
    return GP(kinds, **kw).set_params(length_scales=ell, signal_var=s2, noise_var=sn2)


# ------------------------------------------------------------------------------ scikit-learn agreement
@pytest.fixture
def float_problem():
    rng = np.random.default_rng(0)
    X = rng.random((20, 3))
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=20)
    return X, y, rng.random((9, 3))


def test_matches_sklearn_posterior_and_likelihood(float_problem):
    X, y, Xs = float_problem
    ell, s2, sn2 = np.array([0.3, 0.7, 1.5]), 1.3, 0.05
    gp = _fixed_gp(["float", "int", "float"], ell, s2, sn2).fit(X, None, y, optimize=False)
    kernel = ConstantKernel(s2) * Matern(length_scale=ell, nu=2.5) + WhiteKernel(sn2)
    sk = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None, normalize_y=True).fit(X, y)

    mean, std = gp.predict(Xs, None)
    sk_mean, sk_std = sk.predict(Xs, return_std=True)
    np.testing.assert_allclose(mean, sk_mean, rtol=1e-8)
    # scikit-learn's std includes the WhiteKernel noise; ours is the latent function's
    np.testing.assert_allclose(std**2, sk_std**2 - sn2 * y.std() ** 2, rtol=1e-8)
    assert gp.log_marginal_likelihood() == pytest.approx(sk.log_marginal_likelihood_value_, rel=1e-8)

    # same gradient; scikit-learn orders theta as [log s2, log ell..., log sn2]
    lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    sk_lml, sk_grad = sk.log_marginal_likelihood(sk.kernel_.theta, eval_gradient=True)
    assert lml == pytest.approx(sk_lml, rel=1e-8)
    np.testing.assert_allclose(grad, np.r_[sk_grad[1:4], sk_grad[0], sk_grad[4]], rtol=1e-7, atol=1e-10)


def test_lml_at_other_theta_matches_sklearn(float_problem):
    X, y, _ = float_problem
    gp = GP(["float"] * 3).fit(X, None, y, optimize=False)
    theta = np.log([0.5, 2.0, 0.2, 0.7, 0.01])
    kernel = ConstantKernel(0.7) * Matern(length_scale=[0.5, 2.0, 0.2], nu=2.5) + WhiteKernel(0.01)
    sk = GaussianProcessRegressor(kernel, alpha=0.0, optimizer=None, normalize_y=True).fit(X, y)
    assert gp.log_marginal_likelihood(theta) == pytest.approx(sk.log_marginal_likelihood_value_, rel=1e-8)


@pytest.mark.parametrize("conditional", ["arc", "impute"])
def test_lml_gradient_matches_finite_differences(conditional):
    space, X, active = _mixed_data(25, seed=1)
    y = np.random.default_rng(1).normal(size=25)
    gp = GP.from_space(space, conditional=conditional).fit(X, active, y, optimize=False)
    theta = np.random.default_rng(2).normal(0.0, 0.7, space.n_dims + 2)
    theta[-1] = math.log(0.05)
    _, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-6
    lml = gp.log_marginal_likelihood
    fd = np.array([(lml(theta + h * e) - lml(theta - h * e)) / (2 * h) for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ posterior updates
def test_condition_on_one_by_one_equals_full_refit():
    space, X, active = _mixed_data(15, seed=3)
    y = np.random.default_rng(3).normal(size=15)
    ell = np.random.default_rng(4).uniform(0.5, 3.0, space.n_dims)
    inc = _fixed_gp(
        space.kinds,
        ell,
        1.2,
        0.03,
        conditional_mask=[d.conditional for d in space.dims],
        n_choices=[d.n_choices for d in space.dims],
    )
    inc.fit(X[:0], active[:0], y[:0], optimize=False)  # from empty: prior, then the first real posterior at 2
    for i in range(15):
        inc.condition_on(X[i], active[i], y[i : i + 1])
    full = _fixed_gp(
        space.kinds,
        ell,
        1.2,
        0.03,
        conditional_mask=[d.conditional for d in space.dims],
        n_choices=[d.n_choices for d in space.dims],
    ).fit(X, active, y, optimize=False)
    _, Xs, As = _mixed_data(10, seed=5)
    for a, b in zip(inc.predict(Xs, As), full.predict(Xs, As)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)
    assert inc.log_marginal_likelihood() == pytest.approx(full.log_marginal_likelihood(), rel=1e-10)
    assert inc.n_obs == 15


def test_extend_with_new_targets_equals_full_refit():
    # The surrogate's path when an output warp moves every target: rows added in blocks, all targets replaced.
    space, X, active = _mixed_data(30, seed=7)
    rng = np.random.default_rng(7)
    ell = rng.uniform(0.5, 3.0, space.n_dims)
    kw = dict(conditional_mask=[d.conditional for d in space.dims], n_choices=[d.n_choices for d in space.dims])
    inc = _fixed_gp(space.kinds, ell, 0.8, 0.02, **kw).fit(X[:1], active[:1], [0.0], optimize=False)
    _, Xs, As = _mixed_data(12, seed=8)
    n = 1
    for k in (1, 4, 0, 9, 15):  # an empty block too: only the targets move
        y = rng.normal(size=n + k)  # new values for the old rows as well
        inc.extend(X[n : n + k], active[n : n + k], y)
        n += k
        full = _fixed_gp(space.kinds, ell, 0.8, 0.02, **kw).fit(X[:n], active[:n], y, optimize=False)
        for a, b in zip(inc.predict(Xs, As), full.predict(Xs, As)):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
        assert inc.log_marginal_likelihood() == pytest.approx(full.log_marginal_likelihood(), rel=1e-9)
    with pytest.raises(ValueError, match="y has 29 values for 31 rows"):
        inc.extend(X[:1], active[:1], np.zeros(29))
    with pytest.raises(ValueError, match="pending"):
        inc.with_pending(Xs[:1], As[:1]).extend(X[:1], active[:1], np.zeros(31))


def test_reproduces_noiseless_training_points():
    rng = np.random.default_rng(6)
    X = rng.random((12, 2))
    y = np.cos(4 * X[:, 0]) * X[:, 1]
    gp = _fixed_gp(["float", "float"], [0.4, 0.6], 1.0, 1e-10).fit(X, None, y, optimize=False)
    mean, std = gp.predict(X, None)
    np.testing.assert_allclose(mean, y, atol=1e-6)
    assert np.all(std < 1e-4 * y.std())


def test_fit_finds_the_relevant_dim_and_predicts():
    # y depends on dim 0 (curved) and a categorical; dims 1-3 are noise. 6 dims, 60 points.
    rng = np.random.default_rng(7)
    kinds = ["float", "float", "int", "float", "cat", "float"]
    cond = [False, False, False, True, False, True]
    X = rng.random((80, 6))
    X[:, 4] = rng.integers(0, 3, 80)
    active = np.ones_like(X, bool)
    active[:, [3, 5]] = rng.random((80, 2)) < 0.5
    X[~active] = 0.0
    y = np.sin(5 * X[:, 0]) + 0.5 * (X[:, 4] == 2) + 0.02 * rng.normal(size=80)
    gp = GP(kinds, conditional_mask=cond, n_choices=[0, 0, 0, 0, 3, 0]).fit(X[:60], active[:60], y[:60])
    ell = gp.length_scales
    assert ell[0] < 0.5 * min(ell[[1, 2, 3, 5]])
    mean, _ = gp.predict(X[60:], active[60:])
    assert np.corrcoef(mean, y[60:])[0, 1] > 0.95


def test_pending_points_shrink_std_not_mean():
    space, X, active = _mixed_data(20, seed=8)
    y = np.random.default_rng(8).normal(size=20)
    gp = GP.from_space(space).fit(X, active, y, optimize=False)
    _, Xp, Ap = _mixed_data(3, seed=9)
    _, Xs, As = _mixed_data(30, seed=10)
    mean0, std0 = gp.predict(Xs, As)
    pend = gp.with_pending(Xp, Ap)
    mean1, std1 = pend.predict(Xs, As)
    np.testing.assert_allclose(mean1, mean0, rtol=1e-9, atol=1e-9)
    assert np.all(std1 <= std0 + 1e-12) and np.any(std1 < 0.99 * std0)
    _, std_at_pending = pend.predict(Xp, Ap)
    assert np.all(std_at_pending < gp.predict(Xp, Ap)[1])
    # the original GP is untouched, and a pending GP equals one conditioned on its own mean
    np.testing.assert_allclose(gp.predict(Xs, As)[1], std0)
    assert pend.n_pending == 3 and gp.n_pending == 0
    fantasy = GP.from_space(space).fit(
        np.vstack([X, Xp]), np.vstack([active, Ap]), np.r_[y, gp.predict(Xp, Ap)[0]], optimize=False
    )
    # same data => same posterior, up to the y standardisation that the fantasy refit recomputes
    fantasy.set_params(
        signal_var=gp.signal_var * gp.y_std**2 / fantasy.y_std**2,
        noise_var=gp.noise_var * gp.y_std**2 / fantasy.y_std**2,
    )
    np.testing.assert_allclose(fantasy.predict(Xs, As)[1], std1, rtol=1e-7)


def test_pending_on_prior_gp_shrinks_std():
    gp = GP(["float"]).fit(np.zeros((0, 1)), None, np.zeros(0))
    pend = gp.with_pending(np.array([[0.5]]), None)
    m, s = pend.predict(np.array([[0.5], [0.9]]), None)
    assert s[0] < 0.2 * gp.predict(np.array([[0.5]]), None)[1][0]
    np.testing.assert_allclose(m, 0.0)


# ------------------------------------------------------------------------------ kernel geometry
@pytest.mark.parametrize("conditional", ["arc", "impute"])
def test_kernel_matrix_is_psd_on_mixed_conditional_encodings(conditional):
    space, X, active = _mixed_data(120, seed=11)
    X = np.vstack([X, X[:10]])  # exact duplicates make it singular, still PSD
    active = np.vstack([active, active[:10]])
    rng = np.random.default_rng(12)
    for _ in range(3):
        gp = GP.from_space(space, conditional=conditional).set_params(
            length_scales=np.exp(rng.normal(0.0, 1.0, space.n_dims)), signal_var=1.0, noise_var=1e-6
        )
        eig = np.linalg.eigvalsh(gp.kernel_matrix(X, active))
        assert eig.min() >= -1e-9


def test_arc_geometry_for_conditional_dims():
    # dim 0 always active, dim 1 conditional float, dim 2 conditional cat with 3 choices
    ell = np.array([1.0, 0.5, 2.0])
    gp = _fixed_gp(["float", "float", "cat"], ell, 2.0, 1e-6, conditional_mask=[False, True, True], n_choices=[0, 0, 3])
    m52 = lambda r: (1 + math.sqrt(5) * r + 5 / 3 * r**2) * math.exp(-math.sqrt(5) * r)  # noqa: E731
    on = np.array([[0.2, 0.3, 1.0]]), np.array([[True, True, True]])
    off = np.array([[0.2, 0.0, 0.0]]), np.array([[True, False, False]])
    other = np.array([[0.2, 0.9, 1.0]]), np.array([[True, True, True]])
    # inactive vs active: 1/(pi ell) on the float dim (the arc radius), 1/ell on the cat dim ("inactive")
    k = gp.kernel_matrix(*on, *off)[0, 0]
    assert k == pytest.approx(2.0 * m52(math.hypot(1 / (math.pi * 0.5), 1 / 2.0)), rel=1e-12)
    # two inactive configs coincide, whatever x holds for the inactive dims
    junk = np.array([[0.2, 0.7, 2.0]]), off[1]
    assert gp.kernel_matrix(*off, *junk)[0, 0] == pytest.approx(2.0, rel=1e-12)
    # two active values: the chord 2 sin(pi |dx| / 2) / pi of a half circle of radius 1/pi
    chord = 2 * math.sin(math.pi * 0.6 / 2) / math.pi / 0.5
    assert gp.kernel_matrix(*on, *other)[0, 0] == pytest.approx(2.0 * m52(chord), rel=1e-12)


def test_impute_treats_inactive_as_value_zero():
    gp = _fixed_gp(["float", "float"], [1.0, 0.5], 1.0, 1e-6, conditional_mask=[False, True], conditional="impute")
    inactive = gp.kernel_matrix(np.array([[0.3, 0.8]]), np.array([[True, False]]), np.array([[0.3, 0.0]]), None)
    assert inactive[0, 0] == pytest.approx(1.0)


def test_permuting_category_labels_leaves_predictions_unchanged():
    space, X, active = _mixed_data(30, seed=13)
    _, Xs, As = _mixed_data(12, seed=14)
    y = np.random.default_rng(13).normal(size=30)
    ell = np.random.default_rng(15).uniform(0.3, 2.0, space.n_dims)
    gp = GP.from_space(space).set_params(length_scales=ell, signal_var=1.0, noise_var=0.01)
    base = gp.fit(X, active, y, optimize=False).predict(Xs, As)
    rng = np.random.default_rng(16)
    Xp, Xsp = X.copy(), Xs.copy()
    for j, dim in enumerate(space.dims):
        if dim.kind == "cat":
            perm = rng.permutation(dim.n_choices)
            Xp[:, j] = np.where(active[:, j], perm[X[:, j].astype(int)], 0)
            Xsp[:, j] = np.where(As[:, j], perm[Xs[:, j].astype(int)], 0)
    permuted = gp.fit(Xp, active, y, optimize=False).predict(Xsp, As)
    for a, b in zip(base, permuted):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------ edge cases, fallbacks
def test_nan_or_inf_y_is_rejected():
    with pytest.raises(ValueError, match="NaN or inf"):
        GP(["float"]).fit(np.array([[0.1], [0.2]]), None, [1.0, np.nan])
    gp = GP(["float"]).fit(np.array([[0.1], [0.2]]), None, [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        gp.condition_on(np.array([[0.3]]), None, [np.inf])


def test_bad_shapes_and_categories_name_the_fix():
    gp = GP(["float", "cat"], n_choices=[0, 3])
    with pytest.raises(ValueError, match="expected \\(n, 2\\)"):
        gp.fit(np.zeros((3, 3)), None, np.zeros(3))
    with pytest.raises(ValueError, match="not a choice index"):
        gp.fit(np.array([[0.1, 3.0], [0.2, 1.0]]), None, [0.0, 1.0])
    with pytest.raises(ValueError, match="n_choices"):
        GP(["cat"])


def test_fewer_than_two_points_give_the_prior():
    gp = GP(["float"]).fit(np.array([[0.3]]), None, [0.7])
    mean, std = gp.predict(np.array([[0.3], [0.9]]), None)
    np.testing.assert_allclose(mean, 0.7)
    np.testing.assert_allclose(std, math.sqrt(gp.signal_var))
    mean, std = GP(["float"]).fit(np.zeros((0, 1)), None, np.zeros(0)).predict(np.array([[0.5]]), None)
    assert mean[0] == 0.0 and std[0] == pytest.approx(math.sqrt(gp.signal_var))


def test_constant_y_does_not_break_the_fit():
    X = np.random.default_rng(17).random((10, 2))
    gp = GP(["float", "float"]).fit(X, None, np.full(10, 0.42))
    mean, std = gp.predict(X[:3], None)
    np.testing.assert_allclose(mean, 0.42, atol=1e-6)
    assert np.all(np.isfinite(std))


def test_failed_optimiser_warns_and_keeps_the_previous_parameters(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("line search blew up")

    monkeypatch.setattr(gp_fit, "minimize", broken)
    X = np.random.default_rng(18).random((8, 2))
    gp = GP(["float", "float"]).set_params(length_scales=[0.3, 0.4], signal_var=1.5, noise_var=0.02)
    with pytest.warns(GPFitWarning, match="fit failed.*line search blew up"):
        gp.fit(X, None, X[:, 0])
    np.testing.assert_allclose(gp.length_scales, [0.3, 0.4])
    assert (gp.signal_var, gp.noise_var) == (1.5, 0.02)
    assert np.all(np.isfinite(gp.predict(X, None)[0]))


def test_singular_kernel_gets_jitter_with_a_warning():
    X = np.array([[0.1, 0.2], [0.1, 0.2], [0.5, 0.5]])  # a duplicate config, and no noise
    gp = GP(["float", "float"]).set_params(length_scales=0.5, noise_var=0.0)
    with pytest.warns(GPFitWarning, match="jitter"):
        gp.fit(X, None, [1.0, 1.2, 0.0], optimize=False)
    mean, _ = gp.predict(X, None)
    assert mean[0] == pytest.approx(1.1, abs=1e-3)  # two noiseless "observations" of one point average
    # a further copy through the incremental update takes the same way out
    gp = GP(["float", "float"]).set_params(length_scales=0.5, noise_var=0.0)
    gp.fit(X[1:], None, [1.2, 0.0], optimize=False)
    with pytest.warns(GPFitWarning, match="jitter"):
        gp.condition_on(X[:1], None, [1.0])
    assert gp.predict(X[:1], None)[0][0] == pytest.approx(1.1, abs=1e-3)


def test_large_n_fits_on_a_subset_but_conditions_on_all():
    rng = np.random.default_rng(19)
    X = rng.random((60, 2))
    y = np.sin(4 * X[:, 0])
    gp = GP(["float", "float"], max_fit_points=25, n_restarts=0).fit(X, None, y)
    assert gp.n_obs == 60
    mean, _ = gp.predict(X, None)
    np.testing.assert_allclose(mean, y, atol=0.05)


def test_fit_is_deterministic_given_the_seed():
    space, X, active = _mixed_data(30, seed=20)
    y = X[:, 0] + np.random.default_rng(20).normal(0, 0.1, 30)
    a = GP.from_space(space, seed=3).fit(X, active, y)
    b = GP.from_space(space, seed=3).fit(X, active, y)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_fit_escapes_the_long_length_scale_plateau():
    # 100 mixed dims, 50 points, y curved in dim 0: plain L-BFGS-B from the prior stalls with every length
    # scale near the prior median (predictions uncorrelated with y); the relevance probe must find dim 0.
    rng = np.random.default_rng(0)
    d = 100
    kinds = ["float"] * 40 + ["int"] * 20 + ["cat"] * 40
    cond = rng.random(d) < 0.5
    n_choices = np.where(np.array(kinds) == "cat", rng.integers(2, 6, d), 0)
    X = rng.random((250, d))
    active = np.ones((250, d), bool)
    active[:, cond] = rng.random((250, cond.sum())) < 0.6
    for j in np.flatnonzero(n_choices):
        X[:, j] = rng.integers(0, n_choices[j], 250)
    X[~active] = 0.0
    y = np.sin(3 * X[:, 0]) + X[:, 1] * active[:, 1] + 0.3 * (X[:, 60] == 1) + 0.05 * rng.normal(size=250)
    gp = GP(kinds, conditional_mask=cond, n_choices=n_choices).fit(X[:50], active[:50], y[:50])
    mean, _ = gp.predict(X[50:], active[50:])
    assert np.corrcoef(mean, y[50:])[0, 1] > 0.9
    assert gp.length_scales[0] < 3.0 < np.median(gp.length_scales)
