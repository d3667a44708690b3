"""Sliding windows (hypothesis): the running totals equal a brute-force recount of the
recorded outcomes, in the tallies alone and through a breaker's state machine."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient as rs
from resilient._windows import FAILURE, SLOW, CountTally, TimeTally
from resilient.testing import FakeClock

outcomes = st.integers(min_value=0, max_value=FAILURE | SLOW)


def recount(kept: list[int]) -> tuple[int, int, int]:
    return (
        len(kept),
        sum(1 for o in kept if o & FAILURE),
        sum(1 for o in kept if o & SLOW),
    )


@given(
    size=st.integers(min_value=1, max_value=12),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("record"), outcomes),
            st.tuples(st.just("successes"), st.integers(min_value=0, max_value=30)),
        ),
        max_size=80,
    ),
)
def test_count_tally_equals_a_recount_of_the_last_n(size, ops):
    """CountTally(size): totals are those of the last `size` outcomes, batches included."""
    tally = CountTally(size)
    history: list[int] = []
    for op, value in ops:
        if op == "record":
            tally.record(value, 0.0)
            history.append(value)
        else:
            tally.add_successes(value)
            history.extend([0] * value)
        assert tally.totals(0.0) == recount(history[-size:])


@given(
    width=st.sampled_from([0.1, 0.25, 1.0, 3.0]),
    count=st.integers(min_value=1, max_value=8),
    start=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    ops=st.lists(
        st.tuples(st.floats(min_value=0, max_value=5, allow_nan=False), outcomes, st.booleans()),
        max_size=80,
    ),
)
def test_time_tally_equals_a_recount_of_the_last_buckets(width, count, start, ops):
    """TimeTally: totals are those of outcomes whose bucket is within the last `count`."""
    tally = TimeTally(width, count)
    history: list[tuple[float, int]] = []
    now = start
    for dt, outcome, record in ops:
        now += dt
        if record:
            tally.record(outcome, now)
            history.append((now, outcome))
        newest = math.floor(now / width)
        kept = [o for t, o in history if math.floor(t / width) > newest - count]
        assert tally.totals(now) == recount(kept)


def test_time_tally_drops_a_report_older_than_the_window():
    """A late report whose end time is already out of the window is not counted."""
    tally = TimeTally(1.0, 3)
    tally.record(0, 10.0)
    tally.record(FAILURE, 5.0)  # ended long before the newest bucket's window
    assert tally.totals(10.0) == (1, 0, 0)
    tally.record(FAILURE, 8.5)  # still inside (buckets 8, 9, 10)
    assert tally.totals(10.0) == (2, 1, 0)


calls = st.lists(
    st.tuples(
        st.sampled_from(["ok", "fail", "slow_ok", "slow_fail"]),
        st.floats(min_value=0, max_value=4, allow_nan=False),
        st.booleans(),
    ),
    max_size=60,
)


@pytest.mark.parametrize("shape", ["count", "time"])
@settings(max_examples=150, deadline=None)
@given(
    ops=calls,
    minimum=st.integers(min_value=1, max_value=8),
    failure_rate=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    slow_rate=st.sampled_from([0.5, 1.0]),
)
def test_breaker_opens_exactly_when_a_brute_force_recount_says_so(
    shape, ops, minimum, failure_rate, slow_rate
):
    """Through the breaker: stats equal a recount, and it opens exactly when the recount
    reaches a threshold after minimum_calls (lock-free success batching included)."""
    clock = FakeClock(100.0)
    window = rs.CountWindow(6) if shape == "count" else rs.TimeWindow(8.0, buckets=4)
    cb = rs.CircuitBreaker(
        clock=clock,
        window=window,
        minimum_calls=minimum,
        failure_rate=failure_rate,
        slow_call_rate=slow_rate,
        slow_call_duration=1.0,
    )
    history: list[tuple[float, int]] = []

    def in_window(now: float) -> list[int]:
        if shape == "count":
            return [o for _, o in history[-6:]]
        newest = math.floor(now / 2.0)
        return [o for t, o in history if math.floor(t / 2.0) > newest - 4]

    for kind, dt, check in ops:
        clock.advance(dt)
        slow = kind.startswith("slow")
        failed = kind.endswith("fail")

        def fn(slow: bool = slow, failed: bool = failed) -> str:
            if slow:
                clock.advance(1.5)
            if failed:
                raise OSError("x")
            return "ok"

        if failed:
            with pytest.raises(OSError):
                cb.call(fn)
        else:
            cb.call(fn)
        history.append((clock.monotonic(), (FAILURE if failed else 0) | (SLOW if slow else 0)))
        n, f, s = recount(in_window(clock.monotonic()))
        should_open = n >= min(minimum, 6 if shape == "count" else minimum) and (
            f / n >= failure_rate or s / n >= slow_rate
        )
        if check or should_open:
            stats = cb.stats()
            assert (stats.calls, stats.failed_calls, stats.slow_calls) == (n, f, s)
        assert (cb.state is rs.CircuitState.OPEN) == should_open
        if should_open:
            break
