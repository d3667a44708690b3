"""The stores' own connections to a single Redis server (the "lanes"): the command bytes
are redis-py's, a late reply is never read by the next call, a cancelled call frees its
place, concurrent asyncio calls share one multiplexed connection and each reads its own
reply, and a lane is used only where the store made the client itself.

The async tests run twice: on the multiplexed connection (a plain ``redis://`` URL) and
on redis-py's connections (a URL with an option only redis-py connects with)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

import pytest
import redis
from _redis_support import command_log, unique_prefix
from hypothesis import given
from hypothesis import strategies as st

from resilient import BackendError
from resilient.backends import Limit
from resilient.backends.redis import AsyncRedisStore, RedisStore
from resilient.backends.redis._async.scripts import AsyncClientRunner, AsyncLane
from resilient.backends.redis._multiplex import AsyncMultiplexLane, _IncompleteError, _parse
from resilient.backends.redis._scripts import pack_command
from resilient.backends.redis._sync.scripts import ClientRunner, Lane

pytestmark = pytest.mark.redis

THREE = (Limit(algorithm="fixed_window", amount=3, period=3600.0),)
SEVEN = (Limit(algorithm="fixed_window", amount=7, period=3600.0),)

_argument = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)


@given(st.lists(_argument, max_size=8))
def test_packed_commands_are_the_bytes_redis_py_sends(parts):
    connection = redis.Connection()
    command = ["EVALSHA", *parts]
    assert pack_command(*command) == b"".join(connection.pack_command(*command))


@pytest.mark.parametrize("bad", [True, None, object(), [b"x"]])
def test_an_argument_of_another_type_is_refused(bad):
    with pytest.raises(TypeError, match="bytes, str, int or float"):
        pack_command(b"EVALSHA", bad)


def test_the_lane_serves_a_single_server_the_store_connects_to(redis_url, redis_cluster):
    own = RedisStore(redis_url)
    assert isinstance(own._clients.runner(), Lane)
    client = redis.Redis.from_url(redis_url)
    given_store = RedisStore(client=client)
    assert isinstance(given_store._clients.runner(), ClientRunner)
    cluster = RedisStore(redis_cluster.url)
    assert isinstance(cluster._clients.runner(), ClientRunner)

    async def kinds() -> tuple[Any, Any]:
        a = AsyncRedisStore(redis_url)
        b = AsyncRedisStore(redis_cluster.url)
        try:
            return type(a._clients.runner()), type(b._clients.runner())
        finally:
            await a.aclose()
            await b.aclose()

    assert asyncio.run(kinds()) == (AsyncMultiplexLane, AsyncClientRunner)

    async def with_option() -> Any:
        store = AsyncRedisStore(redis_url + "?health_check_interval=30")
        try:
            return type(store._clients.runner())
        finally:
            await store.aclose()

    assert asyncio.run(with_option()) is AsyncLane  # an option only redis-py connects with
    for store in (own, given_store, cluster):
        store.close()
    client.close()


def test_threads_share_the_lane_without_mixing_replies(redis_url):
    """16 threads, each on its own key and limit: every reply is the caller's own."""
    store = RedisStore(redis_url, prefix=unique_prefix(), timeout=5.0)
    errors: list[str] = []

    def worker(index: int) -> None:
        limits = (Limit(algorithm="fixed_window", amount=index + 1, period=3600.0),)
        for n in range(index + 3):
            made = store.try_acquire(f"k{index}", limits)
            if made.limit != index + 1 or made.allowed != (n <= index):
                errors.append(f"thread {index}, call {n}: {made}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store.close()


def test_a_late_reply_is_never_read_by_the_next_call(own_redis):
    """A call times out while Redis is stopped; Redis then runs it and replies. That
    reply goes nowhere: the next call (another key, another limit) reads its own."""
    store = RedisStore(own_redis.url, timeout=0.2)
    assert store.try_acquire("three", THREE).limit == 3
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackendError):
            store.try_acquire("three", THREE)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    store.health.succeeded()  # no probe interval to wait out
    made = store.try_acquire("seven", SEVEN)
    assert (made.allowed, made.limit, made.remaining) == (True, 7, 6)
    counts = [store.try_acquire("three", THREE) for _ in range(2)]
    # the timed-out call did run on the server: 1 + 1 + these 2 reach the limit of 3
    assert [d.allowed for d in counts] == [True, False]
    store.close()


