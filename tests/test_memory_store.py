"""MemoryStore: the store protocols, URLs, clock-driven lazy expiry, bounds,
pinned keys, booking and release, several limits at once."""

from __future__ import annotations

import asyncio
import math

import pytest

from resilient import ConfigError
from resilient._algorithms import Decision
from resilient.backends import (
    AsyncRateLimitStore,
    Limit,
    RateLimitStore,
    register_store,
    store_from_url,
    store_schemes,
)
from resilient.backends.memory import MemoryStore
from resilient.testing import FakeClock

BUCKET = (Limit(algorithm="token_bucket", amount=1, period=1.0, burst=2),)
LOG = (Limit(algorithm="sliding_log", amount=2, period=10.0),)
ONE_LIMIT = [
    pytest.param(BUCKET, id="token-bucket"),
    pytest.param((Limit(algorithm="token_bucket", amount=2, period=1.0, initial=0),), id="initial"),
    pytest.param(LOG, id="sliding-log"),
    pytest.param((Limit(algorithm="fixed_window", amount=2, period=1.0),), id="fixed"),
    pytest.param((Limit(algorithm="sliding_counter", amount=2, period=1.0),), id="counter"),
]


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def test_implements_both_protocols(store):
    """One object serves sync and async callers."""
    assert isinstance(store, RateLimitStore)
    assert isinstance(store, AsyncRateLimitStore)
    assert store.ping()
    assert asyncio.run(store.aping())


def test_try_acquire_returns_the_full_decision(store, clock):
    """Allowed decisions count down; a refusal says when, and consumes nothing."""
    assert store.try_acquire("k", BUCKET) == Decision(True, 0.0, 1, 2, 1.0)
    assert store.try_acquire("k", BUCKET) == Decision(True, 0.0, 0, 2, 2.0)
    refused = store.try_acquire("k", BUCKET)
    assert refused == Decision(False, 1.0, 0, 2, 2.0)
    clock.advance(refused.retry_after)
    assert store.try_acquire("k", BUCKET).allowed


def test_async_methods_share_the_sync_state(store):
    """atry_acquire/areset see the same buckets as the sync methods."""

    async def main() -> list[bool]:
        first = await store.atry_acquire("k", BUCKET)
        second = store.try_acquire("k", BUCKET)
        third = await store.atry_acquire("k", BUCKET)
        await store.areset("k", BUCKET)
        fourth = await store.atry_acquire("k", BUCKET)
        await store.arelease("k", BUCKET, 1, 0.0)
        await store.aclose()
        return [first.allowed, second.allowed, third.allowed, fourth.allowed]

    assert asyncio.run(main()) == [True, True, False, True]


def test_keys_and_limits_are_separate(store):
    """Different keys, and different limits for the same key, never share state."""
    for _ in range(2):
        assert store.try_acquire("a", BUCKET).allowed
    assert not store.try_acquire("a", BUCKET).allowed
    assert store.try_acquire("b", BUCKET).allowed
    assert store.try_acquire("a", LOG).allowed
    assert len(store) == 3


def test_cost_is_checked_against_the_capacity(store):
    """cost 0, above the capacity or not an int is a ConfigError naming cost."""
    for bad in (0, 3, 1.5, True):
        with pytest.raises(ConfigError, match="cost") as info:
            store.try_acquire("k", BUCKET, bad)  # type: ignore[arg-type]
        assert info.value.path == "cost"
    with pytest.raises(ConfigError, match="limits"):
        store.try_acquire("k", ())
    assert store.try_acquire("k", BUCKET, 2).allowed


def test_state_expires_lazily_once_empty(store, clock):
    """A key whose state is empty again is forgotten on the next insertion: no timers."""
    table = store.table(LOG)
    store.try_acquire("old", LOG)
    clock.advance(10.0)  # the log is empty from now on
    store.try_acquire("new", LOG)
    store.try_acquire("newer", LOG)
    assert "old" not in table.keys
    assert table.keys.expirations >= 1
    assert table.keys.evictions == 0


