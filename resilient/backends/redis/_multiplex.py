"""One multiplexed asyncio connection per event loop for the decision scripts.

Many tasks deciding at once share one connection: each writes its command the
moment it asks, and Redis answers in order, so a reader matches the replies to
the waiting calls first in, first out. Commands of tasks that ask in the same
turn of the event loop leave in one write, and their replies come back in one
read. Each decision is still exactly one command (one ``EVALSHA``), sent once.

How it keeps the store's promises:

* **Timeouts** without a timer per call: a watchdog looks at the oldest call
  waiting for a reply. Replies come in order, so when that call has waited
  longer than the timeout, Redis is hung or gone for every call behind it too:
  they all fail with ``redis.TimeoutError`` and the connection is dropped (the
  next call connects afresh, within the connect timeout).
* **Cancellation**: a cancelled caller leaves its place in line; its reply,
  when it comes, is read and thrown away. Nothing else is disturbed.
* **Errors** are redis-py's exception classes (``NoScriptError``,
  ``ReadOnlyError``, ``ConnectionError``...), so the stores treat them as they
  treat redis-py's.

It speaks RESP2 over TCP, with ``AUTH``, ``SELECT`` and ``CLIENT SETNAME`` at
connect time: what a ``redis://`` URL can ask. A URL with TLS or other
connection options is served by redis-py's own connections instead
(:func:`supports`).
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rex

from ._scripts import Script, pack_command

__all__ = ["AsyncMultiplexLane", "supports"]

_HANDLED = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "client_name",
        "retry",
        "max_connections",  # a pool's size: one multiplexed connection needs none
    }
)

_ERRORS: dict[str, type[rex.RedisError]] = {
    "ERR": rex.ResponseError,
    "NOSCRIPT": rex.NoScriptError,
    "READONLY": rex.ReadOnlyError,
    "LOADING": rex.BusyLoadingError,
    "OOM": rex.OutOfMemoryError,
    "NOPERM": rex.NoPermissionError,
    "EXECABORT": rex.ExecAbortError,
}
_AUTH_ERRORS = ("WRONGPASS", "NOAUTH", "invalid password", "Client sent AUTH")


def supports(options: dict[str, Any]) -> bool:
    """Whether a lane can connect with these redis-py client options (plain TCP)."""
    return "host" in options and set(options) <= _HANDLED


def _error(text: str) -> rex.RedisError:
    """The redis-py exception for an error reply (its code dropped as redis-py does)."""
    if text.startswith(_AUTH_ERRORS):
        return rex.AuthenticationError(text)
    code, _, rest = text.partition(" ")
    cls = _ERRORS.get(code)
    if cls is None:
        return rex.ResponseError(text)
    return cls(rest)


class _IncompleteError(Exception):
    """The buffer ends inside a reply."""


def _parse(buffer: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply starting at *pos*, and where the next one starts."""
    end = buffer.find(b"\r\n", pos)
    if end < 0:
        raise _IncompleteError
    kind = buffer[pos]
    if kind == 36:  # $ bulk string
        size = int(buffer[pos + 1 : end])
        if size < 0:
            return None, end + 2
        start = end + 2
        stop = start + size
        if len(buffer) < stop + 2:
            raise _IncompleteError
        return buffer[start:stop], stop + 2
    if kind == 58:  # : integer
        return int(buffer[pos + 1 : end]), end + 2
    if kind == 43:  # + simple string
        return buffer[pos + 1 : end], end + 2
    if kind == 45:  # - error
        return _error(buffer[pos + 1 : end].decode("utf-8", "replace")), end + 2
    if kind == 42:  # * array
        count = int(buffer[pos + 1 : end])
        if count < 0:
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(count):
            item, pos = _parse(buffer, pos)
            items.append(item)
        return items, pos
    msg = f"unexpected byte {bytes([kind])!r} in a reply from Redis"
    raise rex.InvalidResponse(msg)