ASYNC_LANES = {"multiplexed": "", "redis-py": "?health_check_interval=30"}


@pytest.mark.parametrize("query", ASYNC_LANES.values(), ids=ASYNC_LANES.keys())
def test_a_cancelled_call_frees_its_connection_and_its_reply(own_redis, query):
    """An async decision cancelled while waiting for Redis: the next decision reads its
    own reply, and no connection is leaked."""
    store = AsyncRedisStore(own_redis.url + query, timeout=5.0)
    assert own_redis.process is not None
    pid = own_redis.process.pid

    async def main() -> tuple[Any, int]:
        assert (await store.atry_acquire("three", THREE)).limit == 3
        os.kill(pid, signal.SIGSTOP)
        try:
            task = asyncio.ensure_future(store.atry_acquire("three", THREE))
            for _ in range(20):  # let it send (a task of its own) and wait for the reply
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.kill(pid, signal.SIGCONT)
        made = await store.atry_acquire("seven", SEVEN)
        for _ in range(20):
            await store.atry_acquire("seven", SEVEN)
        clients = redis.Redis.from_url(own_redis.url).client_list()
        await store.aclose()
        return made, sum(1 for c in clients if c.get("name") == "resilient")

    made, connections = asyncio.run(main())
    assert (made.allowed, made.limit, made.remaining) == (True, 7, 6)
    assert connections == 1


def test_sequential_calls_use_one_connection_and_one_command_each(redis_url):
    store = RedisStore(redis_url, prefix=unique_prefix())
    store.try_acquire("k", THREE)
    with command_log() as log:
        for _ in range(10):
            store.try_acquire("k", THREE)
    assert log.names == ["EVALSHA"] * 10
    clients = redis.Redis.from_url(redis_url).client_list()
    assert sum(1 for c in clients if c.get("name") == "resilient") == 1
    store.close()


@pytest.mark.parametrize("query", ASYNC_LANES.values(), ids=ASYNC_LANES.keys())
def test_concurrent_tasks_each_read_their_own_reply(redis_url, query):
    """80 tasks at once, each with its own key and limit, over one connection (the
    multiplexed lane) or one per task in flight (redis-py's, whose asyncio pool holds at
    most 100 by default): every reply is the caller's."""
    store = AsyncRedisStore(redis_url + query, prefix=unique_prefix(), timeout=5.0)

    async def one(index: int) -> list[str]:
        amount = index % 7 + 1
        limits = (Limit(algorithm="fixed_window", amount=amount, period=3600.0),)
        wrong = []
        for n in range(amount + 1):
            made = await store.atry_acquire(f"k{index}", limits)
            if made.limit != amount or made.allowed != (n < amount):
                wrong.append(f"task {index}, call {n}: {made}")
        return wrong

    async def main() -> tuple[list[str], int]:
        found = await asyncio.gather(*(one(i) for i in range(80)))
        clients = redis.Redis.from_url(redis_url).client_list()
        await store.aclose()
        return [w for ws in found for w in ws], sum(c.get("name") == "resilient" for c in clients)

    wrong, connections = asyncio.run(main())
    assert wrong == []
    if not query:
        assert connections == 1


