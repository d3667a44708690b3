"""Durations and rates parsed at the API edge."""

from __future__ import annotations

from datetime import timedelta

import pytest

import resilient as rs
from resilient._duration import Rate, parse_rates, to_seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0.25, 0.25),
        (3, 3.0),
        (timedelta(milliseconds=1500), 1.5),
        ("250ms", 0.25),
        ("1.5s", 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("10", 10.0),
        ("100us", 1e-4),
        (" 2 min ", 120.0),
    ],
)
def test_durations(value, seconds):
    assert to_seconds(value, name="x") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 parsecs", "", "-1s", "fast", -0.5, True, None, [1], "nan"])
def test_bad_durations_name_the_argument_and_value(bad):
    with pytest.raises(rs.ConfigError) as info:
        to_seconds(bad, name="open_for")
    assert info.value.path == "open_for"
    assert info.value.value == bad
    assert "250ms" in info.value.expected


def test_zero_refused_where_asked():
    with pytest.raises(rs.ConfigError, match="greater than zero"):
        to_seconds(0, name="t", allow_zero=False)


@pytest.mark.parametrize(
    ("text", "rates"),
    [
        ("100/second", [Rate(100, 1.0)]),
        ("100/s", [Rate(100, 1.0)]),
        ("10 per minute", [Rate(10, 60.0)]),
        ("10/min", [Rate(10, 60.0)]),
        ("5/s;100/min", [Rate(5, 1.0), Rate(100, 60.0)]),
        ("1000/h", [Rate(1000, 3600.0)]),
        ("7/d", [Rate(7, 86400.0)]),
        ("5/2 seconds", [Rate(5, 2.0)]),
        ((100, 1.0), [Rate(100, 1.0)]),
        ((100, "1m"), [Rate(100, 60.0)]),
        (Rate(3, 2.0), [Rate(3, 2.0)]),
    ],
)
def test_rates(text, rates):
    assert list(parse_rates(text, name="rate")) == rates


@pytest.mark.parametrize("bad", ["10 parsecs", "", "x/s", "0/s", (0, 1), (1, 0), 5, None])
def test_bad_rates(bad):
    with pytest.raises(rs.ConfigError) as info:
        parse_rates(bad, name="rate")
    assert info.value.path.startswith("rate")


def test_rate_helpers():
    assert Rate(100, 60.0).per_second == pytest.approx(100 / 60)
    assert str(Rate(100, 60.0)) == "100/minute"
    assert str(Rate(5, 2.0)) == "5/2 seconds"
