"""The in-memory store: rate-limit state in this process, the default.

Thread-safe (one short lock per set of limits, never held across anything but
the arithmetic), driven by an injected :class:`~resilient.Clock`, bounded in
memory (``max_keys`` per set of limits, least recently used first out) and
expired lazily: an entry is forgotten once its state is empty again, checked
on access and a few entries per insertion, with no background thread or timer.

It does no I/O, so its async methods simply run the sync ones and it satisfies
both :class:`~resilient.backends.RateLimitStore` and
:class:`~resilient.backends.AsyncRateLimitStore`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from math import ceil
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from .._algorithms import (
    _SLACK,
    ALGORITHMS,
    Decision,
    Limit,
    _DecisionBuilder,
    acquire,
    decision,
    release,
    status,
    wait_until,
)
from .._clock import SYSTEM_CLOCK, Clock, SystemClock
from .._errors import ConfigError
from .._keyed import BoundedMap, Entry

__all__ = ["MemoryStore"]

_T = TypeVar("_T")

_FOREVER = float("inf")

DEFAULT_MAX_KEYS = 100_000
"""Keys remembered per set of limits by a store built without ``max_keys``."""


def _horizon(limit: Limit) -> float:
    """Seconds after its last admission (or booked start) by which a state is empty."""
    if limit.algorithm == "token_bucket":
        return limit.tolerance
    if limit.algorithm == "sliding_log":
        return limit.period
    if limit.algorithm == "fixed_window":
        return 2 * limit.period
    return 3 * limit.period


class _Table:
    """The state of every key under one set of limits, behind one lock.

    Keys live in a :class:`BoundedMap`. A limiter's fixed key (``key=None`` or a
    constant) is *pinned* instead: its entry is never evicted or expired, and the
    limiter holds it, so its calls skip the lookup: :meth:`admitter` and
    :meth:`decider` bind a pinned entry into a ready-made function.
    """

    __slots__ = (
        "_check",
        "_commit",
        "_data",
        "_horizon",
        "_limit",
        "_lock",
        "_now",
        "_pinned",
        "_release",
        "_single",
        "_status",
        "keys",
        "limits",
        "max_cost",
    )

    def __init__(self, limits: tuple[Limit, ...], clock: Clock, max_keys: int) -> None:
        self.limits = limits
        self.max_cost = min(limit.capacity for limit in limits)
        self.keys: BoundedMap[Any, Any] = BoundedMap(max_keys)
        self._data = self.keys._data
        self._pinned: dict[Any, Entry[Any]] = {}
        self._lock = threading.Lock()
        # The system clock's monotonic() is time.monotonic: bound directly, it saves
        # a Python call per decision.
        self._now: Callable[[], float] = (
            time.monotonic if type(clock) is SystemClock else clock.monotonic
        )
        self._horizon = max(_horizon(limit) for limit in limits)
        # One limit (the common case) runs its algorithm's functions directly.
        self._single = len(limits) == 1
        self._limit = limits[0]
        algorithm = ALGORITHMS[self._limit.algorithm]
        self._check = algorithm.check
        self._commit = algorithm.commit
        self._status = algorithm.status
        self._release = algorithm.release

    def check_cost(self, cost: int) -> None:
        if type(cost) is not int or not 1 <= cost <= self.max_cost:
            raise ConfigError(
                "cost", cost, f"an int between 1 and {self.max_cost} (the limiter's capacity)"
            )

    def pin(self, key: Any) -> Entry[Any]:
        """The never-evicted entry of *key* (created on first use)."""
        with self._lock:
            entry = self._pinned.get(key)
            if entry is None:
                moved = self._data.pop(key, None)
                entry = self._pinned[key] = Entry(None if moved is None else moved.value, _FOREVER)
            return entry

    # Locks are taken with acquire()/release(): a ``with`` block costs twice as much,
    # and these few lines are the whole cost of an in-memory decision.

    def _take(self, entry: Entry[Any], cost: int, max_wait: float, now: float) -> float:
        """Decide for the state in *entry* and update it (lock held).

        ``0.0``: admitted; ``> 0``: booked, wait that long; ``< 0``: refused, retry
        after minus that.
        """
        if not self._single:
            states = entry.value or [None] * len(self.limits)
            wait, entry.value = acquire(self.limits, states, now, cost, max_wait)
            return wait
        at, state = self._check(self._limit, entry.value, now, cost, True)
        if at > now:
            return self._defer(entry, state, now, at, cost, max_wait)
        entry.value = state
        return 0.0

    def _defer(
        self, entry: Entry[Any], state: Any, now: float, at: float, cost: int, max_wait: float
    ) -> float:
        """The call does not fit before *at*: book it, or refuse it (lock held)."""
        wait = at - now
        if now + wait < at:
            wait = wait_until(now, at)
        booked = self._commit(self._limit, state, at, cost) if wait <= max_wait else None
        if booked is None:  # too far ahead to wait for, or for a window to book
            entry.value = state  # nothing consumed; keep the normalised state
            return -wait
        entry.value = booked
        return wait

    def _lookup(self, key: Any, now: float, entry: Any = None) -> tuple[Entry[Any], bool]:
        """The entry for *key* (lock held) and whether it is new (not stored yet).

        *entry*: what the key map already returned for *key*, if the caller looked.
        """
        if entry is None:
            entry = self._data.get(key)
        if entry is not None:
            if now < entry.expires_at:
                self._data.move_to_end(key)
                return entry, False
            del self._data[key]  # expired: its state is empty again
            self.keys.expirations += 1
        pinned = self._pinned.get(key)
        if pinned is not None:
            return pinned, False
        return Entry(None, 0.0), True

    def _store(self, key: Any, entry: Entry[Any], new: bool, wait: float, now: float) -> None:
        if entry.expires_at == _FOREVER:  # pinned
            return
        if wait >= 0:
            entry.expires_at = now + wait + self._horizon
        elif new:
            entry.expires_at = now + self._horizon
        if new and entry.value is not None:
            self.keys.insert(key, entry, now)

    def admit(self, key: Any, cost: int, max_wait: float) -> float:
        """The policies' hot path (see :meth:`_take`): no :class:`Decision` is built."""
        if cost != 1 or type(cost) is not int:
            self.check_cost(cost)
        now = self._now()
        lock = self._lock
        lock.acquire()
        try:
            entry = self._data.get(key)
            if entry is not None and now < entry.expires_at:
                self._data.move_to_end(key)
                wait = self._take(entry, cost, max_wait, now)
                if wait >= 0:
                    entry.expires_at = now + wait + self._horizon
                return wait
            entry, new = self._lookup(key, now, entry)
            wait = self._take(entry, cost, max_wait, now)
            self._store(key, entry, new, wait, now)
            return wait
        finally:
            lock.release()

    def admitter(self, entry: Entry[Any], cost: int) -> Callable[[float], float]:
        """``admit(max_wait) -> wait`` for a pinned *entry* and a fixed, checked *cost*."""
        if self._single:
            return _single_admitter(self, entry, cost)
        return functools.partial(self._admit_pinned, entry, cost)

    def decider(self, entry: Entry[Any]) -> Callable[[int], Decision]:
        """``decide(cost) -> Decision`` (never booking) for a pinned *entry*; the cost is
        checked by the caller."""
        if self._single:
            return _single_decider(self, entry)
        return functools.partial(self._decide_pinned, entry, max_wait=0.0)

    def keyed_decider(
        self, prefix: str = "", on_refused: Callable[[str, float], None] | None = None
    ) -> Callable[[str, int], Decision]:
        """``decide(key, cost) -> Decision`` (never booking), equal to
        ``decide(prefix + key, cost, 0.0)``; the cost is checked by the caller.

        *on_refused*: called with *key* (without the prefix) and the ``retry_after``
        of a refusal, after the lock is released. A key already in the map (the
        common case under load) is decided in one call; anything else (a new or
        expired key, a pinned key, several limits) takes :meth:`decide`.
        """
        return _keyed_decider(self, prefix, on_refused)

    def keyed_reporter(
        self, prefix: str, render: Callable[[int, int], _T]
    ) -> Callable[[str, int], _T | None] | None:
        """``report(key, cost)`` for the commonest admission, without a :class:`Decision`.

        When *key* (after *prefix*) is in the map and one limit admits *cost*, the
        units are taken, as by ``decide(prefix + key, cost, 0.0)``, and the result is
        ``render(remaining, seconds)``, *seconds* being ``reset_after`` rounded up to
        a whole second; the last rendering is returned again while both numbers stay
        the same (a client well within its limit), so it costs no call. In any other
        case (a new or expired key, a refusal, a token bucket with ``initial`` not yet
        materialised, a reset beyond 2**31 s) nothing is taken and the result is
        ``None``: the caller decides through the general path. No reporter at all
        (``None``) for several limits, which have no single status.
        """
        if not self._single:
            return None
        return _keyed_reporter(self, prefix, render)

    def _admit_pinned(self, entry: Entry[Any], cost: int, max_wait: float) -> float:
        now = self._now()
        with self._lock:
            return self._take(entry, cost, max_wait, now)

    def decide(self, key: Any, cost: int, max_wait: float) -> Decision:
        """Like :meth:`admit`, with the full :class:`Decision`."""
        if cost != 1 or type(cost) is not int:
            self.check_cost(cost)
        now = self._now()
        lock = self._lock
        lock.acquire()
        try:
            entry, new = self._lookup(key, now)
            wait = self._take(entry, cost, max_wait, now)
            self._store(key, entry, new, wait, now)
            return self._decision(entry.value, wait, now)
        finally:
            lock.release()

    def _decide_pinned(self, entry: Entry[Any], cost: int, max_wait: float) -> Decision:
        now = self._now()
        with self._lock:
            wait = self._take(entry, cost, max_wait, now)
            return self._decision(entry.value, wait, now)

    def _decision(self, state: Any, wait: float, now: float) -> Decision:
        if self._single:
            remaining, reset_after = self._status(self._limit, state, now)
            capacity = self._limit.capacity
        else:
            remaining, capacity, reset_after = status(self.limits, state, now)
        if wait < 0:
            return decision(False, -wait, remaining, capacity, reset_after)
        return decision(True, wait, remaining, capacity, reset_after)

    def release(self, key: Any, cost: int, wait_left: float) -> None:
        if wait_left <= 0:
            return
        now = self._now()
        with self._lock:
            entry, new = self._lookup(key, now)
            if new:
                return
            if self._single:
                entry.value = self._release(self._limit, entry.value, now, now + wait_left, cost)
            else:
                entry.value = release(self.limits, entry.value, now, now + wait_left, cost)

    def reset(self, key: Any) -> None:
        with self._lock:
            self.keys.pop(key)
            pinned = self._pinned.get(key)
            if pinned is not None:
                pinned.value = None

    def peek(self, key: Any) -> Decision:
        """The state of *key* as a :class:`Decision` for a call of cost 1, consuming nothing."""
        now = self._now()
        with self._lock:
            entry, _ = self._lookup(key, now)
            states = [entry.value] if self._single else (entry.value or [None] * len(self.limits))
            kept = []
            at = now
            for limit, state in zip(self.limits, states, strict=True):
                when, state = ALGORITHMS[limit.algorithm].check(limit, state, now, 1, False)
                kept.append(state)
                at = max(at, when)
            entry.value = kept[0] if self._single else kept
            remaining, capacity, reset_after = status(self.limits, kept, now)
        if at > now:
            return decision(False, wait_until(now, at), remaining, capacity, reset_after)
        return decision(True, 0.0, remaining, capacity, reset_after)


