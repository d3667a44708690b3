"""The stores' own connections to a single Redis server (the "lane"): the command bytes
are redis-py's, a late reply is never read by the next call, a cancelled call frees its
connection, and the lane is used only where the store made the client itself."""

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

    assert asyncio.run(kinds()) == (AsyncLane, AsyncClientRunner)
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


def test_a_cancelled_call_frees_its_connection_and_its_reply(own_redis):
    """An async decision cancelled while waiting for Redis: its connection is closed,
    the next decision reads its own reply, and no connection is leaked."""
    store = AsyncRedisStore(own_redis.url, timeout=5.0)
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
