"""Running a cached Lua script: one ``EVALSHA``, or ``EVAL`` when Redis lost the script.

Two ways, one behaviour:

* :func:`run_script` sends the command through a redis-py client (``execute_command``):
  for Redis Cluster (slots, redirections) and for a client the user gave the store
  (its own settings apply);
* :class:`AsyncLane` sends it on connections of its own, taken once from the pool of a
  client the store made for one Redis server, with the command packed here: the same
  bytes on the wire, without the per-command work of the client (pool checkout and
  release, argument encoding, instrumentation), which costs more than the Redis round
  trip itself on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from ...._clock import SYSTEM_CLOCK
from .._scripts import Script, pack_command

__all__ = ["AsyncClientRunner", "AsyncLane", "run_script"]


async def run_script(client: Any, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """Run *script* on *keys* and *args*: one round trip while Redis has it cached.

    After a restart, a failover or ``SCRIPT FLUSH`` the ``EVALSHA`` fails with
    ``NOSCRIPT`` (without running anything) and the script is sent with ``EVAL``,
    which also caches it again: two round trips, once. Works unchanged on Redis
    Cluster, where both commands go to the node that owns the keys' slot.
    """
    try:
        return await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    except NoScriptError:
        return await client.execute_command("EVAL", script.text, len(keys), *keys, *args)


class AsyncClientRunner:
    """Runs scripts through a redis-py client (:func:`run_script`)."""

    __slots__ = ("client",)

    def __init__(self, client: Any) -> None:
        self.client = client

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[bytes]) -> Any:
        """See :func:`run_script`."""
        return await run_script(self.client, script, keys, args)


IDLE_CHECK = 0.05
"""Seconds a lane's connection may sit idle before its next use checks it first (a
connection in steady use is not polled on every call)."""

_monotonic = SYSTEM_CLOCK.monotonic


async def _refresh(connection: Any) -> None:
    """Drop an idle connection that the server (or a proxy) closed, or that holds an
    unread reply: the next command reconnects (as the client's pool would do on checkout)."""
    try:
        stale = await connection.can_read()
    except (RedisError, OSError):
        stale = True
    if stale:
        await connection.disconnect()


class AsyncLane:
    """Runs scripts on connections taken from a (single-server) client's pool and kept.

    A call takes an idle connection (or checks a new one out of the pool, which
    connects it, authenticates and selects the database as for any command), sends
    one packed command, reads one reply and puts the connection back. A connection
    idle for more than :data:`IDLE_CHECK` is checked first (one poll of its socket):
    one the server or a proxy closed meanwhile reconnects rather than failing the call.
    A connection that fails (timeout, reset, cancellation) is closed by redis-py before
    the error is raised and reconnects on its next use, so a reply that came too late
    can never be read as another call's. Closing the client closes these connections
    too (the pool still counts them as in use). A process forked after the lane was
    used starts with no connections of its parent's.
    """

    __slots__ = ("_idle", "_pid", "_pool")

    def __init__(self, client: Any) -> None:
        self._pool = client.connection_pool
        self._idle: list[tuple[Any, float]] = []  # (connection, when last used)
        self._pid = os.getpid()

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[bytes]) -> Any:
        """See :func:`run_script`."""
        try:
            return await self._call(pack_command(b"EVALSHA", script.sha, len(keys), *keys, *args))
        except NoScriptError:
            return await self._call(pack_command(b"EVAL", script.text, len(keys), *keys, *args))

    async def _call(self, command: bytes) -> Any:
        if self._pid != os.getpid():
            # A forked child must not share its parent's sockets: forget them (the
            # pool, which checks the pid too, gives this process connections of its own).
            self._idle = []
            self._pid = os.getpid()
        idle = self._idle
        now = _monotonic()
        try:
            connection, since = idle.pop()
        except IndexError:
            connection = await self._pool.get_connection()
        else:
            if now - since > IDLE_CHECK:
                await _refresh(connection)
        try:
            await connection.send_packed_command([command], check_health=False)
            return await connection.read_response()
        finally:
            idle.append((connection, now))
