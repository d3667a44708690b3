"""Rate-limiting algorithms as pure functions of ``(state, now, cost)``: the reference.

Every store runs these rules. The in-memory store calls them directly; the Redis
store's Lua scripts are their twins, and a conformance suite holds the two together.
So the states are plain values that map onto Redis types:

==================  ============================================  =========================
algorithm           state                                         empty
==================  ============================================  =========================
token_bucket        ``tat``: the GCRA "theoretical arrival        ``None`` (a full bucket)
                    time", a float
sliding_log         :class:`SlidingLog`: ``(timestamp, cost)``    ``None`` / an empty log
                    pairs in time order, and their total
sliding_counter     ``(window_start, prev, curr, ahead)``         ``None``
fixed_window        ``(window_start, count, ahead)``              ``None``
==================  ============================================  =========================

Time is in seconds on the store's clock and never goes backwards. Windows are
anchored at the first call that finds no state, not aligned to the clock.

**Two phases.** So that several limits can decide together and a refused call
consumes from none of them, each algorithm has a ``check`` and a ``commit``:

* ``check(limit, state, now, cost) -> (at, state)`` forgets what has expired
  (that is not consumption) and returns the earliest time ``at >= now`` at which
  ``cost`` could be admitted, with the normalised state to keep in either case.
* ``commit(limit, state, at, cost) -> state`` consumes ``cost`` at time ``at``,
  or returns ``None`` when the state cannot record a booking that far ahead.

A call is admitted now when every limit's ``at`` is ``now``. With one limit
there is nothing to coordinate, so ``check(..., take=True)`` also consumes when
the call fits now: the same result as ``commit(state, now, cost)`` for one
function call less on the hot path. **Boundaries are
inclusive**, and ``at`` is computed from the state alone, with the very
expressions the admission test uses, so a caller that comes back at exactly
``at`` is admitted (no floating-point near-miss); :func:`wait_until` turns ``at``
into a ``retry_after`` with the same guarantee.

**Booking.** A caller willing to wait (``max_wait``) books its place: the store
commits at the future ``at`` and the caller sleeps until then. Bookings are
first-in, first-out: a later caller is never admitted or booked before an
earlier booking, whatever its cost. ``release`` gives a booking back when its
caller stops waiting (cancellation).

``sliding_log`` is the one algorithm whose state is updated in place (``check``
prunes it and ``commit`` appends to it): copying a log on every call would cost
O(limit).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from ._errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "AlgorithmName",
    "Decision",
    "Limit",
    "SlidingLog",
    "acquire",
    "decision",
    "fixed_window_check",
    "fixed_window_commit",
    "fixed_window_release",
    "fixed_window_status",
    "release",
    "sliding_counter_check",
    "sliding_counter_commit",
    "sliding_counter_release",
    "sliding_counter_status",
    "sliding_log_check",
    "sliding_log_commit",
    "sliding_log_release",
    "sliding_log_status",
    "status",
    "token_bucket_check",
    "token_bucket_commit",
    "token_bucket_release",
    "token_bucket_status",
    "wait_until",
]

AlgorithmName: TypeAlias = Literal["token_bucket", "sliding_log", "sliding_counter", "fixed_window"]
_NAMES: Final = ("token_bucket", "sliding_log", "sliding_counter", "fixed_window")

# ``remaining`` is reported as a whole number of units; this slack keeps a bucket
# that holds 3 tokens up to rounding from reporting 2.
_SLACK: Final = 1e-9


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """One limit enforced by one algorithm: the unit a store works with.

    Attributes:
        algorithm: ``"token_bucket"``, ``"sliding_log"`` (exact sliding window),
            ``"sliding_counter"`` (approximate sliding window) or ``"fixed_window"``.
        amount: units per ``period`` (the refill for a token bucket, the window
            limit otherwise).
        period: seconds.
        burst: token bucket only: the bucket's size, i.e. the most units that can
            be taken at once. ``None`` means ``amount``.
        initial: token bucket only: tokens in a bucket the store has no state for
            (a new key, or one forgotten once full or evicted). ``None`` means full.
            ``initial=0`` makes a flood of new keys unable to win extra capacity.
    """

    algorithm: AlgorithmName
    amount: int
    period: float
    burst: int | None = None
    initial: int | None = None
    capacity: int = field(init=False, repr=False, compare=False)
    """The most units one call can take: ``burst`` for a token bucket, ``amount`` otherwise."""
    interval: float = field(init=False, repr=False, compare=False)
    """Token bucket: seconds to earn one token (``period / amount``)."""
    tolerance: float = field(init=False, repr=False, compare=False)
    """Token bucket: seconds of credit a full bucket holds (``capacity * interval``)."""
    slack: float = field(init=False, repr=False, compare=False)
    """Token bucket: a call due within this many seconds is admitted now
    (``min(1 µs, interval / 1000)``). A burst adds ``interval`` to ``tat`` once
    per call, and the rounding of those additions must not refuse the last
    token of a full bucket."""

    def __post_init__(self) -> None:
        if self.algorithm not in _NAMES:
            raise ConfigError("algorithm", self.algorithm, f"one of {', '.join(_NAMES)}")
        if not _positive_int(self.amount):
            raise ConfigError("amount", self.amount, "an int >= 1")
        period = self.period
        if isinstance(period, bool) or not isinstance(period, int | float):
            raise ConfigError("period", period, "a finite number of seconds > 0")
        if not (0 < period < math.inf):
            raise ConfigError("period", period, "a finite number of seconds > 0")
        bucket = self.algorithm == "token_bucket"
        if self.burst is not None and (not bucket or not _positive_int(self.burst)):
            expected = "an int >= 1" if bucket else "None (burst applies to a token bucket only)"
            raise ConfigError("burst", self.burst, expected)
        capacity = self.amount if self.burst is None else self.burst
        if self.initial is not None:
            ok = bucket and isinstance(self.initial, int) and not isinstance(self.initial, bool)
            if not ok or not 0 <= self.initial <= capacity:
                expected = (
                    f"an int between 0 and {capacity} (the bucket size)"
                    if bucket
                    else "None (initial applies to a token bucket only)"
                )
                raise ConfigError("initial", self.initial, expected)
        interval = float(period) / self.amount
        object.__setattr__(self, "period", float(period))
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "tolerance", capacity * interval)
        object.__setattr__(self, "slack", min(1e-6, interval / 1000))

    def __str__(self) -> str:
        text = f"{self.algorithm} {self.amount}/{self.period:g}s"
        if self.algorithm == "token_bucket":
            text += f" burst={self.capacity}"
            if self.initial is not None:
                text += f" initial={self.initial}"
        return text


@dataclass(frozen=True, slots=True)
class Decision:
    """What a rate limiter decided about one call, from one atomic step.

    Truthy when the call is allowed, so ``if limiter.try_acquire(): ...`` reads well.

    Attributes:
        allowed: whether the call may proceed.
        retry_after: seconds to wait before the same call would be admitted (``0.0``
            when allowed now). Never an underestimate: waiting exactly this long
            admits the call if nobody else consumed in between. When a store
            *booked* a waiting call (``max_wait``), ``allowed`` is true and this is
            how long to wait before starting.
        remaining: units that could still be taken now, after this call.
        limit: the capacity of the limit that ``remaining`` refers to (with
            several limits, the one with the fewest units left).
        reset_after: seconds until that limit has forgotten every call so far.
    """

    allowed: bool
    retry_after: float
    remaining: int
    limit: int
    reset_after: float

    def __bool__(self) -> bool:
        return self.allowed


class _DecisionBuilder:
    """The same slots as the frozen :class:`Decision`, and nothing else.

    A frozen dataclass sets each field through ``object.__setattr__``, which
    costs more than the rest of an in-memory decision put together. Creating
    this twin with ``object.__new__``, storing the five slots and switching its
    ``__class__`` gives a real, frozen ``Decision`` for a quarter of the price.
    """

    __slots__ = ("allowed", "limit", "remaining", "reset_after", "retry_after")


_new = object.__new__


def decision(
    allowed: bool, retry_after: float, remaining: int, limit: int, reset_after: float
) -> Decision:
    """Build a :class:`Decision` quickly (equal to ``Decision(...)``)."""
    made: Any = _new(_DecisionBuilder)
    made.allowed = allowed
    made.retry_after = retry_after
    made.remaining = remaining
    made.limit = limit
    made.reset_after = reset_after
    made.__class__ = Decision
    return made  # type: ignore[no-any-return]


def wait_until(now: float, at: float) -> float:
    """Seconds from *now* to *at*, rounded up so that ``now + result >= at``.

    ``at - now`` can round down by one unit in the last place, and a caller adding
    it back to *now* would then arrive a hair early and be refused.
    """
    wait = at - now
    while now + wait < at:
        wait = math.nextafter(wait, math.inf)
    return wait


# --------------------------------------------------------------------------- token bucket
# GCRA: the state is the time ``tat`` at which the bucket would be full again.
# Taking ``cost`` tokens pushes ``tat`` by ``cost * interval``; a call fits when
# ``tat`` (after taking) is at most ``tolerance`` (a full bucket) ahead of now.


def token_bucket_check(
    limit: Limit, tat: float | None, now: float, cost: int, take: bool = False
) -> tuple[float, float | None]:
    """Earliest admission time for *cost* tokens, and the bucket state to keep."""
    if tat is not None and tat > now:  # not full: the common case, first
        interval = limit.interval
        at = tat + cost * interval - limit.tolerance
        if at > now + limit.slack:
            return at, tat
        return now, (tat + cost * interval if take else tat)
    if tat is None and limit.initial is not None:
        # Materialise a partly filled new bucket so that its refill starts now.
        tat = now + (limit.capacity - limit.initial) * limit.interval
        return token_bucket_check(limit, tat, now, cost, take)
    # A full bucket (``None`` or a ``tat`` in the past) always holds ``cost``.
    if take:
        return now, now + cost * limit.interval
    return now, (None if limit.initial is None else tat)


def token_bucket_commit(limit: Limit, tat: float | None, at: float, cost: int) -> float:
    """Take *cost* tokens at time *at* (``at`` >= the checked earliest time)."""
    start = at if tat is None or tat < at else tat
    return start + cost * limit.interval


def token_bucket_status(limit: Limit, tat: float | None, now: float) -> tuple[int, float]:
    """``(remaining, reset_after)``: whole tokens available now, seconds until full."""
    if tat is None or tat <= now:
        return limit.capacity, 0.0
    ahead = tat - now
    tokens = limit.capacity - ahead / limit.interval
    return (int(tokens + _SLACK) if tokens > 0 else 0), ahead  # int() floors a positive


def token_bucket_release(
    limit: Limit, tat: float | None, now: float, at: float, cost: int
) -> float | None:
    """Give back *cost* tokens booked for *at*: later bookings keep their times."""
    if tat is None:
        return None
    return tat - cost * limit.interval


# --------------------------------------------------------------------------- sliding log


class SlidingLog:
    """The exact sliding window's state: ``(timestamp, cost)`` entries in time order.

    ``used`` is the total cost of the entries. Entries with a timestamp after
    ``now`` are bookings of waiting callers; they count as used from the moment
    they are booked.
    """

    __slots__ = ("entries", "used")

    def __init__(self, entries: Sequence[tuple[float, int]] = ()) -> None:
        self.entries: deque[tuple[float, int]] = deque(entries)
        self.used: int = sum(cost for _, cost in self.entries)

    def __repr__(self) -> str:
        return f"SlidingLog({list(self.entries)!r})"


def sliding_log_check(
    limit: Limit, log: SlidingLog | None, now: float, cost: int, take: bool = False
) -> tuple[float, SlidingLog | None]:
    """Forget entries that left the window; earliest time *cost* fits in it."""
    if log is None:
        return now, (sliding_log_commit(limit, None, now, cost) if take else None)
    period = limit.period
    entries = log.entries
    while entries and now >= entries[0][0] + period:
        log.used -= entries.popleft()[1]
    if entries:
        need = log.used + cost - limit.amount
        at = now
        if need > 0:
            # The window must lose ``need`` units: wait for the oldest entries to leave.
            freed = 0
            for stamp, units in entries:
                freed += units
                if freed >= need:
                    at = stamp + period
                    break
        last = entries[-1]
        if last[0] > at:  # first in, first out: never before the newest booking
            return last[0], log
        if at > now:
            return at, log
        if take:  # sliding_log_commit(limit, log, now, cost), inlined: the hot path
            if last[0] == now:
                entries[-1] = (now, last[1] + cost)
            else:
                entries.append((now, cost))
            log.used += cost
        return now, log
    return now, (sliding_log_commit(limit, log, now, cost) if take else log)


def sliding_log_commit(limit: Limit, log: SlidingLog | None, at: float, cost: int) -> SlidingLog:
    """Record *cost* units at time *at* (the same instant's entries are merged)."""
    if log is None:
        log = SlidingLog()
    entries = log.entries
    if entries and entries[-1][0] == at:
        entries[-1] = (at, entries[-1][1] + cost)
    else:
        entries.append((at, cost))
    log.used += cost
    return log


def sliding_log_status(limit: Limit, log: SlidingLog | None, now: float) -> tuple[int, float]:
    """``(remaining, reset_after)``: units free in the window, seconds until it is empty."""
    if log is None or not log.entries:
        return limit.amount, 0.0
    left = limit.amount - log.used
    return (left if left > 0 else 0), log.entries[-1][0] + limit.period - now


def sliding_log_release(
    limit: Limit, log: SlidingLog | None, now: float, at: float, cost: int
) -> SlidingLog | None:
    """Give back *cost* units booked for later than *now*.

    The units come off the *earliest* booking that holds them. If that is
    another caller's, our own (later) entry stays, and it covers that caller's
    call for longer, so the window can never be exceeded.
    """
    if log is None:
        return None
    entries = log.entries
    for index in range(len(entries) - 1, -1, -1):
        if entries[index][0] <= now:
            break
    else:
        index = -1
    for position in range(index + 1, len(entries)):
        stamp, units = entries[position]
        if units >= cost:
            if units == cost:
                del entries[position]
            else:
                entries[position] = (stamp, units - cost)
            log.used -= cost
            break
    return log


# --------------------------------------------------------------------------- windows
# Both window algorithms keep counts for consecutive windows of ``period``
# seconds starting at ``window_start``: the current one, and ``ahead`` units
# booked into the next one by waiting callers. Bookings further ahead are refused.


# Window boundaries are always computed as ``start + period`` (and that plus
# ``period`` again), the same expressions in every function, so that checks and
# the times they promise agree to the last bit.


def fixed_window_check(
    limit: Limit, state: tuple[float, int, int] | None, now: float, cost: int, take: bool = False
) -> tuple[float, tuple[float, int, int] | None]:
    """Roll the window forward if it ended; earliest time *cost* fits in a window."""
    if state is None:
        return now, ((now, cost, 0) if take else None)
    period = limit.period
    start, count, ahead = state
    following = start + period
    if now >= following:
        if not ahead or now >= following + period:
            return now, ((now, cost, 0) if take else None)
        start, count, ahead = state = (following, ahead, 0)
        following = start + period
    if not ahead and count + cost <= limit.amount:
        return now, ((start, count + cost, 0) if take else state)
    if ahead + cost <= limit.amount:
        return following, state
    return following + period, state


def fixed_window_commit(
    limit: Limit, state: tuple[float, int, int] | None, at: float, cost: int
) -> tuple[float, int, int] | None:
    """Count *cost* in the window holding *at* (``None``: more than a window ahead)."""
    if state is None:
        return (at, cost, 0)
    start, count, ahead = state
    following = start + limit.period
    if at < following:
        return (start, count + cost, ahead)
    if at < following + limit.period:
        return (start, count, ahead + cost)
    return None


def fixed_window_status(
    limit: Limit, state: tuple[float, int, int] | None, now: float
) -> tuple[int, float]:
    """``(remaining, reset_after)`` for the current window."""
    if state is None:
        return limit.amount, 0.0
    start, count, ahead = state
    following = start + limit.period
    if ahead:
        return 0, following + limit.period - now
    left = limit.amount - count
    return (left if left > 0 else 0), following - now


def fixed_window_release(
    limit: Limit, state: tuple[float, int, int] | None, now: float, at: float, cost: int
) -> tuple[float, int, int] | None:
    """Uncount *cost* units booked for *at*."""
    if state is None:
        return None
    start, count, ahead = state
    if at >= start + limit.period:
        return (start, count, ahead - cost) if ahead >= cost else state
    return (start, count - cost, ahead) if count >= cost else state


# The sliding counter estimates the calls of the last ``period`` seconds as the
# current window's count plus the previous window's count weighted by how much
# of the previous window the sliding window still covers.


def _counter_roll(
    limit: Limit, state: tuple[float, int, int, int], now: float
) -> tuple[float, int, int, int] | None:
    period = limit.period
    start, prev, curr, ahead = state
    while now >= start + period:
        start, prev, curr, ahead = start + period, curr, ahead, 0
        if not (prev or curr):
            return None
    return (start, prev, curr, ahead)


def _counter_fit(limit: Limit, start: float, prev: int, curr: int, cost: int) -> float | None:
    """Earliest time in the window starting at *start* where *cost* fits, if any."""
    room = limit.amount - curr - cost
    if room < 0:
        return None
    if room >= prev:
        return start
    # prev * (start + period - t) / period + curr + cost <= amount
    return start + limit.period - limit.period * room / prev


def sliding_counter_check(
    limit: Limit,
    state: tuple[float, int, int, int] | None,
    now: float,
    cost: int,
    take: bool = False,
) -> tuple[float, tuple[float, int, int, int] | None]:
    """Roll the windows forward; earliest time the weighted count leaves room for *cost*."""
    period = limit.period
    if state is not None and now >= state[0] + period:
        state = _counter_roll(limit, state, now)
    if state is None:
        return now, ((now, 0, cost, 0) if take else None)
    start, prev, curr, ahead = state
    if not ahead:
        room = limit.amount - curr - cost
        if room >= prev:  # fits even at the previous window's full weight: the hot path
            return now, ((start, prev, curr + cost, 0) if take else state)
        if room >= 0:  # _counter_fit(limit, start, prev, curr, cost), inlined
            at = start + limit.period - limit.period * room / prev
            if at > now:
                return at, state
            return now, ((start, prev, curr + cost, 0) if take else state)
    following = start + period
    later = _counter_fit(limit, following, curr, ahead, cost)
    if later is None:  # only after the booked window has itself become the previous one
        later = _counter_fit(limit, following + period, ahead, 0, cost)
        assert later is not None  # cost <= amount
    return (later if later > now else now), state


def sliding_counter_commit(
    limit: Limit, state: tuple[float, int, int, int] | None, at: float, cost: int
) -> tuple[float, int, int, int] | None:
    """Count *cost* in the window holding *at* (``None``: more than a window ahead)."""
    if state is None:
        return (at, 0, cost, 0)
    start, prev, curr, ahead = state
    following = start + limit.period
    if at < following:
        return (start, prev, curr + cost, ahead)
    if at < following + limit.period:
        return (start, prev, curr, ahead + cost)
    return None


def sliding_counter_status(
    limit: Limit, state: tuple[float, int, int, int] | None, now: float
) -> tuple[int, float]:
    """``(remaining, reset_after)``: units that fit now, seconds until every count is forgotten."""
    if state is None:
        return limit.amount, 0.0
    period = limit.period
    start, prev, curr, ahead = state
    following = start + period
    if ahead:
        return 0, following + period + period - now
    weight = (following - now) / period
    left = limit.amount - prev * weight - curr
    remaining = int(left + _SLACK) if left > 0 else 0  # int() floors a positive
    if curr:
        return remaining, following + period - now
    return remaining, (following - now if prev else 0.0)


def sliding_counter_release(
    limit: Limit, state: tuple[float, int, int, int] | None, now: float, at: float, cost: int
) -> tuple[float, int, int, int] | None:
    """Uncount *cost* units booked for *at*."""
    if state is None:
        return None
    start, prev, curr, ahead = state
    if at >= start + limit.period:
        return (start, prev, curr, ahead - cost) if ahead >= cost else state
    return (start, prev, curr - cost, ahead) if curr >= cost else state


# --------------------------------------------------------------------------- dispatch


class Algorithm(NamedTuple):
    """The four functions of one algorithm."""

    check: Callable[[Limit, Any, float, int, bool], tuple[float, Any]]
    commit: Callable[[Limit, Any, float, int], Any]
    status: Callable[[Limit, Any, float], tuple[int, float]]
    release: Callable[[Limit, Any, float, float, int], Any]


ALGORITHMS: Final[dict[str, Algorithm]] = {
    "token_bucket": Algorithm(
        token_bucket_check, token_bucket_commit, token_bucket_status, token_bucket_release
    ),
    "sliding_log": Algorithm(
        sliding_log_check, sliding_log_commit, sliding_log_status, sliding_log_release
    ),
    "sliding_counter": Algorithm(
        sliding_counter_check,
        sliding_counter_commit,
        sliding_counter_status,
        sliding_counter_release,
    ),
    "fixed_window": Algorithm(
        fixed_window_check, fixed_window_commit, fixed_window_status, fixed_window_release
    ),
}


def acquire(
    limits: Sequence[Limit], states: Sequence[Any], now: float, cost: int, max_wait: float = 0.0
) -> tuple[float, list[Any]]:
    """Decide one call against every limit at once.

    Returns ``(wait, states)``: ``wait == 0.0`` admitted now; ``wait > 0`` booked,
    start after ``wait`` seconds (only when ``wait <= max_wait``); ``wait < 0``
    refused, retry after ``-wait`` seconds. ``states`` are the states to keep:
    consumed from every limit when admitted or booked, from none when refused.
    """
    checked = []
    at = now
    for limit, state in zip(limits, states, strict=True):
        when, kept = ALGORITHMS[limit.algorithm].check(limit, state, now, cost, False)
        checked.append(kept)
        if when > at:
            at = when
    if at > now and at - now > max_wait:
        return -wait_until(now, at), checked
    # A sliding log is committed in place, so logs go last: a window limit that cannot
    # book this far ahead refuses the call before any log has recorded it.
    committed: list[Any] = list(checked)
    order = sorted(range(len(limits)), key=lambda i: limits[i].algorithm == "sliding_log")
    for index in order:
        limit = limits[index]
        new = ALGORITHMS[limit.algorithm].commit(limit, checked[index], at, cost)
        if new is None:  # a window limit cannot book that far ahead
            return -wait_until(now, at), checked
        committed[index] = new
    return (wait_until(now, at) if at > now else 0.0), committed


def status(limits: Sequence[Limit], states: Sequence[Any], now: float) -> tuple[int, int, float]:
    """``(remaining, limit, reset_after)`` of the limit with the fewest units left."""
    best: tuple[int, int, float] | None = None
    for limit, state in zip(limits, states, strict=True):
        left, reset = ALGORITHMS[limit.algorithm].status(limit, state, now)
        if best is None or left < best[0]:
            best = (left, limit.capacity, reset)
    assert best is not None
    return best


def release(
    limits: Sequence[Limit], states: Sequence[Any], now: float, at: float, cost: int
) -> list[Any]:
    """Give back a booking made for time *at* by :func:`acquire`."""
    return [
        ALGORITHMS[limit.algorithm].release(limit, state, now, at, cost)
        for limit, state in zip(limits, states, strict=True)
    ]
