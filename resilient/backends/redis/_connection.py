"""redis-py clients for the stores: short timeouts, no hidden retries, built lazily.

Both kinds of client are made here, for a :class:`~._url.RedisTarget`:

* :class:`Clients` holds one sync client (``redis.Redis`` or ``redis.cluster.RedisCluster``).
* :class:`AsyncClients` holds one asyncio client *per event loop*: an asyncio
  connection belongs to the loop that opened it, and a store may outlive a
  loop (``asyncio.run`` in a test, a worker thread with its own loop).

A client given by the user is used as it is, for every loop. Each holder also
gives the *runner* of the decision scripts: for a single server the store connects
to itself, a lane of dedicated connections (``_async/scripts.py``; for asyncio over
plain TCP, one multiplexed connection per loop, ``_multiplex.py``), else the client.

Two settings matter for a decision store and differ from redis-py's defaults:

* **timeouts** (connect and read, default 0.25 s): a slow or unreachable Redis
  costs a caller at most that, then the store's ``on_backend_error`` applies;
* **no retries**: redis-py retries a command after a timeout by default, and a
  script that ran but whose reply was lost would then count a call twice. A
  failed decision is reported instead; the next call opens a fresh connection.
  (Redis Cluster still follows ``MOVED``/``ASK`` redirections: a redirected
  command has not run.)
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

from ._url import RedisTarget

__all__ = ["DEFAULT_TIMEOUT", "AsyncClients", "Clients", "client_options"]

DEFAULT_TIMEOUT = 0.25
"""Seconds a store waits to connect to Redis, and for each reply."""


def client_options(target: RedisTarget, timeout: float, connect_timeout: float) -> dict[str, Any]:
    """The redis-py keyword arguments for *target* with the store's timeouts."""
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "client_name": "resilient",
    }
    options.update(target.options)
    return options


class Clients:
    """The sync client of a store (built on first use: a cluster client connects
    as soon as it is made), and the runner of its scripts (:meth:`runner`)."""

    __slots__ = ("_client", "_lock", "_options", "_runner", "_target", "owned")

    def __init__(self, target: RedisTarget, options: dict[str, Any], client: Any = None) -> None:
        self._target = target
        self._options = options
        self._client = client
        self._runner: Any = None
        self._lock = threading.Lock()
        self.owned = client is None
        """Whether the store made the client (and closes it)."""

    def get(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return client

    def runner(self) -> Any:
        """What runs the decision scripts: a ``Lane`` of dedicated connections for a
        single server the store connects to itself, else the client (``ClientRunner``)."""
        runner = self._runner
        if runner is None:
            client = self.get()
            with self._lock:
                runner = self._runner
                if runner is None:
                    runner = self._runner = _runner_for(
                        client, self.owned, self._target, False, self._options
                    )
        return runner

    def _make(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        options = dict(self._options, retry=Retry(NoBackoff(), 0))
        if self._target.cluster:
            from redis.cluster import ClusterNode, RedisCluster

            node: Any = ClusterNode  # untyped in redis-py
            nodes = [node(host, port) for host, port in self._target.nodes]
            return RedisCluster(startup_nodes=nodes, **options)
        return redis.Redis(**options)

    def close(self) -> None:
        if not self.owned:
            return
        with self._lock:
            client, self._client, self._runner = self._client, None, None
        if client is not None:
            client.close()


def _runner_for(
    client: Any, owned: bool, target: RedisTarget, asynchronous: bool, options: dict[str, Any]
) -> Any:
    if asynchronous:
        from ._async.scripts import AsyncClientRunner, AsyncLane
        from ._multiplex import AsyncMultiplexLane, supports

        if owned and not target.cluster:
            return AsyncMultiplexLane(options) if supports(options) else AsyncLane(client)
        return AsyncClientRunner(client)
    from ._sync.scripts import ClientRunner, Lane

    if owned and not target.cluster:
        return Lane(client)
    return ClientRunner(client)


class AsyncClients:
    """The asyncio clients of a store, one per running event loop, each with the runner
    of its scripts (:meth:`runner`)."""

    __slots__ = ("_by_loop", "_client", "_last", "_options", "_target", "owned")

    def __init__(self, target: RedisTarget, options: dict[str, Any], client: Any = None) -> None:
        self._target = target
        self._options = options
        self._client = client
        self.owned = client is None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop | None, Any, Any] = (None, None, None)

    def get(self) -> Any:
        """The client of the running event loop."""
        return self._entry()[0]

    def runner(self) -> Any:
        """What runs the decision scripts on the running loop (see ``Clients.runner``)."""
        return self._entry()[1]

    def _entry(self) -> tuple[Any, Any]:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            msg = "the Redis store's async methods run on asyncio (redis.asyncio), not this loop"
            raise TypeError(msg) from None
        last_loop, client, runner = self._last
        if last_loop is loop:
            return client, runner
        entry = self._by_loop.get(loop)
        if entry is None:
            client = self._client if self._client is not None else self._make()
            runner = _runner_for(client, self.owned, self._target, True, self._options)
            entry = self._by_loop[loop] = (client, runner)
        self._last = (loop, *entry)
        return entry

    def _make(self) -> Any:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        options = dict(self._options, retry=Retry(NoBackoff(), 0))
        if self._target.cluster:
            from redis.asyncio.cluster import ClusterNode, RedisCluster

            nodes = [ClusterNode(host, port) for host, port in self._target.nodes]
            return RedisCluster(startup_nodes=nodes, **options)
        return aioredis.Redis(**options)

    async def aclose(self) -> None:
        """Close the client of the running loop (the others belong to loops that are gone
        or running elsewhere, and are closed with them)."""
        if not self.owned:
            return
        loop = asyncio.get_running_loop()
        entry = self._by_loop.pop(loop, None)
        if self._last[0] is loop:
            self._last = (None, None, None)
        if entry is not None:
            close = getattr(entry[1], "aclose", None)
            if close is not None:
                await close()
            await entry[0].aclose()
