"""Exact hypervolume against a brute-force grid count, on small random fronts of 2 and 3 objectives."""

import itertools

import numpy as np
import pytest

from nas.hypervolume import hypervolume, hypervolume_improvement, nondominated
from nas.pareto import hypervolume_2d


def brute_force_hv(Q, ref):
    """Independent: split space on every coordinate, count each grid box whose lower corner some point dominates."""
    Q = np.asarray(Q, float)
    Q = Q[(Q < ref).all(axis=1)]
    if len(Q) == 0:
        return 0.0
    axes = [np.unique(np.append(Q[:, d], ref[d])) for d in range(Q.shape[1])]
    total = 0.0
    for idx in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = np.array([a[i] for a, i in zip(axes, idx)])
        hi = np.array([a[i + 1] for a, i in zip(axes, idx)])
        if (Q <= lo).all(axis=1).any():
            total += float(np.prod(hi - lo))
    return total


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force(m, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 9))
    Q = rng.random((n, m))
    if seed % 2:  # ties and duplicates
        Q = np.round(Q * 4) / 4
        Q = np.vstack([Q, Q[:1]])
    ref = np.full(m, 1.1)
    assert hypervolume(Q, ref) == pytest.approx(brute_force_hv(Q, ref), rel=1e-12, abs=1e-12)


def test_2d_matches_the_existing_sweep():
    rng = np.random.default_rng(0)
    P = rng.random((30, 2))
    # pareto.hypervolume_2d maximises the first column: negate it for ours
    assert hypervolume(np.c_[-P[:, 0], P[:, 1]], [-0.0, 1.0]) == pytest.approx(
        hypervolume_2d(P, ref=[0.0, 1.0], maximize=[True, False])
    )


def test_points_beyond_the_reference_add_nothing_and_improvement_is_a_difference():
    Q = np.array([[0.2, 0.5], [0.5, 0.2]])
    assert hypervolume(np.vstack([Q, [[2.0, 0.0]]]), [1, 1]) == pytest.approx(hypervolume(Q, [1, 1]))
    assert hypervolume_improvement([0.1, 0.1], Q, [1, 1]) == pytest.approx(0.81 - hypervolume(Q, [1, 1]))
    assert hypervolume_improvement([0.6, 0.6], Q, [1, 1]) == 0.0  # dominated
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0


def test_nondominated_properties():
    rng = np.random.default_rng(1)
    Q = rng.random((40, 3))
    mask = nondominated(Q)
    F, D = Q[mask], Q[~mask]
    # no front member is dominated by any point; every other point is dominated by a front member
    for q in F:
        assert not ((Q <= q).all(axis=1) & (Q < q).any(axis=1)).any()
    for q in D:
        assert ((F <= q).all(axis=1) & (F < q).any(axis=1)).any()
    # the front alone has the hypervolume of all points
    assert hypervolume(F, [1, 1, 1]) == pytest.approx(hypervolume(Q, [1, 1, 1]))


def test_shape_errors():
    with pytest.raises(ValueError):
        hypervolume([[1.0, 2.0]], [1.0, 2.0, 3.0])
