"""LimitsStore: the window limiters on ``limits`` storages (its in-memory storage with
its clock replaced, and a real redis-server when one is installed)."""

from __future__ import annotations

import asyncio
import types
import uuid
from typing import Any

import limits.storage.memory
import limits.strategies
import pytest

from resilient import BackendError, ConfigError, RateLimitedError
from resilient._algorithms import Limit
from resilient._rate_limit import FixedWindow, SlidingWindow, TokenBucket
from resilient.backends import AsyncRateLimitStore, RateLimitStore, store_from_url
from resilient.backends.limits import LimitsStore
from resilient.testing import FakeClock

EPOCH = 1_700_000_000.25


class WallClock:
    """limits reads time.time(): this replaces it, moving with a FakeClock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def time(self) -> float:
        return EPOCH + self.clock.monotonic()


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> WallClock:
    fake = WallClock(clock)
    namespace = types.SimpleNamespace(time=fake.time, sleep=lambda s: None)
    monkeypatch.setattr(limits.storage.memory, "time", namespace)
    monkeypatch.setattr(limits.strategies, "time", namespace)
    return fake


@pytest.fixture
def store(wall: WallClock) -> Any:
    made = LimitsStore("memory://", wall=wall.time)
    yield made
    made.close()


def limit(algorithm: str, amount: int, period: float) -> tuple[Limit, ...]:
    return (Limit(algorithm=algorithm, amount=amount, period=period),)  # type: ignore[arg-type]


def test_implements_both_protocols_and_comes_from_urls():
    """LimitsStore serves sync and async callers, and limits+<uri> URLs build it."""
    made = store_from_url("limits+memory://")
    assert isinstance(made, LimitsStore)
    assert isinstance(made, RateLimitStore)
    assert isinstance(made, AsyncRateLimitStore)
    assert made.uri == "memory://"
    assert made.ping()
    assert (
        repr(LimitsStore("redis://:secret@localhost:6379"))
        == "LimitsStore('redis://:***@localhost:6379')"
    )
    made.close()


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_log", "sliding_counter"])
def test_admits_the_amount_then_retry_after_admits(store, clock, algorithm):
    """Each window admits its amount; waiting the reported retry_after admits again."""
    limits = limit(algorithm, 3, 1)
    decisions = [store.try_acquire("k", limits) for _ in range(3)]
    assert all(decisions)
    assert [d.remaining for d in decisions] == [2, 1, 0]
    refused = store.try_acquire("k", limits)
    assert not refused
    assert 0 < refused.retry_after <= 1.0 + 2e-3
    clock.advance(refused.retry_after)
    assert store.try_acquire("k", limits).allowed


def test_moving_window_is_exact(store, clock):
    """The moving window frees a unit when the oldest call leaves it."""
    limits = limit("sliding_log", 2, 10)
    store.try_acquire("k", limits)
    clock.advance(4.0)
    store.try_acquire("k", limits)
    refused = store.try_acquire("k", limits)
    assert refused.retry_after == pytest.approx(6.0, abs=2e-3)
    big = store.try_acquire("k", limits, 2)
    assert big.retry_after == pytest.approx(10.0, abs=2e-3)  # cost > 1: the whole period


def test_several_limits_refused_by_one_consume_none(store, clock):
    """'2/s;3/min': refusals from the per-second limit leave the minute's units alone."""
    limits = (*limit("fixed_window", 2, 1), *limit("sliding_log", 3, 60))
    assert store.try_acquire("k", limits)
    assert store.try_acquire("k", limits)
    for _ in range(5):
        assert not store.try_acquire("k", limits)
    clock.advance(1.0)
    decision = store.try_acquire("k", limits)
    assert decision.allowed
    assert (decision.remaining, decision.limit) == (0, 3)
    refused = store.try_acquire("k", limits)
    assert refused.retry_after == pytest.approx(59.0, abs=2e-3)