def test_max_keys_bounds_every_set_of_limits(clock):
    """Beyond max_keys, the least recently used key is forgotten (and starts afresh)."""
    store = MemoryStore(clock=clock, max_keys=3)
    for key in "abcd":
        store.try_acquire(key, BUCKET, 2)
    table = store.table(BUCKET)
    assert list(table.keys) == ["b", "c", "d"]
    assert store.try_acquire("a", BUCKET, 2).allowed  # forgotten: a full bucket again
    assert table.keys.evictions == 2


def test_pinned_key_shares_state_with_lookups_and_is_never_evicted(clock):
    """A limiter's pinned key is the same state through every path, and survives floods."""
    store = MemoryStore(clock=clock, max_keys=2)
    table = store.table(BUCKET)
    store.try_acquire("fixed", BUCKET)
    pin = table.pin("fixed")
    assert pin.value is not None  # moved from the key map
    assert table.admitter(pin, 1)(0.0) == 0.0
    assert not store.try_acquire("fixed", BUCKET).allowed
    for key in range(10):
        store.try_acquire(str(key), BUCKET)
    assert table.pin("fixed") is pin
    assert not table.decider(pin)(1).allowed
    store.reset("fixed", BUCKET)
    assert table.decider(pin)(1).allowed


def test_booking_and_release(store, clock):
    """max_wait books a place (FIFO); release gives it back."""
    store.try_acquire("k", BUCKET, 2)
    booked = store.try_acquire("k", BUCKET, max_wait=5.0)
    assert booked == Decision(True, 1.0, 0, 2, 3.0)
    after = store.try_acquire("k", BUCKET, max_wait=5.0)
    assert after.retry_after == 2.0  # behind the first booking
    store.release("k", BUCKET, 1, 2.0)
    store.release("k", BUCKET, 1, 0.0)  # nothing left to wait: a no-op
    store.release("unknown", BUCKET, 1, 1.0)
    assert store.try_acquire("k", BUCKET, max_wait=5.0).retry_after == 2.0


def test_several_limits_in_one_call(store, clock):
    """Two limits decide together: the binding one is reported, a refusal consumes none."""
    limits = (
        Limit(algorithm="sliding_log", amount=2, period=1.0),
        Limit(algorithm="fixed_window", amount=3, period=60.0),
    )
    assert store.try_acquire("k", limits) == Decision(True, 0.0, 1, 2, 1.0)
    assert store.try_acquire("k", limits).allowed
    refused = store.try_acquire("k", limits)
    assert refused == Decision(False, 1.0, 0, 2, 1.0)
    clock.advance(1.0)
    assert store.try_acquire("k", limits) == Decision(True, 0.0, 0, 3, 59.0)
    assert store.table(limits).peek("k") == Decision(False, 59.0, 0, 3, 59.0)
    booked = store.try_acquire("k", limits, max_wait=100.0)
    assert booked == Decision(True, 59.0, 0, 2, 60.0)  # the next per-minute window
    store.release("k", limits, 1, 59.0)
    assert store.table(limits).peek("k").retry_after == 59.0


@pytest.mark.parametrize(
    "limits",
    [
        pytest.param(BUCKET, id="token-bucket"),
        pytest.param(LOG, id="sliding-log"),
        pytest.param((Limit(algorithm="fixed_window", amount=2, period=1.0),), id="fixed"),
        pytest.param((Limit(algorithm="sliding_counter", amount=2, period=1.0),), id="counter"),
    ],
)
def test_a_run_of_refusals_then_capacity_again(clock, limits):
    """The fixed key's decider (which refuses a flood on a snapshot) answers exactly like
    the locked protocol path, through refusals and back to capacity."""
    store = MemoryStore(clock=clock)
    table = store.table(limits)
    decide = table.decider(table.pin("pinned"))
    assert decide(2) == store.try_acquire("plain", limits, 2)
    for step in range(12):
        mine, theirs = decide(1), store.try_acquire("plain", limits)
        assert mine == theirs, step
        clock.advance(0.25)


