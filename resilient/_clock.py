"""Time, injected: the ``Clock`` protocol, the system clock, and deadlines.

Nothing in resilient reads the time or sleeps except through a ``Clock``, so
tests can drive every policy with :class:`resilient.testing.FakeClock`.

Deadlines published by ``Timeout`` (and ``Retry(deadline=...)``) live in a
``ContextVar`` together with the clock that measures them; nested deadlines
take the minimum. :func:`remaining` reads the innermost one, and adapters clamp
their own I/O timeouts to it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import Any, Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock", "remaining"]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time that can also sleep (sync and async)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes backwards."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for *seconds*."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Suspend the calling task for *seconds* (a cancellation point)."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.sleep`` and ``anyio.sleep``."""

    __slots__ = ()

    # The builtin itself: ``clock.monotonic`` costs no Python frame on hot paths.
    monotonic = staticmethod(time.monotonic)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


SYSTEM_CLOCK = SystemClock()


class _Deadline:
    """One published deadline: absolute time on *clock*, who set it, and an
    optional cancel scope that a fake clock may cancel when it passes."""

    __slots__ = ("at", "budget", "clock", "parent", "policy", "scope")

    def __init__(
        self,
        at: float,
        clock: Clock,
        policy: str,
        budget: float,
        scope: Any = None,
        parent: _Deadline | None = None,
    ) -> None:
        self.at = at
        self.clock = clock
        self.policy = policy
        self.budget = budget
        self.scope = scope
        self.parent = parent


_current: ContextVar[_Deadline | None] = ContextVar("resilient_deadline", default=None)


def current_deadline() -> _Deadline | None:
    return _current.get()


def push_deadline(
    clock: Clock, budget: float, policy: str, scope: Any = None
) -> tuple[_Deadline, Token[_Deadline | None]]:
    """Publish a deadline *budget* seconds from now (the minimum with any outer one)."""
    parent = _current.get()
    at = clock.monotonic() + budget
    deadline = _Deadline(at, clock, policy, budget, scope, parent)
    return deadline, _current.set(deadline)


def pop_deadline(token: Token[_Deadline | None]) -> None:
    _current.reset(token)


def remaining() -> float | None:
    """Seconds left before the innermost published deadline, or ``None`` if there is none.

    Never negative: a passed deadline reports ``0.0``. Nested deadlines (an
    attempt timeout inside a total timeout) report the smallest budget left.
    """
    d = _current.get()
    if d is None:
        return None
    left = d.at - d.clock.monotonic()
    d = d.parent
    while d is not None:
        left = min(left, d.at - d.clock.monotonic())
        d = d.parent
    return max(left, 0.0)
