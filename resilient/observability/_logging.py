"""``LoggingListener``: events as stdlib log records with structured ``extra``."""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

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
    plain,
)

__all__ = ["DEFAULT_LEVELS", "LoggingListener", "describe", "extra_for"]

DEFAULT_LEVELS: Mapping[type[Event], int] = {
    CallSucceeded: logging.DEBUG,
    CallFailed: logging.DEBUG,
    RetryScheduled: logging.INFO,
    CallRejected: logging.INFO,
    TimeoutExceeded: logging.INFO,
    CircuitStateChanged: logging.WARNING,
    ConcurrencyLimitChanged: logging.DEBUG,
    BackendFailed: logging.WARNING,
    BackendRecovered: logging.INFO,
}
"""The level of each event type. A breaker that *closes* again logs at INFO."""

_CALL_EVENTS = (CallSucceeded, CallFailed)

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}


def _closed(state: object) -> bool:
    if isinstance(state, enum.Enum):
        state = state.value if isinstance(state.value, str) else state.name
    return isinstance(state, str) and state.lower() == "closed"


def describe(event: Event) -> tuple[str, tuple[Any, ...]]:
    """A ``%``-style message template for *event* and its arguments (a fixed template
    per event type, so log tools can group the records)."""
    head: tuple[Any, ...] = (event.kind, event.policy)
    where = "%s %r"
    if event.key is not None:
        where = "%s %r [key %r]"
        head = (*head, plain(event.key))
    if isinstance(event, RetryScheduled):
        why = plain(event.cause) if event.cause is not None else "result rejected"
        return (
            f"{where}: attempt %d failed (%s); retrying in %.3fs",
            (*head, event.attempt, why, event.delay),
        )
    if isinstance(event, CallSucceeded):
        return f"{where}: call succeeded in %.3fs", (*head, event.duration)
    if isinstance(event, CallFailed):
        why = plain(event.exception) if event.exception is not None else "result rejected"
        return f"{where}: call failed after %.3fs (%s)", (*head, event.duration, why)
    if isinstance(event, CallRejected):
        verb = (
            "would reject a call (observe only)"
            if event.attributes.get("observe_only")
            else "rejected a call"
        )
        if event.retry_after is None:
            return f"{where}: {verb} (%s)", (*head, event.reason)
        return (
            f"{where}: {verb} (%s), retry after %.3fs",
            (*head, event.reason, event.retry_after),
        )
    if isinstance(event, CircuitStateChanged):
        return (
            f"{where}: %s -> %s (%s)",
            (*head, plain(event.old), plain(event.new), event.why or "no reason given"),
        )
    if isinstance(event, TimeoutExceeded):
        return f"{where}: exceeded its %.3fs budget", (*head, event.budget)
    if isinstance(event, ConcurrencyLimitChanged):
        return f"{where}: limit %d -> %d", (*head, event.old, event.new)
    if isinstance(event, BackendFailed):
        why = plain(event.error) if event.error is not None else "no error given"
        return (
            f"{where}: backend %s failed (%s); on_backend_error=%s",
            (*head, event.backend, why, event.mode),
        )
    if isinstance(event, BackendRecovered):
        return f"{where}: backend %s recovered", (*head, event.backend)
    return f"{where}: %s", (*head, event.event_name)


def extra_for(event: Event) -> dict[str, Any]:
    """The ``extra`` of *event*'s log record: ``resilient_event`` (the event itself)
    and its flat :meth:`~Event.as_dict` fields. A field whose name a ``LogRecord``
    already uses gets a trailing underscore (``name`` -> ``name_``)."""
    extra: dict[str, Any] = {"resilient_event": event}
    for name, value in event.as_dict().items():
        extra[f"{name}_" if name in _RESERVED else name] = value
    return extra


class LoggingListener:
    """Log each event on a stdlib logger, with its fields in the record's ``extra``.

    Records carry ``resilient_event`` (the event object) and flat fields a JSON
    formatter can print: ``event`` (``"retry_scheduled"``...), ``policy``,
    ``kind``, ``key``, and the event's own fields (``attempt``, ``delay``,
    ``cause``, ``reason``, ``retry_after``, ``old``, ``new``, ``duration``...),
    exceptions and enums rendered as strings.

    When the logger is not enabled for an event's level, the listener returns
    after one dictionary lookup and one ``isEnabledFor`` check.

    Installing one replaces the built-in logging of rare events (no duplicates).

    Args:
        logger: a ``logging.Logger`` or a logger name (default ``"resilient"``).
        levels: overrides of :data:`DEFAULT_LEVELS`, by event type, e.g.
            ``{RetryScheduled: logging.DEBUG}``.
        call_events: also log every ``CallSucceeded``/``CallFailed`` (at DEBUG by
            default). Off by default: then policies do not even build those
            events for this listener, so successes cost nothing extra.
    """

    __slots__ = ("call_events", "levels", "logger")

    logs_events = True

    def __init__(
        self,
        logger: logging.Logger | str = "resilient",
        *,
        levels: Mapping[type[Event], int] | None = None,
        call_events: bool = False,
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        merged = dict(DEFAULT_LEVELS)
        if levels:
            for kind, level in levels.items():
                if not (isinstance(kind, type) and issubclass(kind, Event)):
                    from .._errors import ConfigError

                    raise ConfigError("levels", kind, "event types as keys")
                if isinstance(level, bool) or not isinstance(level, int):
                    from .._errors import ConfigError

                    raise ConfigError(f"levels[{kind.__name__}]", level, "a logging level (int)")
                merged[kind] = level
        self.levels: dict[type[Event], int] = merged
        self.call_events = call_events

    def level_for(self, event: Event) -> int:
        """The level *event* is logged at."""
        kind = type(event)
        level = self.levels.get(kind)
        if level is None:
            level = next(
                (self.levels[base] for base in kind.__mro__[1:] if base in self.levels),
                logging.INFO,
            )
        if (
            kind is CircuitStateChanged
            and level == self.levels[CircuitStateChanged] == logging.WARNING
            and _closed(event.new)  # type: ignore[attr-defined]
        ):
            return logging.INFO
        return level

    def __call__(self, event: Event) -> None:
        if not self.call_events and isinstance(event, _CALL_EVENTS):
            return
        level = self.level_for(event)
        if not self.logger.isEnabledFor(level):
            return
        template, args = describe(event)
        self.logger.log(level, template, *args, extra=extra_for(event))

    def __repr__(self) -> str:
        return f"LoggingListener(logger={self.logger.name!r}, call_events={self.call_events!r})"
