"""Virtual time: an asyncio event loop whose clock jumps instead of waiting.

The loop is an ordinary ``SelectorEventLoop`` with two changes: ``time()`` reads
a :class:`VirtualClock`, and its selector never blocks — when the loop would
wait for the next timer, the selector moves the virtual time to that timer at
once. Everything built on the loop's timers (``asyncio.sleep``,
``asyncio.timeout``, anyio cancel scopes, ``call_later``) therefore runs in
virtual time, in the same order it would in real time, as fast as the CPU goes.

There is no I/O in a simulation: a loop with nothing ready and no timer left is
stalled (some task waits for something that can never happen), and the
selector raises :class:`SimulationStalledError` rather than hanging.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

from .._clock import SystemClock

__all__ = ["SimulationStalledError", "VirtualClock", "new_loop"]

# asyncio caps a single wait at one day; a longer gap is crossed in several steps.
_MAX_STEP = 86_400.0


class SimulationStalledError(RuntimeError):
    """Every task waits and no timer is left: the simulation can never move on."""


class VirtualClock(SystemClock):
    """The clock of a simulation: the virtual time of its event loop.

    It is a :class:`~resilient.SystemClock` in the sense that matters to the
    policies — its time *is* the running event loop's time — so an async
    :class:`~resilient.Timeout` arms the loop's own timer, exactly as with the
    real clock. ``monotonic()`` reads the virtual time, ``asleep()`` is
    ``asyncio.sleep`` on the virtual loop; a sync ``sleep()`` cannot advance a
    discrete-event simulation and raises ``RuntimeError``.
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        msg = (
            "a simulation runs policies through acall(): "
            "a blocking sleep cannot advance virtual time"
        )
        raise RuntimeError(msg)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now!r})"


class _Selector(selectors.DefaultSelector):
    """Polls without blocking; a wait for a timer becomes a jump of the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        events: list[tuple[Any, int]] = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            msg = "the simulation stalled: tasks are waiting and no timer is left"
            raise SimulationStalledError(msg)
        when = self._next_timer()
        if when is not None and when - self.clock.now <= timeout:
            # Land exactly on the timer (no rounding drift across a long run).
            self.clock.now = max(self.clock.now, when)
        else:
            self.clock.now += min(timeout, _MAX_STEP)
        return events

    def _next_timer(self) -> float | None:
        scheduled = getattr(self.loop, "_scheduled", None)
        if not scheduled:
            return None
        head = scheduled[0]
        return float(head.when()) if isinstance(head, asyncio.TimerHandle) else None


class _VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        selector = _Selector(clock)
        super().__init__(selector)
        selector.loop = self
        self._virtual_clock = clock

    def time(self) -> float:
        return self._virtual_clock.now


def new_loop(clock: VirtualClock) -> asyncio.AbstractEventLoop:
    """A new event loop whose time is *clock* (use it with ``asyncio.Runner``)."""
    return _VirtualLoop(clock)
