"""Events, listeners and metrics.

Every policy emits typed, frozen events to sync listeners: its own (the
``listeners=`` argument) and the process-wide ones set here. A listener that
raises is logged and never changes what the policy does. Rare events are also
logged on the ``"resilient"`` logger.
"""

from __future__ import annotations

from ._emit import Listener, get_listeners, set_listeners
from ._events import (
    BackendFailed,
    BackendRecovered,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    Event,
    RetryScheduled,
    TimeoutExceeded,
)

__all__ = [
    "BackendFailed",
    "BackendRecovered",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "CircuitStateChanged",
    "Event",
    "Listener",
    "RetryScheduled",
    "TimeoutExceeded",
    "get_listeners",
    "set_listeners",
]
