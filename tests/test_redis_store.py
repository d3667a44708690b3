"""RedisStore / AsyncRedisStore beyond the shared conformance suite: URLs and their
redaction, key names and TTLs, server time, exactly one round trip per decision,
script reloads, bad replies, clients given by the user, and the policies on top."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from typing import Any

import pytest
import redis
from _redis_support import Driver, command_log, unique_prefix

import resilient as rs
from resilient import BackendError, ConfigError
from resilient.backends import AsyncRateLimitStore, Limit, RateLimitStore, store_from_url
from resilient.backends.redis import AsyncRedisStore, RedisStore
from resilient.testing import FakeClock

pytestmark = pytest.mark.redis

TB = (Limit(algorithm="token_bucket", amount=10, period=1.0),)
LOG = (Limit(algorithm="sliding_log", amount=10, period=1.0),)
COUNTER = (Limit(algorithm="sliding_counter", amount=10, period=1.0),)
FIXED = (Limit(algorithm="fixed_window", amount=10, period=1.0),)
TWO_LOGS = (
    Limit(algorithm="sliding_log", amount=10, period=1.0),
    Limit(algorithm="sliding_log", amount=100, period=60.0),
)
EVERY = {"token_bucket": TB, "sliding_log": LOG, "sliding_counter": COUNTER, "fixed_window": FIXED}


def cli(url: str) -> redis.Redis:
    return redis.Redis.from_url(url.replace("redis+cluster", "redis"))


# -- URLs --------------------------------------------------------------------------------------


def test_the_redis_schemes_build_a_store_for_sync_and_async_code():
    for url in (
        "redis://localhost:6379/0",
        "rediss://localhost",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
        "rediss+cluster://h:7000",
    ):
        store = store_from_url(url)
        assert isinstance(store, RedisStore)
        assert isinstance(store, RateLimitStore)
        assert isinstance(store, AsyncRateLimitStore)
    assert not isinstance(AsyncRedisStore("redis://h"), RateLimitStore)


def test_options_come_from_the_query_unless_given():
    store = store_from_url(
        "redis://h/1?prefix=shop&on_backend_error=local&timeout=0.1&probe_interval=2",
        prefix="other",
    )
    assert store.prefix == "other"
    assert store.on_backend_error == "local"
    assert store.health.probe_interval == 2.0
    assert store._shared.options["socket_timeout"] == 0.1
    assert store._shared.options["socket_connect_timeout"] == 0.1
    assert store._shared.options["db"] == 1
    default = RedisStore("redis://h")
    assert default.prefix == "resilient"
    assert default.on_backend_error == "raise"
    assert default._shared.options["socket_timeout"] == 0.25


@pytest.mark.parametrize(
    ("url", "options", "path"),
    [
        ("http://h", {}, "store"),
        ("redis+cluster://h", {}, "store"),
        ("redis+cluster://h:1/3", {}, "store"),
        ("redis://h?on_backend_error=maybe", {}, "on_backend_error"),
        ("redis://h", {"on_backend_error": "ignore"}, "on_backend_error"),
        ("redis://h", {"prefix": "a{b}"}, "prefix"),
        ("redis://h", {"timeout": 0}, "timeout"),
        ("redis://h?timeout=soon", {}, "timeout"),
        ("redis://h", {"probe_interval": -1}, "probe_interval"),
        ("redis://h", {"clock": object()}, "clock"),
        ("redis://h", {"max_local_keys": "many"}, "max_local_keys"),
    ],
)
def test_bad_urls_and_options_are_config_errors(url, options, path):
    with pytest.raises(ConfigError) as info:
        store_from_url(url, **options)
    assert info.value.path == path


def test_passwords_never_show():
    store = RedisStore("redis://user:hunter2@127.0.0.1:1/0?password=hunter2&timeout=0.05")
    assert "hunter2" not in repr(store)
    assert "hunter2" not in store.backend
    assert "hunter2" not in repr(store._shared.target)
    with pytest.raises(BackendError) as info:
        store.try_acquire("k", TB)
    assert "hunter2" not in str(info.value)
    assert "user:***@127.0.0.1:1" in str(info.value)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    cluster = RedisStore("redis+cluster://:hunter2@a:1,b:2")
    assert "hunter2" not in repr(cluster)


def test_importing_the_backend_does_not_import_redis():
    code = (
        "import sys, resilient.backends.redis as r\n"
        "from resilient.backends import store_schemes\n"
        "assert 'redis+cluster' in store_schemes()\n"
        "print('redis' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- keys, TTLs, time --------------------------------------------------------------------------


def test_key_names_are_prefixed_tagged_and_escaped(redis_url):
    store = RedisStore(redis_url, prefix="app")
    store.try_acquire("api:u{1}%", TB)
    store.try_acquire("api:u1", TWO_LOGS)
    names = sorted(k.decode() for k in cli(redis_url).keys("*"))
    assert names == [
        "app:{api:u%7B1%7D%25}:tb10/1.0",
        "app:{api:u1}:sl10/1.0,sl100/60.0",
        "app:{api:u1}:sl10/1.0,sl100/60.0:log1",
        "app:{api:u1}:sl10/1.0,sl100/60.0:log2",
    ]
    store.close()


def test_every_key_of_a_limiter_key_lives_in_one_cluster_slot(redis_cluster):
    store = RedisStore(redis_cluster.url, prefix=unique_prefix())
    for key in ("a", "b}{", "{c}", "x" * 300):
        keys = store._keys(key, store._plan(TWO_LOGS))
        slots = {redis.cluster.key_slot(k.encode()) for k in keys}
        assert len(slots) == 1
        assert store.try_acquire(key, TWO_LOGS)
    store.close()


@pytest.mark.parametrize("algorithm", EVERY)
def test_keys_expire_once_their_state_is_empty(redis_url, algorithm):
    limits = EVERY[algorithm]
    store = RedisStore(redis_url)
    store.try_acquire("k", limits, 3)
    client = cli(redis_url)
    keys = store._keys("k", store._plan(limits))
    horizon_ms = {"token_bucket": 1000, "sliding_log": 1000, "fixed_window": 2000}.get(
        algorithm, 3000
    )
    for name in keys:
        ttl = client.pttl(name)
        assert 0 < ttl <= horizon_ms + 1000
    store.close()


def test_decisions_use_the_server_clock(redis_url):
    a, b = RedisStore(redis_url), RedisStore(redis_url)
    client = cli(redis_url)
    seconds, micros = client.time()
    server_now = seconds + micros / 1e6
    first = a.try_acquire("shared", LOG, 10)
    second = b.try_acquire("shared", LOG)
    assert first.allowed
    assert not second.allowed
    assert 0.5 < second.retry_after < 1.0  # fractional seconds survive the trip
    expires = struct.unpack_from("<d", client.get(a._keys("shared", a._plan(LOG))[0]))[0]
    assert server_now + 1.0 <= expires < server_now + 2.0  # TIME + the 1 s horizon
    a.close()
    b.close()


# -- round trips -------------------------------------------------------------------------------

ROUND_TRIP_SETS = {**EVERY, "two_logs": TWO_LOGS, "mixed": (TB[0], LOG[0])}


@pytest.mark.parametrize("target", ["redis", "cluster"])
@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("limits", ROUND_TRIP_SETS.values(), ids=ROUND_TRIP_SETS.keys())
def test_one_round_trip_per_decision(request, target, flavour, limits):
    url = request.getfixturevalue("redis_url" if target == "redis" else "redis_cluster")
    url = url if isinstance(url, str) else url.url
    store = (AsyncRedisStore if flavour == "async" else RedisStore)(url, prefix=unique_prefix())
    driver = Driver(store, flavour)
    for key in ("k0", "k1", "k2"):  # connections, topology and script caches of their nodes
        driver.reset(key, limits)
        driver.acquire(key, limits)
    with command_log() as log:
        decisions = [driver.acquire(f"k{i % 3}", limits, 1 + i % 2) for i in range(30)]
        driver.acquire("k0", limits, 1, max_wait=5.0)
    assert log.names == ["EVALSHA"] * 31
    assert any(not d.allowed for d in decisions)
    driver.close()


def test_a_flushed_script_is_sent_again_once(redis_url):
    store = RedisStore(redis_url)
    for _ in range(3):
        assert store.try_acquire("k", FIXED)
    cli(redis_url).script_flush()
    with command_log() as log:
        for _ in range(3):
            assert store.try_acquire("k", FIXED)
    assert log.names == ["EVALSHA", "EVAL", "EVALSHA", "EVALSHA"]
    assert store.try_acquire("k", FIXED, 4)
    assert not store.try_acquire("k", FIXED)  # 10 counted: none lost or counted twice
    store.close()


# -- replies and errors ------------------------------------------------------------------------


class FakeClient:
    """Answers every command with *reply*."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def execute_command(self, *args: Any) -> Any:
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply

    def ping(self) -> bool:
        return True