def test_a_hung_server_fails_every_waiting_call_within_the_timeout(own_redis):
    """Redis stops answering with 50 calls in flight on the multiplexed connection: each
    fails with a timeout (none hangs), and once Redis is back a fresh connection serves
    the next call with its own reply."""
    store = AsyncRedisStore(own_redis.url, timeout=0.3)
    assert own_redis.process is not None
    pid = own_redis.process.pid
    loop = asyncio.new_event_loop()

    async def flight() -> tuple[list[Any], float]:
        await store.atry_acquire("seven", SEVEN)  # connected
        os.kill(pid, signal.SIGSTOP)
        try:
            start = loop.time()
            outcomes = await asyncio.gather(
                *(store.atry_acquire(f"k{i}", THREE) for i in range(50)), return_exceptions=True
            )
            return outcomes, loop.time() - start
        finally:
            os.kill(pid, signal.SIGCONT)

    try:
        outcomes, took = loop.run_until_complete(flight())
        assert took < 0.3 + 1.0
        assert all(isinstance(o, BackendError) for o in outcomes), outcomes
        assert all(isinstance(o.__cause__, redis.TimeoutError) for o in outcomes)
        store.health.succeeded()  # no probe interval to wait out
        made = loop.run_until_complete(store.atry_acquire("seven", SEVEN))
        assert (made.allowed, made.limit, made.remaining) == (True, 7, 5)
        loop.run_until_complete(store.aclose())
    finally:
        loop.close()


def test_the_multiplexed_connection_authenticates_and_selects_the_database(own_redis):
    """A user and password, and a database number, from the URL; a wrong password is a
    BackendError that does not show it."""
    own_redis.cli("ACL", "SETUSER", "limiter", "on", ">s3cret", "~*", "+@all")
    own_redis.cli("CONFIG", "SET", "requirepass", "root-pass")
    base = f"127.0.0.1:{own_redis.port}"
    admin = redis.Redis.from_url(f"redis://:root-pass@{base}/0")

    async def decide(url: str) -> Any:
        store = AsyncRedisStore(url, prefix="auth")
        try:
            assert isinstance(store._clients.runner(), AsyncMultiplexLane)
            return await store.atry_acquire("k", THREE)
        finally:
            await store.aclose()

    assert asyncio.run(decide(f"redis://limiter:s3cret@{base}/3")).allowed
    assert asyncio.run(decide(f"redis://:root-pass@{base}/3")).remaining == 1
    db3 = redis.Redis.from_url(f"redis://:root-pass@{base}/3")
    assert db3.keys("auth:*")
    assert not admin.keys("auth:*")
    with pytest.raises(BackendError) as info:
        asyncio.run(decide(f"redis://limiter:wrong-one@{base}/0"))
    assert isinstance(info.value.__cause__, redis.AuthenticationError)
    assert "wrong-one" not in str(info.value)
    db3.close()
    admin.close()


REPLIES = [
    (b"$5\r\nhello\r\n", b"hello"),
    (b"$0\r\n\r\n", b""),
    (b"$-1\r\n", None),
    (b":42\r\n", 42),
    (b":-7\r\n", -7),
    (b"+OK\r\n", b"OK"),
    (b"*3\r\n:1\r\n$2\r\n\r\n\r\n*1\r\n+x\r\n", [1, b"\r\n", [b"x"]]),
    (b"*-1\r\n", None),
]


@pytest.mark.parametrize(("wire", "value"), REPLIES)
def test_replies_parse_whole_and_never_from_a_part(wire, value):
    assert _parse(wire, 0) == (value, len(wire))
    for cut in range(len(wire)):
        with pytest.raises(_IncompleteError):
            _parse(wire[:cut], 0)


@pytest.mark.parametrize(
    ("line", "kind", "message"),
    [
        ("NOSCRIPT No matching script.", redis.exceptions.NoScriptError, "No matching script."),
        ("READONLY You can't write", redis.exceptions.ReadOnlyError, "You can't write"),
        ("LOADING loading", redis.exceptions.BusyLoadingError, "loading"),
        ("ERR unknown command", redis.ResponseError, "unknown command"),
        ("WRONGTYPE Operation against a key", redis.ResponseError, "WRONGTYPE Operation"),
        ("WRONGPASS invalid username-password", redis.AuthenticationError, "WRONGPASS"),
    ],
)
def test_error_replies_are_redis_py_exceptions(line, kind, message):
    error, _ = _parse(b"-" + line.encode() + b"\r\n", 0)
    assert type(error) is kind
    assert str(error).startswith(message)


ROUNDS = 200


