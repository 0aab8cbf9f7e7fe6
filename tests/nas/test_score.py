"""nas.score: the MnasNet and weighted scores by formula and by property, and --score specs that parse or fail
in one line."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.errors import NasError
from nas.score import Identity, MnasScore, WeightedScore, parse_score

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)
COST = st.floats(1.0, 1e9)
ACC = st.floats(0.0, 1.0)
EXPONENT = st.floats(-1.0, -1e-3)


# ------------------------------------------------------------------------------------------ formulas
def test_mnas_score_formula_and_monotonicity():
    s = MnasScore(targets={"macs": 1000.0}, alpha=-0.01, beta=-0.07)
    acc = np.array([0.9, 0.9, 0.9])
    macs = np.array([500.0, 1000.0, 2000.0])
    got = s(acc, {"macs": macs})
    np.testing.assert_allclose(got, [0.9 * 0.5**-0.01, 0.9, 0.9 * 2.0**-0.07])
    vals = np.linspace(0, 1, 11)
    assert np.all(np.diff(s(vals, {"macs": np.full(11, 3000.0)})) > 0)


def test_weighted_score_formula():
    s = WeightedScore(weights={"macs": 0.02, "params": 0.01}, refs={"macs": 1e3})
    got = s(np.array([0.9]), {"macs": np.array([4e3]), "params": np.array([8.0])})
    assert math.isclose(got[0], 0.9 - 0.02 * 2 - 0.01 * 3)


# ------------------------------------------------------------------------------------------ properties
@SETTINGS
@given(a=ACC, b=ACC, macs=COST, params=COST, t_macs=COST, t_params=COST, alpha=EXPONENT, beta=EXPONENT)
def test_mnas_is_increasing_in_accuracy_and_exact_at_its_targets(a, b, macs, params, t_macs, t_params, alpha, beta):
    s = MnasScore(targets={"macs": t_macs, "params": t_params}, alpha=alpha, beta=beta)
    known = {"macs": np.array([macs, macs]), "params": np.array([params, params])}
    lo, hi = s(np.array([min(a, b), max(a, b)]), known)
    assert lo <= hi and (hi > lo or a == b)  # the factor is positive: order of accuracy kept
    at_target = s(np.array([a]), {"macs": np.array([t_macs]), "params": np.array([t_params])})[0]
    assert at_target == pytest.approx(a, rel=1e-12)  # c == T: no reward, no penalty


@SETTINGS
@given(acc=st.floats(0.01, 1.0), c1=COST, c2=COST, target=COST, alpha=EXPONENT, beta=EXPONENT)
def test_mnas_never_prefers_the_costlier_of_two_equally_accurate(acc, c1, c2, target, alpha, beta):
    s = MnasScore(targets={"macs": target}, alpha=alpha, beta=beta)
    cheap, dear = s(np.array([acc, acc]), {"macs": np.array([min(c1, c2), max(c1, c2)])})
    assert cheap >= dear * (1 - 1e-12)


@SETTINGS
@given(acc=ACC, c=COST, w=st.floats(0.0, 1.0), ref=COST)
def test_weighted_halving_a_cost_is_worth_its_weight(acc, c, w, ref):
    s = WeightedScore(weights={"params": w}, refs={"params": ref})
    full, half = s(np.array([acc, acc]), {"params": np.array([c, c / 2])})
    assert half - full == pytest.approx(w, abs=1e-9)
    assert s(np.array([acc]), {"params": np.array([ref])})[0] == pytest.approx(acc, abs=1e-12)


@SETTINGS
@given(a=ACC, b=ACC)
def test_acc_is_the_value_itself(a, b):
    np.testing.assert_array_equal(Identity()(np.array([a, b])), [a, b])


@SETTINGS
@given(
    kind=st.sampled_from(["mnas", "weighted"]),
    macs=st.floats(1.0, 1e9),
    params=st.floats(1.0, 1e9),
    alpha=EXPONENT,
    beta=EXPONENT,
)
def test_every_score_spec_parses_back_to_itself(kind, macs, params, alpha, beta):
    s = (
        MnasScore(targets={"macs": macs, "params": params}, alpha=alpha, beta=beta)
        if kind == "mnas"
        else WeightedScore(weights={"macs": macs / 1e9, "params": params / 1e9}, refs={"macs": macs})
    )
    again = parse_score(s.spec())
    assert type(again) is type(s) and again.spec() == s.spec()


# ------------------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "spec, cls",
    [
        ("acc", Identity),
        ("mnas", MnasScore),
        ("mnas:macs=200k,beta=-0.1", MnasScore),
        ("weighted:macs=0.02,params=0.01", WeightedScore),
    ],
)
def test_parse_score(spec, cls):
    s = parse_score(spec, default_targets={"macs": 5e4})
    assert isinstance(s, cls)
    assert parse_score(s.spec(), default_targets={"macs": 5e4}) == s or isinstance(s, Identity)


def test_parse_score_applies_suffixes_and_defaults():
    s = parse_score("mnas:params=20k", default_targets={"macs": 5e4})
    assert s.targets == {"macs": 5e4, "params": 2e4} and s.alpha == -0.01 and s.beta == -0.07


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("", "empty"),
        ("nope", "unknown score"),
        ("mnas:macs=abc", "not a number"),
        ("mnas:foo=1", "unknown option"),
        ("weighted", "at least one weight"),
        ("acc:macs=1", "no options"),
        ("mnas:macs", "key=value"),
        ("mnas:macs=-5", "positive"),
        ("mnas:macs=inf", "finite"),
    ],
)
def test_parse_score_errors(spec, msg):
    with pytest.raises(NasError, match=msg):
        parse_score(spec)


@SETTINGS
@given(
    spec=st.one_of(
        st.text(max_size=40),
        st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(["acc", "mnas", "weighted"]), st.text(max_size=30)),
    )
)
def test_any_spec_is_a_score_or_a_one_line_error(spec):
    try:
        s = parse_score(spec)
    except NasError as e:
        assert "\n" not in str(e)  # specs are quoted with repr: a newline in one stays escaped
        assert str(e).startswith("score")  # named as the Python option; nas search shows --score
    else:
        assert callable(s) and isinstance(s.spec(), str)
