"""RetryBudget: retries capped at a share of recent calls (fake clock)."""

from __future__ import annotations

import pytest

import resilient as rs
from resilient.observability import CallRejected
from resilient.testing import FakeClock, RecordingListener


def failing() -> None:
    raise OSError("down")


def test_full_outage_caps_retries_at_ratio_plus_minimum(run, clock):
    budget = rs.RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0, clock=clock)
    attempts = 0

    def fn() -> None:
        nonlocal attempts
        attempts += 1
        raise OSError

    retry = rs.Retry(attempts=5, backoff=rs.Backoff.constant(0), budget=budget, clock=clock)
    calls = 200
    for _ in range(calls):
        with pytest.raises(OSError):
            run(retry, fn)
    retries = attempts - calls
    # 10 s window (time does not move): 1/s * 10 s + 0.2 * 200 calls = 50 retries at most.
    assert retries == 50
    stats = budget.stats()
    assert (stats.calls, stats.retries) == (200, 50)
    # Calls 1 and 2 spend 4 retries each from the 10-retry minimum; from call 3 on,
    # every call is denied once it has spent what the deposits allow.
    assert stats.denied == 198


def test_budget_refills_as_deposits_expire(clock):
    budget = rs.RetryBudget(ratio=0.0, min_per_second=1.0, ttl=2.0, buckets=2, clock=clock)
    assert [budget.try_spend() for _ in range(3)] == [True, True, False]
    clock.advance(2.0)
    assert budget.try_spend() is True


def test_denied_retry_ends_the_call_with_a_note_and_an_event(run, clock):
    budget = rs.RetryBudget(ratio=0.0, min_per_second=0.0, clock=clock)
    recorder = RecordingListener()
    retry = rs.Retry(budget=budget, clock=clock, listeners=[recorder], name="api")
    with pytest.raises(OSError) as info:
        run(retry, failing)
    assert "retry budget is spent" in info.value.__notes__[-1]
    (event,) = recorder.of(CallRejected)
    assert (event.policy, event.reason) == ("api", "retry_budget")
    assert clock.sleeps == []


def test_shared_budget_between_policies():
    clock = FakeClock()
    budget = rs.RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
    ok = rs.Retry(budget=budget, clock=clock)
    for _ in range(4):
        ok.call(lambda: "fine")
    bad = rs.Retry(attempts=10, budget=budget, backoff=rs.Backoff.constant(0), clock=clock)
    with pytest.raises(OSError):
        bad.call(failing)
    # 5 calls deposited 2.5 retries: two of them could be spent.
    assert budget.stats().retries == 2


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"ratio": -1}, "ratio"),
        ({"min_per_second": -1}, "min_per_second"),
        ({"ttl": 0}, "ttl"),
        ({"buckets": 0}, "buckets"),
    ],
)
def test_bad_budget_arguments(kwargs, path):
    with pytest.raises(rs.ConfigError) as info:
        rs.RetryBudget(**kwargs)
    assert info.value.path == path


def test_retry_rejects_a_non_budget():
    with pytest.raises(rs.ConfigError, match="budget"):
        rs.Retry(budget=3)  # type: ignore[arg-type]