# The functions below are the whole cost of an in-memory decision for a limiter's
# fixed key. In CPython each call and attribute lookup costs about as much as the
# arithmetic, so the steps of ``_Table._take`` are inlined, everything is bound
# once in a closure, and the lock is taken with acquire()/release() (a ``with``
# block costs twice as much).


def _single_admitter(table: _Table, entry: Entry[Any], cost: int) -> Callable[[float], float]:
    limit = table.limits[0]
    check = table._check
    defer = table._defer
    now_fn = table._now
    acquire = table._lock.acquire
    release = table._lock.release

    def admit(max_wait: float) -> float:
        now = now_fn()
        acquire()
        try:
            at, state = check(limit, entry.value, now, cost, True)
            if at > now:
                return defer(entry, state, now, at, cost, max_wait)
            entry.value = state
            return 0.0
        finally:
            release()

    return admit


def _single_decider(table: _Table, entry: Entry[Any]) -> Callable[[int], Decision]:
    limit = table.limits[0]
    capacity = limit.capacity
    check = table._check
    status = table._status
    now_fn = table._now
    acquire = table._lock.acquire
    release = table._lock.release
    new = object.__new__
    builder = _DecisionBuilder
    # Every state but the sliding log is an immutable value, read in one atomic step:
    # while a flood is being refused, a refusal can be decided on that snapshot
    # without the lock (a refusal writes nothing). A hint, set by the last answer.
    immutable = limit.algorithm != "sliding_log"
    refusing = False

    def decide(cost: int) -> Decision:
        nonlocal refusing
        now = now_fn()
        state = entry.value
        at = now
        if refusing and state is not None:
            at, state = check(limit, state, now, cost, False)
        if at > now:  # refused on the snapshot
            remaining, reset_after = status(limit, state, now)
        else:
            acquire()
            try:
                at, state = check(limit, entry.value, now, cost, True)
                entry.value = state  # consumed, or only normalised when refused
                remaining, reset_after = status(limit, state, now)
            finally:
                release()
            refusing = immutable and at > now
        made: Any = new(builder)  # resilient._algorithms.decision(), inlined
        if at <= now:
            made.allowed = True
            made.retry_after = 0.0
        else:
            wait = at - now
            made.allowed = False
            made.retry_after = wait if now + wait >= at else wait_until(now, at)
        made.remaining = remaining
        made.limit = capacity
        made.reset_after = reset_after
        made.__class__ = Decision
        return made  # type: ignore[no-any-return]

    return decide


