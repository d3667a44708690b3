"""Backoff maths: hypothesis properties for bounds, caps, jitter ranges and deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient as rs
from resilient.testing import FakeClock

unit = st.floats(min_value=0.0, max_value=0.999999)
initials = st.floats(min_value=0.0, max_value=10.0)
multipliers = st.floats(min_value=1.0, max_value=10.0)
retries = st.integers(min_value=1, max_value=5000)


@given(initials, st.floats(min_value=0.0, max_value=100.0), multipliers, retries, unit)
def test_full_jitter_within_zero_and_capped_base(initial, extra, multiplier, n, r):
    b = rs.Backoff.exponential(initial, initial + extra, multiplier, "full")
    delay = b.delay(n, rng=lambda: r)
    assert 0.0 <= delay <= b.base(n) <= b.maximum


@given(initials, st.floats(min_value=0.0, max_value=100.0), multipliers, retries, unit)
def test_equal_jitter_is_at_least_half_the_base(initial, extra, multiplier, n, r):
    b = rs.Backoff.exponential(initial, initial + extra, multiplier, "equal")
    delay = b.delay(n, rng=lambda: r)
    assert b.base(n) / 2 <= delay <= b.base(n) <= b.maximum


@given(initials, st.floats(min_value=0.0, max_value=100.0), multipliers, retries)
def test_base_is_monotone_and_capped(initial, extra, multiplier, n):
    b = rs.Backoff.exponential(initial, initial + extra, multiplier, "none")
    assert b.base(n) <= b.base(n + 1) <= b.maximum
    assert b.delay(n) == b.base(n)


@given(
    st.floats(min_value=0.001, max_value=5.0),
    st.floats(min_value=0.0, max_value=50.0),
    st.floats(min_value=0.0, max_value=100.0),
    unit,
)
def test_decorrelated_stays_between_initial_and_maximum(initial, extra, previous, r):
    b = rs.Backoff.exponential(initial, initial + extra, 2.0, "decorrelated")
    delay = b.delay(3, previous=previous, rng=lambda: r)
    assert initial <= delay <= b.maximum
    assert delay <= max(initial, 3 * previous) or delay == initial


def test_known_sequences():
    b = rs.Backoff.exponential(1, 5, 2, "none")
    assert [b.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    lin = rs.Backoff.linear(initial=1, increment=0.5, maximum=2)
    assert [lin.delay(n) for n in range(1, 5)] == [1, 1.5, 2, 2]
    assert rs.Backoff.constant("250ms").delay(9) == 0.25
    assert rs.Backoff.exponential(1, 1e300, 10, "none").base(10_000) == 1e300  # no overflow


@given(
    st.floats(min_value=0.1, max_value=30.0),
    st.lists(st.floats(min_value=0.0, max_value=5.0), min_size=1, max_size=20),
    unit,
)
def test_retry_never_sleeps_past_its_deadline(deadline, durations, r):
    clock = FakeClock()
    it = iter(durations)

    def fn() -> None:
        clock.advance(next(it, 0.0))
        raise OSError

    retry = rs.Retry(
        attempts=len(durations) + 1,
        deadline=deadline,
        backoff=rs.Backoff.exponential(0.5, 8.0, 2.0, "full"),
        rng=lambda: r,
        clock=clock,
    )
    with pytest.raises(OSError):
        retry.call(fn)
    assert sum(clock.sleeps) <= deadline
    # every sleep started before, and ended at or before, the deadline
    elapsed = 0.0
    for i, sleep in enumerate(clock.sleeps):
        elapsed += durations[i] if i < len(durations) else 0.0
        assert elapsed + sleep <= deadline + 1e-9
        elapsed += sleep


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"jitter": "foo"}, "backoff.jitter"),
        ({"multiplier": 0.5}, "backoff.multiplier"),
        ({"initial": -1}, "backoff.initial"),
        ({"initial": 5, "maximum": 1}, "backoff.maximum"),
        ({"initial": "10 parsecs"}, "backoff.initial"),
    ],
)
def test_bad_backoff_arguments(kwargs, path):
    with pytest.raises(rs.ConfigError) as info:
        rs.Backoff(**kwargs)
    assert info.value.path == path
    assert "expected" in str(info.value)