class _Connection(asyncio.Protocol):
    """One TCP connection: write commands, read replies in order (see the module)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, where: str, timeout: float) -> None:
        self.loop = loop
        self.where = where
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = b""
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._watchdog: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos = 0
        waiting = self._waiting
        try:
            while pos < len(buffer):
                reply, pos = _parse(buffer, pos)
                if not waiting:
                    raise rex.InvalidResponse("a reply from Redis that no call waits for")
                future = waiting.popleft()[0]
                if not future.done():  # a cancelled caller's reply is dropped
                    if isinstance(reply, rex.RedisError):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        except _IncompleteError:
            pass
        except (rex.InvalidResponse, ValueError) as exc:
            self._fail(rex.ConnectionError(f"Protocol error from {self.where}: {exc}"))
            return
        self._buffer = buffer[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._fail(rex.ConnectionError(f"Connection to {self.where} lost{detail}"), abort=False)

    # -- what the lane calls

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Write *command*; the future gets its reply."""
        if self.closed or self.transport is None:
            raise rex.ConnectionError(f"Connection to {self.where} is closed")
        future = self.loop.create_future()
        waiting = self._waiting
        waiting.append((future, self.loop.time()))
        self.transport.write(command)
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self.loop.time() + self.timeout, self._watch)
        return future

    def close(self) -> None:
        self._fail(rex.ConnectionError(f"Connection to {self.where} closed"))

    def _watch(self) -> None:
        """The watchdog: fail everything once the oldest call (cancelled ones included:
        their replies have not come either) has waited longer than the timeout."""
        self._watchdog = None
        waiting = self._waiting
        if not waiting:
            return
        due = waiting[0][1] + self.timeout
        if due <= self.loop.time():
            self._fail(rex.TimeoutError(f"Timeout reading from {self.where}"))
            return
        self._watchdog = self.loop.call_at(due, self._watch)

    def _fail(self, error: rex.RedisError, *, abort: bool = True) -> None:
        """Fail every waiting call with *error* and drop the connection."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        waiting, self._waiting = self._waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        if abort and self.transport is not None:
            self.transport.abort()


class AsyncMultiplexLane:
    """Runs scripts on one multiplexed connection of the running loop (see the module)."""

    __slots__ = ("_connecting", "_connection", "_options", "_pid")

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._pid = os.getpid()

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """See ``run_script``: one ``EVALSHA``, or ``EVAL`` once after ``NOSCRIPT``."""
        if self._pid != os.getpid():  # a forked child never uses its parent's socket
            self._connection, self._connecting, self._pid = None, None, os.getpid()
        connection = self._connection
        if connection is None or connection.closed:
            connection = await self._connect()
        try:
            return await connection.send(
                pack_command(b"EVALSHA", script.sha, len(keys), *keys, *args)
            )
        except rex.NoScriptError:
            connection = self._connection
            if connection is None or connection.closed:
                connection = await self._connect()
            return await connection.send(
                pack_command(b"EVAL", script.text, len(keys), *keys, *args)
            )

    async def _connect(self) -> _Connection:
        """The open connection, made by the first caller that needs it (the others wait)."""
        pending = self._connecting
        if pending is None:
            pending = self._connecting = asyncio.ensure_future(self._open())
            pending.add_done_callback(self._connected)
        return await asyncio.shield(pending)

    def _connected(self, pending: asyncio.Future[_Connection]) -> None:
        self._connecting = None
        if not pending.cancelled() and pending.exception() is None:
            self._connection = pending.result()

    async def _open(self) -> _Connection:
        options = self._options
        host, port = options["host"], int(options.get("port", 6379))
        where = f"{host}:{port}"
        timeout = float(options.get("socket_timeout") or 0.25)
        connect_timeout = float(options.get("socket_connect_timeout") or timeout)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, where, timeout), host, port
                )
                await self._handshake(connection)
        except TimeoutError:
            raise rex.TimeoutError(f"Timeout connecting to {where}") from None
        except OSError as exc:
            raise rex.ConnectionError(f"Error connecting to {where}: {exc}") from exc
        return connection

    async def _handshake(self, connection: _Connection) -> None:
        options = self._options
        steps: list[asyncio.Future[Any]] = []
        password = options.get("password")
        if password is not None:
            username = options.get("username")
            auth = (b"AUTH", username, password) if username else (b"AUTH", password)
            steps.append(connection.send(pack_command(*auth)))
        db = int(options.get("db") or 0)
        if db:
            steps.append(connection.send(pack_command(b"SELECT", db)))
        name = options.get("client_name")
        if name:
            steps.append(connection.send(pack_command(b"CLIENT", b"SETNAME", name)))
        try:
            for step in steps:
                await step
        except BaseException:
            connection.close()
            raise

    async def aclose(self) -> None:
        """Drop the connection (waiting calls fail with ``ConnectionError``)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
