"""Timeout: bound how long a call may take.

**Async** (``acall``): the call runs in a cancel scope; when the budget passes
it is cancelled and :class:`TimeoutExceededError` is raised. Only the policy's
*own* deadline turns into that error: a cancellation from outside, and a
``TimeoutError`` raised by the callee itself, pass through untouched.

**Sync** (``call``): Python code cannot be pre-empted safely, so the sync
driver *publishes* its deadline — :func:`resilient.remaining` reports the
seconds left, and the httpx and gRPC adapters clamp their I/O timeouts to it —
and, if the call returns after the budget passed, discards the result (closing
it if it has ``close()``) and raises :class:`TimeoutExceededError`. An
exception raised by the call passes through unchanged.

Nested timeouts take the minimum: an attempt timeout inside a total timeout
never outlives the total.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import anyio

from ._clock import Clock, SystemClock, pop_deadline, push_deadline
from ._duration import to_seconds
from ._errors import TimeoutExceededError
from ._pipeline import PolicyBase
from ._retry import _close
from ._types import P, T
from .observability._emit import Listener
from .observability._events import TimeoutExceeded

__all__ = ["Timeout"]


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # another event loop (trio through anyio)
        return False
    return True


class Timeout(PolicyBase):
    """Give a call at most *seconds* (a number, ``timedelta`` or ``"250ms"``).

    Args:
        seconds: the budget, greater than zero.
        name, clock, listeners: as for every policy.
    """

    kind = "timeout"

    def __init__(
        self,
        seconds: float | timedelta | str,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        self.seconds = to_seconds(seconds, name="seconds", allow_zero=False)
        self._init_base(name, clock, listeners)
        self._real_clock = isinstance(self.clock, SystemClock)

    def _exceeded(self) -> TimeoutExceededError:
        self._emitter.emit(
            TimeoutExceeded(
                policy=self.name, kind=self.kind, at=self.clock.monotonic(), budget=self.seconds
            )
        )
        return TimeoutExceededError(self.name, self.seconds)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run the call with a published deadline; raise if it returned too late."""
        deadline, token = push_deadline(self.clock, self.seconds, self.name)
        try:
            result = fn(*args, **kwargs)
        finally:
            pop_deadline(token)
        if self.clock.monotonic() > deadline.at:
            _close(result)
            raise self._exceeded()
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await the call, cancelling it when the budget passes."""
        if self._real_clock and _on_asyncio():
            # Native asyncio deadline: cheaper than a generic cancel scope.
            timer = asyncio.timeout(self.seconds)
            _, token = push_deadline(self.clock, self.seconds, self.name)
            try:
                async with timer:
                    return await fn(*args, **kwargs)
            except TimeoutError:
                if timer.expired():  # our own deadline, not the callee's TimeoutError
                    raise self._exceeded() from None
                raise
            finally:
                pop_deadline(token)
        if self._real_clock:
            scope = anyio.CancelScope(deadline=anyio.current_time() + self.seconds)
        else:
            scope = anyio.CancelScope()  # a fake clock cancels it from clock.asleep()
        with scope:
            _, token = push_deadline(self.clock, self.seconds, self.name, scope)
            try:
                return await fn(*args, **kwargs)
            finally:
                pop_deadline(token)
        # Reached only when our own scope caught its own cancellation.
        raise self._exceeded()

    def __repr__(self) -> str:
        return f"Timeout({self.seconds!r}, name={self.name!r})"
