"""Closed-form EHVI with known costs: against exact hypervolumes and a Monte-Carlo estimate."""

import numpy as np
import pytest

from nas.ehvi import CostGrid, expected_improvement
from nas.hypervolume import hypervolume


def _as_min(values, U):
    return np.column_stack([-np.asarray(values), np.asarray(U)])


def _random_front(rng, n, k):
    return rng.random(n), rng.random((n, k))


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("seed", range(5))
def test_hvi_equals_exact_hypervolume_difference(k, seed):
    rng = np.random.default_rng(seed)
    vals, U = _random_front(rng, int(rng.integers(0, 7)), k)
    ref_a, ref_u = 0.1, np.full(k, 1.05)
    g = CostGrid(vals, U, ref_a, ref_u)
    ref = np.r_[-ref_a, ref_u]
    base = hypervolume(_as_min(vals, U), ref)
    assert g.hypervolume() == pytest.approx(base, abs=1e-12)
    a, Uc = rng.random(20) * 1.2 - 0.1, rng.random((20, k)) * 1.2 - 0.1
    got = g.hvi(a, Uc)
    for i in range(20):
        both = np.vstack([_as_min(vals, U).reshape(-1, k + 1), _as_min([a[i]], Uc[i : i + 1])])
        assert got[i] == pytest.approx(hypervolume(both, ref) - base, abs=1e-12)


@pytest.mark.parametrize("k", [1, 2])
def test_ehvi_matches_monte_carlo(k):
    rng = np.random.default_rng(7)
    vals, U = _random_front(rng, 6, k)
    g = CostGrid(vals, U, 0.0, np.full(k, 1.0))
    mean, std = rng.random(8), rng.random(8) * 0.3 + 0.01
    Uc = rng.random((8, k))
    exact = g.ehvi(mean, std, Uc)
    draws = mean[None, :] + std[None, :] * rng.standard_normal((20000, 8))  # (S, m)
    mc = np.array([g.hvi(draws[:, i], np.repeat(Uc[i : i + 1], len(draws), axis=0)).mean() for i in range(8)])
    se = np.array([g.hvi(draws[:, i], np.repeat(Uc[i : i + 1], len(draws), axis=0)).std() for i in range(8)])
    se = se / np.sqrt(len(draws))
    assert np.all(np.abs(exact - mc) <= 4 * se + 1e-6), (exact, mc, se)
    assert exact.max() > 0


def test_expected_improvement_limits_and_values():
    assert expected_improvement(1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert expected_improvement(0.0, 0.0, 0.5) == 0.0
    # mean at the threshold: std * phi(0)
    assert expected_improvement(0.5, 2.0, 0.5) == pytest.approx(2.0 / np.sqrt(2 * np.pi))
    # EI is increasing in mean and in std
    m = np.linspace(-1, 1, 11)
    assert np.all(np.diff(expected_improvement(m, 0.3, 0.0)) > 0)
    s = np.linspace(0.01, 1, 11)
    assert np.all(np.diff(expected_improvement(0.0, s, 0.2)) > 0)


def test_dominated_candidate_has_tiny_ehvi_and_an_empty_front_works():
    g = CostGrid([0.9], [[0.5]], 0.0, [1.0])
    assert g.hvi([0.8], [[0.6]])[0] == 0.0  # worse and dearer
    assert g.ehvi([0.8], [1e-3], [[0.6]])[0] < 1e-12
    empty = CostGrid([], np.zeros((0, 1)), 0.0, [1.0])
    assert empty.hvi([0.5], [[0.5]])[0] == pytest.approx(0.25)


def test_many_candidates_in_blocks():
    rng = np.random.default_rng(3)
    vals, U = _random_front(rng, 30, 2)
    g = CostGrid(vals, U, 0.0, [1.0, 1.0])
    mean, std, Uc = rng.random(5000), rng.random(5000) * 0.2, rng.random((5000, 2))
    full = g.ehvi(mean, std, Uc)
    assert full.shape == (5000,)
    assert np.allclose(full[:50], [g.ehvi(mean[i : i + 1], std[i : i + 1], Uc[i : i + 1])[0] for i in range(50)])