def _child_decisions(url: str, flavour: str, go: Any, out: Any) -> None:
    """In a forked child: decisions on the parent's store (key "seven")."""
    try:
        go.wait(30)
        if flavour == "sync":
            made = [_STORES[url].try_acquire("seven", SEVEN) for _ in range(ROUNDS)]
        else:
            store = _STORES[url]

            async def decide() -> list[Any]:
                return [await store.atry_acquire("seven", SEVEN) for _ in range(ROUNDS)]

            made = asyncio.run(decide())
        out.put([(d.allowed, d.limit) for d in made])
    except BaseException as exc:  # reported to the parent
        out.put(repr(exc))


_STORES: dict[str, Any] = {}


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_forked_child_never_shares_its_parents_connections(redis_url, flavour):
    """A store used before a fork (a pre-forking server loading the app first): parent
    and child decide at once, each on connections of its own, each reading its replies."""
    import multiprocessing

    url = f"{redis_url}?prefix={unique_prefix()}"
    store = RedisStore(url, timeout=5.0)
    _STORES[url] = store
    loop = asyncio.new_event_loop()
    try:
        if flavour == "sync":
            assert store.try_acquire("three", THREE).limit == 3  # a connection is cached
        else:
            assert loop.run_until_complete(store.atry_acquire("three", THREE)).limit == 3
        context = multiprocessing.get_context("fork")
        out, go = context.Queue(), context.Event()
        child = context.Process(target=_child_decisions, args=(url, flavour, go, out))
        child.start()
        go.set()  # both decide at once
        if flavour == "sync":
            mine = [store.try_acquire("three", THREE) for _ in range(ROUNDS)]
        else:
            mine = [
                loop.run_until_complete(store.atry_acquire("three", THREE)) for _ in range(ROUNDS)
            ]
        theirs = out.get(timeout=30)
        child.join(30)
        assert [(d.allowed, d.limit) for d in mine] == [(True, 3)] * 2 + [(False, 3)] * (ROUNDS - 2)
        assert theirs == [(True, 7)] * 7 + [(False, 7)] * (ROUNDS - 7)
    finally:
        if flavour == "async":
            loop.run_until_complete(store.aclose())
        loop.close()
        store.close()
        del _STORES[url]


@pytest.mark.parametrize("flavour", ["sync", *(f"async-{name}" for name in ASYNC_LANES)])
def test_a_connection_the_server_closed_while_idle_reconnects(own_redis, flavour, monkeypatch):
    """Redis (or a proxy) closes the lane's idle connections: the next decision opens a
    new one and is decided, with no BackendError and Redis still seen as up. (Any idle
    time counts here: the lanes' threshold is set to zero rather than waited out.)"""
    from resilient.backends.redis._async import scripts as async_scripts
    from resilient.backends.redis._sync import scripts as sync_scripts

    monkeypatch.setattr(async_scripts, "IDLE_CHECK", -1.0)
    monkeypatch.setattr(sync_scripts, "IDLE_CHECK", -1.0)
    query = ASYNC_LANES.get(flavour.removeprefix("async-"), "")
    store: Any = (RedisStore if flavour == "sync" else AsyncRedisStore)(
        own_redis.url + query, timeout=5.0
    )
    admin = redis.Redis.from_url(own_redis.url)
    loop = asyncio.new_event_loop()

    def decide(key: str, limits: Any) -> Any:
        if flavour == "sync":
            return store.try_acquire(key, limits)
        return loop.run_until_complete(store.atry_acquire(key, limits))

    async def settle() -> None:  # let the loop see the connection close
        for _ in range(50):
            await asyncio.sleep(0)

    try:
        assert decide("three", THREE).limit == 3
        killed = admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        if flavour != "sync":
            loop.run_until_complete(settle())
        made = decide("seven", SEVEN)
        assert (made.allowed, made.limit, made.remaining) == (True, 7, 6)
        assert store.health.up
    finally:
        if flavour == "sync":
            store.close()
        else:
            loop.run_until_complete(store.aclose())
        loop.close()
        admin.close()
