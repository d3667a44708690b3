"""A fleet of replicas sharing one breaker: exactly ``half_open_calls`` probes between
them (threads, tasks, four OS processes), no last writer wins, changes seen within
``flush_interval``, and a replica that dies holding a probe does not wedge it.

Each replica is a breaker with a Redis store (and connections) of its own. Time
is a fake clock given to the stores, so the scripts decide on it; only Redis
and the processes are real.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _redis_support import unique_prefix

import resilient as rs
from resilient.backends.redis import AsyncRedisStore, RedisStore, SharedCircuitBreaker
from resilient.testing import FakeClock

pytestmark = pytest.mark.redis

FLEET = {
    "window": rs.CountWindow(4),
    "minimum_calls": 2,
    "half_open_calls": 3,
    "open_for": 30.0,
    "half_open_max_wait": 60.0,
}
REPLICAS = 6
CALLERS = 8  # threads or tasks per replica


def _fail() -> None:
    raise OSError("down")


def replica(url: str, prefix: str, clock: FakeClock, cls: Any = RedisStore, **options: Any) -> Any:
    store = cls(url, prefix=prefix, clock=clock, timeout=5.0)
    return SharedCircuitBreaker(name="fleet", store=store, **{**FLEET, **options})


def trip(url: str, prefix: str, clock: FakeClock) -> None:
    """Open the fleet's breaker (from a replica of its own)."""
    opener = replica(url, prefix, clock)
    for _ in range(2):
        with pytest.raises(OSError):
            opener.call(_fail)
    assert opener.state is rs.CircuitState.OPEN
    opener.store.close()


@pytest.fixture
def fleet(redis_url: str) -> Iterator[tuple[list[Any], FakeClock, str]]:
    clock = FakeClock(100.0)
    prefix = unique_prefix("fleet")
    breakers = [replica(redis_url, prefix, clock) for _ in range(REPLICAS)]
    yield breakers, clock, prefix
    for breaker in breakers:
        breaker.store.close()


# -- exactly half_open_calls probes -------------------------------------------------------------