def test_pinned_entries_with_several_limits(clock):
    """The pinned functions of a multi-limit table decide like the protocol path."""
    limits = (*LOG, *BUCKET)
    store = MemoryStore(clock=clock)
    table = store.table(limits)
    pin = table.pin("k")
    assert table.admitter(pin, 1)(0.0) == 0.0
    assert table.decider(pin)(1) == Decision(True, 0.0, 0, 2, 10.0)
    assert table.admitter(pin, 1)(0.0) == -10.0  # the log is full for 10 s
    assert store.try_acquire("k", limits).retry_after == 10.0


def test_peek_consumes_nothing(store):
    """peek() reports the state as a Decision for cost 1."""
    table = store.table(BUCKET)
    assert table.peek("k") == Decision(True, 0.0, 2, 2, 0.0)
    store.try_acquire("k", BUCKET, 2)
    assert table.peek("k") == Decision(False, 1.0, 0, 2, 2.0)
    assert table.peek("k") == table.peek("k")


def test_from_url_and_options(clock):
    """memory:// URLs, with max_keys in the query or as an option."""
    assert isinstance(store_from_url("memory://"), MemoryStore)
    assert store_from_url("memory://?max_keys=7").max_keys == 7
    assert store_from_url("MEMORY://", clock=clock).clock is clock
    assert store_from_url("memory://?max_keys=7", max_keys=9).max_keys == 9
    for bad in ("memory://host", "memory://?max_keys=x", "memory://?ttl=3"):
        with pytest.raises(ConfigError):
            store_from_url(bad)
    with pytest.raises(ConfigError, match="max_keys"):
        MemoryStore(max_keys=0)
    with pytest.raises(ConfigError, match="clock"):
        MemoryStore(clock=object())  # type: ignore[arg-type]
    assert "MemoryStore(max_keys=100000" in repr(MemoryStore())


def test_unknown_schemes_and_registration():
    """Unknown schemes are a ConfigError listing the known ones; backends register theirs."""
    with pytest.raises(ConfigError, match="memory") as info:
        store_from_url("nosuch://host")
    assert info.value.path == "store"
    with pytest.raises(ConfigError):
        store_from_url("not a url")
    made: list[tuple[str, dict[str, object]]] = []
    register_store("test-scheme", lambda url, **options: made.append((url, options)) or "store")
    assert store_from_url("test-scheme://x", a=1) == "store"
    assert made == [("test-scheme://x", {"a": 1})]
    register_store("test-lazy", "resilient.backends.memory:MemoryStore.from_url")
    with pytest.raises(ConfigError):  # the lazy factory is the memory one: wrong scheme
        store_from_url("test-lazy://")
    assert "test-scheme" in store_schemes()
    assert "limits+<scheme>" in store_schemes()
    for bad_scheme, factory in (("", "x:y"), ("a://", "x:y"), ("ok", "no-colon")):
        with pytest.raises(ConfigError):
            register_store(bad_scheme, factory)


@pytest.mark.parametrize(
    "limits",
    [*ONE_LIMIT, pytest.param((*LOG, *BUCKET), id="several")],
)
def test_keyed_decider_answers_like_decide(clock, limits):
    """The keyed decider (one call for a key already in the map) decides exactly like
    the locked general path: new keys, hits, refusals, expiry and eviction alike."""
    mine = MemoryStore(clock=clock, max_keys=3).table(limits)
    theirs = MemoryStore(clock=clock, max_keys=3).table(limits)
    decide = mine.keyed_decider("p:")
    steps = ["a", "a", "b", "a", "c", "d", "a", "a", "b", "b", "b", "e", "a"]
    for step, key in enumerate(steps * 3):
        cost = 2 if step % 7 == 3 else 1
        assert decide(key, cost) == theirs.decide("p:" + key, cost, 0.0), (step, key)
        assert list(mine.keys) == list(theirs.keys)
        clock.advance((0.0, 0.1, 0.4, 2.5)[step % 4])
    assert mine.keys.expirations == theirs.keys.expirations
    assert mine.keys.evictions == theirs.keys.evictions


