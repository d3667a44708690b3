"""``LimitsStore``: the window limiters on any storage of the ``limits`` package.

For users who already run one of the servers ``limits`` supports (Memcached,
MongoDB, Redis Sentinel or Cluster, Valkey...): ``SlidingWindow`` runs on
``limits``' moving window (``precise=True``) or sliding-window counter
(``precise=False``), and ``FixedWindow`` on its fixed window.

What differs from resilient's own stores, because ``limits`` decides:

* **No token bucket** (``limits`` has none): a ``TokenBucket`` is refused.
* **Whole-second periods**: ``limits`` counts windows in whole seconds.
* **Wall-clock time**, read by ``limits`` itself; the injected ``Clock`` is not
  used for decisions.
* **No booking**: a call that must wait is refused with ``retry_after``, and
  ``call``/``acall`` with ``max_wait`` sleep and ask again (not first in, first out).
* **Several limits** are tested first and then taken one by one, so a call refused
  by all of them consumes nothing; only when a concurrent caller takes the last
  unit between the test and the take can a refused call have consumed from the
  limits taken before (never more than the limit allows).
* ``retry_after`` comes from the storage's window state plus a millisecond of
  margin; for ``cost > 1`` on a moving window it is the whole period (an upper
  bound: ``limits`` does not expose the log).

Storage errors are raised as :class:`~resilient.BackendError` with the original
as ``__cause__``. The async storage (``async+`` variant of the URI) is built on
first use and, like its client, belongs to the event loop that first used it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._algorithms import Decision, Limit, decision
from .._errors import BackendError, ConfigError

__all__ = ["LimitsStore"]

_MARGIN = 1e-3
"""Seconds added to each ``retry_after``: ``limits`` reads its own clock."""

_REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+cluster", "redis+sentinel")


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


class _Plan:
    """The ``limits`` strategy and item for each of a set of limits."""

    __slots__ = ("limits", "steps")

    def __init__(self, limits: tuple[Limit, ...], steps: list[tuple[Any, Any, Limit]]) -> None:
        self.limits = limits
        self.steps = steps


class LimitsStore:
    """Window rate limits kept in a ``limits`` storage.

    Args:
        uri: a ``limits`` storage URI: ``"memory://"``, ``"memcached://host:11211"``,
            ``"mongodb://host:27017"``, ``"redis+sentinel://host:26379/name"``...
            (``store_from_url`` also accepts it prefixed: ``"limits+memcached://..."``).
        wall: the wall clock used to turn ``limits``' reset times into durations.
        **options: passed to ``limits.storage.storage_from_string``. For the async
            methods on Redis the client defaults to redis-py (``implementation="redispy"``).

    The sync and async storages are built on first use; ``memory://`` serves
    both from one in-process storage.
    """

    __slots__ = ("_async_storage", "_options", "_plans", "_storage", "_wall", "uri")

    def __init__(
        self, uri: str = "memory://", *, wall: Callable[[], float] = time.time, **options: Any
    ) -> None:
        if not isinstance(uri, str) or "://" not in uri or uri.startswith("async+"):
            raise ConfigError("uri", uri, "a limits storage URI such as 'memcached://host:11211'")
        self.uri = uri
        self._wall = wall
        self._options = options
        self._storage: Any = None
        self._async_storage: Any = None
        self._plans: dict[tuple[Limit, ...], tuple[_Plan | None, _Plan | None]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LimitsStore:
        """``limits+<uri>`` (or a plain ``limits`` URI) -> a store."""
        return cls(url.removeprefix("limits+"), **options)

    @property
    def _scheme(self) -> str:
        return self.uri.partition("://")[0].lower()

    def __repr__(self) -> str:
        return f"LimitsStore({_redact(self.uri)!r})"

    # -- storages and plans

    def _sync(self) -> Any:
        if self._storage is None:
            from limits.storage import storage_from_string

            try:
                self._storage = storage_from_string(self.uri, **self._options)
            except Exception as exc:
                raise BackendError(_redact(self.uri), "connect", str(exc)) from exc
        return self._storage

    def _async(self) -> Any:
        if self._scheme == "memory":
            return None  # served by the sync in-memory storage: there is no I/O
        if self._async_storage is None:
            from limits.storage import storage_from_string

            options = dict(self._options)
            if self._scheme in _REDIS_SCHEMES:
                options.setdefault("implementation", "redispy")
            try:
                self._async_storage = storage_from_string("async+" + self.uri, **options)
            except Exception as exc:
                raise BackendError(_redact(self.uri), "connect", str(exc)) from exc
        return self._async_storage

    def _plan(self, limits: Sequence[Limit], asynchronous: bool) -> _Plan:
        key = limits if type(limits) is tuple else tuple(limits)
        plans = self._plans.get(key, (None, None))
        plan = plans[asynchronous]
        if plan is None:
            storage = self._async() if asynchronous else self._sync()
            plan = _build_plan(key, storage, asynchronous)
            self._plans[key] = (plan, plans[1]) if not asynchronous else (plans[0], plan)
        return plan

    # -- sync

    def try_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """Test every limit, then take from each (``max_wait`` is ignored: no booking)."""
        plan = self._plan(limits, asynchronous=False)
        _check_cost(plan, cost)
        try:
            refused = [
                step
                for step in plan.steps
                if not step[0].test(step[1], *_ids(step, key), cost=cost)
            ]
            if not refused:
                for step in plan.steps:
                    if not step[0].hit(step[1], *_ids(step, key), cost=cost):
                        refused.append(step)  # a concurrent caller took the last units
                        break
            stats = [
                (
                    step,
                    step[0].get_window_stats(step[1], *_ids(step, key)),
                    self._counter(step, key),
                )
                for step in (refused or plan.steps)
            ]
        except Exception as exc:
            raise BackendError(_redact(self.uri), "try_acquire", str(exc)) from exc
        return _decide(stats, refused, cost, self._wall())

    def _counter(self, step: tuple[Any, Any, Limit], key: str) -> Any:
        if step[2].algorithm != "sliding_counter":
            return None
        return step[0].storage.get_sliding_window(
            step[1].key_for(*_ids(step, key)), step[1].get_expiry()
        )

    def release(self, key: str, limits: Sequence[Limit], cost: int, wait_left: float) -> None:
        """Nothing to give back: this store never books."""

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        plan = self._plan(limits, asynchronous=False)
        try:
            for step in plan.steps:
                step[0].clear(step[1], *_ids(step, key))
        except Exception as exc:
            raise BackendError(_redact(self.uri), "reset", str(exc)) from exc

    def ping(self) -> bool:
        try:
            return bool(self._sync().check())
        except BackendError:
            return False
        except Exception:
            return False

    def close(self) -> None:
        """Close the sync storage's client (best effort: ``limits`` storages have no
        ``close``) and forget both storages; use :meth:`aclose` for the async one."""
        storage, self._storage, self._async_storage = self._storage, None, None
        self._plans.clear()
        timer = getattr(storage, "timer", None)  # the in-memory storage's expiry timer
        if timer is not None:
            timer.cancel()
        client = _client(storage)
        if client is not None and callable(getattr(client, "close", None)):
            with contextlib.suppress(Exception):
                client.close()

    # -- async

    async def atry_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """Async :meth:`try_acquire`."""
        if self._scheme == "memory":
            return self.try_acquire(key, limits, cost, max_wait=max_wait)
        plan = self._plan(limits, asynchronous=True)
        _check_cost(plan, cost)
        try:
            refused = [
                step
                for step in plan.steps
                if not await step[0].test(step[1], *_ids(step, key), cost=cost)
            ]
            if not refused:
                for step in plan.steps:
                    if not await step[0].hit(step[1], *_ids(step, key), cost=cost):
                        refused.append(step)
                        break
            stats = []
            for step in refused or plan.steps:
                window = await step[0].get_window_stats(step[1], *_ids(step, key))
                counter = None
                if step[2].algorithm == "sliding_counter":
                    counter = await step[0].storage.get_sliding_window(
                        step[1].key_for(*_ids(step, key)), step[1].get_expiry()
                    )
                stats.append((step, window, counter))
        except Exception as exc:
            raise BackendError(_redact(self.uri), "try_acquire", str(exc)) from exc
        return _decide(stats, refused, cost, self._wall())

    async def arelease(
        self, key: str, limits: Sequence[Limit], cost: int, wait_left: float
    ) -> None:
        """Nothing to give back: this store never books."""

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        if self._scheme == "memory":
            self.reset(key, limits)
            return
        plan = self._plan(limits, asynchronous=True)
        try:
            for step in plan.steps:
                await step[0].clear(step[1], *_ids(step, key))
        except Exception as exc:
            raise BackendError(_redact(self.uri), "reset", str(exc)) from exc

    async def aping(self) -> bool:
        if self._scheme == "memory":
            return self.ping()
        try:
            return bool(await self._async().check())
        except Exception:
            return False

    async def aclose(self) -> None:
        """Close both storages' clients (best effort)."""
        client = _client(self._async_storage)
        self.close()
        if client is not None and callable(getattr(client, "aclose", None)):
            with contextlib.suppress(Exception):
                await client.aclose()


