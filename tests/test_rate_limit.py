"""The rate-limit policies through call/acall (one body, both drivers) with a FakeClock:
refill maths, burst, cost, several limits, waiting, deadlines, keys, events, config."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from resilient import ConfigError, Pipeline, RateLimitedError, Timeout
from resilient._algorithms import Decision, Limit
from resilient._clock import pop_deadline, push_deadline
from resilient._duration import Rate
from resilient._rate_limit import (
    FixedWindow,
    FixedWindowConfig,
    SlidingWindow,
    SlidingWindowConfig,
    TokenBucket,
    TokenBucketConfig,
)
from resilient.backends.memory import MemoryStore
from resilient.observability import CallRejected
from resilient.testing import FakeClock, RecordingListener


def ok(*args: Any, **kwargs: Any) -> str:
    return "ok"


def admitted(run: Any, limiter: Any, *args: Any) -> bool:
    try:
        run(limiter, ok, *args)
    except RateLimitedError:
        return False
    return True


def refusal(run: Any, limiter: Any, *args: Any) -> RateLimitedError:
    with pytest.raises(RateLimitedError) as info:
        run(limiter, ok, *args)
    return info.value


@contextmanager
def deadline(clock: FakeClock, seconds: float) -> Iterator[None]:
    _, token = push_deadline(clock, seconds, "caller")
    try:
        yield
    finally:
        pop_deadline(token)


# --------------------------------------------------------------------------- token bucket


def test_token_bucket_burst_then_steady_refill(run, clock):
    """A full bucket admits `burst` calls at once, then one per 1/rate seconds."""
    limiter = TokenBucket("10/s", burst=5, clock=clock)
    assert run(limiter, ok) == "ok"
    assert [admitted(run, limiter) for _ in range(5)] == [True] * 4 + [False]
    error = refusal(run, limiter)
    assert error.retry_after == pytest.approx(0.1)
    assert error.policy == "token_bucket"
    clock.advance(error.retry_after)
    assert admitted(run, limiter)
    assert not admitted(run, limiter)
    clock.advance(0.35)  # 3.5 tokens: three calls
    assert [admitted(run, limiter) for _ in range(4)] == [True, True, True, False]
    clock.advance(60)  # never more than the burst
    assert sum(admitted(run, limiter) for _ in range(10)) == 5


def test_token_bucket_burst_defaults_to_the_rate_amount(run, clock):
    """rate '3/minute' without burst holds 3 tokens and refills one every 20 s."""
    limiter = TokenBucket("3/minute", clock=clock)
    assert [admitted(run, limiter) for _ in range(4)] == [True, True, True, False]
    assert limiter.try_acquire().retry_after == pytest.approx(20.0)


def test_token_bucket_cost_above_one(run, clock):
    """cost=3 takes three tokens per call; the refusal waits for all three."""
    limiter = TokenBucket("1/s", burst=6, cost=3, clock=clock)
    assert admitted(run, limiter)
    assert admitted(run, limiter)
    error = refusal(run, limiter)
    assert error.retry_after == pytest.approx(3.0)
    clock.advance(3.0)
    assert admitted(run, limiter)


def test_cost_from_the_call_arguments(run, clock):
    """cost may be a callable of the call's arguments (weighted requests)."""
    limiter = TokenBucket("1/s", burst=5, cost=lambda size: size, clock=clock)
    assert admitted(run, limiter, 4)
    assert not admitted(run, limiter, 2)
    assert admitted(run, limiter, 1)


def test_cost_above_the_burst_is_a_clear_error(run, clock):
    """A cost that can never fit is a ConfigError naming cost and the capacity."""
    with pytest.raises(ConfigError, match=r"cost: expected an int between 1 and 5"):
        TokenBucket("1/s", burst=5, cost=6, clock=clock)
    limiter = TokenBucket("1/s", burst=5, cost=lambda n: n, clock=clock)
    with pytest.raises(ConfigError, match="capacity"):
        run(limiter, ok, 6)
    with pytest.raises(ValueError, match="cost"):
        limiter.try_acquire(cost=6)
    with pytest.raises(ConfigError):
        asyncio.run(limiter.atry_acquire(cost=0))
    with pytest.raises(ConfigError):
        SlidingWindow("2/s;10/min", clock=clock).try_acquire(cost=3)
    for bad in (True, 1.0, 6):  # a str key takes the one-call path: checked all the same
        with pytest.raises(ConfigError, match="cost"):
            limiter.try_acquire("user", bad)  # type: ignore[arg-type]


