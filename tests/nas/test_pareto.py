"""Pareto mask and 2-D hypervolume against brute-force references, plus invariances."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.pareto import hypervolume_2d, pareto_mask


def brute_mask(P, maximize):
    """Direct definition, pure Python: i is kept unless some j is at least as good everywhere and better once."""
    better = [(lambda a, b: a > b) if mx else (lambda a, b: a < b) for mx in maximize]
    n = len(P)
    out = []
    for i in range(n):
        dominated = False
        for j in range(n):
            ge = all(P[j][d] == P[i][d] or better[d](P[j][d], P[i][d]) for d in range(len(maximize)))
            gt = any(better[d](P[j][d], P[i][d]) for d in range(len(maximize)))
            dominated |= ge and gt
        out.append(not dominated)
    return np.array(out, dtype=bool)


def brute_hv(P, ref, maximize):
    """Area of the union of the boxes [p, ref], by checking every cell of the grid the coordinates make."""
    s = np.where(maximize, -1.0, 1.0)
    Q = np.asarray(P, float) * s
    r = np.asarray(ref, float) * s
    xs = sorted(set(Q[:, 0]) | {r[0]})
    ys = sorted(set(Q[:, 1]) | {r[1]})
    area = 0.0
    for (x0, x1), (y0, y1) in itertools.product(zip(xs, xs[1:]), zip(ys, ys[1:])):
        if x1 > r[0] or y1 > r[1]:
            continue
        if any(q[0] <= x0 and q[1] <= y0 for q in Q):  # the cell lies inside some box [q, r]
            area += (x1 - x0) * (y1 - y0)
    return area


# Small integer grids make ties and duplicates common, which is where dominance code goes wrong.
points = st.integers(1, 40).flatmap(
    lambda n: st.integers(1, 4).flatmap(
        lambda m: st.tuples(
            st.lists(st.lists(st.integers(0, 5), min_size=m, max_size=m), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=m, max_size=m),
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(points)
def test_mask_matches_brute_force(case):
    P, maximize = case
    np.testing.assert_array_equal(pareto_mask(np.array(P), maximize=maximize), brute_mask(P, maximize))


@settings(max_examples=60, deadline=None)
@given(points, st.randoms(use_true_random=False))
def test_mask_permutation_invariant(case, rnd):
    P, maximize = np.array(case[0]), case[1]
    perm = list(range(len(P)))
    rnd.shuffle(perm)
    np.testing.assert_array_equal(pareto_mask(P[perm], maximize=maximize), pareto_mask(P, maximize=maximize)[perm])


@settings(max_examples=60, deadline=None)
@given(points, st.data())
def test_adding_a_dominated_point_changes_nothing(case, data):
    P, maximize = np.array(case[0], float), case[1]
    i = data.draw(st.integers(0, len(P) - 1))
    worse = P[i] + np.where(maximize, -1.0, 1.0) * data.draw(st.floats(0.1, 3))  # strictly worse everywhere
    m = pareto_mask(np.vstack([P, worse]), maximize=maximize)
    np.testing.assert_array_equal(m[:-1], pareto_mask(P, maximize=maximize))
    assert not m[-1]


def test_duplicates_on_the_front_are_all_kept():
    P = np.array([[0.9, 10], [0.9, 10], [0.8, 5], [0.7, 20]])
    assert pareto_mask(P, maximize=[True, False]).tolist() == [True, True, True, False]


def test_nan_rows_are_off_the_front_and_dominate_nothing():
    P = np.array([[0.5, 10], [np.nan, 1], [0.6, np.nan]])
    assert pareto_mask(P, maximize=[True, False]).tolist() == [True, False, False]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="one per column"):
        pareto_mask(np.zeros((3, 2)), maximize=[True])
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask(np.zeros(3), maximize=[True])


def test_large_input_is_fast_enough():
    P = np.random.default_rng(0).random((3000, 3))
    m = pareto_mask(P, maximize=[True, False, False])
    # every dropped point is dominated by a kept one (checked vectorised against the front only)
    Q = P * np.array([-1, 1, 1])
    F = Q[m]
    dominated = ((F[None] <= Q[~m][:, None]).all(2) & (F[None] < Q[~m][:, None]).any(2)).any(1)
    assert dominated.all()


hv_points = st.integers(1, 12).flatmap(
    lambda n: st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=n, max_size=n)
)


@settings(max_examples=120, deadline=None)
@given(hv_points, st.tuples(st.booleans(), st.booleans()))
def test_hypervolume_matches_grid_count(P, maximize):
    P = np.array(P, float)
    ref = [(-1.0 if mx else 9.0) for mx in maximize]  # beyond every point: all boxes count
    assert hypervolume_2d(P, ref, maximize) == pytest.approx(brute_hv(P, ref, maximize))
    ref_mid = [4.0, 4.0]  # cuts through the cloud: points on the wrong side must add nothing
    assert hypervolume_2d(P, ref_mid, maximize) == pytest.approx(brute_hv(P, ref_mid, maximize))


@settings(max_examples=60, deadline=None)
@given(hv_points, st.tuples(st.integers(0, 8), st.integers(0, 8)))
def test_hypervolume_invariances(P, extra):
    P = np.array(P, float)
    ref, mx = [-1.0, 9.0], [True, False]
    hv = hypervolume_2d(P, ref, mx)
    assert hypervolume_2d(P[::-1], ref, mx) == pytest.approx(hv)  # order does not matter
    assert hypervolume_2d(np.vstack([P, P]), ref, mx) == pytest.approx(hv)  # duplicates add nothing
    assert hypervolume_2d(np.vstack([P, extra]), ref, mx) >= hv - 1e-12  # more points never shrink it
    worst = P[np.argmin(P[:, 0])].copy()
    worst[1] += 1  # dominated by a point already there
    assert hypervolume_2d(np.vstack([P, worst]), ref, mx) == pytest.approx(hv)


def test_hypervolume_hand_value():
    # maximise accuracy, minimise cost; ref (0, 3): boxes 1x2 and 2x1 overlapping in 1x1 -> 3
    assert hypervolume_2d([[1, 1], [2, 2]], ref=[0, 3], maximize=[True, False]) == pytest.approx(3.0)
    assert hypervolume_2d([[1, 5]], ref=[0, 3], maximize=[True, False]) == 0.0