def _client(storage: Any) -> Any:
    """The client object inside a ``limits`` storage, if it has one (Redis, Valkey...)."""
    holder = getattr(storage, "bridge", storage)  # limits.aio keeps it in a bridge
    return getattr(holder, "storage", None)


def _ids(step: tuple[Any, Any, Limit], key: str) -> tuple[str, str]:
    # limits names keys by the item alone; the algorithm keeps a fixed and a moving
    # window of the same rate from reading each other's state (WRONGTYPE on Redis).
    return (step[2].algorithm, key)


def _check_cost(plan: _Plan, cost: int) -> None:
    capacity = min(limit.capacity for limit in plan.limits)
    if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= capacity:
        raise ConfigError("cost", cost, f"an int between 1 and {capacity} (the limiter's capacity)")


def _build_plan(limits: tuple[Limit, ...], storage: Any, asynchronous: bool) -> _Plan:
    from limits import RateLimitItemPerSecond

    if asynchronous:
        from limits.aio import strategies
    else:
        from limits import strategies  # type: ignore[no-redef]

    kinds: dict[str, Any] = {
        "fixed_window": strategies.FixedWindowRateLimiter,
        "sliding_log": strategies.MovingWindowRateLimiter,
        "sliding_counter": strategies.SlidingWindowCounterRateLimiter,
    }
    steps = []
    for limit in limits:
        kind = kinds.get(limit.algorithm)
        if kind is None:
            raise ConfigError(
                "store",
                "LimitsStore",
                "a store with a token bucket (limits has none): use memory or redis",
            )
        seconds = limit.period
        if seconds != int(seconds):
            raise ConfigError("rate.period", seconds, "a whole number of seconds with LimitsStore")
        try:
            strategy = kind(storage)
        except NotImplementedError as exc:
            raise ConfigError(
                "store", type(storage).__name__, f"a limits storage supporting {limit.algorithm}"
            ) from exc
        steps.append((strategy, RateLimitItemPerSecond(limit.amount, int(seconds)), limit))
    return _Plan(limits, steps)


