"""Events and metrics from the circuit breaker, the bulkhead and the rate limiters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

import resilient as rs
from resilient.observability import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    set_listeners,
)
from resilient.testing import RecordingListener

try:
    from resilient import SlidingWindow, TokenBucket
except ImportError:  # the limiters are not exported from the package yet
    from resilient._rate_limit import SlidingWindow, TokenBucket


@pytest.fixture(autouse=True)
def _reset_listeners() -> Iterator[None]:
    set_listeners(None)
    yield
    set_listeners(None)


def ok() -> str:
    return "ok"


def boom() -> str:
    raise OSError("down")


def small_breaker(clock: Any, rec: RecordingListener, **kw: Any) -> Any:
    kw.setdefault("window", rs.CountWindow(4))
    return rs.CircuitBreaker(
        name="db",
        failure_rate=0.5,
        minimum_calls=4,
        half_open_calls=1,
        open_for=10.0,
        clock=clock,
        listeners=[rec],
        **kw,
    )


def test_breaker_emits_calls_transitions_and_rejections(run, clock):
    """Calls, the trip to OPEN, the rejection, then HALF_OPEN and CLOSED again, in order."""
    rec = RecordingListener()
    breaker = small_breaker(clock, rec)
    for _ in range(2):
        assert run(breaker, ok) == "ok"
    for _ in range(2):
        with pytest.raises(OSError):
            run(breaker, boom)
    # The transition is emitted as the 4th outcome is recorded, before its CallFailed.
    assert rec.names == [
        "call_succeeded",
        "call_succeeded",
        "call_failed",
        "circuit_state_changed",
        "call_failed",
    ]
    (opened,) = rec.of(CircuitStateChanged)
    assert (opened.policy, opened.kind) == ("db", "circuit_breaker")
    assert (str(opened.old), str(opened.new)) == ("closed", "open")
    assert opened.why
    assert isinstance(rec.of(CallFailed)[0].exception, OSError)
    rec.clear()

    with pytest.raises(rs.CircuitOpenError):
        run(breaker, ok)
    (rejected,) = rec.of(CallRejected)
    assert (rejected.policy, rejected.reason, rejected.retry_after) == ("db", "circuit_open", 10.0)
    rec.clear()

    clock.advance(10.0)
    assert run(breaker, ok) == "ok"
    assert [(str(e.old), str(e.new)) for e in rec.of(CircuitStateChanged)] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert len(rec.of(CallSucceeded)) == 1


def test_breaker_metrics_from_a_real_breaker(run, clock):
    """A real breaker drives the Prometheus state set, transitions and rejections."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from resilient.observability import PrometheusListener

    registry = prometheus_client.CollectorRegistry()
    set_listeners([PrometheusListener(registry)])
    breaker = small_breaker(clock, RecordingListener())
    for fn in (boom, boom, boom, boom):
        with pytest.raises(OSError):
            run(breaker, fn)
    with pytest.raises(rs.CircuitOpenError):
        run(breaker, ok)
    value = registry.get_sample_value
    assert value("resilient_circuit_state", {"policy": "db", "state": "open"}) == 1.0
    assert value("resilient_circuit_state", {"policy": "db", "state": "closed"}) == 0.0
    assert (
        value(
            "resilient_circuit_transitions_total",
            {"policy": "db", "from_state": "closed", "to_state": "open"},
        )
        == 1.0
    )
    assert (
        value(
            "resilient_rejections_total",
            {"policy": "db", "kind": "circuit_breaker", "reason": "circuit_open"},
        )
        == 1.0
    )
    assert (
        value(
            "resilient_calls_total",
            {"policy": "db", "kind": "circuit_breaker", "outcome": "failure"},
        )
        == 4.0
    )


def test_bulkhead_full_emits_call_rejected_sync():
    """A call beyond max_concurrent is refused with CallRejected(reason="bulkhead_full")."""
    rec = RecordingListener()
    bulkhead = rs.Bulkhead(1, name="pool", listeners=[rec])

    def nested() -> str:
        with pytest.raises(rs.BulkheadFullError):
            bulkhead.call(ok)
        return "outer"

    assert bulkhead.call(nested) == "outer"
    (rejected,) = rec.of(CallRejected)
    assert (rejected.policy, rejected.kind, rejected.reason) == (
        "pool",
        "bulkhead",
        "bulkhead_full",
    )
    assert len(rec.of(CallSucceeded)) == 1