@pytest.mark.parametrize("reply", [None, [1, 2, 3, b"0"], b"OK", b"\0" * 47, 7])
def test_unexpected_replies_are_backend_errors(reply):
    store = RedisStore(client=FakeClient(reply))
    with pytest.raises(BackendError, match="unexpected reply"):
        store.try_acquire("k", TB)
    assert store.health.up  # a bad reply is not an outage


def test_a_key_of_another_type_is_a_backend_error_not_an_outage(redis_url):
    store = RedisStore(redis_url, prefix="p")
    cli(redis_url).hset("p:{k}:tb10/1.0", "not", "a string")
    with pytest.raises(BackendError, match="WRONGTYPE") as info:
        store.try_acquire("k", TB)
    assert isinstance(info.value.__cause__, redis.ResponseError)
    assert store.health.up
    assert store.try_acquire("other", TB)
    assert store.with_options(on_backend_error="allow").try_acquire("k", TB).allowed
    store.close()


def test_a_given_client_is_used_and_left_open(redis_url):
    client = redis.Redis.from_url(redis_url)
    store = RedisStore(client=client, prefix="given")
    assert store.try_acquire("k", TB)
    assert store.backend.startswith("redis://127.0.0.1:")
    store.close()
    assert client.ping()
    assert client.exists("given:{k}:tb10/1.0")
    with pytest.raises(TypeError, match="asyncio"):
        RedisStore(client=redis.asyncio.Redis.from_url(redis_url))
    with pytest.raises(TypeError, match="sync"):
        AsyncRedisStore(client=client)
    with pytest.raises(ConfigError, match="not both"):
        RedisStore(redis_url, client=client)
    with pytest.raises(ConfigError, match="not both"):
        RedisStore()
    client.close()


