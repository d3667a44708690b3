"""The shared circuit breaker against the in-memory one: same decisions, same changes.

Every scenario runs on an in-memory ``CircuitBreaker`` and on a breaker shared
through Redis (a single node and a Redis Cluster) that flushes every call
(``flush_interval=0``), each on its own fake clock moved the same way: the
admissions, rejections (reason and ``retry_after``), state changes (old, new,
why and when) and final stats must be identical. The async harness holds calls
open, so probes overlap, expire, get cancelled and report late; the sync one
runs calls one after another through ``call``. Then: the API, round trips,
keys, ``SCRIPT FLUSH``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from _redis_support import command_log, unique_prefix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilient as rs
from resilient import ConfigError
from resilient.backends.redis import AsyncRedisStore, RedisStore, SharedCircuitBreaker
from resilient.observability import CircuitStateChanged, Event
from resilient.testing import FakeClock

pytestmark = pytest.mark.redis

START = 1000.0


class HintedError(Exception):
    """A failure that asks the breaker to stay open (``open_on_retry_after``)."""

    retry_after = 3.0


class Changes:
    """A listener of the rare events only (so the breakers keep their fast paths)."""

    call_events = False

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, float]] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            self.seen.append((str(event.old), str(event.new), event.why, event.at))


CONFIGS: dict[str, dict[str, Any]] = {
    "count": {
        "window": rs.CountWindow(4),
        "minimum_calls": 3,
        "half_open_calls": 2,
        "open_for": 5.0,
        "slow_call_duration": 2.0,
        "slow_call_rate": 0.5,
        "half_open_max_wait": 8.0,
        "ignore": KeyError,
    },
    "time": {
        "window": rs.TimeWindow(10.0, buckets=5),
        "minimum_calls": 2,
        "half_open_calls": 3,
        "open_for": 4.0,
        "open_for_multiplier": 2.0,
        "max_open_for": 20.0,
        "slow_call_duration": 2.0,
        "half_open_max_wait": 6.0,
        "consecutive_failures": 3,
        "open_on_retry_after": True,
        "ignore": KeyError,
    },
    "one-probe": {
        "window": rs.CountWindow(3),
        "minimum_calls": 3,
        "failure_rate": 1.0,
        "half_open_calls": 1,
        "open_for": 2.0,
        "slow_call_duration": 1.0,
        "half_open_max_wait": 3.0,
        "open_on_retry_after": True,
        "ignore": KeyError,
    },
    "observe": {
        "window": rs.CountWindow(3),
        "minimum_calls": 2,
        "half_open_calls": 1,
        "open_for": 2.0,
        "observe_only": True,
        "ignore": KeyError,
    },
}


@pytest.fixture(params=["redis", "cluster"])
def server_url(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("redis_cluster").url)


def shared_breaker(url: str, clock: FakeClock, listener: Any, store_cls: Any = RedisStore,
                   **config: Any) -> SharedCircuitBreaker:  # fmt: skip
    # A generous timeout: these tests are about decisions, not about a slow Redis.
    store = store_cls(url, clock=clock, prefix=unique_prefix("cb"), timeout=5.0)
    return SharedCircuitBreaker(
        name="dep", store=store, clock=clock, listeners=[listener], flush_interval=0, **config
    )


def final_stats(stats: rs.CircuitBreakerStats) -> tuple[Any, ...]:
    # A fresh shared breaker's `since` is when its hash was made (first used), not
    # when this object was: compared once the breaker has changed state.
    return (
        stats.state,
        stats.calls,
        stats.failed_calls,
        stats.slow_calls,
        stats.consecutive_failures,
        stats.retry_after,
        stats.probes_in_flight,
        stats.generation,
        stats.since if stats.generation else None,
        stats.rejected,
    )


# -- the async harness: calls held open ---------------------------------------------------------


class AsyncHarness:
    """Drives a breaker through ``acall`` with calls that finish when told to."""

    def __init__(self, breaker: Any, clock: FakeClock) -> None:
        self.breaker = breaker
        self.clock = clock
        self.held: list[tuple[asyncio.Future[Any], asyncio.Task[Any]]] = []
        self.log: list[Any] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        entered = asyncio.Event()

        async def fn() -> Any:
            entered.set()
            return await future

        task = loop.create_task(self.breaker.acall(fn))
        waiter = loop.create_task(entered.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() and not entered.is_set():
            exc = task.exception()
            assert isinstance(exc, rs.CircuitOpenError), exc
            self.log.append(("rejected", exc.reason, exc.retry_after))
        else:
            self.log.append(("admitted",))
            self.held.append((future, task))

    async def finish(self, index: int, kind: str) -> None:
        if not self.held:
            return
        future, task = self.held.pop(index % len(self.held))
        if kind == "ok":
            future.set_result(1)
        elif kind == "fail":
            future.set_exception(OSError("down"))
        elif kind == "hint":
            future.set_exception(HintedError())
        elif kind == "ignored":
            future.set_exception(KeyError("not counted"))
        else:
            task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await task
        await self.settle()

    async def settle(self) -> None:
        tasks = list(getattr(self.breaker, "_tasks", ()))
        if tasks:
            await asyncio.gather(*tasks)

    async def manual(self, what: str) -> None:
        if isinstance(self.breaker, SharedCircuitBreaker):
            await getattr(self.breaker, "a" + what)()
        else:
            getattr(self.breaker, what)()

    async def run(self, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            if op[0] == "start":
                await self.start()
            elif op[0] == "finish":
                await self.finish(op[1], op[2])
            elif op[0] == "call":
                await self.start()
                if self.log[-1] == ("admitted",):
                    await self.finish(-1, op[1])
            elif op[0] == "advance":
                self.clock.advance(op[1])
            else:
                await self.manual(op[1])
        while self.held:  # whatever is still running ends now, as a success
            await self.finish(0, "ok")

    async def stats(self) -> rs.CircuitBreakerStats:
        if isinstance(self.breaker, SharedCircuitBreaker):
            return await self.breaker.aflush()
        return self.breaker.stats()


KINDS = ["ok", "ok", "ok", "fail", "fail", "hint", "ignored", "cancel"]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("start")),
        st.tuples(st.just("finish"), st.integers(0, 9), st.sampled_from(KINDS)),
        st.tuples(st.just("call"), st.sampled_from(KINDS[:-1])),
        st.tuples(st.just("call"), st.sampled_from(KINDS[:-1])),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 1.5, 2.5, 4.0, 7.0, 25.0])),
        st.tuples(st.just("manual"), st.sampled_from(["reset", "force_open", "disable"])),
    ),
    max_size=50,
)


def run_async(url: str, config: dict[str, Any], ops: list[tuple[Any, ...]]) -> list[Any]:
    """The same ops on both breakers: ``[log, changes, stats]`` of each."""
    results = []
    for shared in (False, True):
        clock = FakeClock(START)
        changes = Changes()
        if shared:
            breaker: Any = shared_breaker(url, clock, changes, **config)
        else:
            breaker = rs.CircuitBreaker(name="dep", clock=clock, listeners=[changes], **config)
        harness = AsyncHarness(breaker, clock)

        async def main(harness: AsyncHarness = harness) -> rs.CircuitBreakerStats:
            try:
                await harness.run(ops)
                return await harness.stats()
            finally:
                if isinstance(harness.breaker, SharedCircuitBreaker):
                    await harness.breaker.store.aclose()

        stats = asyncio.run(main())
        results.append((harness.log, changes.seen, final_stats(stats)))
    return results


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=st.sampled_from(sorted(CONFIGS)), ops=OPS)
def test_async_sequences_match_the_memory_breaker(redis_url, config, ops):
    memory, shared = run_async(redis_url, CONFIGS[config], ops)
    assert shared == memory


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=st.sampled_from(sorted(CONFIGS)), ops=OPS)
def test_async_sequences_match_on_redis_cluster(redis_cluster, config, ops):
    memory, shared = run_async(redis_cluster.url, CONFIGS[config], ops)
    assert shared == memory


SCENARIO: list[tuple[Any, ...]] = [
    *[("call", "ok")] * 3,
    ("call", "fail"),
    ("start",),
    ("call", "fail"),  # opens (2 failures of 4 calls)
    ("call", "ok"),  # rejected
    ("finish", 0, "ok"),  # a late success of the previous generation: ignored
    ("advance", 5.0),
    ("start",),  # probe 1
    ("start",),  # probe 2
    ("start",),  # half_open_full
    ("finish", 0, "cancel"),  # probe 1 gives its permit back
    ("start",),  # probe 3
    ("advance", 8.0),  # both probes silent for half_open_max_wait
    ("call", "ok"),  # the expiry re-opens it
    ("finish", 0, "ok"),  # too late
    ("advance", 5.0),
    ("call", "ok"),
    ("call", "ok"),  # closes
    ("manual", "force_open"),
    ("call", "ok"),
    ("manual", "reset"),
    ("call", "fail"),
]


def test_a_scripted_scenario_matches_step_by_step(server_url):
    memory, shared = run_async(server_url, CONFIGS["count"], SCENARIO)
    assert shared == memory
    log, changes, _ = memory
    assert ("rejected", "half_open_full", None) in log
    assert [(old, new) for old, new, _, _ in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "forced_open"),
        ("forced_open", "closed"),
    ]
    assert changes[2][2] == "2 probe(s) silent for half_open_max_wait"


# -- the sync driver: calls one after another ---------------------------------------------------


def run_sync(url: str, config: dict[str, Any], ops: list[tuple[Any, ...]]) -> list[Any]:
    results = []
    for shared in (False, True):
        clock = FakeClock(START)
        changes = Changes()
        if shared:
            breaker: Any = shared_breaker(url, clock, changes, **config)
        else:
            breaker = rs.CircuitBreaker(name="dep", clock=clock, listeners=[changes], **config)
        log: list[Any] = []
        for op in ops:
            if op[0] == "call":
                kind = op[1]

                def fn(kind: str = kind, clock: FakeClock = clock) -> int:
                    if kind == "slow":
                        clock.advance(2.5)
                        return 1
                    if kind == "fail":
                        raise OSError("down")
                    if kind == "hint":
                        raise HintedError
                    if kind == "ignored":
                        raise KeyError("not counted")
                    return 1

                try:
                    breaker.call(fn)
                    log.append("ok")
                except rs.CircuitOpenError as exc:
                    log.append((exc.reason, exc.retry_after))
                except (OSError, KeyError, HintedError) as exc:
                    log.append(type(exc).__name__)
            elif op[0] == "advance":
                clock.advance(op[1])
            else:
                getattr(breaker, op[1])()
        stats = breaker.flush() if shared else breaker.stats()
        if shared:
            breaker.store.close()
        results.append((log, changes.seen, final_stats(stats)))
    return results


SYNC_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("call"), st.sampled_from(["ok", "ok", "fail", "slow", "hint", "ignored"])
        ),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.5, 4.0, 7.0])),
        st.tuples(st.just("manual"), st.sampled_from(["reset", "force_open", "disable"])),
    ),
    max_size=40,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=st.sampled_from(["count", "time", "one-probe"]), ops=SYNC_OPS)
def test_sync_sequences_match_the_memory_breaker(redis_url, config, ops):
    memory, shared = run_sync(redis_url, CONFIGS[config], ops)
    assert shared == memory


# -- the API -------------------------------------------------------------------------------------


def test_a_store_or_url_makes_a_shared_breaker(redis_url):
    store = RedisStore(redis_url, prefix=unique_prefix())
    breaker = rs.CircuitBreaker(name="payments", store=store, minimum_calls=5)
    assert isinstance(breaker, SharedCircuitBreaker)
    assert isinstance(breaker, rs.CircuitBreaker)
    assert breaker.config.minimum_calls == 5
    assert breaker.key == f"{store.prefix}:{{payments}}:breaker"
    assert breaker.flush_interval == 1.0
    assert breaker.on_backend_error == "raise"
    assert "payments" in repr(breaker)
    by_url = rs.CircuitBreaker(name="payments", store=redis_url + "?prefix=x")
    assert isinstance(by_url, SharedCircuitBreaker)
    assert by_url.key == "x:{payments}:breaker"
    assert by_url.call(lambda: 7) == 7
    by_url.close()
    store.close()
    plain = rs.CircuitBreaker(name="payments", store="memory://")
    assert type(plain) is rs.CircuitBreaker


def test_bad_arguments_are_config_errors(redis_url):
    with pytest.raises(ConfigError, match="name"):
        rs.CircuitBreaker(store=redis_url)
    with pytest.raises(ConfigError, match="store"):
        rs.CircuitBreaker(name="x", store=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="flush_interval"):
        SharedCircuitBreaker(name="x", store=redis_url, flush_interval=-1)
    with pytest.raises(ConfigError, match="on_backend_error"):
        SharedCircuitBreaker(name="x", store=redis_url, on_backend_error="maybe")  # type: ignore[arg-type]


def test_the_breaker_defaults_to_the_store_clock(redis_url):
    clock = FakeClock(5.0)
    breaker = rs.CircuitBreaker(name="c", store=RedisStore(redis_url, clock=clock))
    assert breaker.clock is clock
    breaker.call(lambda: 1)
    assert breaker.stats().since == 5.0


def test_an_async_only_store_refuses_sync_calls(redis_url):
    store = AsyncRedisStore(redis_url, prefix=unique_prefix())
    breaker = rs.CircuitBreaker(name="async-only", store=store)

    async def work() -> int:
        return 3

    async def main() -> int:
        try:
            return await breaker.acall(work)
        finally:
            await store.aclose()

    assert asyncio.run(main()) == 3
    with pytest.raises(TypeError, match="acall"):
        breaker.call(lambda: 1)


def test_decorating_sync_and_async_functions(redis_url):
    breaker = rs.CircuitBreaker(name="deco", store=RedisStore(redis_url, prefix=unique_prefix()))

    @breaker
    def add(a: int, b: int) -> int:
        return a + b

    @breaker
    async def aadd(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3

    async def main() -> int:
        try:
            return await aadd(2, 3)
        finally:
            await breaker.store.aclose()

    assert asyncio.run(main()) == 5


def test_observe_only_lets_rejected_calls_through(redis_url):
    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix())
    breaker = SharedCircuitBreaker(
        name="watch", store=store, window=rs.CountWindow(2), minimum_calls=2, observe_only=True
    )
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(_fail)
    assert breaker.state is rs.CircuitState.OPEN
    assert breaker.call(lambda: "ran") == "ran"
    assert breaker.stats().rejected == 1


def _fail() -> None:
    raise OSError("down")


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_closed_calls_cost_one_round_trip_per_flush_interval(redis_url, flavour):
    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix())
    breaker = SharedCircuitBreaker(name="rt", store=store, flush_interval=1.0, minimum_calls=50)

    async def awork() -> int:
        return 1

    async def batch(n: int) -> None:
        for _ in range(n):
            await breaker.acall(awork)

    loop = asyncio.new_event_loop()

    def calls(n: int) -> None:
        if flavour == "sync":
            for _ in range(n):
                breaker.call(lambda: 1)
        else:
            loop.run_until_complete(batch(n))

    try:
        calls(1)  # the first call reads the shared state
        with command_log() as log:
            calls(500)
            assert log.names == []
            clock.advance(1.0)
            calls(500)
            assert log.names == ["EVALSHA"]  # one refresh, carrying 500 outcomes
            clock.advance(0.5)
            calls(500)
            assert log.names == ["EVALSHA"]
        assert breaker.flush().calls == 100  # the window holds the last 100 of 1,501 calls
    finally:
        loop.run_until_complete(store.aclose())
        loop.close()


def test_an_open_breaker_rejects_without_round_trips(redis_url):
    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix())
    breaker = SharedCircuitBreaker(
        name="open", store=store, window=rs.CountWindow(2), minimum_calls=2, open_for=30.0
    )
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(_fail)
    with command_log() as log:
        for _ in range(1000):
            with pytest.raises(rs.CircuitOpenError):
                breaker.call(lambda: 1)
        clock.advance(1.0)  # the view is refreshed once per flush_interval
        with pytest.raises(rs.CircuitOpenError) as caught:
            breaker.call(lambda: 1)
    assert log.names == ["EVALSHA"]
    assert caught.value.retry_after == 29.0


def test_a_failure_that_trips_is_sent_at_once(redis_url):
    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix())
    breaker = SharedCircuitBreaker(
        name="trip", store=store, window=rs.CountWindow(10), minimum_calls=4
    )
    for _ in range(3):
        breaker.call(lambda: 1)
    with command_log() as log:
        for _ in range(2):
            with pytest.raises(OSError):
                breaker.call(_fail)  # 1 of 4, 2 of 5: no trip, counted here
        assert log.names == []
        with pytest.raises(OSError):
            breaker.call(_fail)  # 3 of 6 trips by this replica's count: sent at once
    assert log.names == ["EVALSHA"]
    assert breaker.state is rs.CircuitState.OPEN
    assert breaker.stats().failed_calls == 3


# -- keys and scripts ---------------------------------------------------------------------------


def test_the_hash_holds_the_state_under_a_hash_tagged_key(redis_url, redis_server):
    clock = FakeClock()
    prefix = unique_prefix()
    breaker = SharedCircuitBreaker(
        name="a{b}c", store=RedisStore(redis_url, clock=clock, prefix=prefix)
    )
    breaker.call(lambda: 1)
    breaker.flush()
    assert breaker.key == f"{prefix}:{{a%7Bb%7Dc}}:breaker"
    assert redis_server.cli("HGET", breaker.key, "state") == "closed"
    assert redis_server.cli("HGET", breaker.key, "calls") == "1"
    ttl = int(redis_server.cli("TTL", breaker.key))
    assert 86_000 < ttl <= 86_400 + 1
    breaker.force_open()
    assert redis_server.cli("TTL", breaker.key) == "-1"  # a state set by hand stays


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_script_flush_is_survived(redis_url, redis_server, flavour):
    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix())
    breaker = SharedCircuitBreaker(name="flushed", store=store, flush_interval=0)

    async def awork() -> int:
        return 1

    async def main() -> None:
        try:
            for _ in range(3):
                await breaker.acall(awork)
                redis_server.cli("SCRIPT", "FLUSH")
        finally:
            await store.aclose()

    if flavour == "sync":
        for _ in range(3):
            breaker.call(lambda: 1)
            redis_server.cli("SCRIPT", "FLUSH")
    else:
        asyncio.run(main())
    assert breaker.flush().calls == 3


def test_a_replica_with_another_window_starts_it_afresh(redis_url):
    clock = FakeClock()
    prefix = unique_prefix()
    counted = SharedCircuitBreaker(
        name="shape", store=RedisStore(redis_url, clock=clock, prefix=prefix), flush_interval=0
    )
    for _ in range(3):
        counted.call(lambda: 1)
    timed = SharedCircuitBreaker(
        name="shape",
        store=RedisStore(redis_url, clock=clock, prefix=prefix),
        window=rs.TimeWindow(10),
        flush_interval=0,
    )
    timed.call(lambda: 1)
    assert timed.flush().calls == 1
    assert counted.flush().calls == 0  # and back: the count window starts over too


@pytest.fixture
def breaker_pair(redis_url: str) -> Iterator[tuple[Any, Any, FakeClock]]:
    clock = FakeClock()
    prefix = unique_prefix()
    stores = [RedisStore(redis_url, clock=clock, prefix=prefix) for _ in range(2)]
    pair = [SharedCircuitBreaker(name="pair", store=s, flush_interval=0) for s in stores]
    yield pair[0], pair[1], clock
    for store in stores:
        store.close()


def test_changes_made_elsewhere_are_reported_when_seen(breaker_pair):
    a, b, clock = breaker_pair
    heard = Changes()
    b._emitter.add_local([heard])
    a.call(lambda: 1)
    b.call(lambda: 1)
    clock.advance(2.0)
    a.force_open()
    with pytest.raises(rs.CircuitOpenError):
        b.call(lambda: 1)
    assert heard.seen == [("closed", "forced_open", "force_open()", 2.0)]


# -- batched: outcomes counted here, sent later -------------------------------------------------

BATCHED_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from(["ok", "ok", "ok", "fail", "slow"])),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
    ),
    max_size=60,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    window=st.sampled_from([rs.CountWindow(8), rs.TimeWindow(4.0, buckets=4)]),
    ops=BATCHED_OPS,
)
def test_batched_outcomes_fill_the_same_window(redis_url, window, ops):
    """With the default flush_interval, outcomes travel in batches (the successes of a
    count window counted without a lock); once sent, the shared window holds exactly
    what the in-memory breaker's does."""
    config = {"window": window, "minimum_calls": 1000, "slow_call_duration": 2.0}
    totals = []
    for shared in (False, True):
        clock = FakeClock(START)
        if shared:
            store = RedisStore(redis_url, clock=clock, prefix=unique_prefix("batch"))
            breaker: Any = SharedCircuitBreaker(name="b", store=store, **config)
        else:
            breaker = rs.CircuitBreaker(name="b", clock=clock, **config)
        for op in ops:
            if op[0] == "advance":
                clock.advance(op[1])
                continue

            def fn(kind: str = op[1], clock: FakeClock = clock) -> None:
                if kind == "slow":
                    clock.advance(2.5)
                elif kind == "fail":
                    raise OSError("down")

            with contextlib.suppress(OSError):
                breaker.call(fn)
        stats = breaker.flush() if shared else breaker.stats()
        if shared:
            store.close()
        totals.append(
            (
                stats.state,
                stats.calls,
                stats.failed_calls,
                stats.slow_calls,
                stats.consecutive_failures,
            )
        )
    assert totals[1] == totals[0]


