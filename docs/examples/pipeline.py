"""A pipeline in the recommended order, and what each layer sees."""

from __future__ import annotations

import resilient as rs
from resilient.observability import RetryScheduled
from resilient.testing import FakeClock, RecordingListener

clock = FakeClock()
events = RecordingListener()
tries: list[float] = []


def call_payments() -> str:
    tries.append(clock.monotonic())
    if len(tries) <= 2:
        raise ConnectionError("payments unavailable")
    return "charged"


# --8<-- [start:example]
payments = rs.Pipeline(
    rs.TokenBucket("50/s", burst=50, clock=clock),  # 1. admission: shed load first
    rs.Timeout("10s", clock=clock),  # 2. the caller's whole budget
    rs.Retry(  # 3. retries, inside the budget
        attempts=3,
        backoff=rs.Backoff.exponential(initial=0.5, jitter="none"),
        retry_on=ConnectionError,
        clock=clock,
        listeners=[events],
    ),
    rs.CircuitBreaker(name="payments", clock=clock),  # 4. sees every try
    rs.Timeout("2s", clock=clock),  # 5. each try
    name="payments",
)
assert payments.call(call_payments) == "charged"
# --8<-- [end:example]

if __name__ == "__main__":
    assert tries == [0.0, 0.5, 1.5]
    assert [e.delay for e in events.of(RetryScheduled)] == [0.5, 1.0]
    breaker = payments.policies[3]
    assert isinstance(breaker, rs.CircuitBreaker)
    assert (breaker.stats().calls, breaker.stats().failed_calls) == (3, 2)