def _keyed_decider(
    table: _Table, prefix: str, on_refused: Callable[[str, float], None] | None
) -> Callable[[str, int], Decision]:
    slow = table.decide
    if not table._single:

        def decide_any(key: str, cost: int) -> Decision:
            made = slow(prefix + key, cost, 0.0)
            if on_refused is not None and not made.allowed:
                on_refused(key, made.retry_after)
            return made

        return decide_any

    limit = table._limit
    capacity = limit.capacity
    horizon = table._horizon
    check = table._check
    status = table._status
    now_fn = table._now
    acquire = table._lock.acquire
    release = table._lock.release
    data = table._data
    get = data.get
    move_to_end = data.move_to_end
    new = object.__new__
    builder = _DecisionBuilder

    def decide(key: str, cost: int) -> Decision:
        skey = prefix + key
        now = now_fn()
        acquire()
        try:
            entry = get(skey)
            if entry is None or now >= entry.expires_at:
                at = None  # not in the map, or expired: the general path, below
            else:
                move_to_end(skey)
                at, state = check(limit, entry.value, now, cost, True)
                entry.value = state  # consumed, or only normalised when refused
                if at <= now:
                    entry.expires_at = now + horizon
                remaining, reset_after = status(limit, state, now)
        finally:
            release()
        if at is None:
            made: Any = slow(skey, cost, 0.0)
            if on_refused is not None and not made.allowed:
                on_refused(key, made.retry_after)
            return made  # type: ignore[no-any-return]
        made = new(builder)  # resilient._algorithms.decision(), inlined
        made.remaining = remaining
        made.limit = capacity
        made.reset_after = reset_after
        if at <= now:
            made.allowed = True
            made.retry_after = 0.0
            made.__class__ = Decision
            return made  # type: ignore[no-any-return]
        wait = at - now
        made.allowed = False
        made.retry_after = wait if now + wait >= at else wait_until(now, at)
        made.__class__ = Decision
        if on_refused is not None:
            on_refused(key, made.retry_after)
        return made  # type: ignore[no-any-return]

    return decide