def test_initial_fill(run, clock):
    """initial=1 gives a new key one token, then the steady refill."""
    limiter = TokenBucket("1/s", burst=10, initial=1, clock=clock)
    assert admitted(run, limiter)
    assert refusal(run, limiter).retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert admitted(run, limiter)


# --------------------------------------------------------------------------- windows


def test_sliding_window_is_exact(run, clock):
    """precise=True: never more than the amount in any window, freed as calls age out."""
    limiter = SlidingWindow("3/10s", clock=clock)
    for gap in (0.0, 4.0, 4.0):
        clock.advance(gap)
        assert admitted(run, limiter)
    error = refusal(run, limiter)
    assert error.retry_after == pytest.approx(2.0)  # the call at 0 leaves at 10
    clock.advance(2.0)
    assert admitted(run, limiter)
    assert not admitted(run, limiter)


def test_sliding_window_counter_is_approximate_but_smooth(run, clock):
    """precise=False weights the previous window by its remaining overlap."""
    limiter = SlidingWindow("4/s", precise=False, clock=clock)
    assert all(admitted(run, limiter) for _ in range(4))
    clock.advance(1.5)  # previous window (4 calls) weighs 0.5
    assert admitted(run, limiter)
    assert admitted(run, limiter)
    assert not admitted(run, limiter)


def test_fixed_window_resets_at_the_window_end(run, clock):
    """A fixed window admits the amount, then waits for the next window."""
    limiter = FixedWindow("2/s", clock=clock)
    assert admitted(run, limiter)
    clock.advance(0.9)
    assert admitted(run, limiter)
    assert refusal(run, limiter).retry_after == pytest.approx(0.1)
    clock.advance(0.1)
    assert admitted(run, limiter)
    assert admitted(run, limiter)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda clock: SlidingWindow("2/s;3/min", clock=clock), id="sliding-log"),
        pytest.param(
            lambda clock: SlidingWindow("2/s;3/min", precise=False, clock=clock),
            id="sliding-counter",
        ),
        pytest.param(lambda clock: FixedWindow("2/s;3/min", clock=clock), id="fixed"),
        pytest.param(lambda clock: TokenBucket("2/s;3/min", clock=clock), id="token-bucket"),
    ],
)
def test_several_limits_refused_calls_consume_from_none(run, clock, make):
    """'2/s;3/min': each call needs both; a refused call counts in neither."""
    limiter = make(clock)
    assert admitted(run, limiter)
    assert admitted(run, limiter)
    for _ in range(5):  # refused by the per-second limit: must not use the minute's third
        assert not admitted(run, limiter)
    clock.advance(2.0)
    assert admitted(run, limiter)  # the minute's third unit was still there
    clock.advance(1.0)
    error = refusal(run, limiter)  # now the per-minute limit refuses
    assert error.retry_after > 10
    decision = limiter.try_acquire()
    assert decision.limit == 3
    assert decision.remaining == 0


# --------------------------------------------------------------------------- waiting


def test_max_wait_paces_calls_through_the_clock(run, clock):
    """With max_wait, calls wait for their turn (via the clock) instead of failing."""
    limiter = TokenBucket("2/s", burst=1, max_wait=1.0, clock=clock)
    starts = []
    for _ in range(4):
        run(limiter, lambda: starts.append(clock.monotonic()))
    assert starts == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert clock.sleeps == pytest.approx([0.5, 0.5, 0.5])


def test_max_wait_is_first_in_first_out(clock):
    """Bookings queue: each waiter starts after the one before, whatever its cost."""
    limiter = TokenBucket("1/s", burst=4, max_wait=10.0, clock=clock)
    limiter.try_acquire(cost=4)
    store = limiter.store
    waits = [
        store.try_acquire("token_bucket", limiter.limits, cost, max_wait=10.0).retry_after
        for cost in (3, 1, 2)
    ]
    assert waits == pytest.approx([3.0, 4.0, 6.0])
    assert not limiter.try_acquire()  # a newcomer does not jump the queue


