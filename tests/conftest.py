"""Shared fixtures: the fake clock and a runner that drives a policy through
``call`` or ``acall`` so one test body checks both drivers."""

from __future__ import annotations

import ast
import asyncio
import builtins
import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from resilient.testing import FakeClock

# CI explores the same examples on every run (no flakes from a new random draw; the
# example database is not kept between CI runs anyway) and never fails a property on
# a slow machine's timing. Locally, hypothesis draws new examples each run.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# --- a guard against a CPython 3.11 bug --------------------------------------------
# CPython 3.11 (and 3.12.0) keeps the AST converter's recursion counter in
# interpreter-wide state. When the garbage collector runs a finalizer in the middle of
# an ``ast.parse`` or a ``compile(tree)``, and that finalizer formats a traceback (3.11's
# traceback formatting itself calls ``ast.parse``), the outer call fails with
# "SystemError: AST constructor recursion depth mismatch", and with it whatever pytest
# was importing or rewriting at that moment. The collector is paused while an AST is
# built, so no finalizer can run inside one. Test-process only; the library is not
# affected by it.
if sys.version_info < (3, 12, 1):
    _gc_lock = threading.Lock()
    _gc_state = {"depth": 0, "was_enabled": True}

    @contextmanager
    def _gc_paused() -> Iterator[None]:
        with _gc_lock:
            if _gc_state["depth"] == 0:
                _gc_state["was_enabled"] = gc.isenabled()
                gc.disable()
            _gc_state["depth"] += 1
        try:
            yield
        finally:
            with _gc_lock:
                _gc_state["depth"] -= 1
                if _gc_state["depth"] == 0 and _gc_state["was_enabled"]:
                    gc.enable()

    _ast_parse = ast.parse
    _compile = builtins.compile

    def _parse_paused(*args: Any, **kwargs: Any) -> Any:
        with _gc_paused():
            return _ast_parse(*args, **kwargs)

    def _compile_paused(source: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(source, ast.AST):
            with _gc_paused():
                return _compile(source, *args, **kwargs)
        return _compile(source, *args, **kwargs)

    ast.parse = _parse_paused
    builtins.compile = _compile_paused


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
