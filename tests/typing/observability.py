"""Type-checked (``mypy --strict``), never executed: the observability API's typing contract."""

from __future__ import annotations

import logging
from typing import assert_type

import resilient as rs
from resilient.observability import (
    CallSucceeded,
    Event,
    LoggingListener,
    OpenTelemetryListener,
    PrometheusListener,
    RetryScheduled,
    StructlogListener,
    get_listeners,
    set_listeners,
)
from resilient.testing import RecordingListener, TestingMode, set_testing


def listeners_are_callables() -> None:
    def plain(event: Event) -> None:
        print(event.policy, event.event_name, event.as_dict())

    rec = RecordingListener()
    set_listeners([plain, rec, LoggingListener(levels={RetryScheduled: logging.DEBUG})])
    set_listeners([PrometheusListener(namespace="app"), OpenTelemetryListener()])
    set_listeners([StructlogListener(call_events=True)])
    set_listeners(None)
    rs.Retry(listeners=[rec])
    set_listeners([1])  # type: ignore[list-item]
    assert_type(get_listeners(), tuple[rs.observability.Listener, ...])


def recorder_narrows_by_type() -> None:
    rec = RecordingListener()
    assert_type(rec.of(RetryScheduled), list[RetryScheduled])
    assert_type(rec.of(CallSucceeded)[0].duration, float)
    assert_type(rec.names, list[str])


def testing_mode() -> None:
    assert_type(set_testing(True, attempts=2), TestingMode)
    with set_testing(attempts=None) as mode:
        assert_type(mode.attempts, int | None)
    set_testing(attempts="2")  # type: ignore[arg-type]
