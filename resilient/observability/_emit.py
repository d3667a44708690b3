"""The seam between policies and listeners.

Each policy owns an :class:`Emitter`. Rare events (retries, rejections, state
changes, timeouts, backend faults) always go through :meth:`Emitter.emit`,
which logs them on the ``"resilient"`` logger (when that level is enabled, and
unless a logging listener replaces the built-in logging) and hands them to the
listeners. Per-call events (``CallSucceeded``/``CallFailed``) are built only
when :attr:`Emitter.listening` is true, a plain attribute kept up to date by
:func:`set_listeners`: with no listener, the success path pays one attribute
read.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from ._events import CallFailed, CallSucceeded, Event
from ._logging import LoggingListener

__all__ = [
    "Emitter",
    "EventContext",
    "add_event_context",
    "Listener",
    "get_listeners",
    "logs_events",
    "set_listeners",
    "wants_call_events",
]

Listener = Callable[[Event], object]
"""A listener is any sync callable taking an event; its return value is ignored.

Two optional attributes tune how a listener is used:

* ``call_events = False``: it has no use for the per-call ``CallSucceeded`` /
  ``CallFailed`` events; when no listener of a policy wants them, the policy
  does not build them. (It may still receive them when another listener asked
  for them, and should ignore them then.)
* ``logs_events = True``: it logs events itself, so the built-in logging of
  rare events on the ``"resilient"`` logger stands down (no duplicate lines).
  :class:`LoggingListener` and ``StructlogListener`` set it.
