"""One conformance suite for every rate-limit store: memory, Redis and Redis Cluster,
sync and async.

Every operation runs on the store under test and on a reference
:class:`MemoryStore` driven by the same fake clock, and the two decisions must
be *identical* (same floats, to the last bit): the Lua scripts are the atomic
twins of :mod:`resilient._algorithms`. The behaviour tests then check what the
reference decided; a hypothesis test replays random sequences of calls,
waits, bookings, releases and resets.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from _redis_support import Driver, unique_prefix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilient as rs
from resilient import ConfigError, Decision
from resilient.backends import Limit
from resilient.backends.memory import MemoryStore
from resilient.testing import FakeClock


def tb(amount: int, period: float, **kw: Any) -> Limit:
    return Limit(algorithm="token_bucket", amount=amount, period=period, **kw)


def log(amount: int, period: float) -> Limit:
    return Limit(algorithm="sliding_log", amount=amount, period=period)


def counter(amount: int, period: float) -> Limit:
    return Limit(algorithm="sliding_counter", amount=amount, period=period)


def fixed(amount: int, period: float) -> Limit:
    return Limit(algorithm="fixed_window", amount=amount, period=period)


ONE_OF_EACH = {
    "token_bucket": (tb(4, 1.0),),
    "sliding_log": (log(4, 1.0),),
    "sliding_counter": (counter(4, 1.0),),
    "fixed_window": (fixed(4, 1.0),),
}


class Pair:
    """The store under test and the reference, asked the same things at the same times."""

    def __init__(self, sut: Driver, clock: FakeClock, kind: str) -> None:
        self.sut = sut
        self.kind = kind
        self.clock = clock
        self.ref = MemoryStore(clock=clock)

    def acquire(self, key: str, limits: Any, cost: int = 1, max_wait: float = 0.0) -> Decision:
        expected = self.ref.try_acquire(key, limits, cost, max_wait=max_wait)
        got = self.sut.acquire(key, limits, cost, max_wait)
        assert got == expected, f"{self.kind}: {got} != {expected} (reference)"
        return expected

    def release(self, key: str, limits: Any, cost: int, wait_left: float) -> None:
        self.ref.release(key, limits, cost, wait_left)
        self.sut.release(key, limits, cost, wait_left)

    def reset(self, key: str, limits: Any) -> None:
        self.ref.reset(key, limits)
        self.sut.reset(key, limits)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)


STORES = [
    pytest.param(("memory", "sync"), id="memory"),
    pytest.param(("redis", "sync"), id="redis-sync", marks=pytest.mark.redis),
    pytest.param(("redis", "async"), id="redis-async", marks=pytest.mark.redis),
    pytest.param(("cluster", "sync"), id="cluster-sync", marks=pytest.mark.redis),
    pytest.param(("cluster", "dual-async"), id="cluster-async", marks=pytest.mark.redis),
]


def make_store(request: pytest.FixtureRequest, kind: str, flavour: str, **options: Any) -> Any:
    from resilient.backends.redis import AsyncRedisStore, RedisStore

    if kind == "memory":
        return MemoryStore(**options)
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = request.getfixturevalue("redis_cluster").url
    cls = AsyncRedisStore if flavour == "async" else RedisStore
    # These tests compare decisions, not timeouts (the fault tests do those): a reply
    # held up by a stalled shared machine must not turn a decision into a BackendError.
    options.setdefault("timeout", 2.0)
    return cls(url, prefix=unique_prefix(), **options)


@pytest.fixture(params=STORES)
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    kind, flavour = request.param
    clock = FakeClock(1000.0)
    store = make_store(request, kind, flavour, clock=clock)
    driver = Driver(store, "sync" if flavour == "sync" else "async")
    try:
        yield Pair(driver, clock, f"{kind}-{flavour}")
    finally:
        driver.close()


# -- one limit -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ONE_OF_EACH)
def test_capacity_then_refusal_then_admission_after_retry_after(pair, algorithm):
    limits = ONE_OF_EACH[algorithm]
    first = [pair.acquire("k", limits) for _ in range(4)]
    assert all(first)
    assert [d.remaining for d in first] == [3, 2, 1, 0]
    assert {d.limit for d in first} == {4}
    refused = pair.acquire("k", limits)
    assert not refused
    assert refused.retry_after > 0
    pair.advance(refused.retry_after)  # boundaries are inclusive
    assert pair.acquire("k", limits)


@pytest.mark.parametrize("algorithm", ONE_OF_EACH)
def test_a_refused_call_consumes_nothing(pair, algorithm):
    limits = ONE_OF_EACH[algorithm]
    assert pair.acquire("k", limits, cost=3)
    for _ in range(3):
        assert not pair.acquire("k", limits, cost=2)
    assert pair.acquire("k", limits, cost=1)
    assert not pair.acquire("k", limits, cost=1)


@pytest.mark.parametrize("algorithm", ONE_OF_EACH)
def test_cost_must_fit_the_capacity(pair, algorithm):
    limits = ONE_OF_EACH[algorithm]
    for bad in (0, 5, -1, True, 1.5):
        with pytest.raises(ConfigError, match="cost"):
            pair.sut.acquire("k", limits, bad)
    assert pair.acquire("k", limits, cost=4)


def test_token_bucket_refills_continuously_and_holds_its_burst(pair):
    limits = (tb(2, 1.0, burst=5),)
    assert pair.acquire("k", limits, cost=5)
    pair.advance(0.25)
    assert not pair.acquire("k", limits)
    pair.advance(0.25)
    made = pair.acquire("k", limits)
    assert made
    assert made.remaining == 0
    pair.advance(100.0)
    assert pair.acquire("k", limits, cost=5).remaining == 0


def test_token_bucket_initial_tokens_and_forgetting_a_full_bucket(pair):
    limits = (tb(10, 1.0, initial=0),)
    refused = pair.acquire("new", limits)
    assert not refused
    assert refused.retry_after == pytest.approx(0.1)
    pair.advance(0.5)
    assert pair.acquire("new", limits).remaining == 4
    pair.advance(1.0 + 1e-6)  # full, then forgotten: a new bucket starts empty again
    assert not pair.acquire("new", limits)


def test_sliding_log_is_exact(pair):
    limits = (log(3, 10.0),)
    for _step in range(3):
        assert pair.acquire("k", limits)
        pair.advance(1.0)
    refused = pair.acquire("k", limits)  # t=3: the window holds t=0,1,2
    assert not refused
    assert refused.retry_after == pytest.approx(7.0)
    pair.advance(7.0)
    assert pair.acquire("k", limits)
    assert not pair.acquire("k", limits)
    pair.advance(1.0)
    assert pair.acquire("k", limits)


def test_sliding_counter_weights_the_previous_window(pair):
    limits = (counter(10, 1.0),)
    assert pair.acquire("k", limits, cost=10)
    pair.advance(1.5)  # half of the previous window still counts: 5 of 10
    made = pair.acquire("k", limits, cost=5)
    assert made
    assert not pair.acquire("k", limits)
    pair.advance(0.25)
    assert pair.acquire("k", limits, cost=2)


def test_fixed_window_resets_at_the_boundary(pair):
    limits = (fixed(3, 1.0),)
    for _ in range(3):
        assert pair.acquire("k", limits)
    pair.advance(0.999)
    refused = pair.acquire("k", limits)
    assert not refused
    pair.advance(refused.retry_after)
    assert pair.acquire("k", limits, cost=3)


# -- several limits, keys, resets --------------------------------------------------------------


@pytest.mark.parametrize(
    "limits",
    [
        (tb(2, 1.0), tb(5, 10.0)),
        (log(2, 1.0), log(5, 10.0)),
        (counter(2, 1.0), counter(5, 10.0)),
        (fixed(2, 1.0), fixed(5, 10.0)),
        (tb(2, 1.0), log(5, 10.0)),
    ],
    ids=["token_bucket", "sliding_log", "sliding_counter", "fixed_window", "mixed"],
)
def test_several_limits_decide_together_and_a_refusal_takes_from_none(pair, limits):
    """Key "a" makes calls that the 2/s limit refuses, key "b" does not: afterwards
    both have the same state, so the refusals took nothing from the 5/10s limit."""
    for key in ("a", "b"):
        assert pair.acquire(key, limits, cost=2)
    for _ in range(3):
        assert not pair.acquire("a", limits)
    pair.advance(1.0)
    for _ in range(6):
        assert pair.acquire("a", limits) == pair.acquire("b", limits)
        pair.advance(0.4)


def test_keys_and_sets_of_limits_are_separate(pair):
    a, b = (tb(1, 1.0),), (tb(2, 1.0),)
    assert pair.acquire("x", a)
    assert not pair.acquire("x", a)
    assert pair.acquire("y", a)
    assert pair.acquire("x", b)  # another rate: fresh state
    assert pair.acquire("x", (tb(1, 1.0), tb(1, 2.0)))


def test_awkward_keys_stay_apart(pair):
    limits = (fixed(1, 60.0),)
    keys = ["a", "a}", "{a}", "a%7D", "a%", "}{", "", "a:b", "é ü", "a" * 500]
    for key in keys:
        assert pair.acquire(key, limits)
    for key in keys:
        assert not pair.acquire(key, limits)


def test_reset_forgets_a_key(pair):
    limits = (log(1, 60.0), log(2, 600.0))
    assert pair.acquire("k", limits)
    assert not pair.acquire("k", limits)
    pair.reset("k", limits)
    assert pair.acquire("k", limits)
    pair.reset("never-seen", limits)


@pytest.mark.parametrize("algorithm", ONE_OF_EACH)
def test_state_is_forgotten_once_empty(pair, algorithm):
    limits = ONE_OF_EACH[algorithm]
    assert pair.acquire("k", limits, cost=4)
    pair.advance(3.0)
    made = pair.acquire("k", limits, cost=4)
    assert made
    assert made.remaining == 0


# -- booking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ONE_OF_EACH)
def test_bookings_are_first_in_first_out(pair, algorithm):
    limits = ONE_OF_EACH[algorithm]
    assert pair.acquire("k", limits, cost=4)
    booked = pair.acquire("k", limits, cost=3, max_wait=2.0)
    assert booked.allowed
    assert booked.retry_after > 0
    later = pair.acquire("k", limits, cost=1, max_wait=2.0)  # never before the earlier booking
    assert not later.allowed or later.retry_after >= booked.retry_after
    too_far = pair.acquire("k", limits, cost=4, max_wait=0.01)
    assert not too_far.allowed


@pytest.mark.parametrize("algorithm", ONE_OF_EACH)
def test_a_released_booking_is_given_back(pair, algorithm):
    limits = ONE_OF_EACH[algorithm]
    assert pair.acquire("k", limits, cost=4)
    booked = pair.acquire("k", limits, cost=2, max_wait=5.0)
    assert booked.allowed
    assert booked.retry_after > 0
    pair.advance(booked.retry_after / 2)
    pair.release("k", limits, 2, booked.retry_after / 2)
    pair.advance(booked.retry_after / 2)
    pair.acquire("k", limits, cost=2, max_wait=5.0)
    pair.release("unknown", limits, 1, 0.5)


def test_booking_across_several_limits(pair):
    limits = (fixed(2, 1.0), fixed(3, 2.0))
    assert pair.acquire("k", limits, cost=2)
    booked = pair.acquire("k", limits, cost=1, max_wait=1.0)
    assert booked.allowed
    assert booked.retry_after == pytest.approx(1.0)
    refused = pair.acquire("k", limits, cost=1, max_wait=1.0)
    assert not refused.allowed


# -- random sequences ----------------------------------------------------------------------------

LIMIT_SETS = [
    (tb(3, 1.0),),
    (tb(2, 1.0, burst=4),),
    (tb(3, 1.0, initial=0),),
    (tb(3, 0.3),),
    (log(3, 1.0),),
    (log(1, 0.1),),
    (counter(3, 1.0),),
    (counter(5, 0.7),),
    (fixed(3, 1.0),),
    (fixed(4, 0.25),),
    (tb(2, 1.0), tb(5, 10.0)),
    (log(2, 1.0), log(4, 5.0)),
    (counter(3, 1.0), counter(5, 4.0)),
    (fixed(2, 1.0), fixed(5, 3.0)),
    (tb(3, 1.0), log(5, 4.0)),
]

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("acquire"),
            st.integers(0, 2),
            st.integers(1, 3),
            st.sampled_from([0.0, 0.0, 0.3, 1.0, 5.0]),
        ),
        st.tuples(
            st.just("advance"),
            st.sampled_from([0.0, 1e-3, 0.05, 0.1, 0.25, 0.5, 0.999, 1.0, 3.0, "retry", "half"]),
        ),
        st.tuples(
            st.just("release"),
        ),
        st.tuples(st.just("reset"), st.integers(0, 2)),
    ),
    max_size=30,
)
_EXAMPLE = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(limits=st.sampled_from(LIMIT_SETS), ops=OPS)
def test_random_sequences_decide_identically(pair, limits, ops):
    run = next(_EXAMPLE)
    capacity = min(limit.capacity for limit in limits)
    last: Decision | None = None
    booking: tuple[str, int, float, float] | None = None  # key, cost, start, clock at booking
    for op in ops:
        if op[0] == "acquire":
            _, index, cost, max_wait = op
            key = f"{run}:{index}"
            cost = min(cost, capacity)
            last = pair.acquire(key, limits, cost, max_wait)
            if last.allowed and last.retry_after > 0:
                booking = (key, cost, pair.clock.monotonic() + last.retry_after, 0.0)
        elif op[0] == "advance":
            step = op[1]
            if step == "retry":
                step = last.retry_after if last is not None else 0.0
            elif step == "half":
                step = last.retry_after / 2 if last is not None else 0.0
            pair.advance(step)
        elif op[0] == "release":
            if booking is not None:
                key, cost, start, _ = booking
                left = start - pair.clock.monotonic()
                if left > 0:
                    pair.release(key, limits, cost, left)
                booking = None
        else:
            pair.reset(f"{run}:{op[1]}", limits)


# -- through the policies ----------------------------------------------------------------------


@pytest.fixture(params=[p for p in STORES if p.id in ("memory", "redis-sync", "cluster-sync")])
def url_store(request: pytest.FixtureRequest) -> Iterator[tuple[Any, FakeClock]]:
    kind, _ = request.param
    clock = FakeClock(50.0)
    store = make_store(request, kind, "sync", clock=clock)
    yield store, clock
    store.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda **kw: rs.TokenBucket("5/s", burst=5, **kw),
        lambda **kw: rs.SlidingWindow("5/s", **kw),
        lambda **kw: rs.SlidingWindow("5/s", precise=False, **kw),
        lambda **kw: rs.FixedWindow("5/s", **kw),
    ],
    ids=["token_bucket", "sliding_log", "sliding_counter", "fixed_window"],
)
def test_policies_on_the_store_match_memory(url_store, make):
    store, clock = url_store
    ours = make(store=store, clock=clock, key=lambda user: user, name="api", max_wait=0.5)
    reference = make(clock=clock, key=lambda user: user, name="api", max_wait=0.5)

    def outcome(limiter: Any, user: str) -> tuple[str, Any]:
        try:
            return ("ok", limiter.call(lambda user: user, user))
        except rs.RateLimitedError as exc:
            return ("refused", exc.retry_after)

    async def aoutcome(limiter: Any, user: str) -> tuple[str, Any]:
        async def echo(user: str) -> str:
            return user

        try:
            return ("ok", await limiter.acall(echo, user))
        except rs.RateLimitedError as exc:
            return ("refused", exc.retry_after)

    async def async_steps() -> None:
        for step in range(12):
            user = f"a{step % 2}"
            assert await aoutcome(ours, user) == await aoutcome(reference, user)
            clock.advance(0.05)
        assert await ours.atry_acquire("a9") == await reference.atry_acquire("a9")
        await store.aclose()

    for step in range(12):
        user = f"u{step % 2}"
        assert outcome(ours, user) == outcome(reference, user)
        clock.advance(0.05)
    assert ours.try_acquire("u9") == reference.try_acquire("u9")
    asyncio.run(async_steps())