def test_max_wait_gives_up_at_once_when_the_wait_is_too_long(run, clock):
    """A wait longer than max_wait raises immediately, without sleeping."""
    limiter = TokenBucket("1/s", burst=1, max_wait=0.5, clock=clock)
    assert admitted(run, limiter)
    error = refusal(run, limiter)
    assert error.retry_after == pytest.approx(1.0)
    assert clock.sleeps == []


def test_waiting_gives_up_early_before_the_callers_deadline(run, clock):
    """A wait that would pass the caller's deadline (resilient.remaining()) fails now."""
    limiter = SlidingWindow("1/s", max_wait=5.0, clock=clock)
    assert admitted(run, limiter)
    with deadline(clock, 0.5):
        error = refusal(run, limiter)
    assert error.retry_after == pytest.approx(1.0)
    assert clock.sleeps == []
    with deadline(clock, 2.0):
        assert admitted(run, limiter)  # the wait fits the deadline
    assert clock.sleeps == pytest.approx([1.0])


def test_deadline_from_a_timeout_policy(clock):
    """Pipeline(Timeout, limiter): the limiter never waits past the timeout."""
    limiter = FixedWindow("1/minute", max_wait=120.0, clock=clock)
    pipeline = Pipeline(Timeout(10.0, clock=clock), limiter)
    assert pipeline.call(ok) == "ok"
    with pytest.raises(RateLimitedError):
        pipeline.call(ok)
    assert clock.sleeps == []


def test_window_limiters_wait_too(run, clock):
    """Window limiters book the next window for a waiting caller."""
    limiter = FixedWindow("2/s", max_wait=2.0, clock=clock)
    starts = []
    for _ in range(5):
        run(limiter, lambda: starts.append(clock.monotonic()))
    assert starts == pytest.approx([0.0, 0.0, 1.0, 1.0, 2.0])


class _CancelledClock(FakeClock):
    """Its sleeps are interrupted, as a cancelled task's or an interrupted thread's."""

    def sleep(self, seconds: float) -> None:
        raise KeyboardInterrupt

    async def asleep(self, seconds: float) -> None:
        raise asyncio.CancelledError


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_cancelled_waiter_gives_its_place_back(flavour):
    """Cancelled while waiting for its booking: the tokens go back, the error propagates."""
    clock = _CancelledClock()
    limiter = TokenBucket("1/s", burst=1, max_wait=10.0, clock=clock)
    limiter.try_acquire()
    if flavour == "sync":
        with pytest.raises(KeyboardInterrupt):
            limiter.call(ok)
    else:

        async def aok() -> str:
            return "ok"

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(limiter.acall(aok))
    assert limiter.try_acquire().retry_after == pytest.approx(1.0)  # not 2.0


