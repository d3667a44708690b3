"""Typed, frozen events emitted by policies (after their locks are released).

Every event names the policy that emitted it (``policy``), the policy's type
(``kind``: ``"retry"``, ``"timeout"``, ``"circuit_breaker"``...), the policy
clock's monotonic time (``at``), the partition ``key`` for keyed policies, and
``attributes`` that adapters add (method, host, status...). Each class has a
stable snake-case ``event_name`` used as the log message key and in metrics.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

__all__ = [
    "BackendFailed",
    "BackendRecovered",
    "CallFailed",
    "CallRejected",
    "CallSucceeded",
    "CircuitStateChanged",
    "ConcurrencyLimitChanged",
    "Event",
    "RetryScheduled",
    "TimeoutExceeded",
    "plain",
]

_REPR_LIMIT = 200


def plain(value: object) -> str | int | float | bool | None:
    """*value* as a log- and JSON-friendly scalar.

    Numbers, strings, booleans and ``None`` pass through; enums become their
    (lowercase) value or name; exceptions become ``"TypeName: message"``;
    anything else its ``repr``, shortened to 200 characters.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, enum.Enum):
        inner = value.value
        return inner.lower() if isinstance(inner, str) else value.name.lower()
    if isinstance(value, BaseException):
        text = str(value)
        return f"{type(value).__name__}: {text}" if text else type(value).__name__
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event.

    Attributes:
        policy: the emitting policy's name (``"payments"``).
        kind: the policy's type (``"retry"``, ``"circuit_breaker"``...).
        at: the policy clock's monotonic time when it happened.
        key: the partition key of a keyed policy (a host, a client), else ``None``.
        attributes: extra context added by adapters (method, host, status...).
    """

    event_name: ClassVar[str] = "event"

    policy: str
    kind: str
    at: float
    key: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The event as flat, plain values: ``event`` (its ``event_name``) then every
        field except ``attributes``, each made log-friendly with :func:`plain`; adapters'
        ``attributes`` are merged in last without overriding a field."""
        out: dict[str, Any] = {"event": self.event_name}
        for f in fields(self):
            if f.name != "attributes":
                out[f.name] = plain(getattr(self, f.name))
        for name, value in self.attributes.items():
            out.setdefault(name, plain(value))
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSucceeded(Event):
    """A call through the policy returned; ``duration`` in seconds (policy clock)."""

    event_name: ClassVar[str] = "call_succeeded"

    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed(Event):
    """A call through the policy raised (or returned a result still counted as failure,
    then ``exception`` is ``None``); ``duration`` in seconds (policy clock)."""

    event_name: ClassVar[str] = "call_failed"

    duration: float
    exception: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` (1-based) failed with ``cause`` (or returned ``result``);
    the next one starts after ``delay`` seconds."""

    event_name: ClassVar[str] = "retry_scheduled"

    attempt: int
    delay: float
    cause: BaseException | None = None
    result: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(Event):
    """The policy refused a call without running it.

    ``reason`` is short and machine-readable (``"circuit_open"``, ``"rate_limited"``,
    ``"bulkhead_full"``...); ``retry_after`` the seconds after which the same call may
    be admitted (``None``: unknown); ``stats`` a snapshot of the policy's statistics.
    """

    event_name: ClassVar[str] = "call_rejected"

    reason: str
    retry_after: float | None = None
    stats: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged(Event):
    """A circuit breaker moved from ``old`` to ``new`` because of ``why``."""

    event_name: ClassVar[str] = "circuit_state_changed"

    old: Any
    new: Any
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyLimitChanged(Event):
    """An adaptive concurrency limit moved from ``old`` to ``new`` slots (emitted when
    the whole number of slots changes, not for every sample)."""

    event_name: ClassVar[str] = "concurrency_limit_changed"

    old: int
    new: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutExceeded(Event):
    """A timeout's own budget (seconds) passed."""

    event_name: ClassVar[str] = "timeout_exceeded"

    budget: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendFailed(Event):
    """The shared-state backend failed; ``mode`` is what the policy did about it
    (``"raise"``, ``"allow"``, ``"deny"`` or ``"local"``)."""

    event_name: ClassVar[str] = "backend_failed"

    backend: str
    error: BaseException | None = None
    mode: str = "raise"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRecovered(Event):
    """The shared-state backend answers again."""

    event_name: ClassVar[str] = "backend_recovered"

    backend: str
