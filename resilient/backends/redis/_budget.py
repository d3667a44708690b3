"""``RedisRetryBudget``: one retry budget for a whole fleet, kept in Redis.

The rule is :class:`~resilient.RetryBudget`'s (retries allowed while
``min_per_second * ttl + ratio * calls - retries >= 1`` over the last ``ttl``
seconds), counted in one Redis hash that every process naming the budget
shares, so a thousand replicas retrying a dead dependency add ``ratio`` of
their load between them, not each.

Round trips: a retry decision is one ``EVALSHA`` (``lua/retry_budget.lua``),
which also carries the calls this process recorded since its last trip.
Recording a call costs no round trip: calls are counted locally and sent with
the next decision, or at most every ``flush_interval`` seconds (by default one
slice of the window, ``ttl / buckets``) by the call that finds them due. A
decision therefore always counts every call made before it in this process,
and those of other processes up to one flush interval late.

When Redis fails, ``on_backend_error`` applies, by default ``"local"``: this
process's own budget (it counts every call too) decides until Redis answers
again; ``"allow"`` grants the retry, ``"deny"`` refuses it and ``"raise"``
raises :class:`~resilient.BackendError` from the decision (recording a call
never raises). Redis is not called for ``probe_interval`` seconds after a
failure. Failures and recoveries are reported as ``BackendFailed`` and
``BackendRecovered`` events of the budget.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final

from ..._budget import RetryBudget, RetryBudgetStats
from ..._clock import SYSTEM_CLOCK, Clock
from ..._duration import to_seconds
from ..._errors import BackendError, ConfigError
from ...observability._emit import Emitter, Listener
from .._health import OnBackendError, check_mode
from ._connection import AsyncClients, Clients
from ._core import Shared, StoreCore
from ._errors import backend_error, is_outage
from ._keys import tagged
from ._scripts import lua_script

__all__ = ["RedisRetryBudget"]

SCRIPT: Final = lua_script("retry_budget.lua")
_SERVER_TIME: Final = b""
_KEEP_MS: Final = 1_000
"""How long the hash outlives the window (it is empty by then)."""


class RedisRetryBudget(RetryBudget):
    """A :class:`~resilient.RetryBudget` whose counts live in Redis (see the module docs).

    Give it to ``Retry(budget=...)`` like the in-memory one; sync and async retries
    may share it.

    Args:
        url: ``redis://``, ``rediss://`` or ``redis+cluster://`` (see
            :mod:`resilient.backends.redis`); or pass ``store=``.
        store: a ``RedisStore`` (or ``AsyncRedisStore``) whose connections, key
            prefix, timeouts, clock and health this budget shares.
        ratio, min_per_second, ttl, buckets: as for :class:`~resilient.RetryBudget`.
        name: the budget's name: every process using the same name (and prefix)
            shares its counts.
        on_backend_error: what a retry decision gets when Redis fails (default
            ``"local"``, see the module docs).
        flush_interval: the longest time recorded calls wait before being sent
            (default ``ttl / buckets``).
        prefix, timeout, connect_timeout, probe_interval, clock: as for the Redis
            stores, when built from *url* (``clock`` replaces the server's time:
            tests only, every process must share it).
        listeners: receive the budget's ``BackendFailed`` / ``BackendRecovered`` events.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        store: StoreCore | None = None,
        ratio: float = 0.2,
        min_per_second: float = 3.0,
        ttl: float | str = 10.0,
        buckets: int = 10,
        name: str = "retry_budget",
        on_backend_error: OnBackendError = "local",
        flush_interval: float | str | None = None,
        prefix: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        probe_interval: float | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        if (url is None) == (store is None):
            raise ConfigError("url", url, "a Redis URL or a Redis store (store=), not both")
        owned: StoreCore | None = None
        if store is None:
            from ._sync.store import RedisStore

            owned = store = RedisStore(
                url,
                prefix=prefix,
                timeout=timeout,
                connect_timeout=connect_timeout,
                probe_interval=probe_interval,
                clock=clock,
            )
        elif not isinstance(store, StoreCore):
            raise ConfigError("store", store, "a RedisStore or AsyncRedisStore")
        shared: Shared = store._shared
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "a non-empty string")
        super().__init__(
            ratio,
            min_per_second=min_per_second,
            ttl=ttl,
            buckets=buckets,
            name=name,
            clock=shared.clock or SYSTEM_CLOCK,
        )
        self.on_backend_error: OnBackendError = check_mode(on_backend_error)
        self.flush_interval = (
            self.ttl / buckets
            if flush_interval is None
            else to_seconds(flush_interval, name="flush_interval")
        )
        self._owned = owned
        self._shared = shared
        self._key = tagged(shared.prefix, f"budget:{name}") + ":rb"
        self._server_clock = shared.clock
        self._pending = 0
        self._flushed_at = self.clock.monotonic()
        self._fleet: RetryBudgetStats | None = None
        self._flock = threading.Lock()
        self._emitter = Emitter(listeners)
        shared.health.watch(self._emitter, name, "retry_budget", self.clock, self.on_backend_error)

    @property
    def backend(self) -> str:
        """The redacted URL (or client description) of the Redis behind the budget."""
        return self._shared.backend

    @property
    def key(self) -> str:
        """The Redis key holding the budget's counts."""
        return self._key

    # -- what Retry calls ----------------------------------------------------------------------

    def record_call(self) -> None:
        """Count a call (locally; sent with the next decision or flush)."""
        RetryBudget.record_call(self)
        if self._deposit():
            self._exchange(spend=False)

    async def arecord_call(self) -> None:
        """Async :meth:`record_call`."""
        RetryBudget.record_call(self)
        if self._deposit():
            await self._aexchange(spend=False)

    def try_spend(self) -> bool:
        """Take one retry from the fleet's budget: one round trip to Redis."""
        return self._exchange(spend=True)

    async def atry_spend(self) -> bool:
        """Async :meth:`try_spend`."""
        return await self._aexchange(spend=True)

    def flush(self) -> RetryBudgetStats:
        """Send the calls counted here and read the fleet's counts (one round trip)."""
        self._exchange(spend=False)
        return self.stats()

    async def aflush(self) -> RetryBudgetStats:
        """Async :meth:`flush`."""
        await self._aexchange(spend=False)
        return self.stats()

    def stats(self) -> RetryBudgetStats:
        """The fleet's counts as of the last answer from Redis (no round trip; see
        :meth:`flush`), with this process's denials; this process's own counts
        before Redis has answered once."""
        fleet = self._fleet
        local = RetryBudget.stats(self)
        if fleet is None:
            return local
        return RetryBudgetStats(fleet.calls, fleet.retries, local.denied, fleet.available)

    def close(self) -> None:
        """Close the connections the budget opened (not those of a store given to it)."""
        if self._owned is not None:
            self._owned.close()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        """Close the async connection of the running event loop, if the budget made it."""
        if self._owned is not None:
            await self._shared.clients_for(AsyncClients).aclose()

    # -- the exchange with Redis ---------------------------------------------------------------

    def _deposit(self) -> bool:
        """Count a call to send; whether a flush is due."""
        now = self.clock.monotonic()
        with self._flock:
            self._pending += 1
            return now - self._flushed_at >= self.flush_interval

    def _take(self) -> int:
        with self._flock:
            pending, self._pending = self._pending, 0
            self._flushed_at = self.clock.monotonic()
            return pending

    def _args(self, deposits: int, spend: bool) -> list[Any]:
        now = _SERVER_TIME if self._server_clock is None else self._server_clock.monotonic()
        keep = int((self.ttl + self._width) * 1000) + _KEEP_MS
        return [
            now,
            repr(self._width),
            len(self._epochs),
            repr(self.ratio),
            repr(self.min_per_second * self.ttl),
            deposits,
            1 if spend else 0,
            keep,
        ]

    def _skip(self) -> bool:
        health = self._shared.health
        return not health.up and not health.should_try()

    def _exchange(self, *, spend: bool) -> bool:
        if self._skip():
            self._take()  # these calls are counted by the local budget already
            return self._fallback(spend, None)
        args = self._args(self._take(), spend)
        try:
            reply = self._shared.clients_for(Clients).runner().run(SCRIPT, [self._key], args)
            return self._decode(reply, spend)
        except Exception as exc:
            return self._fallback(spend, exc)

    async def _aexchange(self, *, spend: bool) -> bool:
        if self._skip():
            self._take()
            return self._fallback(spend, None)
        args = self._args(self._take(), spend)
        try:
            runner = self._shared.clients_for(AsyncClients).runner()
            reply = await runner.run(SCRIPT, [self._key], args)
            return self._decode(reply, spend)
        except Exception as exc:
            return self._fallback(spend, exc)

    def _decode(self, reply: Any, spend: bool) -> bool:
        try:
            granted, calls, retries, available = reply[:4]
            if type(calls) is not int or type(retries) is not int:
                raise TypeError
            fleet = RetryBudgetStats(calls, retries, 0, float(available))
        except (TypeError, ValueError) as exc:
            msg = f"unexpected reply to the retry budget script: {reply!r:.200}"
            raise _BadReplyError(msg) from exc
        health = self._shared.health
        if not health.up:
            health.succeeded()
        self._fleet = fleet
        if spend and granted != 1:
            with self._lock:
                self._denied += 1
        return bool(granted == 1)

    def _fallback(self, spend: bool, exc: Exception | None) -> bool:
        """Decide without Redis: it failed with *exc*, or is down (``None``)."""
        health = self._shared.health
        if exc is not None:
            error = backend_error(exc, self._shared.backend, "retry_budget")
            if error is not exc:
                error.__cause__ = exc
            if is_outage(exc):
                health.failed(error)
        else:
            last = health.last_error
            detail = f"not called for {health.retry_after():.3f}s more after a failure"
            error = BackendError(self._shared.backend, "retry_budget", detail)
            error.__cause__ = None if last is None else last.__cause__
        if not spend:
            return False
        mode = self.on_backend_error
        if mode == "local":
            return RetryBudget.try_spend(self)
        if mode == "allow":
            return True
        if mode == "deny":
            with self._lock:
                self._denied += 1
            return False
        raise error

    def __repr__(self) -> str:
        return (
            f"RedisRetryBudget({self._shared.backend!r}, name={self.name!r}, ratio={self.ratio}, "
            f"min_per_second={self.min_per_second}, ttl={self.ttl})"
        )


class _BadReplyError(Exception):
    """Redis answered the budget script with something it cannot have sent."""