@pytest.mark.parametrize(
    "limits",
    ONE_LIMIT,
)
def test_keyed_reporter_with_its_fallback_decides_like_decide(clock, limits):
    """What an adapter does (the reporter, and decide() when it answers None) takes
    exactly what decide() takes; a report carries the decision's numbers."""
    mine = MemoryStore(clock=clock, max_keys=3).table(limits)
    theirs = MemoryStore(clock=clock, max_keys=3).table(limits)
    report = mine.keyed_reporter("p:", lambda remaining, seconds: (remaining, seconds))
    assert report is not None
    reported = 0
    steps = ["a", "a", "b", "a", "c", "d", "a", "a", "b", "b", "b", "e", "a"]
    for step, key in enumerate(steps * 3):
        cost = 2 if step % 7 == 3 else 1
        expected = theirs.decide("p:" + key, cost, 0.0)
        got = report(key, cost)
        if got is None:
            assert mine.decide("p:" + key, cost, 0.0) == expected, (step, key)
        else:
            reported += 1
            assert expected.allowed, (step, key)
            assert got == (expected.remaining, math.ceil(expected.reset_after)), (step, key)
        assert list(mine.keys) == list(theirs.keys)
        clock.advance((0.0, 0.1, 0.4, 2.5)[step % 4])
    assert reported  # the one-step path was taken, not only the fallback
    assert mine.keys.expirations == theirs.keys.expirations
    assert mine.keys.evictions == theirs.keys.evictions


def test_keyed_reporter_renders_each_distinct_status_once(clock):
    """While remaining and the whole seconds repeat, the last rendering is returned
    again without calling render; a refusal and a new key answer None, taking nothing."""
    table = MemoryStore(clock=clock).table(
        (Limit(algorithm="token_bucket", amount=10, period=1.0),)
    )
    rendered: list[tuple[int, int]] = []

    def render(remaining: int, seconds: int) -> list[int]:
        rendered.append((remaining, seconds))
        return [remaining, seconds]

    report = table.keyed_reporter("p:", render)
    assert report is not None
    assert report("k", 1) is None  # new: the caller's general path stores it
    assert table.decide("p:k", 1, 0.0).remaining == 9
    clock.advance(0.5)  # full again (and still in the map)
    first = report("k", 1)
    assert first == [9, 1]
    clock.advance(0.5)
    assert report("k", 1) is first  # the same numbers: the same object, no call
    assert report("k", 9) == [0, 1]
    assert report("k", 1) is None  # refused: nothing taken
    refused = table.decide("p:k", 1, 0.0)
    assert (refused.allowed, refused.remaining, refused.reset_after) == (False, 0, 1.0)
    assert rendered == [(9, 1), (0, 1)]


def test_keyed_reporter_needs_one_limit(clock):
    """Several limits have no single status: no reporter (the caller uses decide)."""
    table = MemoryStore(clock=clock).table((*LOG, *BUCKET))
    assert table.keyed_reporter("p:", lambda remaining, seconds: 0) is None


def test_keyed_decider_reports_refusals_after_the_lock(clock):
    """on_refused hears the key without its prefix and the retry_after, lock released;
    a pinned key is decided on its pinned entry."""
    table = MemoryStore(clock=clock).table(BUCKET)
    heard: list[tuple[str, float, bool]] = []

    def on_refused(key: str, retry_after: float) -> None:
        heard.append((key, retry_after, table._lock.locked()))

    decide = table.keyed_decider("p:", on_refused)
    assert decide("k", 2).allowed  # new key: the general path
    refused = decide("k", 1)  # in the map: the one-call path
    assert refused == Decision(False, 1.0, 0, 2, 2.0)
    pin = table.pin("p:fixed")
    assert decide("fixed", 2).allowed
    assert pin.value is not None
    assert "p:fixed" not in table.keys
    assert not decide("fixed", 1).allowed
    assert heard == [("k", 1.0, False), ("fixed", 1.0, False)]
