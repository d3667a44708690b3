"""Typed, frozen events emitted by policies (after their locks are released)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BackendFailed",
    "BackendRecovered",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "CircuitStateChanged",
    "Event",
    "RetryScheduled",
    "TimeoutExceeded",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event. ``policy`` is the emitting policy's name, ``kind`` its type
    (``"retry"``, ``"circuit_breaker"``...), ``at`` the policy clock's monotonic time,
    and ``attributes`` extra context added by adapters (method, host, status...)."""

    policy: str
    kind: str
    at: float
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSucceeded(Event):
    """A call through the policy returned; ``duration`` in seconds."""

    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed(Event):
    """A call through the policy raised (or returned a result counted as failure)."""

    duration: float
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` (1-based) failed; the next one starts after ``delay`` seconds."""

    attempt: int
    delay: float
    cause: BaseException | None = None
    result: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(Event):
    """The policy refused a call without running it."""

    reason: str
    key: Any = None
    retry_after: float | None = None
    stats: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged(Event):
    """A circuit breaker moved from ``old`` to ``new`` because of ``why``."""

    old: Any
    new: Any
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutExceeded(Event):
    """A timeout's own budget (seconds) passed."""

    budget: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendFailed(Event):
    """The shared-state backend failed; ``mode`` is what the policy did about it."""

    backend: str
    error: BaseException | None = None
    mode: str = "raise"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRecovered(Event):
    """The shared-state backend answers again."""

    backend: str