def test_threads_of_many_replicas_get_exactly_half_open_calls_probes(fleet, redis_url):
    breakers, clock, prefix = fleet
    trip(redis_url, prefix, clock)
    clock.advance(30.0)
    start = threading.Barrier(REPLICAS * CALLERS)
    release = threading.Event()
    lock = threading.Lock()
    outcome = {"probes": 0, "full": 0, "other": 0}

    def probe() -> None:
        with lock:
            outcome["probes"] += 1
        assert release.wait(30)

    def caller(breaker: Any) -> None:
        start.wait(30)
        try:
            breaker.call(probe)
        except rs.CircuitOpenError as exc:
            with lock:
                outcome["full" if exc.reason == "half_open_full" else "other"] += 1

    threads = [threading.Thread(target=caller, args=(b,)) for b in breakers for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    _wait(lambda: sum(outcome.values()) == len(threads))
    assert outcome == {"probes": 3, "full": len(threads) - 3, "other": 0}
    release.set()
    for thread in threads:
        thread.join(30)
    assert breakers[0].flush().state is rs.CircuitState.CLOSED  # three successful probes


def test_tasks_of_many_replicas_get_exactly_half_open_calls_probes(redis_url):
    clock = FakeClock(100.0)
    prefix = unique_prefix("fleet")
    trip(redis_url, prefix, clock)
    clock.advance(30.0)
    breakers = [replica(redis_url, prefix, clock, AsyncRedisStore) for _ in range(REPLICAS)]

    async def main() -> dict[str, int]:
        release = asyncio.Event()
        outcome = {"probes": 0, "full": 0, "other": 0}
        admitted_all = asyncio.Event()

        def count(what: str) -> None:
            outcome[what] += 1
            if sum(outcome.values()) == REPLICAS * CALLERS:
                admitted_all.set()

        async def probe() -> None:
            count("probes")
            await release.wait()

        async def caller(breaker: Any) -> None:
            try:
                await breaker.acall(probe)
            except rs.CircuitOpenError as exc:
                count("full" if exc.reason == "half_open_full" else "other")

        tasks = [asyncio.create_task(caller(b)) for b in breakers for _ in range(CALLERS)]
        await asyncio.wait_for(admitted_all.wait(), 30)
        seen = dict(outcome)
        release.set()
        await asyncio.gather(*tasks)
        assert (await breakers[-1].aflush()).state is rs.CircuitState.CLOSED
        for breaker in breakers:
            await breaker.store.aclose()
        return seen

    assert asyncio.run(main()) == {"probes": 3, "full": REPLICAS * CALLERS - 3, "other": 0}


def _probe_worker(
    url: str, prefix: str, flavour: str, barrier: Any, release: Any, results: Any
) -> None:
    """A replica in a process of its own: CALLERS concurrent calls at time 130."""
    clock = FakeClock(130.0)
    cls = AsyncRedisStore if flavour == "async" else RedisStore
    breaker = replica(url, prefix, clock, cls)
    counts = {"probes": 0, "full": 0}
    lock = threading.Lock()
    attempted = threading.Condition(lock)

    def count(what: str) -> None:
        with attempted:
            counts[what] += 1
            attempted.notify_all()

    def report() -> None:
        with attempted:
            attempted.wait_for(lambda: sum(counts.values()) == CALLERS, timeout=30)
            results.put(dict(counts))

    barrier.wait(30)
    if flavour == "sync":

        def hold() -> None:
            count("probes")
            assert release.wait(30)

        def caller() -> None:
            try:
                breaker.call(hold)
            except rs.CircuitOpenError:
                count("full")

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        report()
        for thread in threads:
            thread.join(30)
        breaker.close()
    else:

        async def main() -> None:
            loop = asyncio.get_running_loop()

            async def hold() -> None:
                count("probes")
                assert await loop.run_in_executor(None, release.wait, 30)

            async def caller() -> None:
                try:
                    await breaker.acall(hold)
                except rs.CircuitOpenError:
                    count("full")

            tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
            await loop.run_in_executor(None, report)
            await asyncio.gather(*tasks)
            await breaker.aclose()

        asyncio.run(main())


def test_four_processes_get_exactly_half_open_calls_probes(redis_url):
    clock = FakeClock(100.0)
    prefix = unique_prefix("procs")
    trip(redis_url, prefix, clock)  # open until 130
    context = multiprocessing.get_context("spawn")
    barrier, release, results = context.Barrier(4), context.Event(), context.Queue()
    workers = [
        context.Process(
            target=_probe_worker, args=(redis_url, prefix, flavour, barrier, release, results)
        )
        for flavour in ("sync", "async", "sync", "async")
    ]
    for worker in workers:
        worker.start()
    try:
        counts = [results.get(timeout=60) for _ in workers]
    finally:
        release.set()
        for worker in workers:
            worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert sum(c["probes"] for c in counts) == 3
    assert sum(c["full"] for c in counts) == 4 * CALLERS - 3
    clock.advance(30.0)
    observer = replica(redis_url, prefix, clock)
    assert observer.flush().state is rs.CircuitState.CLOSED
    observer.store.close()


# -- no last writer wins ------------------------------------------------------------------------


def test_a_stale_replica_cannot_close_an_open_breaker(fleet, redis_url, redis_server):
    breakers, clock, prefix = fleet
    a, b = breakers[0], replica(redis_url, prefix, clock, flush_interval=10.0)
    b.call(lambda: 1)  # b's view: CLOSED, for 10 s
    for _ in range(2):
        with pytest.raises(OSError):
            a.call(_fail)
    assert a.state is rs.CircuitState.OPEN
    for _ in range(20):
        b.call(lambda: 1)  # admitted on b's stale view; counted for the old generation
    stats = b.flush()  # sent now: dropped, the generation that admitted them is gone
    assert stats.state is rs.CircuitState.OPEN
    assert (stats.calls, stats.failed_calls) == (2, 2)
    assert redis_server.cli("HGET", a.key, "state") == "open"
    with pytest.raises(rs.CircuitOpenError):
        b.call(lambda: 1)
    b.store.close()


def test_replicas_tripping_together_open_the_breaker_once(redis_url, redis_server):
    clock = FakeClock(100.0)
    config = {"window": rs.CountWindow(100), "minimum_calls": 4, "open_for_multiplier": 2.0}
    prefix = unique_prefix("race")
    racers = [
        replica(redis_url, prefix, clock, flush_interval=100.0, **config) for _ in range(REPLICAS)
    ]
    for racer in racers:
        racer.call(lambda: 1)  # each replica's view: CLOSED, 1 call
    start = threading.Barrier(REPLICAS)

    def race(breaker: Any) -> None:
        for _ in range(2):
            with pytest.raises(OSError):
                breaker.call(_fail)  # 2 failures of 3 calls: below minimum_calls, kept here
        start.wait(30)
        with pytest.raises(OSError):
            breaker.call(_fail)  # each replica now sees 3 of 4 failed: all send at once

    threads = [threading.Thread(target=race, args=(b,)) for b in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    key = racers[0].key
    # One transition: one generation, one open in a row (a second would have doubled
    # open_for), and only the first replica's outcomes in the window.
    assert redis_server.cli("HGET", key, "gen") == "1"
    assert redis_server.cli("HGET", key, "opens") == "1"
    assert float(redis_server.cli("HGET", key, "until")) == 100.0 + 30.0
    stats = racers[0].flush()
    assert (stats.state, stats.calls, stats.failed_calls) == (rs.CircuitState.OPEN, 4, 3)
    for racer in racers:
        assert racer.state is rs.CircuitState.OPEN
        racer.store.close()


def test_probe_verdicts_racing_to_open_and_close(fleet, redis_url):
    _, clock, prefix = fleet
    a, b, c = (replica(redis_url, prefix, clock, flush_interval=0) for _ in range(3))
    trip(redis_url, prefix, clock)
    clock.advance(30.0)
    tickets = [x._sync().admit(clock.monotonic())[0] for x in (a, b)]
    assert all(type(t).__name__ == "Probe" for t in tickets)
    # a's probe fails: with 3 probes at a 50% threshold, 1 failure is not enough yet;
    # b's fails too: 2 of 3, OPEN. A success reported after that (a third probe,
    # admitted before) must not close it.
    third = c._sync().admit(clock.monotonic())[0]
    a._emit(a._sync().record(tickets[0], 1, clock.monotonic(), None))
    b._emit(b._sync().record(tickets[1], 1, clock.monotonic(), None))
    assert b.state is rs.CircuitState.OPEN
    c._emit(c._sync().record(third, 0, clock.monotonic(), None))
    stats = c.flush()
    assert stats.state is rs.CircuitState.OPEN
    assert stats.retry_after == 30.0
    for breaker in (a, b, c):
        breaker.store.close()


# -- bounded staleness ----------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_an_open_elsewhere_is_seen_within_flush_interval(redis_url, flavour):
    clock = FakeClock(0.0)
    prefix = unique_prefix("stale")
    cls = AsyncRedisStore if flavour == "async" else RedisStore
    watcher = replica(redis_url, prefix, clock, cls, flush_interval=1.0)
    opener = replica(redis_url, prefix, clock)
    loop = asyncio.new_event_loop()

    def call() -> str:
        async def work() -> str:
            return "ran"

        try:
            if flavour == "sync":
                return str(watcher.call(lambda: "ran"))
            return str(loop.run_until_complete(watcher.acall(work)))
        except rs.CircuitOpenError:
            return "rejected"

    try:
        assert call() == "ran"  # t=0: the watcher's view is CLOSED until t=1
        clock.advance(0.25)
        for _ in range(2):
            with pytest.raises(OSError):
                opener.call(_fail)  # opened at t=0.25
        seen = []
        for _ in range(8):
            clock.advance(0.125)
            seen.append((clock.monotonic(), call()))
        assert seen == [
            (0.375, "ran"),
            (0.5, "ran"),
            (0.625, "ran"),
            (0.75, "ran"),
            (0.875, "ran"),
            (1.0, "rejected"),  # flush_interval after its last answer from Redis
            (1.125, "rejected"),
            (1.25, "rejected"),
        ]
    finally:
        loop.run_until_complete(watcher.store.aclose())
        loop.close()
        opener.store.close()
        if flavour == "sync":
            watcher.store.close()


def test_outcomes_reach_the_fleet_within_flush_interval(redis_url):
    clock = FakeClock(0.0)
    prefix = unique_prefix("stale")
    worker = replica(redis_url, prefix, clock, flush_interval=1.0, minimum_calls=100)
    reader = replica(redis_url, prefix, clock, flush_interval=0.0)
    worker.call(lambda: 1)  # t=0: the first admission reads the state; the outcome waits
    clock.advance(0.25)
    with pytest.raises(OSError):
        worker.call(_fail)  # counted by the worker, which cannot trip on it
    assert reader.flush().calls == 0
    clock.advance(0.75)
    worker.call(lambda: 1)  # t=1: due, the failure travels with this admission
    assert (reader.flush().calls, reader.stats().failed_calls) == (2, 1)
    worker.store.close()
    reader.store.close()


# -- a replica dies holding a probe ---------------------------------------------------------------


def _hold_a_probe(url: str, prefix: str, holding: Any) -> None:
    clock = FakeClock(130.0)
    breaker = replica(url, prefix, clock, half_open_calls=1)

    def forever() -> None:
        holding.set()
        threading.Event().wait(60)  # until the test kills this process

    breaker.call(forever)


def test_a_replica_killed_holding_a_probe_does_not_wedge_the_breaker(redis_url):
    clock = FakeClock(100.0)
    prefix = unique_prefix("dead")
    opener = replica(redis_url, prefix, clock, half_open_calls=1)
    for _ in range(2):
        with pytest.raises(OSError):
            opener.call(_fail)
    clock.advance(30.0)
    context = multiprocessing.get_context("spawn")
    holding = context.Event()
    doomed = context.Process(target=_hold_a_probe, args=(redis_url, prefix, holding))
    doomed.start()
    try:
        assert holding.wait(60)
    finally:
        assert doomed.pid is not None
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join(30)
    survivor = replica(redis_url, prefix, clock, half_open_calls=1)
    with pytest.raises(rs.CircuitOpenError) as full:
        survivor.call(lambda: 1)
    assert full.value.reason == "half_open_full"
    clock.advance(60.0)  # half_open_max_wait: the silent probe counts as failed
    with pytest.raises(rs.CircuitOpenError) as reopened:
        survivor.call(lambda: 1)
    assert (reopened.value.reason, reopened.value.retry_after) == ("circuit_open", 30.0)
    assert survivor.stats().state is rs.CircuitState.OPEN
    clock.advance(30.0)
    assert survivor.call(lambda: "probe") == "probe"
    assert survivor.state is rs.CircuitState.CLOSED
    survivor.store.close()
    opener.store.close()


def _wait(predicate: Any, timeout: float = 30.0) -> None:
    """Wait for threads doing real round trips (bounded)."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        pause.wait(0.01)
    raise AssertionError("timed out waiting for the callers")
