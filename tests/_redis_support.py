"""Helpers for the Redis store tests: one driver for sync and async stores, a
client-side command log, unique key prefixes."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from resilient._algorithms import Decision, Limit

_COUNTER = itertools.count()


def unique_prefix(tag: str = "t") -> str:
    """A key prefix no other test (or example) uses."""
    return f"{tag}{os.getpid()}-{next(_COUNTER)}"


class Driver:
    """Calls a store's sync methods, or its async ones on a private event loop that
    lives as long as the driver (an asyncio client belongs to one loop)."""

    def __init__(self, store: Any, flavour: str = "sync") -> None:
        self.store = store
        self.flavour = flavour
        self.loop = asyncio.new_event_loop() if flavour == "async" else None

    def _run(self, coroutine: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coroutine)

    def acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, max_wait: float = 0.0
    ) -> Decision:
        if self.loop is None:
            return self.store.try_acquire(key, limits, cost, max_wait=max_wait)
        return self._run(self.store.atry_acquire(key, limits, cost, max_wait=max_wait))

    def release(self, key: str, limits: Sequence[Limit], cost: int, wait_left: float) -> None:
        if self.loop is None:
            self.store.release(key, limits, cost, wait_left)
        else:
            self._run(self.store.arelease(key, limits, cost, wait_left))

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        if self.loop is None:
            self.store.reset(key, limits)
        else:
            self._run(self.store.areset(key, limits))

    def ping(self) -> bool:
        if self.loop is None:
            return bool(self.store.ping())
        return bool(self._run(self.store.aping()))

    def close(self) -> None:
        if self.loop is None:
            self.store.close()
            return
        try:
            self._run(self.store.aclose())
        finally:
            self.loop.close()
            self.loop = None

    def __repr__(self) -> str:
        return f"Driver({self.store!r}, {self.flavour})"


def _command_name(packed: Any) -> str:
    data = b"".join(packed) if isinstance(packed, list | tuple) else bytes(packed)
    parts = data.split(b"\r\n")
    return parts[2].decode().upper() if len(parts) > 2 else "?"


class CommandLog:
    """Every command any redis-py connection (sync or asyncio), or a store's multiplexed
    asyncio connection, writes to a socket, by name, in order: one entry per command
    (a decision is one command, whatever else shares its write)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def record(self, packed: Any) -> None:
        with self._lock:
            self.names.append(_command_name(packed))

    def clear(self) -> None:
        with self._lock:
            self.names.clear()


@contextmanager
def command_log() -> Iterator[CommandLog]:
    from redis import connection as sync_connection
    from redis.asyncio import connection as async_connection

    from resilient.backends.redis import _multiplex

    log = CommandLog()
    sync_class = sync_connection.AbstractConnection
    async_class = async_connection.AbstractConnection
    sync_send = sync_class.send_packed_command
    async_send = async_class.send_packed_command
    mux_class: Any = _multiplex._Connection  # the stores' multiplexed asyncio connection
    mux_send = mux_class.send

    def send(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        log.record(command)
        return sync_send(self, command, *args, **kwargs)

    async def asend(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        log.record(command)
        return await async_send(self, command, *args, **kwargs)

    def msend(self: Any, command: bytes) -> Any:
        log.record(command)
        return mux_send(self, command)

    sync_class.send_packed_command = send
    async_class.send_packed_command = asend
    mux_class.send = msend
    try:
        yield log
    finally:
        sync_class.send_packed_command = sync_send
        async_class.send_packed_command = async_send
        mux_class.send = mux_send


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll a real server until *predicate()* holds (bounded)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # a node that is still starting
            pass
        time.sleep(0.02)  # polling a real server's state, not faking time
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
