"""CircuitBreaker under concurrency: exact half-open admission for tasks and threads
arriving together, cancellation that never counts and never leaks, exact counts under
threads. Synchronisation uses barriers and events, never sleeps."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import resilient as rs
from resilient import CircuitState
from resilient.testing import FakeClock

WAIT = 10.0  # a safety net for a broken build: no test waits for it when things work


def half_open(clock: FakeClock, probes: int, **kw: Any) -> rs.CircuitBreaker:
    cb = rs.CircuitBreaker(
        name="db", clock=clock, consecutive_failures=1, open_for=5.0, half_open_calls=probes, **kw
    )
    with pytest.raises(OSError):
        cb.call(_boom)
    clock.advance(5.0)
    assert cb.state is CircuitState.HALF_OPEN
    return cb


def _boom() -> None:
    raise OSError("down")


async def test_exactly_half_open_calls_admitted_among_100_tasks(clock):
    """100 tasks arrive together in HALF_OPEN: 5 probes run, 95 are rejected."""
    cb = half_open(clock, 5)
    barrier = asyncio.Barrier(100)
    release = asyncio.Event()
    running = 0

    async def probe() -> str:
        nonlocal running
        running += 1
        await release.wait()
        return "ok"

    async def caller() -> str:
        await barrier.wait()
        try:
            return await cb.acall(probe)
        except rs.CircuitOpenError as err:
            return err.reason

    tasks = [asyncio.create_task(caller()) for _ in range(100)]
    for _ in range(10_000):  # yield until the 95 rejected callers are done
        if sum(t.done() for t in tasks) == 95:
            break
        await asyncio.sleep(0)
    assert running == 5
    assert cb.stats().probes_in_flight == 5
    release.set()
    results = await asyncio.gather(*tasks)
    assert results.count("ok") == 5
    assert results.count("half_open_full") == 95
    assert cb.state is CircuitState.CLOSED
    assert cb.stats().rejected == 95


def test_exactly_half_open_calls_admitted_among_32_threads(clock):
    """32 threads released by a barrier in HALF_OPEN: 5 probes run, 27 are rejected."""
    cb = half_open(clock, 5)
    barrier = threading.Barrier(32)
    release = threading.Event()
    all_rejected = threading.Event()
    lock = threading.Lock()
    results: list[str] = []
    running = 0

    def probe() -> str:
        nonlocal running
        with lock:
            running += 1
        assert release.wait(WAIT)
        return "ok"

    def caller() -> None:
        barrier.wait()
        try:
            outcome = cb.call(probe)
        except rs.CircuitOpenError as err:
            outcome = err.reason
        with lock:
            results.append(outcome)
            if results.count("half_open_full") == 27:
                all_rejected.set()

    threads = [threading.Thread(target=caller) for _ in range(32)]
    for t in threads:
        t.start()
    assert all_rejected.wait(WAIT)
    assert running == 5
    release.set()
    for t in threads:
        t.join(WAIT)
    assert sorted(results) == ["half_open_full"] * 27 + ["ok"] * 5
    assert cb.state is CircuitState.CLOSED


async def test_cancelled_probes_release_their_permits_and_are_not_verdicts(clock):
    """Cancelling the running probes frees their permits; new probes decide."""
    cb = half_open(clock, 3)
    started = asyncio.Event()
    count = 0

    async def hang() -> None:
        nonlocal count
        count += 1
        if count == 3:
            started.set()
        await asyncio.Event().wait()

    hung = [asyncio.create_task(cb.acall(hang)) for _ in range(3)]
    await started.wait()
    with pytest.raises(rs.CircuitOpenError):
        await cb.acall(asyncio.sleep, 0)
    for task in hung:
        task.cancel()
    results = await asyncio.gather(*hung, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    stats = cb.stats()
    assert (stats.state, stats.probes_in_flight) == (CircuitState.HALF_OPEN, 0)
    for _ in range(3):
        await cb.acall(asyncio.sleep, 0)
    assert cb.state is CircuitState.CLOSED


async def test_cancellation_in_closed_is_never_counted(clock):
    """Cancelled calls in CLOSED leave the window and the failure streak untouched."""
    cb = rs.CircuitBreaker(clock=clock, consecutive_failures=2, minimum_calls=1)
    tasks = [asyncio.create_task(cb.acall(asyncio.Event().wait)) for _ in range(50)]
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats = cb.stats()
    assert (stats.calls, stats.consecutive_failures, stats.state) == (0, 0, CircuitState.CLOSED)


async def test_wedge_guard_with_a_hung_task(clock):
    """A probe task that never returns stops holding HALF_OPEN after half_open_max_wait."""
    cb = half_open(clock, 1, half_open_max_wait=30.0, failure_rate=1.0)
    hung = asyncio.create_task(cb.acall(asyncio.Event().wait))
    await asyncio.sleep(0)
    with pytest.raises(rs.CircuitOpenError) as info:
        await cb.acall(asyncio.sleep, 0)
    assert info.value.reason == "half_open_full"
    clock.advance(30.0)
    with pytest.raises(rs.CircuitOpenError) as info:  # the lease expired: a failed probe
        await cb.acall(asyncio.sleep, 0)
    assert info.value.reason == "circuit_open"
    clock.advance(5.0)
    await cb.acall(asyncio.sleep, 0)
    assert cb.state is CircuitState.CLOSED
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert cb.state is CircuitState.CLOSED


def test_exact_counts_under_16_threads(clock):
    """16 threads x 1500 calls (1 in 5 failing): the window counts every outcome once."""
    cb = rs.CircuitBreaker(
        clock=clock, window=rs.CountWindow(100_000), failure_rate=1.0, minimum_calls=10
    )
    barrier = threading.Barrier(16)

    def worker(seed: int) -> None:
        barrier.wait()
        for i in range(1500):
            if (i + seed) % 5 == 0:
                with pytest.raises(OSError):
                    cb.call(_boom)
            else:
                cb.call(int)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 6)
    stats = cb.stats()
    assert (stats.calls, stats.failed_calls) == (16 * 1500, 16 * 300)
    assert stats.state is CircuitState.CLOSED


def test_threads_racing_through_transitions_leak_nothing(clock):
    """8 threads hammer a breaker that keeps tripping and recovering; afterwards no permit
    is held and it recovers normally."""
    cb = rs.CircuitBreaker(
        clock=clock, window=rs.CountWindow(20), minimum_calls=10, half_open_calls=3, open_for=1.0
    )
    barrier = threading.Barrier(8)
    lock = threading.Lock()
    outcomes: list[int] = [0, 0, 0]

    def flaky(fail: bool) -> None:
        if fail:
            raise OSError("x")

    def worker(seed: int) -> None:
        counts = [0, 0, 0]
        barrier.wait()
        for i in range(2000):
            try:
                cb.call(flaky, (i // 25 + seed) % 2 == 0)  # bursts of failures
                counts[0] += 1
            except OSError:
                counts[1] += 1
            except rs.CircuitOpenError:
                counts[2] += 1
            if i % 50 == seed:
                clock.advance(0.5)
        with lock:
            for k in range(3):
                outcomes[k] += counts[k]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 6)
    stats = cb.stats()
    assert sum(outcomes) == 8 * 2000
    assert outcomes[2] > 0  # it did trip
    assert stats.probes_in_flight == 0
    clock.advance(10.0)
    for _ in range(3):
        cb.call(flaky, False)
    assert cb.state is CircuitState.CLOSED
