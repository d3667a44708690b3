"""Many threads and tasks hammering one limiter: exact admitted counts; and a flood
of distinct keys staying within bounded memory (tracemalloc, not timing)."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from resilient import RateLimitedError
from resilient._rate_limit import FixedWindow, SlidingWindow, TokenBucket
from resilient.testing import FakeClock

THREADS = 64
TASKS = 1000

LIMITERS: dict[str, Callable[[Any], Any]] = {
    "token-bucket": lambda clock: TokenBucket("1/hour", burst=1000, clock=clock),
    "sliding-log": lambda clock: SlidingWindow("1000/hour", clock=clock),
    "sliding-counter": lambda clock: SlidingWindow("1000/hour", precise=False, clock=clock),
    "fixed-window": lambda clock: FixedWindow("1000/hour", clock=clock),
    "two-limits": lambda clock: SlidingWindow("1000/hour;5000/day", clock=clock),
}


def hammer(threads: int, attempts: int, work: Callable[[int], bool]) -> int:
    """Run *work* from many threads released at once; how many returned True."""
    barrier = threading.Barrier(threads)
    counts = [0] * threads
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            counts[index] = sum(work(index) for _ in range(attempts))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors, errors
    return sum(counts)


@pytest.mark.parametrize("name", list(LIMITERS))
def test_threads_get_exactly_the_capacity(name):
    """64 threads x 40 try_acquire on a frozen clock: exactly 1000 admitted."""
    limiter = LIMITERS[name](FakeClock())
    assert hammer(THREADS, 40, lambda _: limiter.try_acquire().allowed) == 1000


@pytest.mark.parametrize("name", list(LIMITERS))
def test_threads_through_call_run_exactly_the_capacity(name):
    """64 threads x 40 call(): exactly 1000 runs, every other call RateLimitedError."""
    limiter = LIMITERS[name](FakeClock())
    ran = []

    def work(_: int) -> bool:
        try:
            limiter.call(lambda: ran.append(1))
        except RateLimitedError:
            return False
        return True

    assert hammer(THREADS, 40, work) == 1000
    assert len(ran) == 1000


def test_threads_on_the_system_clock_with_keys():
    """Real clock, 8 keys shared by 64 threads: each key admits exactly its burst."""
    limiter = TokenBucket("1/hour", burst=100, key=lambda k: k)
    assert hammer(THREADS, 30, lambda index: limiter.try_acquire(index % 8).allowed) == 800


def test_concurrent_bookings_get_distinct_fifo_slots():
    """64 threads booking at once: every booking gets its own slot, 10 ms apart."""
    clock = FakeClock()
    limiter = TokenBucket("100/s", burst=1, max_wait=100.0, clock=clock)
    limiter.try_acquire()
    waits: list[float] = []
    lock = threading.Lock()

    def book(_: int) -> bool:
        decision = limiter.store.try_acquire("token_bucket", limiter.limits, max_wait=100.0)
        with lock:
            waits.append(decision.retry_after)
        return decision.allowed

    assert hammer(THREADS, 20, book) == 1280
    slots = sorted(round(wait * 100) for wait in waits)
    assert slots == list(range(1, 1281))


@pytest.mark.parametrize("name", list(LIMITERS))
def test_tasks_get_exactly_the_capacity(name):
    """1000 asyncio tasks x 2 acall(): exactly 1000 run, the rest are refused."""
    limiter = LIMITERS[name](FakeClock())

    async def work() -> str:
        await asyncio.sleep(0)
        return "ran"

    async def main() -> list[Any]:
        calls = [limiter.acall(work) for _ in range(2 * TASKS)]
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(main())
    assert results.count("ran") == 1000
    assert sum(isinstance(r, RateLimitedError) for r in results) == 2 * TASKS - 1000


def test_tasks_waiting_with_max_wait_are_all_admitted_in_order():
    """1000 tasks with max_wait on a pacing bucket: all run, in arrival order."""
    clock = FakeClock()
    limiter = TokenBucket("1000/s", burst=1, max_wait=10.0, clock=clock)
    order: list[int] = []

    async def work(index: int) -> None:
        order.append(index)

    async def main() -> None:
        await asyncio.gather(*(limiter.acall(work, i) for i in range(TASKS)))

    asyncio.run(main())
    assert sorted(order) == list(range(TASKS))
    assert len(clock.sleeps) == TASKS - 1  # everyone but the first waited its turn


@pytest.mark.slow
def test_a_million_distinct_keys_stay_within_bounded_memory():
    """1,000,000 distinct keys through max_keys=10,000: the key map stays at 10,000
    and traced memory stops growing once it is full."""
    clock = FakeClock()
    limiter = TokenBucket("10/s", key=lambda key: key, max_keys=10_000, clock=clock)

    def noop(key: int) -> None:
        return None

    call = limiter.call
    tracemalloc.start()
    try:
        for key in range(20_000):  # fill the map, and then some
            call(noop, key)
        filled, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for key in range(20_000, 1_000_000):
            call(noop, key)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(limiter.store) == 10_000
    assert limiter.store.table(limiter.limits).keys.evictions == 990_000
    # 980,000 more keys added nothing: a few KiB of noise at most.
    assert current - filled < 64 * 1024, (filled, current)
    assert peak < 2 * filled, (filled, peak)  # map resizes come and go
    assert filled < 10 * 1024 * 1024  # about 10,000 keys' worth, not a million's
