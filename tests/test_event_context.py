"""Adapters tag every policy's events with the request they were emitted for."""

from __future__ import annotations

import contextvars

import httpx
import pytest

import resilient as rs
from resilient.adapters.httpx import ResilientTransport
from resilient.observability import (
    CallFailed,
    CallRejected,
    CircuitStateChanged,
    add_event_context,
)
from resilient.testing import FakeClock, RecordingListener

_REQUEST: contextvars.ContextVar[str | None] = contextvars.ContextVar("req", default=None)


@pytest.fixture
def providers():
    from resilient.observability import _emit

    before = list(_emit._CONTEXT)
    yield
    _emit._CONTEXT[:] = before


def test_provider_attributes_are_merged_under_the_events_own(providers):
    add_event_context(lambda event: {"request": _REQUEST.get()} if _REQUEST.get() else None)

    def broken(event: object) -> None:
        raise RuntimeError("provider bug")

    add_event_context(broken)  # a raising provider is ignored
    recorder = RecordingListener()
    retry = rs.Retry(attempts=2, backoff=rs.Backoff.constant(0), listeners=[recorder])
    calls = iter([OSError(), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    token = _REQUEST.set("r-1")
    try:
        retry.call(fn)
    finally:
        _REQUEST.reset(token)
    assert recorder.events
    assert {e.attributes.get("request") for e in recorder.events} == {"r-1"}
    recorder.clear()
    retry.call(lambda: "ok")  # outside a request: nothing added
    assert all("request" not in e.attributes for e in recorder.events)


def test_bad_provider_is_a_config_error():
    with pytest.raises(rs.ConfigError, match="provider"):
        add_event_context(3)  # type: ignore[arg-type]


def test_breaker_and_rejection_events_through_httpx_carry_method_host_and_status():
    recorder = RecordingListener()
    clock = FakeClock()
    breaker = rs.CircuitBreaker(
        name="catalog",
        window=rs.CountWindow(2),
        minimum_calls=2,
        open_for=10,
        clock=clock,
        listeners=[recorder],
    )
    upstream = httpx.MockTransport(lambda request: httpx.Response(503))
    transport = ResilientTransport(breaker, transport=upstream)
    with httpx.Client(transport=transport, base_url="http://catalog.test") as client:
        assert client.get("/a?token=secret").status_code == 503
        assert client.get("/b").status_code == 503
        with pytest.raises(rs.CircuitOpenError):
            client.post("/c")
    (opened,) = recorder.of(CircuitStateChanged)
    assert opened.attributes == {"method": "GET", "host": "catalog.test"}
    failed = [e for e in recorder.of(CallFailed) if e.policy == "catalog"]
    assert [e.attributes.get("status") for e in failed] == [503, 503]
    (rejected,) = recorder.of(CallRejected)
    assert rejected.attributes["method"] == "POST"
    assert rejected.attributes["host"] == "catalog.test"
    for event in recorder.events:  # never the URL, its path or its query
        assert "secret" not in repr(event.attributes)
        assert "/a" not in repr(event.attributes)
