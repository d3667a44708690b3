"""The breaker in a pipeline: a Retry outside it does not retry CircuitOpenError (the
library's own "no"), and a Fallback catches it. Same bodies through call and acall."""

from __future__ import annotations

from typing import Any

import pytest

import resilient as rs
from resilient.testing import FakeClock


def open_breaker(clock: FakeClock) -> rs.CircuitBreaker:
    cb = rs.CircuitBreaker(name="db", clock=clock, consecutive_failures=1, open_for=30.0)
    with pytest.raises(OSError):
        cb.call(_boom)
    assert cb.state is rs.CircuitState.OPEN
    return cb


def _boom() -> Any:
    raise OSError("down")


def no_wait_retry(clock: FakeClock, **kw: Any) -> rs.Retry:
    kw.setdefault("backoff", rs.Backoff.exponential(initial=1.0, maximum=1.0, jitter="none"))
    return rs.Retry(clock=clock, **kw)


def test_retry_outside_an_open_breaker_does_not_retry_its_rejection(run, clock):
    """Retry(retry_on=Exception) wrapping an open breaker makes one attempt and re-raises."""
    cb = open_breaker(clock)
    calls: list[int] = []
    pipeline = rs.Pipeline(no_wait_retry(clock, attempts=5, retry_on=Exception), cb)
    with pytest.raises(rs.CircuitOpenError) as info:
        run(pipeline, lambda: calls.append(1))
    assert calls == []
    assert info.value.retry_after == 30.0
    assert clock.sleeps == []  # never waited for another attempt
    assert cb.stats().rejected == 1


def test_retry_rejected_opts_in_to_retrying_the_rejection(run, clock):
    """With retry_rejected=True the retry waits the breaker's retry_after and gets through."""
    cb = open_breaker(clock)
    retry = no_wait_retry(clock, attempts=2, retry_on=Exception, retry_rejected=True)
    pipeline = rs.Pipeline(retry, cb)
    assert run(pipeline, lambda: "ok") == "ok"
    assert clock.sleeps == [30.0]  # the server hint (retry_after) replaced the backoff
    assert cb.state is rs.CircuitState.HALF_OPEN


def test_fallback_catches_the_open_breaker(run, clock):
    """Fallback(Retry(Breaker)): failures trip the breaker mid-retry; the fallback answers."""
    cb = rs.CircuitBreaker(name="db", clock=clock, consecutive_failures=2, open_for=30.0)
    seen: list[BaseException] = []

    def handler(exc: BaseException) -> str:
        seen.append(exc)
        return "cached"

    pipeline = rs.Pipeline(
        rs.Fallback(handler=handler),
        no_wait_retry(clock, attempts=4, retry_on=OSError),
        cb,
    )
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        raise OSError("down")

    assert run(pipeline, flaky) == "cached"
    assert len(calls) == 2  # the third attempt met the open breaker and was not retried
    assert isinstance(seen[0], rs.CircuitOpenError)
    assert cb.state is rs.CircuitState.OPEN
