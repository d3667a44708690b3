"""``AsyncRedisStore``: rate-limit decisions on Redis or Redis Cluster.

Each decision is one script run (see ``lua/acquire.lua``); the rest (keys,
arguments, replies, failures) is in ``_core.py``. The store in ``_async/`` is
written by hand and the one in ``_sync/`` generated from it by
``scripts/unasync.py``: edit ``_async/``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...._algorithms import Decision, Limit
from .._connection import AsyncClients
from .._core import StoreCore

__all__ = ["AsyncRedisStore"]


class AsyncRedisStore(StoreCore):
    """Rate-limit state in Redis, shared by every process that uses the same keys.

    Implements :class:`~resilient.backends.AsyncRateLimitStore`; the arguments
    are described in :mod:`resilient.backends.redis`.
    """

    __slots__ = ("_clients",)

    def _attach(self) -> None:
        self._clients = self._shared.clients_for(AsyncClients)

    async def atry_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """See :meth:`resilient.backends.RateLimitStore.try_acquire`: one round trip to Redis.

        Raises:
            ConfigError: *cost* is below 1 or above a limit's capacity.
            BackendError: Redis failed and ``on_backend_error`` is ``"raise"``.
        """
        plan = self._plan(limits)
        if cost != 1 or type(cost) is not int:
            plan.check_cost(cost)
        keys = self._keys(key, plan)
        health = self._shared.health
        if not health.up and not health.should_try():
            return self._skipped(key, plan, cost, max_wait)
        args = self._acquire_args(plan, cost, max_wait)
        try:
            reply = await self._clients.runner().run(plan.acquire, keys, args)
            made = self._decode(reply)
        except Exception as exc:
            return self._failed(exc, key, plan, cost, max_wait)
        if not health.up:
            health.succeeded()
        return made

    async def arelease(
        self,
        key: str,
        limits: Sequence[Limit],
        cost: int,
        wait_left: float,
    ) -> None:
        """Give back a booking (best effort: a failure keeps it, nothing is raised)."""
        if wait_left <= 0:
            return
        plan = self._plan(limits)
        keys = self._keys(key, plan)
        health = self._shared.health
        if not health.up and not health.should_try():
            self._release_locally(key, plan, cost, wait_left)
            return
        args = self._release_args(plan, cost, wait_left)
        try:
            await self._clients.runner().run(plan.release, keys, args)
        except Exception as exc:
            self._error(exc, "release")
            self._release_locally(key, plan, cost, wait_left)

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        """Forget *key*'s state under these limits (in Redis and in the in-memory twin).

        Raises:
            BackendError: Redis failed (whatever ``on_backend_error`` says).
        """
        plan = self._plan(limits)
        keys = self._keys(key, plan)
        self._shared.local.reset(key, plan.limits)
        try:
            await self._clients.get().execute_command("DEL", *keys)
        except Exception as exc:
            raise self._error(exc, "reset") from exc

    async def aping(self) -> bool:
        """Whether Redis answers ``PING`` now (never raises)."""
        try:
            await self._clients.get().ping()
        except Exception as exc:
            self._error(exc, "ping")
            return False
        self._shared.health.succeeded()
        return True

    async def aclose(self) -> None:
        """Close the connections this store opened (a client given to it stays open)."""
        await self._clients.aclose()
