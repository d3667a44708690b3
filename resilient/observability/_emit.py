"""The seam between policies and listeners.

Each policy owns an :class:`Emitter`. Rare events (retries, rejections, state
changes, timeouts, backend faults) always go through :meth:`Emitter.emit`,
which also logs them on the ``"resilient"`` logger (when that level is
enabled). Per-call events (``CallSucceeded``/``CallFailed``) are built only when
:attr:`Emitter.listening` is true, so with no listener the hot path pays one
attribute check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from ._events import (
    BackendFailed,
    BackendRecovered,
    CallRejected,
    CircuitStateChanged,
    Event,
    RetryScheduled,
    TimeoutExceeded,
)

__all__ = ["Emitter", "Listener", "get_listeners", "set_listeners"]

Listener = Callable[[Event], object]
"""A listener is any sync callable taking an event; its return value is ignored."""

logger = logging.getLogger("resilient")


class _Global:
    __slots__ = ("listeners",)

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()


_GLOBAL = _Global()


def set_listeners(listeners: Iterable[Listener]) -> None:
    """Replace the process-wide listeners that receive every policy's events."""
    items = tuple(listeners)
    for item in items:
        if not callable(item):
            from .._errors import ConfigError

            raise ConfigError("listeners", item, "callables taking one event")
    _GLOBAL.listeners = items


def get_listeners() -> tuple[Listener, ...]:
    """The process-wide listeners."""
    return _GLOBAL.listeners


def _level(event: Event) -> int:
    if isinstance(event, CircuitStateChanged | BackendFailed):
        return logging.WARNING
    if isinstance(event, CallRejected | TimeoutExceeded | RetryScheduled | BackendRecovered):
        return logging.INFO
    return logging.DEBUG


class Emitter:
    """Delivers a policy's events to its own listeners and the global ones."""

    __slots__ = ("local",)

    def __init__(self, listeners: Sequence[Listener] | None = None) -> None:
        items = tuple(listeners or ())
        for item in items:
            if not callable(item):
                from .._errors import ConfigError

                raise ConfigError("listeners", item, "callables taking one event")
        self.local: tuple[Listener, ...] = items

    @property
    def listening(self) -> bool:
        """Whether anyone listens (per-call events are built only then)."""
        return bool(self.local or _GLOBAL.listeners)

    def emit(self, event: Event) -> None:
        """Log *event* and hand it to every listener; a raising listener is logged."""
        level = _level(event)
        if logger.isEnabledFor(level):
            logger.log(level, "%s", _summary(event), extra={"resilient_event": event})
        for listener in self.local + _GLOBAL.listeners:
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "resilient listener %r raised on %s", listener, type(event).__name__
                )


def _summary(event: Event) -> str:
    name = type(event).__name__
    if isinstance(event, RetryScheduled):
        return (
            f"{event.policy}: {name} attempt={event.attempt} "
            f"delay={event.delay:.3f}s cause={event.cause!r}"
        )
    if isinstance(event, CallRejected):
        return (
            f"{event.policy}: {name} reason={event.reason} key={event.key!r} "
            f"retry_after={event.retry_after}"
        )
    if isinstance(event, CircuitStateChanged):
        return f"{event.policy}: {name} {event.old} -> {event.new} ({event.why})"
    if isinstance(event, TimeoutExceeded):
        return f"{event.policy}: {name} budget={event.budget:.3f}s"
    return f"{event.policy}: {name}"