def _decide(
    stats: list[tuple[tuple[Any, Any, Limit], Any, Any]], refused: list[Any], cost: int, wall: float
) -> Decision:
    retry_after = 0.0
    best: tuple[int, int, float] | None = None
    for step, window, counter in stats:
        limit = step[2]
        reset_after = max(float(window.reset_time) - wall, 0.0)
        if step in refused:
            retry_after = max(retry_after, _retry_after(limit, reset_after, counter, cost))
        remaining = max(int(window.remaining), 0)
        if best is None or remaining < best[0]:
            best = (remaining, limit.capacity, reset_after)
    assert best is not None
    if refused:
        return decision(False, retry_after, best[0], best[1], best[2])
    return decision(True, 0.0, best[0], best[1], best[2])


def _retry_after(limit: Limit, reset_after: float, counter: Any, cost: int) -> float:
    """When a refused call would fit, from what ``limits`` tells about the window."""
    if limit.algorithm == "fixed_window":
        return reset_after + _MARGIN
    if limit.algorithm == "sliding_log":
        # The oldest entry leaves at reset_after: that frees one unit at least.
        return (reset_after if cost == 1 else limit.period) + _MARGIN
    previous, current = int(counter[0]), int(counter[2])
    previous_ttl, current_ttl = float(counter[1]), float(counter[3])
    period = limit.period
    # limits admits when floor(previous * ttl / period) + current + cost <= amount,
    # the previous window's ttl shrinking as time passes.
    room = limit.amount - current - cost
    if room >= 0:
        wait = previous_ttl - (room + 1) * period / previous if previous else 0.0
        return max(wait, 0.0) + _MARGIN
    window_end = max(current_ttl - period, 0.0)
    room = limit.amount - cost
    wait = period - (room + 1) * period / current if current > room else 0.0
    return window_end + max(wait, 0.0) + _MARGIN
