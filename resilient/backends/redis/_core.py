"""What the sync and async Redis stores share: settings, plans, replies, failures.

The stores themselves (``_async/store.py``, written by hand, and
``_sync/store.py``, generated from it) only do the I/O: they turn a call into
keys and arguments with a :class:`Plan`, run one script, and hand the reply or
the failure back here. Everything else lives in :class:`StoreCore`, once.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

from ..._algorithms import Decision, Limit, decision
from ..._clock import SYSTEM_CLOCK, Clock
from ..._errors import BackendError, ConfigError
from .._health import (
    DEFAULT_PROBE_INTERVAL,
    BackendHealth,
    OnBackendError,
    check_mode,
    check_probe_interval,
)
from ..memory import MemoryStore
from ._connection import DEFAULT_TIMEOUT, client_options
from ._errors import backend_error, is_outage
from ._keys import DEFAULT_PREFIX, check_prefix, tagged
from ._scripts import rate_limit_script
from ._url import RedisTarget, parse_redis_url

if TYPE_CHECKING:
    from ...observability._emit import Emitter
    from ._async.store import AsyncRedisStore

__all__ = ["DEFAULT_MAX_LOCAL_KEYS", "DualCore", "Plan", "Shared", "StoreCore", "horizon"]

DEFAULT_MAX_LOCAL_KEYS = 10_000
"""Keys the in-memory twin (``on_backend_error="local"``) remembers per set of limits."""

_CODES: Final = {
    "token_bucket": "tb",
    "sliding_log": "sl",
    "sliding_counter": "sc",
    "fixed_window": "fw",
}
_SERVER_TIME: Final = math.nan
_CALL: Final = struct.Struct("<ddd")
_REPLY: Final = struct.Struct("<dddddd")
_KEEP_SERVER_MS: Final = 1_000
"""Milliseconds a key outlives its state on the server's clock (it is empty by then)."""
_KEEP_CLIENT_MS: Final = 60_000
"""The same with a client clock, whose seconds need not match the server's."""
_MIN_RETRY: Final = 1e-3

C = TypeVar("C")


def horizon(limit: Limit) -> float:
    """Seconds after its last admission (or booked start) by which a limit's state is
    empty: the in-memory store's rule, so both forget a key at the same moment."""
    if limit.algorithm == "token_bucket":
        return limit.tolerance
    if limit.algorithm == "sliding_log":
        return limit.period
    if limit.algorithm == "fixed_window":
        return 2 * limit.period
    return 3 * limit.period


def _signature(limit: Limit) -> str:
    text = f"{_CODES[limit.algorithm]}{limit.amount}/{limit.period!r}"
    if limit.burst is not None:
        text += f"b{limit.burst}"
    if limit.initial is not None:
        text += f"i{limit.initial}"
    return text


class Plan:
    """How one set of limits becomes keys and script arguments (built once per set).

    The state of a key under these limits lives in one string key named
    ``<prefix>:{<key>}:<signature>``, where the signature spells every limit
    (``tb100/1.0``, ``sl1000/60.0``...), so a limiter whose rate changes starts
    afresh instead of misreading old state; each sliding-log limit adds a
    sorted set named after it, ``...:log<i>``.
    """

    __slots__ = (
        "acquire",
        "capacity",
        "codes",
        "horizon",
        "limits",
        "logs",
        "packed",
        "release",
        "suffix",
    )

    def __init__(self, limits: tuple[Limit, ...], keep: int) -> None:
        self.limits = limits
        self.capacity = min(limit.capacity for limit in limits)
        self.horizon = max(horizon(limit) for limit in limits)
        self.suffix = ":" + ",".join(_signature(limit) for limit in limits)
        logs: list[str] = []
        numbers: list[float] = [self.horizon, keep]
        for index, limit in enumerate(limits, 1):
            log = 0
            if limit.algorithm == "sliding_log":
                logs.append(f":log{index}")
                log = len(logs) + 1
            initial = math.nan if limit.initial is None else limit.initial
            numbers += [limit.amount, limit.period, limit.capacity, initial, log]
        self.logs = tuple(logs)
        codes = [_CODES[limit.algorithm] for limit in limits]
        self.codes = "".join(codes).encode()
        """The algorithms, two letters each: ARGV[2] of every script call."""
        self.packed = struct.pack(f"<{len(numbers)}d", *numbers)
        """horizon, keep and five doubles per limit: ARGV[3] of every script call."""
        self.acquire = rate_limit_script("acquire.lua", frozenset(codes))
        self.release = rate_limit_script("release.lua", frozenset(codes))

    def keys(self, prefix: str, key: str) -> list[str]:
        base = tagged(prefix, key) + self.suffix
        if not self.logs:
            return [base]
        return [base, *(base + log for log in self.logs)]

    def check_cost(self, cost: object) -> int:
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= self.capacity:
            raise ConfigError(
                "cost", cost, f"an int between 1 and {self.capacity} (the limiter's capacity)"
            )
        return cost


