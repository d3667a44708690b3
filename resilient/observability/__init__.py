"""Events, listeners and metrics.

Every policy emits typed, frozen events to sync listeners: its own (the
``listeners=`` argument) and the process-wide ones set here. A listener that
raises is logged and never changes what the policy does.

By default, rare events (retries, rejections, circuit state changes, timeouts,
backend faults) are logged on the ``"resilient"`` logger and nothing else runs.
Metrics are opt-in::

    from resilient.observability import LoggingListener, PrometheusListener, set_listeners

    set_listeners([LoggingListener(), PrometheusListener()])

The structlog, Prometheus and OpenTelemetry listeners import their library only
when constructed; importing this module imports none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._emit import EventContext, Listener, add_event_context, get_listeners, set_listeners
from ._events import (
    BackendFailed,
    BackendRecovered,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    ConcurrencyLimitChanged,
    Event,
    RetryScheduled,
    TimeoutExceeded,
)
from ._logging import LoggingListener

if TYPE_CHECKING:
    from ._otel import OpenTelemetryListener
    from ._prometheus import PrometheusListener
    from ._structlog import StructlogListener

__all__ = [
    "add_event_context",
    "BackendFailed",
    "BackendRecovered",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "CircuitStateChanged",
    "ConcurrencyLimitChanged",
    "Event",
    "EventContext",
    "get_listeners",
    "Listener",
    "LoggingListener",
    "OpenTelemetryListener",
    "PrometheusListener",
    "RetryScheduled",
    "set_listeners",
    "StructlogListener",
    "TimeoutExceeded",
]

_LAZY = {
    "OpenTelemetryListener": "._otel",
    "PrometheusListener": "._prometheus",
    "StructlogListener": "._structlog",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
