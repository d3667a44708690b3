"""Rate limiters: ``TokenBucket``, ``SlidingWindow`` and ``FixedWindow``.

Each is a frozen, validated config plus a thin policy over a store (the
in-memory :class:`~resilient.backends.memory.MemoryStore` unless told
otherwise). The store runs the algorithms of :mod:`resilient._algorithms`
atomically for all of a limiter's limits, so the policy only decides what to
do with the answer:

* ``try_acquire`` / ``atry_acquire`` return a :class:`~resilient.Decision` and
  never wait;
* ``call`` / ``acall`` run the function if the call is admitted, refuse it with
  :class:`~resilient.RateLimitedError` (``retry_after`` set) if not, or, with
  ``max_wait``, book a place and wait for it (first in, first out), giving up
  at once when the wait would outlast ``max_wait`` or the caller's deadline
  (:func:`resilient.remaining`). Window limiters book at most one window ahead;
  a caller that needs a later window, or a store that cannot book, sleeps until
  the reported ``retry_after`` and asks again (within the same budget). A waiter
  that is cancelled gives its booking back.

Which one? A **token bucket** (``rate`` + ``burst``) paces a steady rate and
forgives short bursts; it is the one to pace outgoing calls. A **sliding
window** caps the calls in any window of the period: ``precise=True`` keeps a
log (exact, memory grows with the limit), ``precise=False`` weights two
counters (constant memory, approximate). A **fixed window** is the cheapest
and the least smooth: a caller can get up to twice the limit across a window
boundary.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ._algorithms import AlgorithmName, Decision, Limit
from ._clock import Clock, remaining
from ._duration import Duration, Rate, RateSpec, parse_rates, to_seconds
from ._errors import ConfigError, RateLimitedError, new_error
from ._pipeline import PolicyBase
from ._types import P, T
from .backends import AsyncRateLimitStore, RateLimitStore, store_from_url
from .backends.memory import MemoryStore
from .observability._emit import Listener
from .observability._events import CallRejected

__all__ = [
    "DEFAULT_MAX_KEYS",
    "FixedWindow",
    "FixedWindowConfig",
    "SlidingWindow",
    "SlidingWindowConfig",
    "TokenBucket",
    "TokenBucketConfig",
]

_T = TypeVar("_T")

DEFAULT_MAX_KEYS = 10_000
"""Keys a limiter remembers in its own in-memory store, unless told otherwise."""

KeySpec = Hashable | Callable[..., Hashable] | None
"""A limiter's ``key``: ``None`` (one limit for all calls), a fixed value, or a
callable that receives the call's arguments and returns the key."""

CostSpec = int | Callable[..., int]
"""A limiter's ``cost``: units per call, or a callable of the call's arguments."""


# --------------------------------------------------------------------------- configs