def _seconds(name: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not (0 < value < math.inf if positive else 0 <= value < math.inf):  # type: ignore[operator]
        raise ConfigError(name, value, "a finite number of seconds > 0")
    return float(value)  # type: ignore[arg-type]


def _is_async_client(client: Any) -> bool:
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


class Shared:
    """The state behind a store and all its views: target, clients, key prefix,
    clock, health, the in-memory twin and the plans."""

    __slots__ = (
        "_clients",
        "_lock",
        "backend",
        "clock",
        "health",
        "keep",
        "local",
        "mode",
        "options",
        "plans",
        "prefix",
        "target",
        "user_client",
    )

    def __init__(
        self,
        url: str | None,
        client: Any,
        *,
        prefix: str | None,
        on_backend_error: str | None,
        timeout: float | None,
        connect_timeout: float | None,
        probe_interval: float | None,
        clock: Clock | None,
        max_local_keys: int,
    ) -> None:
        query: dict[str, str] = {}
        self.target: RedisTarget | None = None
        if (url is None) == (client is None):
            raise ConfigError("url", url, "a Redis URL or a redis-py client (client=), not both")
        if url is not None:
            self.target, query = parse_redis_url(url)
            self.backend = self.target.display
        else:
            self.backend = _describe_client(client)
        self.user_client = client
        self.prefix = check_prefix(
            query.get("prefix", DEFAULT_PREFIX) if prefix is None else prefix
        )
        self.mode: OnBackendError = check_mode(
            query.get("on_backend_error", "raise") if on_backend_error is None else on_backend_error
        )
        read = _seconds(
            "timeout", query.get("timeout", DEFAULT_TIMEOUT) if timeout is None else timeout
        )
        connect = _seconds(
            "connect_timeout",
            query.get("connect_timeout", read) if connect_timeout is None else connect_timeout,
        )
        probe = check_probe_interval(
            _seconds(
                "probe_interval",
                query.get("probe_interval", DEFAULT_PROBE_INTERVAL)
                if probe_interval is None
                else probe_interval,
                positive=False,
            )
        )
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock", clock, "an object with monotonic(), sleep() and asleep()")
        if isinstance(max_local_keys, bool) or not isinstance(max_local_keys, int):
            raise ConfigError("max_local_keys", max_local_keys, "an int >= 1")
        self.clock = clock
        self.keep = _KEEP_SERVER_MS if clock is None else _KEEP_CLIENT_MS
        time_source = clock or SYSTEM_CLOCK
        self.health = BackendHealth(self.backend, time_source, probe)
        self.local = MemoryStore(clock=time_source, max_keys=max_local_keys)
        self.options: dict[str, Any] = (
            {} if self.target is None else client_options(self.target, read, connect)
        )
        self.plans: dict[tuple[Limit, ...], Plan] = {}
        self._clients: dict[type[Any], Any] = {}
        self._lock = threading.Lock()

    def clients_for(self, kind: type[C]) -> C:
        """The client holder of *kind* (``Clients`` or ``AsyncClients``), made once."""
        holder: C | None = self._clients.get(kind)
        if holder is None:
            with self._lock:
                holder = self._clients.get(kind)
                if holder is None:
                    holder = self._clients[kind] = self._make_clients(kind)
        return holder

    def _make_clients(self, kind: type[C]) -> C:
        wants_async = kind.__name__.startswith("Async")
        client = self.user_client
        if client is not None and _is_async_client(client) != wants_async:
            given = "an asyncio" if _is_async_client(client) else "a sync"
            use = "AsyncRedisStore and its a-methods" if not wants_async else "RedisStore"
            msg = f"this store was given {given} redis client; use {use}, or build it from a URL"
            raise TypeError(msg)
        assert self.target is not None or client is not None
        target = self.target or RedisTarget(self.backend)
        return kind(target, self.options, client)  # type: ignore[call-arg]

    def plan(self, limits: Sequence[Limit]) -> Plan:
        key = limits if type(limits) is tuple else tuple(limits)
        plan = self.plans.get(key)
        if plan is None:
            if not key or not all(isinstance(limit, Limit) for limit in key):
                raise ConfigError("limits", limits, "one or more resilient.backends.Limit")
            plan = self.plans.setdefault(key, Plan(key, self.keep))
        return plan


def _describe_client(client: Any) -> str:
    """A redacted description of a user's redis-py client."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if isinstance(kwargs, dict) and "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    nodes = getattr(client, "startup_nodes", None) or getattr(
        getattr(client, "nodes_manager", None), "startup_nodes", None
    )
    if isinstance(nodes, dict) and nodes:
        return "redis+cluster://" + ",".join(sorted(nodes))
    return f"redis ({type(client).__name__})"


class StoreCore:
    """The part of the Redis stores that does no I/O (see the module docstring).

    Args:
        url: ``redis://``, ``rediss://``, ``redis+cluster://`` or
            ``rediss+cluster://`` (see :mod:`resilient.backends.redis`), or
            ``None`` with *client*.
        client: a redis-py client to use instead of a URL (``redis.Redis`` or
            ``RedisCluster`` for :class:`RedisStore`, their ``redis.asyncio``
            twins for :class:`AsyncRedisStore`); its own timeouts and retries apply.
        prefix: the first part of every key (default ``"resilient"``).
        on_backend_error: what a call gets when Redis fails: ``"raise"``
            (:class:`~resilient.BackendError`, the default), ``"allow"``,
            ``"deny"`` or ``"local"`` (decide in this process until Redis is back).
        timeout: seconds to wait for each reply (default 0.25).
        connect_timeout: seconds to wait for a connection (default: *timeout*).
        probe_interval: seconds after a failure during which Redis is not
            called; then one call probes it (default 0.5; 0: every call tries).
        clock: decide on this clock's time instead of the server's ``TIME``
            (for tests; every process sharing the keys must share the clock);
            it also times the probe interval and the in-memory twin.
        max_local_keys: keys the in-memory twin remembers per set of limits.

    Options given in the URL's query (``?prefix=app&timeout=0.1``) apply unless
    the same argument is given here.
    """

    __slots__ = ("__weakref__", "_last", "_shared", "on_backend_error")

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str | None = None,
        on_backend_error: OnBackendError | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        probe_interval: float | None = None,
        clock: Clock | None = None,
        max_local_keys: int = DEFAULT_MAX_LOCAL_KEYS,
    ) -> None:
        shared = Shared(
            url,
            client,
            prefix=prefix,
            on_backend_error=on_backend_error,
            timeout=timeout,
            connect_timeout=connect_timeout,
            probe_interval=probe_interval,
            clock=clock,
            max_local_keys=max_local_keys,
        )
        self._bind(shared, shared.mode)

    def _bind(self, shared: Shared, mode: OnBackendError) -> None:
        self._shared = shared
        self.on_backend_error: OnBackendError = mode
        self._last: Plan | None = None
        self._attach()

    def _attach(self) -> None:
        """Take the client holder of the store's kind (sync or async) from the shared state."""
        raise NotImplementedError  # pragma: no cover

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """``store_from_url``'s factory: ``cls(url, **options)``."""
        return cls(url, **options)

    @classmethod
    def _view(cls, shared: Shared, mode: OnBackendError) -> Self:
        store = cls.__new__(cls)
        store._bind(shared, mode)
        return store

    def with_options(self, *, on_backend_error: OnBackendError) -> Self:
        """The same store (connections, keys, health, in-memory twin) with another
        ``on_backend_error``: give each policy the failure mode it needs."""
        return self._view(self._shared, check_mode(on_backend_error))

    # -- what the stores call

    @property
    def backend(self) -> str:
        """The redacted URL (or client description) shown in errors and events."""
        return self._shared.backend

    @property
    def prefix(self) -> str:
        return self._shared.prefix

    @property
    def health(self) -> BackendHealth:
        """Whether Redis is up, as this store last saw it."""
        return self._shared.health

    def watch_backend(self, emitter: Emitter, policy: str, kind: str, clock: Clock) -> None:
        """Report Redis failures and recoveries as events of the policy *policy*
        (a rate limiter calls this with its own emitter when it binds the store)."""
        self._shared.health.watch(emitter, policy, kind, clock, self.on_backend_error)

    def _plan(self, limits: Sequence[Limit]) -> Plan:
        last = self._last
        if last is not None and last.limits is limits:
            return last
        plan = self._shared.plan(limits)
        self._last = plan
        return plan

    def _keys(self, key: str, plan: Plan) -> list[str]:
        if not isinstance(key, str):
            raise ConfigError("key", key, "a str (the limiter's name and the caller's key)")
        return plan.keys(self._shared.prefix, key)

    def _now(self) -> float:
        clock = self._shared.clock
        return _SERVER_TIME if clock is None else clock.monotonic()

    def _acquire_args(self, plan: Plan, cost: int, max_wait: float) -> list[Any]:
        call = _CALL.pack(self._now(), cost, max_wait if max_wait > 0 else 0.0)
        return [call, plan.codes, plan.packed]

    def _release_args(self, plan: Plan, cost: int, wait_left: float) -> list[Any]:
        return [_CALL.pack(self._now(), cost, wait_left), plan.codes, plan.packed]

    @staticmethod
    def _decode(reply: Any) -> Decision:
        """The :class:`Decision` in an ``acquire.lua`` reply."""
        try:
            admitted, remaining, capacity, wait, reset_after, _ = _REPLY.unpack(reply)
        except (TypeError, struct.error) as exc:
            msg = f"unexpected reply to the rate-limit script: {reply!r:.200}"
            raise _BadReplyError(msg) from exc
        return decision(admitted == 1.0, wait, int(remaining), int(capacity), reset_after)

    def _error(self, exc: BaseException, operation: str) -> BackendError:
        """*exc* as a BackendError (``__cause__`` set); an outage marks Redis down."""
        error = backend_error(exc, self._shared.backend, operation)
        if error is not exc:
            error.__cause__ = exc
        if is_outage(exc):
            self._shared.health.failed(error)
        return error

    def _failed(self, exc: Exception, key: str, plan: Plan, cost: int, max_wait: float) -> Decision:
        """The decision for a call whose script failed with *exc*."""
        error = self._error(exc, "rate_limit")
        return self._fallback(error, key, plan, cost, max_wait)

    def _skipped(self, key: str, plan: Plan, cost: int, max_wait: float) -> Decision:
        """The decision for a call made while Redis is down and not due for a probe."""
        health = self._shared.health
        last = health.last_error
        detail = f"not called for {health.retry_after():.3f}s more after a failure"
        if last is not None:
            detail += f" ({last.detail})"
        error = BackendError(self._shared.backend, "rate_limit", detail)
        error.__cause__ = None if last is None else last.__cause__
        return self._fallback(error, key, plan, cost, max_wait)

    def _fallback(
        self, error: BackendError, key: str, plan: Plan, cost: int, max_wait: float
    ) -> Decision:
        mode = self.on_backend_error
        if mode == "local":
            return self._shared.local.try_acquire(key, plan.limits, cost, max_wait=max_wait)
        if mode == "allow":
            return decision(True, 0.0, plan.capacity - cost, plan.capacity, 0.0)
        if mode == "deny":
            wait = max(self._shared.health.retry_after(), _MIN_RETRY)
            return decision(False, wait, 0, plan.capacity, wait)
        raise error

    def _release_locally(self, key: str, plan: Plan, cost: int, wait_left: float) -> None:
        if self.on_backend_error == "local":
            self._shared.local.release(key, plan.limits, cost, wait_left)

    def __repr__(self) -> str:
        mode = self.on_backend_error
        return f"{type(self).__name__}({self._shared.backend!r}, on_backend_error={mode!r})"


class _BadReplyError(Exception):
    """Redis answered the script with something it cannot have sent."""


class DualCore(StoreCore):
    """:class:`StoreCore` plus ``a``-prefixed methods for async code: the sync store
    serves both, its async side running on an :class:`AsyncRedisStore` twin that
    shares everything but the clients (one asyncio client per event loop)."""

    __slots__ = ("_twin",)

    def _bind(self, shared: Shared, mode: OnBackendError) -> None:
        self._twin: AsyncRedisStore | None = None
        StoreCore._bind(self, shared, mode)

    def _async(self) -> AsyncRedisStore:
        twin = self._twin
        if twin is None:
            from ._async.store import AsyncRedisStore

            twin = self._twin = AsyncRedisStore._view(self._shared, self.on_backend_error)
        return twin

    async def atry_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """Async :meth:`try_acquire`."""
        return await self._async().atry_acquire(key, limits, cost, max_wait=max_wait)

    async def arelease(
        self, key: str, limits: Sequence[Limit], cost: int, wait_left: float
    ) -> None:
        """Async :meth:`release`."""
        await self._async().arelease(key, limits, cost, wait_left)

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        """Async :meth:`reset`."""
        await self._async().areset(key, limits)

    async def aping(self) -> bool:
        """Async :meth:`ping`."""
        return await self._async().aping()

    async def aclose(self) -> None:
        """Close the async client of the running event loop (``close()`` closes the sync one)."""
        if self._twin is not None:
            await self._twin.aclose()
