"""Helpers for testing code that uses resilient (public and documented).

``FakeClock`` makes time a variable: policies driven by it never wait on the
wall clock. ``RecordingListener`` collects events for assertions.
``set_testing()`` makes every ``Retry`` skip its sleeps and caps its attempts,
so a test suite exercising retried code runs at full speed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TypeVar

import anyio
import anyio.lowlevel

from ._clock import current_deadline
from ._errors import ConfigError
from ._retry import TESTING
from .observability._events import Event

__all__ = ["FakeClock", "RecordingListener", "set_testing", "TestingMode"]

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
    """A listener that keeps every event it receives, for assertions.

    Give it to a policy (``Retry(listeners=[rec])``) or to
    :func:`resilient.observability.set_listeners`::

        rec = RecordingListener()
        Retry(attempts=3, listeners=[rec]).call(flaky)
        assert rec.names == ["retry_scheduled", "call_succeeded"]
        assert rec.of(RetryScheduled)[0].attempt == 1

    Thread-safe.
    """

    call_events = True

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        """The recorded events of type *kind* (subclasses included), in order."""
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    @property
    def names(self) -> list[str]:
        """The ``event_name`` of each recorded event, in order (``"retry_scheduled"``...)."""
        with self._lock:
            return [e.event_name for e in self.events]

    def clear(self) -> None:
        """Forget every recorded event."""
        with self._lock:
            self.events.clear()

    def __iter__(self) -> Iterator[Event]:
        with self._lock:
            return iter(list(self.events))

    def __len__(self) -> int:
        return len(self.events)

    def __repr__(self) -> str:
        return f"RecordingListener({len(self.events)} events)"


def set_testing(enabled: bool = True, *, attempts: int | None = 1) -> TestingMode:
    """Turn test mode on (or off) for every ``Retry`` in the process.

    In test mode a ``Retry`` never sleeps between tries and makes at most
    *attempts* tries (fewer if it was configured with fewer); ``attempts=None``
    keeps each retry's own count and only drops the delays. Retry events are
    still emitted, with ``delay=0``.

    It takes effect at once. The returned object is a context manager that
    restores the previous mode on exit, so it also works scoped (and nested)::

        set_testing(True, attempts=1)  # e.g. in conftest.py: no retries at all

        def test_recovers_after_two_failures():
            with set_testing(True, attempts=3):
                assert fetch() == "ok"

    Args:
        enabled: turn test mode on (default) or off.
        attempts: the cap on tries per call (default 1: no retries), or ``None``.
    """
    if not isinstance(enabled, bool):
        raise ConfigError("enabled", enabled, "True or False")
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        raise ConfigError("attempts", attempts, "an int >= 1 (total tries), or None")
    previous = (TESTING.enabled, TESTING.attempts)
    TESTING.attempts = attempts
    TESTING.enabled = enabled
    return TestingMode(previous)


class TestingMode:
    """What :func:`set_testing` returns: leaving it as a context manager restores the
    test mode that was in force before that call."""

    __test__ = False  # not a pytest test class
    __slots__ = ("_previous",)

    def __init__(self, previous: tuple[bool, int | None]) -> None:
        self._previous = previous

    def __enter__(self) -> TestingMode:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        TESTING.enabled, TESTING.attempts = self._previous

    @property
    def enabled(self) -> bool:
        """Whether test mode is on now."""
        return TESTING.enabled

    @property
    def attempts(self) -> int | None:
        """The cap on tries in force now (``None``: none)."""
        return TESTING.attempts

    def __repr__(self) -> str:
        return f"TestingMode(enabled={TESTING.enabled!r}, attempts={TESTING.attempts!r})"