def _check_int(name: str, value: object, minimum: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ConfigError(name, value, expected)


@dataclass(frozen=True, slots=True, kw_only=True)
class _LimiterConfig:
    rates: tuple[Rate, ...]
    """The limits, all enforced at once (``"10/s;500/min"`` gives two)."""
    max_wait: float = 0.0
    """Seconds ``call``/``acall`` may wait for capacity; ``0`` refuses at once."""
    max_keys: int = DEFAULT_MAX_KEYS
    """Keys remembered by the limiter's own in-memory store (least recently used first out)."""

    def __post_init__(self) -> None:
        rates = self.rates
        if (
            not isinstance(rates, tuple)
            or not rates
            or not all(isinstance(rate, Rate) for rate in rates)
        ):
            raise ConfigError("rate", rates, "one or more resilient.Rate (use parse_rates)")
        wait = self.max_wait
        if (
            isinstance(wait, bool)
            or not isinstance(wait, int | float)
            or not 0 <= wait < float("inf")
        ):
            raise ConfigError("max_wait", wait, "a finite number of seconds >= 0")
        _check_int("max_keys", self.max_keys, 1)

    def limits(self) -> tuple[Limit, ...]:
        """The store-level limits this config enforces."""
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenBucketConfig(_LimiterConfig):
    """A token bucket: refills at ``rates`` continuously, holds at most ``burst`` tokens."""

    burst: int | None = None
    """Bucket size: the most units taken at once. ``None``: the rate's amount."""
    initial: int | None = None
    """Tokens in a bucket with no state (new key, or forgotten). ``None``: full."""

    def __post_init__(self) -> None:
        _LimiterConfig.__post_init__(self)
        _check_int("burst", self.burst, 1, optional=True)
        if self.burst is not None and len(self.rates) > 1:
            raise ConfigError(
                "burst", self.burst, "None when rate has several limits (each uses its amount)"
            )
        _check_int("initial", self.initial, 0, optional=True)
        if self.initial is not None:
            capacity = min(self.burst or rate.amount for rate in self.rates)
            if self.initial > capacity:
                raise ConfigError("initial", self.initial, f"an int between 0 and {capacity}")

    def limits(self) -> tuple[Limit, ...]:
        return tuple(
            Limit(
                algorithm="token_bucket",
                amount=rate.amount,
                period=rate.period,
                burst=self.burst,
                initial=self.initial,
            )
            for rate in self.rates
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SlidingWindowConfig(_LimiterConfig):
    """A sliding window: at most each rate's amount in any period-long window."""

    precise: bool = True
    """``True``: exact log of calls; ``False``: two weighted counters (O(1) memory)."""

    def __post_init__(self) -> None:
        _LimiterConfig.__post_init__(self)
        if not isinstance(self.precise, bool):
            raise ConfigError("precise", self.precise, "True (exact log) or False (counter)")

    def limits(self) -> tuple[Limit, ...]:
        algorithm: AlgorithmName = "sliding_log" if self.precise else "sliding_counter"
        return tuple(
            Limit(algorithm=algorithm, amount=rate.amount, period=rate.period)
            for rate in self.rates
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedWindowConfig(_LimiterConfig):
    """A fixed window: at most each rate's amount per window, windows back to back."""

    def limits(self) -> tuple[Limit, ...]:
        return tuple(
            Limit(algorithm="fixed_window", amount=rate.amount, period=rate.period)
            for rate in self.rates
        )


# --------------------------------------------------------------------------- policies


class _RateLimiter(PolicyBase):
    """The policy shared by the three limiters: key and cost handling, drivers, waiting."""

    kind: ClassVar[str] = "rate_limit"
    config: _LimiterConfig
    limits: tuple[Limit, ...]
    store: Any

    __slots__ = (
        "_admit",
        "_async_store",
        "_cost",
        "_cost_fn",
        "_fast_admit",
        "_fast_decide",
        "_key",
        "_key_fn",
        "_keyed",
        "_max_cost",
        "_max_wait",
        "_pin",
        "_prefix",
        "_skey",
        "_sync_store",
        "_table",
        "config",
        "limits",
        "store",
    )

    def _setup(
        self,
        config: _LimiterConfig,
        *,
        key: KeySpec,
        cost: CostSpec,
        store: RateLimitStore | AsyncRateLimitStore | str | None,
        max_keys: int | None,
        name: str | None,
        clock: Clock | None,
        listeners: Sequence[Listener] | None,
    ) -> None:
        self._init_base(name, clock, listeners)
        self.config = config
        self.limits = config.limits()
        self._max_cost = min(limit.capacity for limit in self.limits)
        self._max_wait = float(config.max_wait)
        self._prefix = self.name + ":"
        # key: a callable is applied to each call's arguments; anything else is fixed.
        self._key_fn: Callable[..., Hashable] | None = key if callable(key) else None
        self._key: Hashable = None if callable(key) else key
        if self._key_fn is None and self._key is not None:
            try:
                hash(self._key)
            except TypeError:
                raise ConfigError("key", key, "None, a hashable value or a callable") from None
        self._skey = self._store_key(self._key)
        if callable(cost):
            self._cost_fn: Callable[..., int] | None = cost
            self._cost = 1
        else:
            self._cost_fn = None
            self._cost = self._checked_cost(cost)
        self._bind_store(store, max_keys)

    def _bind_store(
        self, store: RateLimitStore | AsyncRateLimitStore | str | None, max_keys: int | None
    ) -> None:
        if store is not None and max_keys is not None:
            raise ConfigError(
                "max_keys", max_keys, "None when store= is given (it bounds its own keys)"
            )
        if store is None:
            store = MemoryStore(clock=self.clock, max_keys=max_keys or self.config.max_keys)
        elif isinstance(store, str):
            is_memory = store.lower().startswith("memory:")
            store = store_from_url(store, **({"clock": self.clock} if is_memory else {}))
        self._sync_store = store if isinstance(store, RateLimitStore) else None
        self._async_store = store if isinstance(store, AsyncRateLimitStore) else None
        if self._sync_store is None and self._async_store is None:
            raise ConfigError(
                "store", store, "a rate-limit store (try_acquire/atry_acquire) or a URL"
            )
        self.store = store
        watch = getattr(store, "watch_backend", None)
        if watch is not None:  # a shared store reports its outages as this policy's events
            watch(self._emitter, self.name, self.kind, self.clock)
        # The in-memory store is called without the protocol's per-call lookups, and
        # the fixed key's entry is pinned there so its calls skip the key map.
        self._table = store.table(self.limits) if isinstance(store, MemoryStore) else None
        self._pin = None if self._table is None else self._table.pin(self._skey)
        # A fixed key and cost get a ready-made decision function for call()/acall().
        self._fast_admit: Callable[[float], float] | None = None
        self._fast_decide: Callable[[int], Decision] | None = None
        if self._table is not None and self._pin is not None:
            self._fast_decide = self._table.decider(self._pin)
            if self._key_fn is None and self._cost_fn is None:
                self._fast_admit = self._table.admitter(self._pin, self._cost)
        self._admit: Callable[[str, int, float], float] = (
            self._table.admit if self._table is not None else self._store_admit
        )
        # A str key in memory: one call decides (and reports a refusal to listeners).
        self._keyed: Callable[[str, int], Decision] | None = (
            None if self._table is None else self._table.keyed_decider(self._prefix, self._rejected)
        )

    def _reporter(
        self, key_prefix: str, render: Callable[[int, int], _T]
    ) -> Callable[[str, int], _T | None] | None:
        """For an adapter's hot path: ``report(rest, cost)`` decides for the key
        ``key_prefix + rest`` as :meth:`try_acquire` does, but only when that admits
        in one step, returning ``render(remaining, whole seconds until reset)``;
        ``None`` (nothing taken) sends the caller to :meth:`try_acquire`. See
        ``_Table.keyed_reporter``. ``None`` instead of a function: not in memory, or
        several limits."""
        if self._table is None or self._keyed is None:
            return None
        return self._table.keyed_reporter(self._prefix + key_prefix, render)

    # -- keys and costs

    def _store_key(self, key: Hashable) -> str:
        return self.name if key is None else f"{self._prefix}{key}"

    def _checked_cost(self, cost: object) -> int:
        if isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= self._max_cost:
            raise ConfigError(
                "cost", cost, f"an int between 1 and {self._max_cost} (the limiter's capacity)"
            )
        return cost

    def _budget(self) -> float:
        """How long a call may wait: ``max_wait``, cut to the caller's deadline."""
        budget = self._max_wait
        if budget:
            left = remaining()
            if left is not None and left < budget:
                return left
        return budget

    # -- decisions

    def try_acquire(self, key: Hashable = None, cost: int = 1) -> Decision:
        """Take *cost* units for *key* now if they are available; never waits.

        A refusal consumes nothing. Listeners (the policy's or the global ones)
        receive a ``CallRejected`` for it; the built-in logging does not log
        refusals of ``try_acquire`` (only those of ``call``/``acall``), so a
        caller probing a flood of requests pays nothing for events nobody reads.

        Args:
            key: the partition (``None``: the limiter's fixed key, or one shared
                limit when the key is a callable).
            cost: units to take, from 1 to the limiter's capacity.

        Returns:
            The :class:`~resilient.Decision`, truthy when allowed.

        Raises:
            ConfigError: *cost* is out of range (a ``ValueError``).
        """
        if cost != 1 or type(cost) is not int:
            self._checked_cost(cost)
        if type(key) is str and self._keyed is not None:
            return self._keyed(key, cost)  # listeners hear of a refusal from inside
        if key is None and self._fast_decide is not None:
            result = self._fast_decide(cost)
        elif self._table is not None:
            result = self._table.decide(self._store_key(key), cost, 0.0)
        elif self._sync_store is not None:
            skey = self._skey if key is None else self._store_key(key)
            result = self._sync_store.try_acquire(skey, self.limits, cost)
        else:
            msg = f"{self.name!r}: its store has only async methods; use atry_acquire()"
            raise TypeError(msg)
        if not result.allowed and self._emitter.observed:
            self._emit_rejected(self._key if key is None else key, result.retry_after)
        return result

    async def atry_acquire(self, key: Hashable = None, cost: int = 1) -> Decision:
        """Async :meth:`try_acquire` (through the store's async methods when it has them)."""
        if cost != 1:
            self._checked_cost(cost)
        skey = self._skey if key is None else self._store_key(key)
        if key is None and self._fast_decide is not None:
            result = self._fast_decide(cost)
        elif self._table is not None:
            result = self._table.decide(skey, cost, 0.0)
        elif self._async_store is not None:
            result = await self._async_store.atry_acquire(skey, self.limits, cost)
        else:
            assert self._sync_store is not None
            result = self._sync_store.try_acquire(skey, self.limits, cost)
        if not result.allowed and self._emitter.observed:
            self._emit_rejected(self._key if key is None else key, result.retry_after)
        return result

    def reset(self, key: Hashable = None) -> None:
        """Forget what *key* (``None``: the fixed key or the shared limit) has consumed."""
        skey = self._skey if key is None else self._store_key(key)
        if self._sync_store is None:
            msg = f"{self.name!r}: its store has only async methods; use areset()"
            raise TypeError(msg)
        self._sync_store.reset(skey, self.limits)

    async def areset(self, key: Hashable = None) -> None:
        """Async :meth:`reset`."""
        skey = self._skey if key is None else self._store_key(key)
        if self._async_store is not None:
            await self._async_store.areset(skey, self.limits)
        else:
            self.reset(key)

    # -- drivers

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` once the limiter admits it.

        Raises:
            RateLimitedError: no capacity now (or within ``max_wait`` and the
                caller's deadline); ``retry_after`` says when there would be.
        """
        fast = self._fast_admit
        if fast is not None:  # fixed key and cost, in memory: one call decides
            budget = self._budget() if self._max_wait else 0.0
            wait = fast(budget)
            if wait:
                self._wait(self._key, self._skey, self._cost, wait, budget)
            return fn(*args, **kwargs)
        cost = (
            self._cost
            if self._cost_fn is None
            else self._checked_cost(self._cost_fn(*args, **kwargs))
        )
        budget = self._budget() if self._max_wait else 0.0
        if self._key_fn is None:
            key, skey = self._key, self._skey
        else:
            key = self._key_fn(*args, **kwargs)
            skey = self._store_key(key)
        wait = self._admit(skey, cost, budget)
        if wait:
            self._wait(key, skey, cost, wait, budget)
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` once the limiter admits it (see :meth:`call`)."""
        fast = self._fast_admit
        if fast is not None:  # fixed key and cost, in memory: one call decides
            budget = self._budget() if self._max_wait else 0.0
            wait = fast(budget)
            if wait:
                await self._await(self._key, self._skey, self._cost, wait, budget)
            return await fn(*args, **kwargs)
        cost = (
            self._cost
            if self._cost_fn is None
            else self._checked_cost(self._cost_fn(*args, **kwargs))
        )
        budget = self._budget() if self._max_wait else 0.0
        if self._key_fn is None:
            key, skey = self._key, self._skey
        else:
            key = self._key_fn(*args, **kwargs)
            skey = self._store_key(key)
        if self._table is not None:
            wait = self._table.admit(skey, cost, budget)
        else:
            wait = await self._astore_admit(skey, cost, budget)
        if wait:
            await self._await(key, skey, cost, wait, budget)
        return await fn(*args, **kwargs)

    def _wait(self, key: Hashable, skey: str, cost: int, wait: float, budget: float) -> None:
        clock = self.clock
        # A refusal that fits in the budget comes from a store that could not book
        # (or a window booking too far ahead): sleep, then ask again.
        deadline = clock.monotonic() + budget
        while wait < 0:
            left = deadline - clock.monotonic()
            if -wait > left:
                raise self._refused(key, -wait)
            clock.sleep(-wait)
            wait = self._admit(skey, cost, max(deadline - clock.monotonic(), 0.0))
        if wait > 0:
            start_at = clock.monotonic() + wait
            try:
                clock.sleep(wait)
            except BaseException:
                self._release(skey, cost, start_at - clock.monotonic())
                raise

    async def _await(self, key: Hashable, skey: str, cost: int, wait: float, budget: float) -> None:
        clock = self.clock
        deadline = clock.monotonic() + budget
        while wait < 0:
            left = deadline - clock.monotonic()
            if -wait > left:
                raise self._refused(key, -wait)
            await clock.asleep(-wait)
            left = max(deadline - clock.monotonic(), 0.0)
            if self._table is not None:
                wait = self._table.admit(skey, cost, left)
            else:
                wait = await self._astore_admit(skey, cost, left)
        if wait > 0:
            start_at = clock.monotonic() + wait
            try:
                await clock.asleep(wait)
            except BaseException:  # cancelled while waiting: give the place back
                await self._arelease(skey, cost, start_at - clock.monotonic())
                raise

    # -- store adapters (for stores other than the in-memory one)

    @staticmethod
    def _as_wait(result: Decision) -> float:
        if result.allowed:
            return result.retry_after
        # A refusal always carries a positive retry_after; guard stores that say 0.
        return -result.retry_after if result.retry_after > 0 else -1e-3

    def _store_admit(self, skey: str, cost: int, budget: float) -> float:
        if self._sync_store is None:
            msg = f"{self.name!r}: its store has only async methods; use acall()"
            raise TypeError(msg)
        return self._as_wait(self._sync_store.try_acquire(skey, self.limits, cost, max_wait=budget))

    async def _astore_admit(self, skey: str, cost: int, budget: float) -> float:
        if self._async_store is None:
            return self._store_admit(skey, cost, budget)
        result = await self._async_store.atry_acquire(skey, self.limits, cost, max_wait=budget)
        return self._as_wait(result)

    def _release(self, skey: str, cost: int, wait_left: float) -> None:
        if wait_left <= 0:
            return
        if self._table is not None:
            self._table.release(skey, cost, wait_left)
        elif self._sync_store is not None:
            self._sync_store.release(skey, self.limits, cost, wait_left)

    async def _arelease(self, skey: str, cost: int, wait_left: float) -> None:
        if wait_left <= 0:
            return
        if self._async_store is not None and self._table is None:
            await self._async_store.arelease(skey, self.limits, cost, wait_left)
        else:
            self._release(skey, cost, wait_left)

    # -- events

    def _rejected(self, key: Hashable, retry_after: float) -> None:
        """A refusal by ``try_acquire``: tell the listeners, if any."""
        if self._emitter.observed:
            self._emit_rejected(key, retry_after)

    def _emit_rejected(self, key: Hashable, retry_after: float) -> None:
        self._emitter.emit(
            CallRejected(
                policy=self.name,
                kind=self.kind,
                at=self.clock.monotonic(),
                reason="rate_limited",
                key=key,
                retry_after=retry_after,
            )
        )

    def _refused(self, key: Hashable, retry_after: float) -> RateLimitedError:
        if self._emitter.wants(CallRejected):  # skip building what nobody would see
            self._emit_rejected(key, retry_after)
        return new_error(RateLimitedError, self.name, key, "rate_limited", retry_after)

    def _describe(self) -> str:
        rates = ";".join(str(rate) for rate in self.config.rates)
        return f"rate={rates!r}"

    def __repr__(self) -> str:
        extra = f", max_wait={self._max_wait}" if self._max_wait else ""
        return f"{type(self).__name__}({self._describe()}{extra}, name={self.name!r})"


class TokenBucket(_RateLimiter):
    """A token bucket: a steady rate with room for bursts (GCRA, no timers).

    The bucket holds up to ``burst`` tokens and refills continuously at
    ``rate``; a call takes ``cost`` tokens. Over any interval ``t``, at most
    ``burst + rate * t`` units are admitted.

    Args:
        rate: refill rate: ``"100/s"``, ``"10 per minute"``, ``(100, 1.0)``, or several
            (``"10/s;500/min"``: every bucket must have the tokens).
        burst: bucket size, the most units taken at once; ``None`` means the
            rate's amount (``"100/s"`` holds 100). Only with a single rate.
        initial: tokens in a bucket with no state yet; ``None`` means full.
            ``0`` means a new (or evicted) key earns its capacity first.
        key: ``None`` for one bucket, a value for a fixed partition, or a
            callable of the call's arguments returning the key (per user, per host...).
        cost: tokens per call through ``call``/``acall``, or a callable of the
            call's arguments returning them.
        max_wait: seconds (or ``"250ms"``, a ``timedelta``) ``call``/``acall`` may wait
            for tokens; ``0`` refuses at once. Waiters are served first in, first out.
        store: where buckets live: ``None`` for a private in-memory store, a
            store object, or a URL (``"redis://..."``).
        max_keys: keys the private in-memory store remembers (default 10,000).
        name, clock, listeners: as for every policy.

    Example:
        >>> limiter = TokenBucket(rate="10/s", burst=20, key=lambda user, **_: user)
        >>> limiter.try_acquire("alice").allowed
        True
    """

    kind = "token_bucket"
    config: TokenBucketConfig

    def __init__(
        self,
        rate: RateSpec,
        *,
        burst: int | None = None,
        initial: int | None = None,
        key: KeySpec = None,
        cost: CostSpec = 1,
        max_wait: Duration = 0.0,
        store: RateLimitStore | AsyncRateLimitStore | str | None = None,
        max_keys: int | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        config = TokenBucketConfig(
            rates=parse_rates(rate, name="rate"),
            burst=burst,
            initial=initial,
            max_wait=to_seconds(max_wait, name="max_wait"),
            max_keys=DEFAULT_MAX_KEYS if max_keys is None else max_keys,
        )
        self._setup(
            config,
            key=key,
            cost=cost,
            store=store,
            max_keys=max_keys,
            name=name,
            clock=clock,
            listeners=listeners,
        )

    def _describe(self) -> str:
        text = _RateLimiter._describe(self)
        if self.config.burst is not None:
            text += f", burst={self.config.burst}"
        if self.config.initial is not None:
            text += f", initial={self.config.initial}"
        return text


class SlidingWindow(_RateLimiter):
    """A sliding window: at most ``amount`` units in any ``period`` of time.

    Args:
        rate: ``"1000/minute"``, ``(1000, 60)``, or several (``"10/s;500/min"``:
            every window must have room; a refused call counts in none).
        precise: ``True`` keeps a log of the calls in the window (exact; memory
            grows with the amount). ``False`` weights the previous fixed window's
            count by how much of it the sliding window still covers (two counters
            per key; approximate, assuming calls were spread evenly).
        key, cost, max_wait, store, max_keys, name, clock, listeners: as for
            :class:`TokenBucket`.
    """

    kind = "sliding_window"
    config: SlidingWindowConfig

    def __init__(
        self,
        rate: RateSpec,
        *,
        precise: bool = True,
        key: KeySpec = None,
        cost: CostSpec = 1,
        max_wait: Duration = 0.0,
        store: RateLimitStore | AsyncRateLimitStore | str | None = None,
        max_keys: int | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        config = SlidingWindowConfig(
            rates=parse_rates(rate, name="rate"),
            precise=precise,
            max_wait=to_seconds(max_wait, name="max_wait"),
            max_keys=DEFAULT_MAX_KEYS if max_keys is None else max_keys,
        )
        self._setup(
            config,
            key=key,
            cost=cost,
            store=store,
            max_keys=max_keys,
            name=name,
            clock=clock,
            listeners=listeners,
        )

    def _describe(self) -> str:
        text = _RateLimiter._describe(self)
        return text if self.config.precise else text + ", precise=False"


class FixedWindow(_RateLimiter):
    """A fixed window: at most ``amount`` units per window of ``period``, windows
    back to back, the first starting with the first call.

    The cheapest limiter, and the least smooth: a caller can use a window's whole
    amount at its end and the next window's at its start, up to **twice the
    amount within one period** across the boundary. Use :class:`SlidingWindow`
    when that matters.

    Args:
        rate, key, cost, max_wait, store, max_keys, name, clock, listeners: as for
            :class:`SlidingWindow`.
    """

    kind = "fixed_window"
    config: FixedWindowConfig

    def __init__(
        self,
        rate: RateSpec,
        *,
        key: KeySpec = None,
        cost: CostSpec = 1,
        max_wait: Duration = 0.0,
        store: RateLimitStore | AsyncRateLimitStore | str | None = None,
        max_keys: int | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        config = FixedWindowConfig(
            rates=parse_rates(rate, name="rate"),
            max_wait=to_seconds(max_wait, name="max_wait"),
            max_keys=DEFAULT_MAX_KEYS if max_keys is None else max_keys,
        )
        self._setup(
            config,
            key=key,
            cost=cost,
            store=store,
            max_keys=max_keys,
            name=name,
            clock=clock,
            listeners=listeners,
        )
