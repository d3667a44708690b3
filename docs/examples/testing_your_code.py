"""Testing code that uses resilient: FakeClock, RecordingListener, set_testing."""

from __future__ import annotations

import resilient as rs
from resilient.observability import CircuitStateChanged, RetryScheduled
from resilient.testing import FakeClock, RecordingListener, set_testing


# Application code: policies take a clock so tests can pass a fake one.
# --8<-- [start:app]
def make_client_policy(clock: rs.Clock | None = None) -> rs.Pipeline:
    return rs.Pipeline(
        rs.Retry(attempts=3, backoff=rs.Backoff.constant("1s"), clock=clock),
        rs.CircuitBreaker(name="catalog", consecutive_failures=3, open_for="1m", clock=clock),
    )


# --8<-- [end:app]


class Catalog:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def get(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("catalog down")
        return "item"


# --8<-- [start:fake-clock]
def test_breaker_recovers_after_a_minute() -> None:
    clock = FakeClock()
    policy = make_client_policy(clock)
    catalog = Catalog(failures=3)
    try:
        policy.call(catalog.get)
    except ConnectionError:
        pass
    assert clock.sleeps == [1.0, 1.0]  # slept on the fake clock: instantly
    try:
        policy.call(catalog.get)
    except rs.CircuitOpenError as exc:
        assert exc.retry_after == 60.0  # opened by the third try, at t=2
    clock.advance(60)
    assert policy.call(catalog.get) == "item"


# --8<-- [end:fake-clock]


# --8<-- [start:recording]
def test_events_tell_what_happened() -> None:
    events = RecordingListener()
    clock = FakeClock()
    retry = rs.Retry(attempts=3, backoff=rs.Backoff.constant(2), clock=clock, listeners=[events])
    catalog = Catalog(failures=1)
    assert retry.call(catalog.get) == "item"
    assert events.names == ["retry_scheduled", "call_succeeded"]
    (scheduled,) = events.of(RetryScheduled)
    assert (scheduled.attempt, scheduled.delay) == (1, 2.0)
    assert isinstance(scheduled.cause, ConnectionError)
    assert events.of(CircuitStateChanged) == []


# --8<-- [end:recording]


# --8<-- [start:set-testing]
def test_fast_without_touching_the_policies() -> None:
    policy = make_client_policy()  # the real clock: would sleep 1 s per retry
    with set_testing(True, attempts=None):  # keep the attempts, drop the sleeps
        assert policy.call(Catalog(failures=2).get) == "item"
    with set_testing(True, attempts=1):  # no retries at all
        try:
            policy.call(Catalog(failures=1).get)
        except ConnectionError:
            pass


# --8<-- [end:set-testing]


if __name__ == "__main__":
    test_breaker_recovers_after_a_minute()
    test_events_tell_what_happened()
    test_fast_without_touching_the_policies()