def test_keys_must_be_strings(redis_url):
    store = RedisStore(redis_url)
    with pytest.raises(ConfigError, match="key"):
        store.try_acquire(42, TB)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limits"):
        store.try_acquire("k", ())
    store.close()


def test_ping_and_close(redis_url):
    store = RedisStore(redis_url)
    assert store.ping()

    async def aping() -> bool:
        answer = await store.aping()
        await store.aclose()
        return answer

    assert asyncio.run(aping())
    store.close()
    dead = RedisStore("redis://127.0.0.1:1/0", timeout=0.05)
    assert not dead.ping()
    assert not dead.health.up
    assert not asyncio.run(AsyncRedisStore("redis://127.0.0.1:1/0").aping())


def test_views_share_connections_and_health(redis_url):
    store = RedisStore(redis_url)
    deny = store.with_options(on_backend_error="deny")
    assert deny.on_backend_error == "deny"
    assert deny.health is store.health
    assert deny._clients is store._clients
    with pytest.raises(ConfigError):
        store.with_options(on_backend_error="nope")  # type: ignore[arg-type]
    store.close()


def test_one_async_client_per_event_loop(redis_url):
    store = AsyncRedisStore(redis_url)

    async def twice() -> list[bool]:
        answers = [bool(await store.atry_acquire("k", TB)) for _ in range(2)]
        await store.aclose()  # closes this loop's client
        return answers

    assert asyncio.run(twice()) == [True, True]
    assert asyncio.run(twice()) == [True, True]  # a new loop, a new client


# -- the policies on Redis ---------------------------------------------------------------------


def test_limiters_share_a_limit_through_redis(redis_url):
    url = f"{redis_url}?prefix={unique_prefix()}"
    a = rs.TokenBucket("3/minute", store=url, name="api", key=lambda user: user)
    b = rs.TokenBucket("3/minute", store=url, name="api", key=lambda user: user)
    assert [a.call(str, "alice"), b.call(str, "alice")] == ["alice", "alice"]

    async def echo(user: str) -> str:
        return user

    async def async_side() -> None:
        assert await a.acall(echo, "alice") == "alice"
        with pytest.raises(rs.RateLimitedError) as info:
            await b.acall(echo, "alice")
        assert 0 < info.value.retry_after <= 20
        assert await a.atry_acquire("bob")
        await a.store.aclose()
        await b.store.aclose()

    asyncio.run(async_side())
    with pytest.raises(rs.RateLimitedError):
        a.call(str, "alice")
    assert b.try_acquire("bob")
    a.store.close()
    b.store.close()


def test_a_limiter_waits_for_its_booking_on_redis(redis_url):
    clock = FakeClock(10.0)
    store = RedisStore(redis_url, clock=clock)
    limiter = rs.SlidingWindow("2/s", store=store, clock=clock, max_wait=2.0)
    calls = [limiter.call(lambda: clock.monotonic()) for _ in range(5)]
    assert calls == [10.0, 10.0, 11.0, 11.0, 12.0]
    assert clock.sleeps == [1.0, 1.0]
