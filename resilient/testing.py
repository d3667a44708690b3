"""Helpers for testing code that uses resilient (public and documented).

``FakeClock`` makes time a variable: policies driven by it never wait on the
wall clock. ``RecordingListener`` collects events for assertions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TypeVar

import anyio
import anyio.lowlevel

from ._clock import current_deadline
from .observability._events import Event

__all__ = ["FakeClock", "RecordingListener"]

E = TypeVar("E", bound=Event)


class FakeClock:
    """A clock whose time moves only when told to.

    * ``monotonic()`` returns the current fake time (starts at ``start``).
    * ``advance(seconds)`` moves time forward (never backwards).
    * ``sleep(seconds)`` advances at once and records the duration in ``sleeps``.
    * ``asleep(seconds)`` does the same, cancels any async ``Timeout`` of the
      current task whose deadline has now passed, and still yields to the event
      loop, so it stays a cancellation point.

    Thread-safe: several threads may sleep on one fake clock.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by *seconds* (>= 0)."""
        if seconds < 0:
            msg = f"FakeClock cannot go backwards (advance({seconds!r}))"
            raise ValueError(msg)
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)
        self._cancel_expired()
        await anyio.lowlevel.checkpoint()

    def _cancel_expired(self) -> None:
        deadline = current_deadline()
        while deadline is not None:
            if deadline.clock is self and deadline.scope is not None and deadline.at <= self._now:
                deadline.scope.cancel()
            deadline = deadline.parent

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"


class RecordingListener:
    """A listener that keeps every event it receives, for assertions."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        """The recorded events of type *kind*, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self.events))

    def __len__(self) -> int:
        return len(self.events)