class _NoBookingStore:
    """A store that never books (like LimitsStore): refusals carry retry_after."""

    def __init__(self, clock: FakeClock) -> None:
        self.inner = MemoryStore(clock=clock)
        self.calls = 0

    def try_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        self.calls += 1
        return self.inner.try_acquire(key, limits, cost)

    def release(self, key: str, limits: Sequence[Limit], cost: int, wait_left: float) -> None:
        raise AssertionError("never booked")

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        self.inner.reset(key, limits)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass

    async def atry_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        return self.try_acquire(key, limits, cost, max_wait=max_wait)

    async def arelease(
        self, key: str, limits: Sequence[Limit], cost: int, wait_left: float
    ) -> None:
        raise AssertionError("never booked")

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        self.reset(key, limits)

    async def aping(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def test_a_store_that_cannot_book_is_polled_within_max_wait(run, clock):
    """Without booking, call/acall sleep retry_after and ask again, within max_wait."""
    store = _NoBookingStore(clock)
    limiter = TokenBucket("1/s", burst=1, max_wait=1.5, clock=clock, store=store)
    assert admitted(run, limiter)
    assert admitted(run, limiter)  # slept 1.0 and asked again
    assert clock.sleeps == pytest.approx([1.0])
    assert store.calls == 3
    limiter.reset()
    assert limiter.try_acquire().allowed
    limiter.try_acquire()
    assert asyncio.run(limiter.atry_acquire()).retry_after == pytest.approx(1.0)
    asyncio.run(limiter.areset())
    assert asyncio.run(limiter.atry_acquire()).allowed


# --------------------------------------------------------------------------- keys


def test_per_key_isolation(run, clock):
    """key=callable gives each key its own bucket; one key's flood leaves others alone."""
    limiter = TokenBucket("1/minute", burst=2, key=lambda user: user, clock=clock)
    assert admitted(run, limiter, "alice")
    assert admitted(run, limiter, "alice")
    error = refusal(run, limiter, "alice")
    assert error.key == "alice"
    assert admitted(run, limiter, "bob")
    assert limiter.try_acquire("carol").allowed
    assert not limiter.try_acquire("alice").allowed
    limiter.reset("alice")
    assert admitted(run, limiter, "alice")


def test_a_fixed_key_value(run, clock):
    """key='tenant-a' is one partition; try_acquire() without a key uses it."""
    store = MemoryStore(clock=clock)
    first = TokenBucket("1/minute", key="tenant-a", store=store, name="api", clock=clock)
    second = TokenBucket("1/minute", key="tenant-b", store=store, name="api", clock=clock)
    assert admitted(run, first)
    assert not first.try_acquire().allowed
    assert second.try_acquire().allowed
    assert not store.try_acquire("api:tenant-a", first.limits).allowed  # one state, every path


def test_per_key_eviction_bounds_memory(run, clock):
    """max_keys: the least recently used key is forgotten and starts afresh."""
    limiter = TokenBucket("1/hour", burst=1, key=lambda user: user, max_keys=2, clock=clock)
    assert admitted(run, limiter, "a")
    assert admitted(run, limiter, "b")
    assert not admitted(run, limiter, "a")  # "a" is now the most recently used
    assert admitted(run, limiter, "c")  # evicts "b"
    assert admitted(run, limiter, "b")  # forgotten: a full bucket again (evicts "a")
    assert admitted(run, limiter, "a")
    assert len(limiter.store) == 2


def test_a_key_function_returning_none_is_the_shared_limit(run, clock):
    """A key of None means the limiter's shared limit."""
    limiter = TokenBucket("1/hour", burst=1, key=lambda user: user, clock=clock)
    assert admitted(run, limiter, None)
    assert not limiter.try_acquire().allowed
    assert admitted(run, limiter, "someone")


# ---------------------------------------------------------------- events, decorator, repr


def test_rejections_are_emitted_with_key_and_retry_after(run, clock):
    """A refused call emits CallRejected (after the lock is released)."""
    listener = RecordingListener()
    limiter = TokenBucket(
        "1/s", burst=1, key=lambda user: user, clock=clock, listeners=[listener], name="api"
    )
    run(limiter, ok, "u1")
    refusal(run, limiter, "u1")
    limiter.try_acquire("u1")  # try_acquire reports to listeners too
    [first, second] = listener.of(CallRejected)
    assert first.policy == "api"
    assert first.kind == "token_bucket"
    assert first.reason == "rate_limited"
    assert first.key == "u1"
    assert first.retry_after == pytest.approx(1.0)
    assert second.key == "u1"


def test_decorator_and_try_acquire_flavours(clock):
    """@limiter works on def and async def; atry_acquire mirrors try_acquire."""
    limiter = SlidingWindow("2/minute", clock=clock)

    @limiter
    def sync_fn(x: int) -> int:
        return x * 2

    @limiter
    async def async_fn(x: int) -> int:
        return x * 3

    assert sync_fn(2) == 4
    assert asyncio.run(async_fn(2)) == 6
    with pytest.raises(RateLimitedError):
        sync_fn(1)
    decision = asyncio.run(limiter.atry_acquire())
    assert decision == Decision(False, 60.0, 0, 2, 60.0)
    assert not decision


def test_store_urls_and_shared_stores(clock):
    """store= accepts a URL; memory:// uses the limiter's clock."""
    limiter = FixedWindow("1/s", store="memory://?max_keys=5", clock=clock)
    assert isinstance(limiter.store, MemoryStore)
    assert limiter.store.clock is clock
    assert limiter.store.max_keys == 5


def test_reprs_and_configs(clock):
    """repr shows the rate and options; config objects are frozen and evolve with replace."""
    assert repr(TokenBucket("100/s", burst=200, initial=10, max_wait=0.5, name="api")) == (
        "TokenBucket(rate='100/second', burst=200, initial=10, max_wait=0.5, name='api')"
    )
    assert repr(SlidingWindow("5/s;100/min", precise=False)) == (
        "SlidingWindow(rate='5/second;100/minute', precise=False, name='sliding_window')"
    )
    assert repr(FixedWindow((10, 60))) == "FixedWindow(rate='10/minute', name='fixed_window')"
    config = TokenBucket("1/s", burst=3).config
    assert isinstance(config, TokenBucketConfig)
    with pytest.raises(AttributeError):
        config.burst = 4  # type: ignore[misc]
    assert SlidingWindow("1/s").config == SlidingWindowConfig(rates=(Rate(1, 1.0),))
    assert FixedWindowConfig(rates=(Rate(1, 1.0),)).limits() == (
        Limit(algorithm="fixed_window", amount=1, period=1.0),
    )


@pytest.mark.parametrize(
    ("build", "path"),
    [
        pytest.param(lambda: TokenBucket("lots"), "rate", id="rate"),
        pytest.param(lambda: TokenBucket("1/s;2/min", burst=5), "burst", id="burst-multi"),
        pytest.param(lambda: TokenBucket("1/s", burst=0), "burst", id="burst-zero"),
        pytest.param(lambda: TokenBucket("1/s", burst=2, initial=3), "initial", id="initial"),
        pytest.param(lambda: TokenBucket("1/s", max_wait=-1), "max_wait", id="max-wait"),
        pytest.param(lambda: TokenBucket("1/s", max_keys=0), "max_keys", id="max-keys"),
        pytest.param(
            lambda: TokenBucket("1/s", max_keys=5, store=MemoryStore()),
            "max_keys",
            id="max-keys-store",
        ),
        pytest.param(lambda: TokenBucket("1/s", key=[1]), "key", id="key"),
        pytest.param(lambda: TokenBucket("1/s", store=object()), "store", id="store"),  # type: ignore[arg-type]
        pytest.param(lambda: TokenBucket("1/s", store="nosuch://"), "store", id="store-url"),
        pytest.param(lambda: TokenBucket("1/s", cost=0), "cost", id="cost"),
        pytest.param(lambda: SlidingWindow("1/s", precise="yes"), "precise", id="precise"),  # type: ignore[arg-type]
        pytest.param(lambda: FixedWindow("1/s", name=""), "name", id="name"),
        pytest.param(lambda: TokenBucketConfig(rates=()), "rate", id="config-rates"),
        pytest.param(
            lambda: TokenBucketConfig(rates=(Rate(1, 1.0),), max_wait=float("inf")),
            "max_wait",
            id="config-wait",
        ),
    ],
)
def test_bad_arguments_are_config_errors_naming_them(build, path):
    """Every invalid argument raises ConfigError with its name."""
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.path == path


def test_an_async_only_store_refuses_sync_use(clock):
    """A store with only async methods works through acall and refuses sync calls clearly."""

    class AsyncOnly:
        def __init__(self) -> None:
            self.inner = MemoryStore(clock=clock)

        async def atry_acquire(
            self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
        ) -> Decision:
            return self.inner.try_acquire(key, limits, cost, max_wait=max_wait)

        async def arelease(
            self, key: str, limits: Sequence[Limit], cost: int, wait_left: float
        ) -> None:
            self.inner.release(key, limits, cost, wait_left)

        async def areset(self, key: str, limits: Sequence[Limit]) -> None:
            self.inner.reset(key, limits)

        async def aping(self) -> bool:
            return True

        async def aclose(self) -> None:
            pass

    limiter = TokenBucket("1/s", burst=1, clock=clock, store=AsyncOnly())

    async def aok() -> str:
        return "ok"

    assert asyncio.run(limiter.acall(aok)) == "ok"
    with pytest.raises(TypeError, match="async"):
        limiter.call(ok)
    with pytest.raises(TypeError, match="async"):
        limiter.try_acquire()
    with pytest.raises(TypeError, match="async"):
        limiter.reset()
    assert not asyncio.run(limiter.atry_acquire()).allowed
