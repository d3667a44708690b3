"""Bulkhead: cap the calls in flight, with an optional FIFO queue of bounded wait.

At most ``max_concurrent`` calls run at once. When all slots are taken, up to
``max_queued`` callers wait in arrival order, each for at most ``max_wait``;
anyone else is rejected at once with :class:`BulkheadFullError`
(``reason="bulkhead_full"``), and a waiter whose time runs out gets one too
(``reason="bulkhead_timeout"``).

Fairness: a freed slot is handed directly to the oldest waiter, so a newcomer
never overtakes the queue. Threads (``call``) and asyncio tasks (``acall``) share
one queue and one order. A call that raises anything, or is cancelled, frees its
slot; a waiter that is cancelled (or interrupted) leaves the queue, and if a slot
had just been handed to it, passes the slot on.

Time and testing: a waiter's deadline is taken on the policy's clock. The waiter
then blocks on a real primitive (a lock for a thread, a future for a task) with a
real timeout of the time left *by that clock*, and on waking re-checks the clock;
if the deadline has not passed there, it waits again. Independently, whoever
touches the bulkhead next (an arrival, a finishing call, ``stats()``) expires
every waiter whose deadline has passed on the clock and wakes it at once. So with
:class:`~resilient.testing.FakeClock`, a test advances the clock past
``max_wait`` and calls ``stats()`` (or starts or ends a call): the waiter fails
immediately, and no test sleeps. The one compromise: a waiter that nobody
touches relies on its real timer, which matches the clock only for the system
clock (under a fake clock such a waiter re-arms its timer until the fake time
passes or someone touches the bulkhead).

Queued waiting in ``acall`` needs asyncio (a waiter is woken, from any thread,
through its loop's ``call_soon_threadsafe``); admission without waiting works on
any event loop.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._clock import Clock
from ._duration import Duration, to_seconds
from ._errors import BulkheadFullError, ConfigError, new_error
from ._pipeline import PolicyBase
from ._types import P, T
from .observability._emit import Listener
from .observability._events import CallFailed, CallRejected, CallSucceeded

__all__ = ["Bulkhead", "BulkheadConfig", "BulkheadStats"]

_WAITING: Final = 0
_GRANTED: Final = 1  # a slot was handed over: the waiter now holds it
_EXPIRED: Final = 2  # max_wait passed on the clock
_GONE: Final = 3  # left the queue (cancelled, or its event loop is gone)


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadConfig:
    """The validated settings of a :class:`Bulkhead` (see its docs).

    ``max_wait`` is in seconds; ``None`` means "wait as long as it takes".
    """

    max_concurrent: int = 10
    max_queued: int = 0
    max_wait: float | None = 0.0

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "max_queued"):
            value = getattr(self, name)
            low = 1 if name == "max_concurrent" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(name, value, f"an int >= {low}")
        if self.max_wait is not None:
            object.__setattr__(self, "max_wait", to_seconds(self.max_wait, name="max_wait"))
        waits = self.max_wait != 0
        if self.max_queued and not waits:
            raise ConfigError(
                "max_wait",
                self.max_wait,
                "a duration > 0, or None for no limit, when max_queued > 0 (queued callers wait)",
            )
        if waits and not self.max_queued:
            raise ConfigError(
                "max_queued", self.max_queued, "an int >= 1 when max_wait is set (who would wait?)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadStats:
    """A snapshot of a bulkhead, from :meth:`Bulkhead.stats`.

    Attributes:
        max_concurrent: the configured slots.
        max_queued: the configured queue length.
        in_flight: calls holding a slot now.
        queued: callers waiting now.
        admitted: calls admitted since creation (at once or after waiting).
        rejected: callers turned away because the slots and the queue were full.
        timed_out: waiters that gave up after ``max_wait``.
    """

    max_concurrent: int
    max_queued: int
    in_flight: int
    queued: int
    admitted: int
    rejected: int
    timed_out: int


class _Waiter:
    """A queued caller. ``state`` changes only under the core's lock; ``wake()`` is
    called under it too, and must not block."""

    __slots__ = ("deadline", "state")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.state = _WAITING

    def wake(self) -> bool:
        """Wake the waiter; ``False`` if it can no longer be reached."""
        raise NotImplementedError  # pragma: no cover

    def rearm(self) -> None:
        """Prepare to wait again (after a timer fired before the clock's deadline)."""


class _ThreadWaiter(_Waiter):
    __slots__ = ("signal",)

    def __init__(self, deadline: float) -> None:
        super().__init__(deadline)
        self.signal = threading.Lock()
        self.signal.acquire()  # released by wake(); the waiting thread blocks acquiring it

    def wake(self) -> bool:
        self.signal.release()
        return True


class _TaskWaiter(_Waiter):
    __slots__ = ("future", "loop", "thread")

    def __init__(self, deadline: float) -> None:
        super().__init__(deadline)
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            msg = "Bulkhead.acall can queue only under asyncio (use max_queued=0 elsewhere)"
            raise RuntimeError(msg) from None
        self.thread = threading.get_ident()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def resolve(self) -> None:
        """Complete the current future (on the loop's thread)."""
        if not self.future.done():
            self.future.set_result(None)

    def wake(self) -> bool:
        if threading.get_ident() == self.thread:
            if self.future.cancelled():
                return False  # its task is being cancelled: not reachable any more
            self.resolve()
            return True
        try:
            self.loop.call_soon_threadsafe(self.resolve)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def rearm(self) -> None:
        self.future = self.loop.create_future()


_FULL: Any = object()  # enter()'s answer when the slots and the queue are full


class _BulkheadCore:
    """Counters and the FIFO of waiters, under a short lock. Sans-I/O: it never blocks;
    the drivers wait on the waiter objects it hands out."""

    __slots__ = (
        "admitted",
        "in_flight",
        "lock",
        "max_concurrent",
        "max_queued",
        "max_wait",
        "now",
        "rejected",
        "timed_out",
        "waiters",
    )

    def __init__(self, config: BulkheadConfig, now: Callable[[], float]) -> None:
        self.lock = threading.Lock()
        self.now = now
        self.max_concurrent = config.max_concurrent
        self.max_queued = config.max_queued
        self.max_wait = math.inf if config.max_wait is None else config.max_wait
        self.in_flight = 0
        self.waiters: deque[_Waiter] = deque()
        self.admitted = 0
        self.rejected = 0
        self.timed_out = 0

    def _expire(self, now: float) -> None:
        # Deadlines are taken under the lock with one max_wait, so the queue is in
        # deadline order: the expired waiters are at its front.
        waiters = self.waiters
        while waiters and waiters[0].deadline <= now:
            waiter = waiters.popleft()
            waiter.state = _EXPIRED
            self.timed_out += 1
            waiter.wake()

    def enter(self, new_waiter: Callable[[float], _Waiter]) -> _Waiter | None:
        """Take a slot (``None``), or join the queue (a waiter), or ``_FULL``."""
        lock = self.lock
        lock.acquire()
        try:
            if self.waiters:
                self._expire(self.now())
            if self.in_flight < self.max_concurrent and not self.waiters:
                self.in_flight += 1
                self.admitted += 1
                return None
            if len(self.waiters) >= self.max_queued:
                self.rejected += 1
                return _FULL  # type: ignore[no-any-return]
            waiter = new_waiter(self.now() + self.max_wait)
            self.waiters.append(waiter)
            return waiter
        finally:
            lock.release()

    def try_enter(self) -> bool:
        """Take a free slot if there is one and nobody queues; never queue."""
        with self.lock:
            if self.waiters:
                self._expire(self.now())
            if self.in_flight < self.max_concurrent and not self.waiters:
                self.in_flight += 1
                self.admitted += 1
                return True
            self.rejected += 1
            return False

    def leave(self, resize: Callable[[], int] | None = None) -> None:
        """Give a slot back: to the oldest live waiter, or to the pool.

        *resize* (an adaptive limit's update) runs under the lock first and returns
        the new number of slots: a smaller limit keeps the slot from the queue while
        more calls than that are in flight; a larger one admits waiters at once.
        """
        lock = self.lock
        lock.acquire()
        try:
            if resize is not None:
                self.max_concurrent = resize()
            if self.waiters and self.in_flight <= self.max_concurrent:
                self._hand_over()
                self._fill()
            else:
                self.in_flight -= 1
        finally:
            lock.release()

    def _fill(self) -> None:
        """Hand the free slots of a grown limit to the waiters (lock held)."""
        while self.waiters and self.in_flight < self.max_concurrent:
            self.in_flight += 1
            self._hand_over()

    def _hand_over(self) -> None:
        waiters = self.waiters
        self._expire(self.now())
        while waiters:
            waiter = waiters.popleft()
            waiter.state = _GRANTED
            if waiter.wake():
                self.admitted += 1
                return
            waiter.state = _GONE
        self.in_flight -= 1

    def settle(self, waiter: _Waiter) -> bool | None:
        """After a wake-up: ``True`` (holds a slot), ``False`` (timed out) or ``None``
        (a timer fired before the clock's deadline: wait again)."""
        with self.lock:
            if waiter.state == _WAITING:
                if self.now() < waiter.deadline:
                    waiter.rearm()
                    return None
                self.waiters.remove(waiter)
                waiter.state = _EXPIRED
                self.timed_out += 1
            return waiter.state == _GRANTED

    def abandon(self, waiter: _Waiter) -> None:
        """The waiter was cancelled or interrupted: leave the queue, or pass on its slot."""
        with self.lock:
            state = waiter.state
            waiter.state = _GONE
            if state == _WAITING:
                self.waiters.remove(waiter)
            elif state == _GRANTED:
                self.admitted -= 1
                if self.waiters and self.in_flight <= self.max_concurrent:
                    self._hand_over()
                else:
                    self.in_flight -= 1

    def snapshot(self) -> BulkheadStats:
        with self.lock:
            if self.waiters:
                self._expire(self.now())
            return BulkheadStats(
                max_concurrent=self.max_concurrent,
                max_queued=self.max_queued,
                in_flight=self.in_flight,
                queued=len(self.waiters),
                admitted=self.admitted,
                rejected=self.rejected,
                timed_out=self.timed_out,
            )


class SlotPolicy(PolicyBase):
    """A policy holding slots of a :class:`_BulkheadCore`: the waiting half of the
    drivers, shared by :class:`Bulkhead` and the adaptive concurrency limit."""

    _core: _BulkheadCore

    def _reject(self, reason: str) -> BulkheadFullError:
        """The error for a refused caller (and its ``CallRejected`` event)."""
        raise NotImplementedError  # pragma: no cover

    def _wait(self, waiter: _Waiter) -> None:
        """Block the thread until *waiter* holds a slot, or raise ``BulkheadFullError``."""
        if waiter is _FULL:
            raise self._reject("bulkhead_full")
        assert isinstance(waiter, _ThreadWaiter)
        core, clock = self._core, self.clock
        try:
            while True:
                left = waiter.deadline - clock.monotonic()
                if left == math.inf:
                    waiter.signal.acquire()
                elif left > 0:
                    waiter.signal.acquire(timeout=min(left, threading.TIMEOUT_MAX))
                verdict = core.settle(waiter)
                if verdict is not None:
                    break
        except BaseException:
            core.abandon(waiter)
            raise
        if not verdict:
            raise self._reject("bulkhead_timeout")

    async def _await_turn(self, waiter: _Waiter) -> None:
        """Suspend the task until *waiter* holds a slot, or raise ``BulkheadFullError``."""
        if waiter is _FULL:
            raise self._reject("bulkhead_full")
        assert isinstance(waiter, _TaskWaiter)
        core, clock = self._core, self.clock
        try:
            while True:
                left = waiter.deadline - clock.monotonic()
                if left > 0:
                    timer = (
                        waiter.loop.call_later(left, waiter.resolve) if left < math.inf else None
                    )
                    try:
                        await waiter.future
                    finally:
                        if timer is not None:
                            timer.cancel()
                verdict = core.settle(waiter)
                if verdict is not None:
                    break
        except BaseException:
            core.abandon(waiter)
            raise
        if not verdict:
            raise self._reject("bulkhead_timeout")


class Bulkhead(SlotPolicy):
    """Limit concurrent calls; optionally queue a few callers (FIFO) for a bounded time.

    Args:
        max_concurrent: calls allowed in flight at once (default 10).
        max_queued: callers allowed to wait for a slot (default 0: reject at once).
        max_wait: how long a queued caller waits at most (seconds, ``timedelta`` or
            ``"250ms"``; ``None``: no limit). Required (> 0) when ``max_queued > 0``.
        name, clock, listeners: as for every policy.

    Rejections raise :class:`BulkheadFullError` (``retry_after`` is ``None``: when a
    slot frees up is unknown) and emit ``CallRejected``.
    """

    kind = "bulkhead"

    def __init__(
        self,
        max_concurrent: int = 10,
        *,
        max_queued: int = 0,
        max_wait: Duration | None = 0.0,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        self.config = BulkheadConfig(
            max_concurrent=max_concurrent,
            max_queued=max_queued,
            max_wait=max_wait,  # type: ignore[arg-type]
        )
        self._init_base(name, clock, listeners)
        self._core = _BulkheadCore(self.config, self.clock.monotonic)

    def stats(self) -> BulkheadStats:
        """A frozen snapshot of the slots, the queue and the counters."""
        return self._core.snapshot()

    # -- driver helpers ------------------------------------------------------------------

    def _reject(self, reason: str) -> BulkheadFullError:
        if self._emitter.wants(CallRejected):  # a full bulkhead may refuse a flood
            self._emitter.emit(
                CallRejected(
                    policy=self.name, kind=self.kind, at=self.clock.monotonic(), reason=reason
                )
            )
        return new_error(BulkheadFullError, self.name, None, reason, None)

    def _finished(self, start: float, exc: Exception | None) -> None:
        now = self.clock.monotonic()
        if exc is None:
            event: CallSucceeded | CallFailed = CallSucceeded(
                policy=self.name, kind=self.kind, at=now, duration=now - start
            )
        else:
            event = CallFailed(
                policy=self.name, kind=self.kind, at=now, duration=now - start, exception=exc
            )
        self._emitter.emit(event)

    # -- the drivers ------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a slot, waiting in the queue if allowed."""
        core = self._core
        waiter = core.enter(_ThreadWaiter)
        if waiter is not None:
            self._wait(waiter)
        if self._emitter.listening:
            return self._observed(fn, *args, **kwargs)
        try:
            return fn(*args, **kwargs)
        finally:
            core.leave()

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` in a slot, waiting in the queue if allowed."""
        core = self._core
        waiter = core.enter(_TaskWaiter)
        if waiter is not None:
            await self._await_turn(waiter)
        if self._emitter.listening:
            return await self._aobserved(fn, *args, **kwargs)
        try:
            return await fn(*args, **kwargs)
        finally:
            core.leave()

    # -- the decorator: the drivers with `fn` and the helpers bound once ---------------------

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        core, wait, emitter, observed = self._core, self._wait, self._emitter, self._observed

        def guarded(*args: Any, **kwargs: Any) -> Any:
            waiter = core.enter(_ThreadWaiter)
            if waiter is not None:
                wait(waiter)
            if emitter.listening:
                return observed(fn, *args, **kwargs)
            try:
                return fn(*args, **kwargs)
            finally:
                core.leave()

        return guarded

    def _awrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        core, wait, emitter, observed = self._core, self._await_turn, self._emitter, self._aobserved

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            waiter = core.enter(_TaskWaiter)
            if waiter is not None:
                await wait(waiter)
            if emitter.listening:
                return await observed(fn, *args, **kwargs)
            try:
                return await fn(*args, **kwargs)
            finally:
                core.leave()

        return guarded

    def _observed(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        start = self.clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._core.leave()
            self._finished(start, exc)
            raise
        except BaseException:
            self._core.leave()
            raise
        self._core.leave()
        self._finished(start, None)
        return result

    async def _aobserved(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        start = self.clock.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._core.leave()
            self._finished(start, exc)
            raise
        except BaseException:
            self._core.leave()
            raise
        self._core.leave()
        self._finished(start, None)
        return result

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"Bulkhead(max_concurrent={cfg.max_concurrent}, max_queued={cfg.max_queued}, "
            f"name={self.name!r})"
        )