def test_bulkhead_full_emits_call_rejected_async():
    """The async driver emits the same rejection."""
    rec = RecordingListener()
    bulkhead = rs.Bulkhead(1, name="pool", listeners=[rec])

    async def aok() -> str:
        return "ok"

    async def nested() -> str:
        with pytest.raises(rs.BulkheadFullError):
            await bulkhead.acall(aok)
        return "outer"

    assert asyncio.run(bulkhead.acall(nested)) == "outer"
    assert [e.reason for e in rec.of(CallRejected)] == ["bulkhead_full"]


@pytest.mark.parametrize("limiter_type", ["token_bucket", "sliding_window"])
def test_rate_limiter_rejection_carries_key_and_retry_after(run, clock, limiter_type):
    """A rate-limited call emits CallRejected with its key and a positive retry_after."""
    rec = RecordingListener()
    cls = TokenBucket if limiter_type == "token_bucket" else SlidingWindow
    kwargs: dict[str, Any] = {"burst": 1} if cls is TokenBucket else {}
    limiter = cls(
        "1/s", key=lambda *a, **kw: "client-7", name="api", clock=clock, listeners=[rec], **kwargs
    )
    assert run(limiter, ok) == "ok"
    with pytest.raises(rs.RateLimitedError):
        run(limiter, ok)
    (rejected,) = rec.of(CallRejected)
    assert (rejected.policy, rejected.reason, rejected.key) == ("api", "rate_limited", "client-7")
    assert rejected.kind == limiter.kind
    assert rejected.retry_after is not None
    assert rejected.retry_after > 0


def test_rate_limiter_100000_keys_stay_bounded_in_prometheus(clock):
    """A keyed limiter refusing 100,000 clients yields a bounded set of series."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from resilient.observability import PrometheusListener

    registry = prometheus_client.CollectorRegistry()
    limiter = TokenBucket(
        "1/minute",
        burst=1,
        name="api",
        clock=clock,
        listeners=[PrometheusListener(registry, per_key=True, max_keys=10)],
    )
    refused = 0
    for i in range(100_000):
        key = f"client-{i}"
        assert limiter.try_acquire(key).allowed
        if not limiter.try_acquire(key).allowed:
            refused += 1
    assert refused == 100_000
    series = [
        s
        for metric in registry.collect()
        if metric.name == "resilient_rejections"
        for s in metric.samples
        if s.name == "resilient_rejections_total"
    ]
    assert len(series) <= 11
    assert sum(s.value for s in series) == refused


def test_breaker_opening_is_logged_by_default(clock, caplog):
    """With no listener at all, a breaker opening is a WARNING on the "resilient" logger."""
    caplog.set_level(logging.WARNING, logger="resilient")
    breaker = rs.CircuitBreaker(
        name="db", failure_rate=0.5, minimum_calls=2, window=rs.CountWindow(2), clock=clock
    )
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(boom)
    records = [r for r in caplog.records if r.name == "resilient"]
    assert [(r.levelname, r.event, r.old, r.new) for r in records] == [
        ("WARNING", "circuit_state_changed", "closed", "open")
    ]
    assert records[0].getMessage().startswith("circuit_breaker 'db': closed -> open (")


def test_observe_only_breaker_counts_would_be_rejections_not_rejected_calls(clock, caplog):
    """In observe-only mode the refused-in-theory call still runs: it is counted by its
    outcome, its would-be rejection in resilient_rejections_total, and logged as such."""
    prometheus_client = pytest.importorskip("prometheus_client")
    from resilient.observability import PrometheusListener

    registry = prometheus_client.CollectorRegistry()
    set_listeners([PrometheusListener(registry)])
    caplog.set_level(logging.INFO, logger="resilient")
    breaker = rs.CircuitBreaker(
        name="shadow",
        failure_rate=0.5,
        minimum_calls=2,
        window=rs.CountWindow(2),
        observe_only=True,
        clock=clock,
    )
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(boom)
    assert breaker.call(ok) == "ok"
    value = registry.get_sample_value
    base = {"policy": "shadow", "kind": "circuit_breaker"}
    assert value("resilient_rejections_total", {**base, "reason": "circuit_open"}) == 1.0
    assert value("resilient_calls_total", {**base, "outcome": "rejected"}) is None
    assert value("resilient_calls_total", {**base, "outcome": "success"}) == 1.0
    assert value("resilient_calls_total", {**base, "outcome": "failure"}) == 2.0
    messages = [r.getMessage() for r in caplog.records if r.name == "resilient"]
    assert (
        "circuit_breaker 'shadow': would reject a call (observe only) (circuit_open)"
        in " ".join(messages)
    )