def _keyed_reporter(
    table: _Table, prefix: str, render: Callable[[int, int], _T]
) -> Callable[[str, int], _T | None]:
    limit = table._limit
    # A token bucket's GCRA steps are written out (the arithmetic of token_bucket_check
    # and token_bucket_status, which the tests hold this to): no call and no tuple per
    # admission. The other algorithms run their own functions.
    bucket = limit.algorithm == "token_bucket"
    interval = limit.interval
    tolerance = limit.tolerance
    slack = limit.slack
    capacity = limit.capacity
    fresh_is_full = limit.initial is None
    check = table._check
    status = table._status
    horizon = table._horizon
    now_fn = table._now
    acquire = table._lock.acquire
    release = table._lock.release
    get = table._data.get
    move_to_end = table._data.move_to_end
    last: tuple[int, int, Any] = (-1, -1, None)  # (remaining, seconds, rendering)

    def report(key: str, cost: int) -> _T | None:
        nonlocal last
        skey = prefix + key
        now = now_fn()
        acquire()
        try:
            entry = get(skey)
            if entry is None or now >= entry.expires_at:
                return None  # new or expired: the general path stores it
            state = entry.value
            if not bucket:
                at, state = check(limit, state, now, cost, True)
                if at > now:
                    return None  # refused: the general path reports it
                remaining, reset_after = status(limit, state, now)
            else:
                if state is not None and state > now:  # not full
                    if state + cost * interval - tolerance > now + slack:
                        return None  # refused
                    state += cost * interval
                elif state is None and not fresh_is_full:
                    return None  # a partly filled new bucket: the general path
                else:  # full
                    state = now + cost * interval
                reset_after = state - now
                tokens = capacity - reset_after / interval
                remaining = int(tokens + _SLACK) if tokens > 0 else 0
            if remaining < 0 or not 0.0 < reset_after < 2147483648.0:
                return None
            move_to_end(skey)
            entry.value = state
            entry.expires_at = now + horizon
        finally:
            release()
        seconds = ceil(reset_after)
        seen = last
        if seen[0] == remaining and seen[1] == seconds:
            return seen[2]  # type: ignore[no-any-return]
        made = render(remaining, seconds)
        last = (remaining, seconds, made)  # one tuple: a racing reader sees a whole one
        return made

    return report


