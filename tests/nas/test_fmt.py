"""nas.fmt: SI numbers, local dates and durations a person reads, and the compact clock of the progress line."""

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.fmt import clock, duration, si, when

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)
_UNITS = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


@pytest.mark.parametrize(
    "x, text",
    [
        (12_300_000, "12.3M"),
        (4688, "4.69K"),
        (178, "178"),
        (999, "999"),
        (1000, "1K"),
        (2.5e9, "2.5G"),
        (-4688, "-4.69K"),
        (0, "0"),
        (None, "-"),
        (float("nan"), "-"),
    ],
)
def test_si_examples(x, text):
    assert si(x) == text


def test_si_reads_pandas_missing_values():
    pd = pytest.importorskip("pandas")
    assert si(pd.NA) == "-" and si(pd.Series([1500], dtype="Int64")[0]) == "1.5K"


@SETTINGS
@given(x=st.floats(0, 1e12))
def test_si_is_three_significant_digits_of_the_number(x):
    m = re.fullmatch(r"([0-9.e+]+)([KMG]?)", si(x))
    assert m, si(x)
    back = float(m.group(1)) * _UNITS[m.group(2)]
    assert back == pytest.approx(x, rel=5e-3, abs=0.5)


@pytest.mark.parametrize(
    "s, text",
    [
        (0, "0.0s"),
        (4.24, "4.2s"),
        (59.96, "1m 0.0s"),
        (76.635606, "1m 16.6s"),
        (3599.96, "1h 00m 00s"),
        (7387, "2h 03m 07s"),
        (90000, "1d 01h 00m"),
        (-5, "-5.0s"),
        (None, "-"),
    ],
)
def test_duration_examples(s, text):
    assert duration(s) == text


@SETTINGS
@given(s=st.floats(0, 1e7))
def test_duration_never_shows_sixty_of_a_unit(s):
    text = duration(s)
    assert not re.search(r"\b60(\.0)?[smh]", text), text
    assert re.fullmatch(r"\d+\.\ds|\d+m \d+\.\ds|\d+h \d\dm \d\ds|\d+d \d\dh \d\dm", text), text


def test_when_is_local_time_to_the_second():
    t = 1796158693.71
    assert when(t) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when(t)) and when(None) == "-"


@pytest.mark.parametrize("s, text", [(0, "0s"), (45, "45s"), (75, "1m15s"), (7387, "2h03m"), (59.6, "1m00s")])
def test_clock_examples(s, text):
    assert clock(s) == text
