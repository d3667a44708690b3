"""Shared fixtures: the fake clock and a runner that drives a policy through
``call`` or ``acall`` so one test body checks both drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from resilient.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Runner:
    """Runs a *sync* test callable through ``policy.call`` (flavour "sync") or, wrapped
    in a coroutine function, through ``policy.acall`` on a fresh event loop ("async")."""

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.is_async = flavour == "async"

    def __call__(self, policy: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if not self.is_async:
            return policy.call(fn, *args, **kwargs)

        async def afn(*a: Any, **kw: Any) -> Any:
            return fn(*a, **kw)

        return asyncio.run(policy.acall(afn, *args, **kwargs))

    def __repr__(self) -> str:
        return f"Runner({self.flavour})"


@pytest.fixture(params=["sync", "async"])
def run(request: pytest.FixtureRequest) -> Runner:
    return Runner(request.param)


# --- real Redis servers (started once per session, on free loopback ports) ---

from collections.abc import Iterator  # noqa: E402

from _servers import RedisCluster, RedisServer, running_cluster  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server shared by the session; tests use distinct key prefixes or FLUSHALL."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied before the test."""
    if redis_server.process is None:  # a fault test stopped it
        redis_server.start()
    redis_server.cli("FLUSHALL")
    redis_server.cli("SCRIPT", "FLUSH")
    return redis_server.url


@pytest.fixture
def own_redis(tmp_path: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for fault tests that kill and restart it."""
    server = RedisServer(tmp_path / "own-redis").start()  # type: ignore[operator]
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster (one replica each) shared by the session."""
    yield from running_cluster(tmp_path_factory.mktemp("cluster"))