def test_threads_hammering_one_replica_lose_no_outcome(redis_url):
    """Lock-free successes, locked failures and refreshes racing each other: once sent,
    the shared window holds every outcome exactly once."""
    import threading

    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix("hammer"))
    breaker = SharedCircuitBreaker(
        name="hammer", store=store, window=rs.CountWindow(100_000), minimum_calls=100_000
    )
    threads, calls, every = 8, 3000, 7
    start = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        start.wait(30)
        for i in range(calls):
            if (index + i) % every == 0:
                with contextlib.suppress(OSError):
                    breaker.call(_fail)
            else:
                breaker.call(lambda: None)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start.wait(30)
    while any(worker.is_alive() for worker in workers):
        clock.advance(1.0)  # every caller now finds the view stale: refreshes race the counting
        workers[0].join(0.01)
    for worker in workers:
        worker.join(30)
    stats = breaker.flush()
    failures = sum(1 for t in range(threads) for i in range(calls) if (t + i) % every == 0)
    assert (stats.calls, stats.failed_calls) == (threads * calls, failures)
    store.close()


def test_a_probe_and_a_change_by_hand_are_one_round_trip_each(redis_url):
    clock = FakeClock()
    store = RedisStore(redis_url, clock=clock, prefix=unique_prefix())
    breaker = SharedCircuitBreaker(
        name="probe", store=store, window=rs.CountWindow(2), minimum_calls=2, half_open_calls=1
    )
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(_fail)
    clock.advance(30.0)
    with command_log() as log:
        assert breaker.call(lambda: "probe") == "probe"  # admitted, then its verdict
        assert log.names == ["EVALSHA", "EVALSHA"]
        log.clear()
        breaker.force_open()
        assert log.names == ["EVALSHA"]
        log.clear()
        with pytest.raises(rs.CircuitOpenError):
            breaker.call(lambda: 1)  # from the view
        assert log.names == []
    store.close()
