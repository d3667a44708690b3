"""Bulkhead: limits, FIFO queue, max_wait on a fake clock, cancellation that frees places;
64 threads and 1000 tasks with exact counts. No test sleeps to make time pass."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable

import pytest

import resilient as rs
from resilient.observability import CallFailed, CallRejected, CallSucceeded
from resilient.testing import FakeClock, RecordingListener

WAIT = 10.0  # a safety net for a broken build: no test waits for it when things work


class Abort(BaseException):
    """Stands for cancellation / KeyboardInterrupt."""


def eventually(condition: Callable[[], bool]) -> None:
    """Wait (briefly yielding) until another thread has reached a state we can observe."""
    give_up = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < give_up, "condition never became true"
        time.sleep(0.0005)


async def aeventually(condition: Callable[[], bool]) -> None:
    """Yield to the event loop until the other tasks have reached an observable state."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


# -- through call and acall ------------------------------------------------------------------


def test_runs_calls_and_frees_the_slot_whatever_happens(run, clock):
    """Results, exceptions and BaseExceptions all give the slot back."""
    bh = rs.Bulkhead(1, clock=clock)
    assert run(bh, lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(OSError):
        run(bh, lambda: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(Abort):
        run(bh, lambda: (_ for _ in ()).throw(Abort()))
    stats = bh.stats()
    assert (stats.in_flight, stats.queued, stats.admitted, stats.rejected) == (0, 0, 3, 0)


def test_rejects_at_once_when_full_without_a_queue(run, clock):
    """With every slot taken and no queue, a caller gets BulkheadFullError immediately."""
    listener = RecordingListener()
    bh = rs.Bulkhead(2, clock=clock, name="pool", listeners=[listener])
    seen: list[rs.BulkheadFullError] = []

    def outer() -> str:
        assert bh.call(inner) == "inner"
        return "outer"

    def inner() -> str:  # two slots taken now
        with pytest.raises(rs.BulkheadFullError) as info:
            bh.call(lambda: None)
        seen.append(info.value)
        assert bh.stats().in_flight == 2
        return "inner"

    assert run(bh, outer) == "outer"
    err = seen[0]
    assert (err.policy, err.reason, err.retry_after) == ("pool", "bulkhead_full", None)
    assert bh.stats().rejected == 1
    (event,) = listener.of(CallRejected)
    assert (event.kind, event.reason) == ("bulkhead", "bulkhead_full")


def test_per_call_events_when_listening(run, clock):
    """A listener that wants per-call events gets CallSucceeded and CallFailed."""
    listener = RecordingListener()
    bh = rs.Bulkhead(1, clock=clock, listeners=[listener])
    run(bh, lambda: clock.advance(2.0))
    with pytest.raises(OSError):
        run(bh, lambda: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(Abort):
        run(bh, lambda: (_ for _ in ()).throw(Abort()))
    assert [e.duration for e in listener.of(CallSucceeded)] == [2.0]
    assert len(listener.of(CallFailed)) == 1
    assert bh.stats().in_flight == 0


def test_decorated_functions_share_the_slots(clock):
    """@bulkhead on def and async def: same slots, same queue, same events."""
    listener = RecordingListener()
    bh = rs.Bulkhead(1, clock=clock, listeners=[listener])

    @bh
    def inner() -> str:
        return "inner"

    @bh
    def outer() -> str:
        with pytest.raises(rs.BulkheadFullError):
            inner()
        return "outer"

    @bh
    async def aouter() -> str:
        with pytest.raises(rs.BulkheadFullError):
            inner()
        return "aouter"

    assert outer() == "outer"
    assert asyncio.run(aouter()) == "aouter"
    assert inner() == "inner"
    assert len(listener.of(CallSucceeded)) == 3
    stats = bh.stats()
    assert (stats.in_flight, stats.admitted, stats.rejected) == (0, 3, 2)


async def test_a_decorated_coroutine_waits_in_the_queue(clock):
    """A decorated async def queues like acall and runs once a slot frees up."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=None, clock=clock)
    release = asyncio.Event()

    @bh
    async def hold() -> None:
        await release.wait()

    @bh
    async def after() -> str:
        return "after"

    holder = asyncio.create_task(hold())
    await aeventually(lambda: bh.stats().in_flight == 1)
    waiter = asyncio.create_task(after())
    await aeventually(lambda: bh.stats().queued == 1)
    release.set()
    await holder
    assert await waiter == "after"


def test_a_decorated_function_waits_in_the_queue(clock):
    """A decorated def queues like call and runs once a slot frees up."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=None, clock=clock)
    release = threading.Event()
    done: list[str] = []
    hold = bh(release.wait)
    record = bh(done.append)
    holder = threading.Thread(target=hold, args=(WAIT,))
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    waiter = threading.Thread(target=record, args=("after",))
    waiter.start()
    eventually(lambda: bh.stats().queued == 1)
    release.set()
    for t in (holder, waiter):
        t.join(WAIT)
    assert done == ["after"]


def test_stats_snapshot_and_repr(clock):
    """stats() is frozen and reports the configuration and counters."""
    bh = rs.Bulkhead(3, max_queued=2, max_wait="250ms", clock=clock)
    stats = bh.stats()
    assert stats == rs.BulkheadStats(
        max_concurrent=3, max_queued=2, in_flight=0, queued=0, admitted=0, rejected=0, timed_out=0
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.queued = 1  # type: ignore[misc]
    assert bh.config.max_wait == 0.25
    assert repr(bh) == "Bulkhead(max_concurrent=3, max_queued=2, name='bulkhead')"


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        pytest.param({"max_concurrent": 0}, "max_concurrent", id="no-slots"),
        pytest.param({"max_concurrent": 2.5}, "max_concurrent", id="float-slots"),
        pytest.param({"max_queued": -1}, "max_queued", id="negative-queue"),
        pytest.param({"max_queued": True}, "max_queued", id="bool-queue"),
        pytest.param({"max_wait": -1}, "max_wait", id="negative-wait"),
        pytest.param({"max_wait": "later"}, "max_wait", id="text-wait"),
        pytest.param({"max_queued": 5}, "max_wait", id="queue-without-wait"),
        pytest.param({"max_wait": 1.0}, "max_queued", id="wait-without-queue"),
        pytest.param({"name": 3}, "name", id="name"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, path):
    """Each bad argument is named in a ConfigError."""
    with pytest.raises(rs.ConfigError) as info:
        rs.Bulkhead(**kwargs)
    assert info.value.path == path


# -- threads ----------------------------------------------------------------------------------


def test_fifo_order_for_64_threads(clock):
    """63 threads queued in a known order are admitted in exactly that order."""
    bh = rs.Bulkhead(1, max_queued=63, max_wait=None, clock=clock)
    release = threading.Event()
    order: list[int] = []
    holder = threading.Thread(target=bh.call, args=(release.wait, WAIT))
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    threads = []
    for n in range(63):
        t = threading.Thread(target=bh.call, args=(order.append, n))
        t.start()
        threads.append(t)
        eventually(lambda n=n: bh.stats().queued == n + 1)
    release.set()
    for t in [holder, *threads]:
        t.join(WAIT)
    assert order == list(range(63))
    stats = bh.stats()
    assert (stats.admitted, stats.in_flight, stats.queued) == (64, 0, 0)


def test_limits_hold_exactly_under_64_threads(clock):
    """64 threads at once on 8 slots + 24 places: 8 run, 24 wait, 32 are rejected; the
    waiters then run, never more than 8 at a time."""
    bh = rs.Bulkhead(8, max_queued=24, max_wait=None, clock=clock)
    barrier = threading.Barrier(64)
    release = threading.Event()
    lock = threading.Lock()
    running = peak = 0
    results: list[str] = []

    def work() -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        assert release.wait(WAIT)
        with lock:
            running -= 1
        return "done"

    def caller() -> None:
        barrier.wait()
        try:
            outcome = bh.call(work)
        except rs.BulkheadFullError as err:
            outcome = err.reason
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=caller) for _ in range(64)]
    for t in threads:
        t.start()
    eventually(lambda: bh.stats().queued == 24 and len(results) == 32)
    stats = bh.stats()
    assert (stats.in_flight, stats.queued, stats.rejected, running) == (8, 24, 32, 8)
    release.set()
    for t in threads:
        t.join(WAIT)
    assert sorted(results) == ["bulkhead_full"] * 32 + ["done"] * 32
    assert peak == 8
    assert bh.stats().admitted == 32


def test_a_thread_waiter_expires_on_the_fake_clock(clock):
    """Advancing the clock past max_wait and touching the bulkhead fails the waiter at once."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=30.0, clock=clock)
    release = threading.Event()
    holder = threading.Thread(target=bh.call, args=(release.wait, WAIT))
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            bh.call(lambda: None)
        except rs.BulkheadFullError as err:
            errors.append(err)

    t = threading.Thread(target=waiter)
    t.start()
    eventually(lambda: bh.stats().queued == 1)
    clock.advance(29.0)
    assert bh.stats().queued == 1  # not yet
    clock.advance(1.0)
    stats = bh.stats()  # touching the bulkhead expires the waiter
    assert (stats.queued, stats.timed_out) == (0, 1)
    t.join(WAIT)
    assert not t.is_alive()
    assert [e.reason for e in errors] == ["bulkhead_timeout"]  # type: ignore[attr-defined]
    release.set()
    holder.join(WAIT)
    assert bh.stats().in_flight == 0


class CountingClock(FakeClock):
    """A FakeClock that counts its readings, to see a waiter re-arm its timer."""

    def __init__(self) -> None:
        super().__init__()
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return super().monotonic()


def test_a_thread_waiter_rearms_until_the_clock_says_its_time():
    """A waiter's real timer firing early (fake time not passed) does not fail it; once the
    clock passes max_wait its own timer fails it without anyone touching the bulkhead."""
    clock = CountingClock()
    bh = rs.Bulkhead(1, max_queued=1, max_wait=0.002, clock=clock)
    release = threading.Event()
    holder = threading.Thread(target=bh.call, args=(release.wait, WAIT))
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    errors: list[str] = []

    def waiter() -> None:
        try:
            bh.call(lambda: None)
        except rs.BulkheadFullError as err:
            errors.append(err.reason)

    t = threading.Thread(target=waiter)
    t.start()
    eventually(lambda: bh.stats().queued == 1)
    before = clock.readings
    eventually(lambda: clock.readings > before + 6)  # several 2 ms timers fired and re-armed
    assert errors == []
    clock.advance(0.002)
    t.join(WAIT)
    assert errors == ["bulkhead_timeout"]
    release.set()
    holder.join(WAIT)


def test_an_interrupted_thread_frees_its_slot_for_the_queue(clock):
    """A call ending in a BaseException hands its slot to the next waiter."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=None, clock=clock)
    go = threading.Event()
    done: list[str] = []

    def interrupted() -> None:
        assert go.wait(WAIT)
        raise Abort

    def run_interrupted() -> None:
        with pytest.raises(Abort):
            bh.call(interrupted)

    holder = threading.Thread(target=run_interrupted)
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    waiter = threading.Thread(target=bh.call, args=(done.append, "next"))
    waiter.start()
    eventually(lambda: bh.stats().queued == 1)
    go.set()
    for t in (holder, waiter):
        t.join(WAIT)
    assert done == ["next"]
    assert bh.stats().in_flight == 0


# -- tasks ------------------------------------------------------------------------------------


async def test_fifo_order_and_exact_counts_for_1000_tasks(clock):
    """1000 tasks on 10 slots + 500 places: 10 run, 500 wait, 490 are rejected; the
    waiters run in their arrival order."""
    bh = rs.Bulkhead(10, max_queued=500, max_wait=60.0, clock=clock)
    release = asyncio.Event()
    arrivals: list[int] = []
    starts: list[int] = []
    running = peak = 0

    async def work(n: int) -> str:
        nonlocal running, peak
        starts.append(n)
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return "done"

    async def caller(n: int) -> str:
        await asyncio.sleep(0)
        arrivals.append(n)
        try:
            return await bh.acall(work, n)
        except rs.BulkheadFullError as err:
            return err.reason

    tasks = [asyncio.create_task(caller(n)) for n in range(1000)]
    await aeventually(lambda: len(arrivals) == 1000)
    stats = bh.stats()
    assert (stats.in_flight, stats.queued, stats.rejected) == (10, 500, 490)
    release.set()
    results = await asyncio.gather(*tasks)
    assert results.count("done") == 510
    assert results.count("bulkhead_full") == 490
    assert starts == arrivals[:510]
    assert peak == 10
    assert bh.stats() == rs.BulkheadStats(
        max_concurrent=10,
        max_queued=500,
        in_flight=0,
        queued=0,
        admitted=510,
        rejected=490,
        timed_out=0,
    )


async def test_a_task_waiter_expires_on_the_fake_clock(clock):
    """A queued task fails as soon as the clock passes max_wait and someone looks."""
    bh = rs.Bulkhead(1, max_queued=2, max_wait=5.0, clock=clock)
    release = asyncio.Event()
    holder = asyncio.create_task(bh.acall(release.wait))
    await aeventually(lambda: bh.stats().in_flight == 1)
    waiter = asyncio.create_task(bh.acall(asyncio.sleep, 0))
    await aeventually(lambda: bh.stats().queued == 1)
    clock.advance(5.0)
    late = asyncio.create_task(bh.acall(asyncio.sleep, 0, "late"))  # its arrival expires it
    with pytest.raises(rs.BulkheadFullError) as info:
        await waiter
    assert info.value.reason == "bulkhead_timeout"
    release.set()
    await holder
    assert await late == "late"
    stats = bh.stats()
    assert (stats.timed_out, stats.admitted, stats.in_flight) == (1, 2, 0)


async def test_a_task_waiter_rearms_until_the_clock_says_its_time():
    """The task waiter's real timer firing early does not fail it; once the fake clock
    passes max_wait, its own timer fails it."""
    clock = CountingClock()
    bh = rs.Bulkhead(1, max_queued=1, max_wait=0.002, clock=clock)
    release = asyncio.Event()
    holder = asyncio.create_task(bh.acall(release.wait))
    await aeventually(lambda: bh.stats().in_flight == 1)
    waiter = asyncio.create_task(bh.acall(asyncio.sleep, 0))
    await aeventually(lambda: bh.stats().queued == 1)
    before = clock.readings
    while clock.readings <= before + 6:  # several 2 ms timers fire and re-arm
        await asyncio.wait([waiter], timeout=0.002)
    assert not waiter.done()
    clock.advance(0.002)
    with pytest.raises(rs.BulkheadFullError):
        await waiter
    release.set()
    await holder


async def test_a_cancelled_waiter_leaves_the_queue(clock):
    """Cancelling a queued task removes it; the others keep their order."""
    bh = rs.Bulkhead(1, max_queued=3, max_wait=None, clock=clock)
    release = asyncio.Event()
    order: list[str] = []

    async def work(label: str) -> None:
        order.append(label)

    holder = asyncio.create_task(bh.acall(release.wait))
    await aeventually(lambda: bh.stats().in_flight == 1)
    waiters = {}
    for label in "abc":
        waiters[label] = asyncio.create_task(bh.acall(work, label))
        await aeventually(lambda: len(waiters) == bh.stats().queued)
    waiters["b"].cancel()
    await aeventually(lambda: bh.stats().queued == 2)
    release.set()
    await holder
    await asyncio.gather(waiters["a"], waiters["c"])
    assert waiters["b"].cancelled()
    assert order == ["a", "c"]
    assert bh.stats().in_flight == 0


async def test_a_waiter_cancelled_after_being_granted_passes_the_slot_on(clock):
    """If a slot was handed to a task that is then cancelled, the next waiter gets it."""
    bh = rs.Bulkhead(1, max_queued=2, max_wait=None, clock=clock)
    release = asyncio.Event()
    order: list[str] = []

    async def work(label: str) -> None:
        order.append(label)

    holder = asyncio.create_task(bh.acall(release.wait))
    await aeventually(lambda: bh.stats().in_flight == 1)
    first = asyncio.create_task(bh.acall(work, "first"))
    await aeventually(lambda: bh.stats().queued == 1)
    second = asyncio.create_task(bh.acall(work, "second"))
    await aeventually(lambda: bh.stats().queued == 2)
    release.set()
    await asyncio.sleep(0)  # the holder finishes and hands its slot to `first`...
    assert bh.stats().queued == 1
    first.cancel()  # ...which is cancelled before it could resume
    await asyncio.gather(holder, second)
    assert first.cancelled()
    assert order == ["second"]
    stats = bh.stats()
    assert (stats.in_flight, stats.admitted) == (0, 2)


async def test_a_waiter_cancelled_before_the_hand_over_is_skipped(clock):
    """A task cancelled while queued is skipped by the hand-over, even before it runs."""
    bh = rs.Bulkhead(1, max_queued=2, max_wait=None, clock=clock)
    order: list[str] = []

    async def work(label: str) -> None:
        order.append(label)

    release = asyncio.Event()
    holder = asyncio.create_task(bh.acall(release.wait))
    await aeventually(lambda: bh.stats().in_flight == 1)
    first = asyncio.create_task(bh.acall(work, "first"))
    second = asyncio.create_task(bh.acall(work, "second"))
    await aeventually(lambda: bh.stats().queued == 2)
    first.cancel()  # its future is cancelled now; its task has not resumed yet
    release.set()
    await asyncio.gather(holder, second)
    assert first.cancelled()
    assert order == ["second"]
    assert bh.stats().in_flight == 0


@pytest.mark.parametrize("cancel_both", [False, True], ids=["next-served", "all-gone"])
async def test_the_hand_over_skips_waiters_cancelled_in_the_same_step(clock, cancel_both):
    """A slot freed right after its waiters were cancelled (before they could run) goes
    to the next live waiter, or back to the pool."""
    bh = rs.Bulkhead(1, max_queued=2, max_wait=None, clock=clock)
    order: list[str] = []
    waiters: list[asyncio.Task[None]] = []

    async def work(label: str) -> None:
        order.append(label)

    async def holder() -> None:
        for label in ("first", "second"):
            waiters.append(asyncio.create_task(bh.acall(work, label)))
        await aeventually(lambda: bh.stats().queued == 2)
        for task in waiters[: 2 if cancel_both else 1]:
            task.cancel()
        # returning now frees the slot in this same step, before the cancelled ones run

    await bh.acall(holder)
    await asyncio.gather(*waiters, return_exceptions=True)
    assert waiters[0].cancelled()
    assert order == ([] if cancel_both else ["second"])
    stats = bh.stats()
    assert (stats.in_flight, stats.queued) == (0, 0)


async def test_a_granted_waiter_cancelled_with_nobody_behind_returns_the_slot(clock):
    """A handed-over slot whose task is cancelled goes back to the pool."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=None, clock=clock)
    release = asyncio.Event()
    holder = asyncio.create_task(bh.acall(release.wait))
    await aeventually(lambda: bh.stats().in_flight == 1)
    waiter = asyncio.create_task(bh.acall(asyncio.sleep, 0))
    await aeventually(lambda: bh.stats().queued == 1)
    release.set()
    await asyncio.sleep(0)  # the slot is handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it resumes
    await holder
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bh.stats().in_flight == 0


def test_a_waiter_whose_event_loop_is_closed_is_skipped(clock):
    """A task queued on a loop that was closed (without cancelling it) cannot be woken:
    the slot goes back to the pool."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=None, clock=clock)
    release = threading.Event()
    holder = threading.Thread(target=bh.call, args=(release.wait, WAIT))
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # "destroyed but pending": meant
    coro = bh.acall(asyncio.sleep, 0)
    task = loop.create_task(coro)
    loop.run_until_complete(asyncio.sleep(0))
    assert bh.stats().queued == 1
    loop.close()
    release.set()
    holder.join(WAIT)
    stats = bh.stats()
    assert (stats.in_flight, stats.queued) == (0, 0)
    assert not task.done()
    coro.close()


def test_an_interrupted_thread_waiter_leaves_the_queue():
    """A waiting thread interrupted by a BaseException leaves the queue and re-raises."""

    class InterruptingClock(CountingClock):
        armed = False

        def monotonic(self) -> float:
            if self.armed:
                raise Abort
            return super().monotonic()

    clock = InterruptingClock()
    bh = rs.Bulkhead(1, max_queued=1, max_wait=0.002, clock=clock)
    release = threading.Event()
    holder = threading.Thread(target=bh.call, args=(release.wait, WAIT))
    holder.start()
    eventually(lambda: bh.stats().in_flight == 1)
    interrupted: list[BaseException] = []

    def waiter() -> None:
        try:
            bh.call(lambda: None)
        except Abort as exc:
            interrupted.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    eventually(lambda: bh.stats().queued == 1)
    clock.armed = True  # the waiter's next look at the clock (its timer is 2 ms) raises
    t.join(WAIT)
    clock.armed = False
    assert len(interrupted) == 1
    assert bh.stats().queued == 0
    release.set()
    holder.join(WAIT)


async def test_a_cancelled_running_call_frees_its_slot(clock):
    """Cancelling a task inside the call gives the slot back."""
    bh = rs.Bulkhead(2, clock=clock)
    tasks = [asyncio.create_task(bh.acall(asyncio.Event().wait)) for _ in range(2)]
    await aeventually(lambda: bh.stats().in_flight == 2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert bh.stats().in_flight == 0
    assert await bh.acall(asyncio.sleep, 0, "free") == "free"


async def test_threads_and_tasks_share_one_queue(clock):
    """A thread waiting in the queue before a task is served before it."""
    bh = rs.Bulkhead(1, max_queued=2, max_wait=None, clock=clock)
    release = threading.Event()
    order: list[str] = []
    holder = threading.Thread(target=bh.call, args=(release.wait, WAIT))
    holder.start()
    await aeventually(lambda: bh.stats().in_flight == 1)
    thread = threading.Thread(target=bh.call, args=(order.append, "thread"))
    thread.start()
    await asyncio.to_thread(eventually, lambda: bh.stats().queued == 1)

    async def task_work() -> None:
        order.append("task")

    task = asyncio.create_task(bh.acall(task_work))
    await aeventually(lambda: bh.stats().queued == 2)
    release.set()
    await task
    thread.join(WAIT)
    holder.join(WAIT)
    assert order == ["thread", "task"]


def test_acall_can_queue_only_under_asyncio():
    """Queueing in acall outside asyncio (a coroutine driven by hand) is a clear error."""
    bh = rs.Bulkhead(1, max_queued=1, max_wait=1.0)

    def inside() -> None:  # holds the only slot
        coro = bh.acall(asyncio.sleep, 0)
        with pytest.raises(RuntimeError, match="asyncio"):
            coro.send(None)

    bh.call(inside)
    stats = bh.stats()
    assert (stats.in_flight, stats.queued, stats.admitted) == (0, 0, 1)