"""

logger = logging.getLogger("resilient")

_BUILTIN = LoggingListener(logger, call_events=False)
"""The default: rare events logged on the ``"resilient"`` logger."""


def wants_call_events(listener: Listener) -> bool:
    """Whether *listener* wants ``CallSucceeded``/``CallFailed`` (its ``call_events``,
    true when absent)."""
    return bool(getattr(listener, "call_events", True))


def logs_events(listener: Listener) -> bool:
    """Whether *listener* replaces the built-in logging (its ``logs_events``)."""
    return bool(getattr(listener, "logs_events", False))


def _checked(listeners: Iterable[Listener], path: str) -> tuple[Listener, ...]:
    if isinstance(listeners, str | bytes) or callable(listeners):
        from .._errors import ConfigError

        raise ConfigError(path, listeners, "a list of callables taking one event")
    items = tuple(listeners)
    for item in items:
        if not callable(item):
            from .._errors import ConfigError

            raise ConfigError(path, item, "callables taking one event")
    return items


class _Global:
    __slots__ = ("calls", "emitters", "listeners", "lock", "logs")

    def __init__(self) -> None:
        self.listeners: tuple[Listener, ...] = ()
        self.calls = False
        self.logs = False
        self.lock = threading.Lock()
        self.emitters: weakref.WeakSet[Emitter] = weakref.WeakSet()


_GLOBAL = _Global()


def set_listeners(listeners: Iterable[Listener] | None) -> None:
    """Replace the process-wide listeners that receive every policy's events.

    A policy's own ``listeners=`` are called first, then these. ``None`` or
    ``[]`` removes them all. Rare events are logged on the ``"resilient"``
    logger whatever the listeners, unless one of them logs events itself
    (:class:`LoggingListener`, ``StructlogListener``); silence or tune those logs
    through the logger, as with any library::

        set_listeners([PrometheusListener()])
    """
    items = () if listeners is None else _checked(listeners, "listeners")
    calls = any(wants_call_events(item) for item in items)
    logs = any(logs_events(item) for item in items)
    with _GLOBAL.lock:
        _GLOBAL.listeners = items
        _GLOBAL.calls = calls
        _GLOBAL.logs = logs
        for emitter in list(_GLOBAL.emitters):
            emitter.listening = emitter.local_calls or calls
            emitter.observed = bool(emitter.local or items)


def get_listeners() -> tuple[Listener, ...]:
    """The process-wide listeners (none by default)."""
    return _GLOBAL.listeners


EventContext = Callable[[Event], Mapping[str, Any] | None]
"""Given an event about to be emitted, returns attributes describing what the current
thread / task is doing (or None)."""

_CONTEXT: list[EventContext] = []


def add_event_context(provider: EventContext) -> None:
    """Add attributes to every event emitted while *provider* has some to give.

    *provider* is called with each event that is emitted (in the emitting thread or
    task); what it returns is merged under the event's own ``attributes``. The
    adapters use this to tag every policy's events with the request they were
    emitted for (HTTP method and host, gRPC service and method), at no cost on
    paths that emit nothing. A provider that raises is ignored.
    """
    if not callable(provider):
        from .._errors import ConfigError

        raise ConfigError("provider", provider, "a callable returning attributes or None")
    if provider not in _CONTEXT:
        _CONTEXT.append(provider)


def _with_context(event: Event) -> Event:
    extra: dict[str, Any] = {}
    for provider in _CONTEXT:
        try:
            found = provider(event)
        except Exception:
            continue
        if found:
            extra.update(found)
    if not extra:
        return event
    extra.update(event.attributes)
    return dataclasses.replace(event, attributes=extra)


def logging_maybe_enabled(kind: type[Event]) -> Callable[[], bool]:
    """A cheap pre-check for the hot paths: a function returning ``False`` only when the
    built-in logging is known not to log an event of type *kind* now, and ``True`` when
    it may (then :meth:`Emitter.wants` decides).

    It reads the answer the ``logging`` module caches per level on the ``"resilient"``
    logger (that cache is cleared in place whenever a level changes or
    ``logging.disable`` is called), so it costs one dict lookup; a miss reads ``True``.
    """
    level = _BUILTIN.levels.get(kind, logging.INFO)
    cache = getattr(logger, "_cache", None)
    if isinstance(cache, dict):
        return cast(Callable[[], bool], functools.partial(cache.get, level, True))
    return lambda: True


class Emitter:
    """Delivers a policy's events to its own listeners, then to the global ones.

    Attributes:
        local: the policy's own listeners.
        listening: whether any listener (own or global) wants per-call events;
            policies build ``CallSucceeded``/``CallFailed`` only when it is true.
        observed: whether the policy has any listener at all (own or global).
    """

    __slots__ = ("__weakref__", "listening", "local", "local_calls", "local_logs", "observed")

    def __init__(self, listeners: Sequence[Listener] | None = None) -> None:
        self.local: tuple[Listener, ...] = _checked(listeners or (), "listeners")
        self.local_calls = any(wants_call_events(item) for item in self.local)
        self.local_logs = any(logs_events(item) for item in self.local)
        with _GLOBAL.lock:
            self.listening: bool = self.local_calls or _GLOBAL.calls
            self.observed: bool = bool(self.local or _GLOBAL.listeners)
            _GLOBAL.emitters.add(self)

    def add_local(self, listeners: Sequence[Listener]) -> None:
        """Add more listeners of the policy's own (a pipeline's ``listeners=``)."""
        extra = tuple(item for item in _checked(listeners, "listeners") if item not in self.local)
        with _GLOBAL.lock:
            self.local = self.local + extra
            self.local_calls = any(wants_call_events(item) for item in self.local)
            self.local_logs = any(logs_events(item) for item in self.local)
            self.listening = self.local_calls or _GLOBAL.calls
            self.observed = bool(self.local or _GLOBAL.listeners)

    def wants(self, kind: type[Event]) -> bool:
        """Whether an event of type *kind* would reach anyone: for per-call events,
        :attr:`listening`; for rare ones, any listener, or the built-in logging when
        the ``"resilient"`` logger is enabled for that event's level. A policy on a
        hot path (a rate limiter refusing a flood) can skip building events nobody
        would see."""
        if kind is CallSucceeded or kind is CallFailed:
            return self.listening
        if self.observed:
            return True
        level = _BUILTIN.levels.get(kind, logging.INFO)
        return logger.isEnabledFor(level)

    def emit(self, event: Event) -> None:
        """Log *event* (built-in logging) and hand it to every listener; a raising
        listener is logged and skipped."""
        if _CONTEXT:
            event = _with_context(event)
        if not (self.local_logs or _GLOBAL.logs):
            _BUILTIN(event)
        local = self.local
        listeners = local + _GLOBAL.listeners if local else _GLOBAL.listeners
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                logger.exception(
                    "resilient: listener %r raised on %s from %r; ignored",
                    listener,
                    type(event).__name__,
                    event.policy,
                )

    def __repr__(self) -> str:
        return f"Emitter(local={self.local!r}, listening={self.listening!r})"