class MemoryStore:
    """Rate-limit state in this process's memory (the default store).

    Args:
        clock: the time source; ``None`` means the system's monotonic clock.
            Give the store and its limiters the same clock.
        max_keys: keys remembered per set of limits; beyond that the least
            recently used key is forgotten (it starts afresh if it comes back).

    One store can serve many limiters: state is kept per key *and* per set of
    limits, and limiters with different names use different keys.
    """

    __slots__ = ("_lock", "_tables", "clock", "max_keys")

    def __init__(self, *, clock: Clock | None = None, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock", clock, "an object with monotonic(), sleep() and asleep()")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError("max_keys", max_keys, "an int >= 1")
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.max_keys = max_keys
        self._tables: dict[tuple[Limit, ...], _Table] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStore:
        """``memory://`` or ``memory://?max_keys=10000``; *options* override the query."""
        parts = urlsplit(url)
        if parts.scheme.lower() != "memory" or parts.netloc or parts.path not in ("", "/"):
            raise ConfigError("store", url, "'memory://' or 'memory://?max_keys=N'")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(query) - {"max_keys"})
        if unknown:
            raise ConfigError("store", url, "'memory://' with no option but max_keys")
        if "max_keys" in query and "max_keys" not in options:
            text = query["max_keys"][-1]
            if not text.isdigit():
                raise ConfigError("store.max_keys", text, "an int >= 1")
            options["max_keys"] = int(text)
        return cls(**options)

    def table(self, limits: Sequence[Limit]) -> _Table:
        """The state table for one set of limits (limiters keep it to skip this lookup)."""
        key = limits if type(limits) is tuple else tuple(limits)
        table = self._tables.get(key)
        if table is None:
            if not key or not all(isinstance(limit, Limit) for limit in key):
                raise ConfigError("limits", limits, "one or more resilient.backends.Limit")
            with self._lock:
                table = self._tables.setdefault(key, _Table(key, self.clock, self.max_keys))
        return table

    def try_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        """See :meth:`resilient.backends.RateLimitStore.try_acquire`."""
        return self.table(limits).decide(key, cost, max_wait)

    def release(self, key: str, limits: Sequence[Limit], cost: int, wait_left: float) -> None:
        """See :meth:`resilient.backends.RateLimitStore.release`."""
        self.table(limits).release(key, cost, wait_left)

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        """Forget *key*'s state under these limits."""
        self.table(limits).reset(key)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release; the store keeps working."""

    async def atry_acquire(
        self, key: str, limits: Sequence[Limit], cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        return self.try_acquire(key, limits, cost, max_wait=max_wait)

    async def arelease(
        self, key: str, limits: Sequence[Limit], cost: int, wait_left: float
    ) -> None:
        self.release(key, limits, cost, wait_left)

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        self.reset(key, limits)

    async def aping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self.close()

    def __len__(self) -> int:
        """Keys currently remembered, over every set of limits."""
        return sum(len(table.keys) for table in list(self._tables.values()))

    def __repr__(self) -> str:
        return f"MemoryStore(max_keys={self.max_keys}, clock={self.clock!r})"