def test_keys_and_algorithms_are_separate(store):
    """Different keys, and a fixed and a moving window of one rate, never share state."""
    fixed, moving = limit("fixed_window", 1, 60), limit("sliding_log", 1, 60)
    assert store.try_acquire("a", fixed)
    assert store.try_acquire("a", moving)
    assert store.try_acquire("b", fixed)
    assert not store.try_acquire("a", fixed)
    store.reset("a", fixed)
    assert store.try_acquire("a", fixed)


def test_unsupported_limits_are_config_errors(store):
    """No token bucket, whole seconds only, cost within the capacity."""
    with pytest.raises(ConfigError, match="token bucket"):
        store.try_acquire("k", (Limit(algorithm="token_bucket", amount=1, period=1.0),))
    with pytest.raises(ConfigError, match="whole number"):
        store.try_acquire("k", limit("fixed_window", 1, 0.5))
    with pytest.raises(ConfigError, match="cost"):
        store.try_acquire("k", limit("fixed_window", 2, 1), 3)
    with pytest.raises(ConfigError):
        TokenBucket("1/s", store=store).try_acquire()
    with pytest.raises(ConfigError, match="uri"):
        LimitsStore("async+memory://")


def test_async_methods(store):
    """The async methods share the in-memory storage with the sync ones."""
    limits = limit("fixed_window", 2, 60)

    async def main() -> list[bool]:
        first = await store.atry_acquire("k", limits)
        second = store.try_acquire("k", limits)
        third = await store.atry_acquire("k", limits)
        await store.areset("k", limits)
        fourth = await store.atry_acquire("k", limits)
        await store.arelease("k", limits, 1, 1.0)
        assert await store.aping()
        await store.aclose()
        return [first.allowed, second.allowed, third.allowed, fourth.allowed]

    assert asyncio.run(main()) == [True, True, False, True]


def test_policies_on_limits_store_wait_by_asking_again(run, clock, wall):
    """The store cannot book: with max_wait, call/acall sleep retry_after and retry."""
    store = LimitsStore("memory://", wall=wall.time)
    limiter = SlidingWindow("1/s", max_wait=2.0, clock=clock, store=store)
    assert run(limiter, lambda: "ok") == "ok"
    assert run(limiter, lambda: "ok") == "ok"
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] == pytest.approx(1.0, abs=2e-3)
    quick = FixedWindow("1/minute", clock=clock, store=store, name="quick")
    run(quick, lambda: None)
    with pytest.raises(RateLimitedError):
        run(quick, lambda: None)
    store.close()


def test_storage_failures_are_backend_errors():
    """A storage that cannot be reached raises BackendError with the cause attached."""
    store = LimitsStore("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    with pytest.raises(BackendError) as info:
        store.try_acquire("k", limit("fixed_window", 1, 1))
    assert info.value.__cause__ is not None
    assert "127.0.0.1:1" in str(info.value)
    assert not store.ping()
    with pytest.raises(BackendError):
        store.reset("k", limit("fixed_window", 1, 1))
    with pytest.raises(BackendError):
        LimitsStore("nosuch://x").try_acquire("k", limit("fixed_window", 1, 1))


# --------------------------------------------------------------------------- real Redis


@pytest.mark.redis
@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_log", "sliding_counter"])
def test_on_a_real_redis(redis_url, algorithm):
    """The same windows on a real redis-server, sync and async (redis-py)."""
    store = LimitsStore(redis_url)
    key = f"test-{uuid.uuid4().hex}"
    limits = limit(algorithm, 3, 60)
    assert [store.try_acquire(key, limits).allowed for _ in range(4)] == [True, True, True, False]
    refused = store.try_acquire(key, limits)
    assert 0 < refused.retry_after <= 60 + 1e-2
    assert store.ping()

    async def main() -> list[bool]:
        other = key + "-async"
        results = [(await store.atry_acquire(other, limits)).allowed for _ in range(4)]
        await store.areset(other, limits)
        results.append((await store.atry_acquire(other, limits)).allowed)
        assert await store.aping()
        await store.aclose()
        return results

    store.reset(key, limits)
    assert store.try_acquire(key, limits).allowed
    assert asyncio.run(main()) == [True, True, True, False, True]
