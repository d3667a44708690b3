"""Circuit breaker: stop calling a failing dependency; probe it before trusting it again.

The model is Resilience4j's:

* **CLOSED**: calls pass; each outcome goes into a sliding window
  (:class:`CountWindow` or :class:`TimeWindow`). Once the window holds
  ``minimum_calls`` outcomes, the breaker opens when the failure rate reaches
  ``failure_rate`` or the rate of calls slower than ``slow_call_duration``
  reaches ``slow_call_rate`` (and, optionally, after ``consecutive_failures``
  failures in a row).
* **OPEN**: calls are rejected with :class:`CircuitOpenError`, whose
  ``retry_after`` says when the breaker will let a probe through (waiting exactly
  that long is enough). It stays open for ``open_for``, multiplied by
  ``open_for_multiplier`` for every re-open in a row, up to ``max_open_for``.
* **HALF_OPEN**: exactly ``half_open_calls`` probes are admitted at a time;
  other callers are rejected. The breaker closes when the probes' failure and
  slow-call rates stay below the thresholds, and re-opens as soon as they cannot.
  A probe that is cancelled (or whose exception is ignored) gives its permit back;
  a probe that has not reported after ``half_open_max_wait`` counts as a failed,
  slow probe, so HALF_OPEN can never wedge.
* **FORCED_OPEN** / **DISABLED**: manual states (``force_open()``, ``disable()``)
  that reject everything / let everything through without recording; ``reset()``
  returns to a fresh CLOSED.

Every state change happens in one place and starts a new *generation*; an outcome
is only counted by the generation that admitted it, so late verdicts (a call that
started before the breaker opened, a probe that outlived its lease) are ignored.

Classification: an exception matching ``ignore`` is not counted; one matching
``record`` (default: any ``Exception``) is a failure; any other exception counts
as a success. ``record_result`` can turn a returned value into a failure.
Cancellation, ``KeyboardInterrupt`` and other ``BaseException`` are never
outcomes: the call's permit is released and the exception propagates.

With ``observe_only=True`` the breaker runs the whole state machine and emits its
events, but lets every call through: a would-be rejection is emitted as
``CallRejected`` (attribute ``observe_only``) and counted in ``stats().rejected``,
and the call then runs without being recorded, exactly as if it had been rejected.

The state lives in memory (``store=None``); the decisions a shared store must
reproduce are the pure methods of :class:`CircuitBreakerConfig`
(``classify``, ``trip_reason``, ``probe_verdict``, ``open_duration``) and the
window rules of :mod:`resilient._windows`. ``store=`` a Redis store or URL makes
the breaker a :class:`resilient.backends.redis.SharedCircuitBreaker`: one breaker
for every replica that uses the same name.
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from ._clock import Clock
from ._duration import Duration, to_seconds
from ._errors import CircuitOpenError, ConfigError, new_error
from ._pipeline import PolicyBase
from ._types import P, T
from ._windows import FAILURE, SLOW, CountTally, CountWindow, Tally, TimeWindow, Window
from .observability._emit import Listener, logging_maybe_enabled
from .observability._events import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
)

if TYPE_CHECKING:
    from .backends.redis._core import StoreCore

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerStats",
    "CircuitState",
    "ExceptionSpec",
]

ExceptionSpec: TypeAlias = (
    "type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]"
)
"""Exception types, or a predicate on the exception."""

IGNORED = -1
"""``CircuitBreakerConfig.classify`` result: the exception is not counted at all."""

_PASS = -1  # ticket of a call let through by observe-only mode: never recorded
_REJECT = -2  # admission refused
_NOT_CLOSED = -3  # value of _BreakerCore.closed outside CLOSED: matches no ticket
_NEVER = -math.inf  # value of _BreakerCore.gate outside OPEN


DEFAULT_WINDOW = CountWindow(100)
"""The default window: the last 100 calls."""


class CircuitState(StrEnum):
    """The states of a :class:`CircuitBreaker` (string values, e.g. ``"half_open"``)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    FORCED_OPEN = "forced_open"
    DISABLED = "disabled"


CLOSED = CircuitState.CLOSED
OPEN = CircuitState.OPEN
HALF_OPEN = CircuitState.HALF_OPEN
FORCED_OPEN = CircuitState.FORCED_OPEN
DISABLED = CircuitState.DISABLED


def _rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(name, value, "a fraction in (0, 1], e.g. 0.5 for 50%")
    return float(value)


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, value, "an int >= 1")
    return value


def _exception_spec(value: object, name: str) -> ExceptionSpec:
    expected = "an exception type, a tuple of them, or a predicate(exception) -> bool"
    if isinstance(value, type):
        if not issubclass(value, BaseException):
            raise ConfigError(name, value, expected)
        return (value,)
    if isinstance(value, tuple):
        for item in value:
            if not (isinstance(item, type) and issubclass(item, BaseException)):
                raise ConfigError(name, value, expected)
        return value
    if callable(value):
        return value
    raise ConfigError(name, value, expected)


def _matches(spec: ExceptionSpec, exc: BaseException) -> bool:
    if isinstance(spec, tuple):
        return isinstance(exc, spec)
    return bool(spec(exc))


def retry_after_attribute(outcome: object) -> float | None:
    """The server hint an outcome carries: its ``retry_after`` attribute, if a number."""
    hint = getattr(outcome, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool):
        return float(hint)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig:
    """The validated settings of a :class:`CircuitBreaker` (see its docs for each field).

    Durations are stored in seconds. The methods are the breaker's pure decision
    rules, shared by every state store.
    """

    failure_rate: float = 0.5
    slow_call_rate: float = 1.0
    slow_call_duration: float = 60.0
    window: Window = DEFAULT_WINDOW
    minimum_calls: int = 20
    half_open_calls: int = 5
    open_for: float = 30.0
    record: ExceptionSpec = Exception
    ignore: ExceptionSpec = ()
    record_result: Callable[[Any], bool] | None = None
    consecutive_failures: int | None = None
    half_open_max_wait: float = 60.0
    open_for_multiplier: float = 1.0
    max_open_for: float | None = None
    open_on_retry_after: bool | Callable[[object], float | None] = False
    max_retry_after: float = 300.0
    observe_only: bool = False

    def __post_init__(self) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("failure_rate", _rate(self.failure_rate, "failure_rate"))
        put("slow_call_rate", _rate(self.slow_call_rate, "slow_call_rate"))
        put(
            "slow_call_duration",
            to_seconds(self.slow_call_duration, name="slow_call_duration", allow_zero=False),
        )
        if not isinstance(self.window, CountWindow | TimeWindow):
            raise ConfigError(
                "window", self.window, "CountWindow(size) or TimeWindow(seconds, buckets=10)"
            )
        _count(self.minimum_calls, "minimum_calls")
        _count(self.half_open_calls, "half_open_calls")
        put("open_for", to_seconds(self.open_for, name="open_for", allow_zero=False))
        put("record", _exception_spec(self.record, "record"))
        put("ignore", _exception_spec(self.ignore, "ignore"))
        if self.record_result is not None and not callable(self.record_result):
            raise ConfigError(
                "record_result", self.record_result, "a predicate(result) -> bool, or None"
            )
        if self.consecutive_failures is not None:
            _count(self.consecutive_failures, "consecutive_failures")
        put(
            "half_open_max_wait",
            to_seconds(self.half_open_max_wait, name="half_open_max_wait", allow_zero=False),
        )
        multiplier = self.open_for_multiplier
        if (
            isinstance(multiplier, bool)
            or not isinstance(multiplier, int | float)
            or not 1 <= multiplier < math.inf
        ):
            raise ConfigError("open_for_multiplier", multiplier, "a finite number >= 1")
        put("open_for_multiplier", float(multiplier))
        if self.max_open_for is not None:
            cap = to_seconds(self.max_open_for, name="max_open_for", allow_zero=False)
            if cap < self.open_for:
                raise ConfigError(
                    "max_open_for", self.max_open_for, f"a duration >= open_for ({self.open_for}s)"
                )
            put("max_open_for", cap)
        hint = self.open_on_retry_after
        if not isinstance(hint, bool) and not callable(hint):
            raise ConfigError(
                "open_on_retry_after", hint, "a bool, or a callable(outcome) -> seconds or None"
            )
        put(
            "max_retry_after",
            to_seconds(self.max_retry_after, name="max_retry_after", allow_zero=False),
        )
        if not isinstance(self.observe_only, bool):
            raise ConfigError("observe_only", self.observe_only, "True or False")

    @property
    def effective_minimum_calls(self) -> int:
        """``minimum_calls``, capped by a :class:`CountWindow`'s size (it cannot hold more)."""
        if isinstance(self.window, CountWindow):
            return min(self.minimum_calls, self.window.size)
        return self.minimum_calls

    def classify(self, exc: BaseException) -> int:
        """``FAILURE`` (1), ``0`` (counts as a success) or ``IGNORED`` (-1) for an exception."""
        if _matches(self.ignore, exc):
            return IGNORED
        return FAILURE if _matches(self.record, exc) else 0

    def trip_reason(self, calls: int, failures: int, slow: int, consecutive: int) -> str | None:
        """Why a CLOSED breaker with these counts must open, or ``None`` if it must not."""
        limit = self.consecutive_failures
        if limit is not None and consecutive >= limit:
            return f"{consecutive} consecutive failures"
        if calls < self.effective_minimum_calls:
            return None
        if failures / calls >= self.failure_rate:
            return f"failure rate {failures}/{calls} reached {self.failure_rate:.0%}"
        if slow / calls >= self.slow_call_rate:
            return f"slow-call rate {slow}/{calls} reached {self.slow_call_rate:.0%}"
        return None

    def probe_verdict(self, verdicts: int, failures: int, slow: int) -> CircuitState | None:
        """HALF_OPEN's decision after *verdicts* probe outcomes: OPEN, CLOSED, or ``None``
        while the remaining probes could still tip it either way."""
        n = self.half_open_calls
        if failures / n >= self.failure_rate or slow / n >= self.slow_call_rate:
            return OPEN
        left = n - verdicts
        if (failures + left) / n < self.failure_rate and (slow + left) / n < self.slow_call_rate:
            return CLOSED
        return None

    def open_duration(self, opens: int) -> float:
        """How long the breaker stays OPEN the *opens*-th time in a row (1-based)."""
        duration = self.open_for
        if self.open_for_multiplier > 1 and opens > 1:
            try:
                duration *= self.open_for_multiplier ** (opens - 1)
            except OverflowError:
                duration = math.inf
        if self.max_open_for is not None:
            duration = min(duration, self.max_open_for)
        return duration

    def hinted_open(self, outcome: object) -> float | None:
        """With ``open_on_retry_after``, how long a failed *outcome* asks the breaker to
        stay open (capped by ``max_retry_after``); ``None`` for no hint."""
        read = self.open_on_retry_after
        if read is False:
            return None
        hint = retry_after_attribute(outcome) if read is True else read(outcome)
        if hint is None or math.isnan(hint) or hint <= 0:
            return None
        return float(min(hint, self.max_retry_after))


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerStats:
    """A snapshot of a breaker, from :meth:`CircuitBreaker.stats`.

    Attributes:
        state: the state at the time of the snapshot.
        calls: outcomes in the sliding window (CLOSED's window; kept while OPEN).
        failed_calls: failures among them.
        slow_calls: calls slower than ``slow_call_duration`` among them.
        failure_rate: ``failed_calls / calls`` (0.0 without calls).
        slow_call_rate: ``slow_calls / calls`` (0.0 without calls).
        consecutive_failures: failures in a row, in CLOSED.
        rejected: calls rejected since the breaker was created (in observe-only
            mode: calls that would have been rejected).
        since: the clock time of the last state change.
        retry_after: in OPEN, seconds until a probe may go through; else ``None``.
        probes_in_flight: admitted HALF_OPEN probes that have not reported yet.
        generation: increases with every state change.
    """

    state: CircuitState
    calls: int
    failed_calls: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    consecutive_failures: int
    rejected: int
    since: float
    retry_after: float | None
    probes_in_flight: int
    generation: int


class _Change(NamedTuple):
    old: CircuitState
    new: CircuitState
    why: str
    at: float


def retry_after_until(until: float, now: float) -> float:
    """Seconds from *now* to *until*, rounded up so that ``now + result >= until``."""
    wait = until - now
    while now + wait < until:  # pragma: no cover - a float safety net, not seen in practice
        wait = math.nextafter(wait, math.inf)
    return wait


def _is_memory_url(store: object) -> bool:
    """Whether *store* is a ``memory://`` URL: the in-memory breaker."""
    return isinstance(store, str) and store.lower().startswith("memory:")


def _monotonic(clock: Clock) -> Callable[[], float]:
    """*clock*'s ``monotonic``; for the system clock, the builtin it wraps (one frame less
    on every call, same readings)."""
    return clock.monotonic  # SystemClock's is time.monotonic itself


_LOCK_FREE: bool = getattr(sys, "_is_gil_enabled", lambda: True)()
"""Whether the GIL makes ``next()`` on an ``itertools.count`` atomic, so that hot-path
counters can be bumped without the lock (free-threaded builds take the lock instead)."""


class _Counter:
    """A counter that any thread may bump without a lock (``add()``: one atomic ``next()``
    on an ``itertools.count`` under the GIL); ``value()`` must be called under a lock."""

    __slots__ = ("_count", "_reads", "add")

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reads = 0  # values taken by value() itself
        self.add: Callable[[], int] = self._count.__next__

    def value(self) -> int:
        total = next(self._count) - self._reads
        self._reads += 1
        return total


class _BreakerCore:
    """The in-memory state machine. Sans-I/O: never sleeps, awaits or logs; reads time
    through the injected ``now``; holds ``lock`` only briefly and returns the state
    changes it made, for the policy to emit once the lock is released.

    Tickets: ``admit`` returns the generation number for a CLOSED (or DISABLED) call
    and a fresh number from the same sequence for each HALF_OPEN probe, so a ticket
    from an earlier generation never matches anything again.

    Lock-free paths, each re-checked by the generation and safe under races:

    * admission while CLOSED/DISABLED reads ``fast`` (the generation, or -1);
    * rejection while OPEN reads ``gate`` (``open_until``, or -inf) and bumps ``rejected``;
    * a fast success while CLOSED with a count window, once the window holds
      ``minimum_calls`` and no failure streak is running (so a success can change no
      verdict), bumps the generation's ``successes`` counter; the lock holder folds
      those into the window, in order, before recording anything else.
    """

    __slots__ = (
        "closed",
        "config",
        "consecutive",
        "fast",
        "folded",
        "gate",
        "generation",
        "lock",
        "max_wait",
        "min_calls",
        "now",
        "open_until",
        "opens",
        "probe_failures",
        "probe_slow",
        "probes",
        "rejected",
        "seq",
        "since",
        "slow_after",
        "state",
        "successes",
        "tally",
        "verdicts",
        "warm",
    )

    def __init__(self, config: CircuitBreakerConfig, now: Callable[[], float]) -> None:
        self.lock = threading.Lock()
        self.config = config
        self.now = now
        self.slow_after = config.slow_call_duration
        self.min_calls = config.effective_minimum_calls
        self.max_wait = config.half_open_max_wait
        self.tally: Tally = config.window.tally()
        self.state = CLOSED
        self.seq = 0  # the source of generations and probe tickets
        self.generation = 0
        self.fast = 0  # the generation while CLOSED or DISABLED, else -1
        self.closed = 0  # the generation while CLOSED (outcomes are recorded), else _NOT_CLOSED
        self.gate = _NEVER  # open_until while OPEN, else -inf
        self.successes: _Counter | None = None  # fast successes not yet in the window
        self.folded = 0
        self.warm = False  # CLOSED's window holds minimum_calls (lock-free successes allowed)
        self.since = now()
        self.open_until = 0.0
        self.opens = 0  # opens in a row since the last close
        self.consecutive = 0
        self.probes: dict[int, float] = {}  # probe ticket -> lease deadline
        self.verdicts = 0
        self.probe_failures = 0
        self.probe_slow = 0
        self.rejected = _Counter()
        self._start_window()

    # -- the one place where the state changes -------------------------------------

    def _move(self, new: CircuitState, why: str, now: float, changes: list[_Change]) -> None:
        old = self.state
        if old is CLOSED:
            self._fold()  # lock-free successes belong to the window this state leaves
        self.seq += 1
        generation = self.generation = self.seq
        self.state = new
        self.since = now
        self.probes = {}
        self.verdicts = self.probe_failures = self.probe_slow = 0
        self.gate = self.open_until if new is OPEN else _NEVER
        self.fast = generation if new is CLOSED or new is DISABLED else -1
        # Readers of the lock-free success path read `successes` before `closed`:
        # publish `closed` first, then the new generation's counter.
        self.closed = generation if new is CLOSED else _NOT_CLOSED
        if new is CLOSED:
            self.tally.clear()
            self.consecutive = 0
            self.opens = 0
            self._start_window()
        else:
            self.successes = None
            self.warm = False
        if old is not new:
            changes.append(_Change(old, new, why, now))

    def _start_window(self) -> None:
        self.warm = False
        self.folded = 0
        lock_free = _LOCK_FREE and isinstance(self.tally, CountTally)
        self.successes = _Counter() if lock_free else None

    def _open(
        self, now: float, why: str, changes: list[_Change], duration: float | None = None
    ) -> None:
        self.opens += 1
        if duration is None:
            duration = self.config.open_duration(self.opens)
        self.open_until = now + duration
        self._move(OPEN, why, now, changes)

    def _fold(self) -> None:
        """Move the lock-free successes into the window (under the lock, while CLOSED)."""
        successes = self.successes
        if successes is not None:
            total = successes.value()
            if total != self.folded:
                tally = self.tally
                assert isinstance(tally, CountTally)
                tally.add_successes(total - self.folded)
                self.folded = total
                self.consecutive = 0

    # -- time-driven transitions, applied lazily -------------------------------------

    def _refresh(self, now: float, changes: list[_Change]) -> None:
        state = self.state
        if state is OPEN and now >= self.open_until:
            self._move(HALF_OPEN, "open_for elapsed", now, changes)
        elif state is HALF_OPEN and self.probes:
            self._expire_probes(now, changes)

    def _expire_probes(self, now: float, changes: list[_Change]) -> None:
        expired = [ticket for ticket, deadline in self.probes.items() if now >= deadline]
        if not expired:
            return
        for ticket in expired:
            del self.probes[ticket]
        self.verdicts += len(expired)
        self.probe_failures += len(expired)
        self.probe_slow += len(expired)
        self._decide(now, changes, f"{len(expired)} probe(s) silent for half_open_max_wait")

    def _decide(self, now: float, changes: list[_Change], why: str = "") -> None:
        verdict = self.config.probe_verdict(self.verdicts, self.probe_failures, self.probe_slow)
        if verdict is OPEN:
            why = why or (
                f"probes failed ({self.probe_failures} failed, {self.probe_slow} slow"
                f" of {self.config.half_open_calls})"
            )
            self._open(now, why, changes)
        elif verdict is CLOSED:
            self._move(CLOSED, f"probes succeeded ({self.verdicts} reported)", now, changes)

    # -- the operations ---------------------------------------------------------------

    def admit(self) -> tuple[int, float | None, str, list[_Change] | None]:
        """``(ticket, retry_after, reason, changes)``; ticket ``_REJECT`` refuses the call."""
        if _LOCK_FREE:
            until = self.gate
            if until > _NEVER:
                now = self.now()
                if now < until:
                    self.rejected.add()
                    wait = until - now
                    if now + wait < until:  # pragma: no cover - see retry_after_until
                        wait = retry_after_until(until, now)
                    return _REJECT, wait, "circuit_open", None
        changes: list[_Change] = []
        with self.lock:
            now = self.now()
            self._refresh(now, changes)
            state = self.state
            if state is CLOSED or state is DISABLED:
                return self.generation, None, "", changes
            if (
                state is HALF_OPEN
                and len(self.probes) + self.verdicts < self.config.half_open_calls
            ):
                self.seq += 1
                ticket = self.seq
                self.probes[ticket] = now + self.max_wait
                return ticket, None, "", changes
            self.rejected.add()
            if state is OPEN:
                return _REJECT, retry_after_until(self.open_until, now), "circuit_open", changes
            if state is FORCED_OPEN:
                return _REJECT, None, "forced_open", changes
            return _REJECT, None, "half_open_full", changes

    def succeeded(self, ticket: int, start: float) -> list[_Change] | None:
        """Count the success of the call holding *ticket*, which started at *start*."""
        now = self.now()
        successes = self.successes  # read before `closed` (see _move)
        if now - start > self.slow_after:
            return self.record(ticket, SLOW, now, None)
        if successes is not None and ticket == self.closed and self.warm and not self.consecutive:
            successes.add()
            return None
        return self.record(ticket, 0, now, None)

    def record(
        self, ticket: int, outcome: int, now: float, hint: float | None
    ) -> list[_Change] | None:
        """Count an outcome (``FAILURE``/``SLOW`` flags) of the call holding *ticket*."""
        lock = self.lock
        lock.acquire()
        try:
            if ticket == self.closed:
                self._fold()
                tally = self.tally
                tally.record(outcome, now)
                if outcome & FAILURE:
                    self.consecutive += 1
                    if hint is not None:
                        changes: list[_Change] = []
                        self._open(now, f"the outcome asked for {hint:g}s", changes, hint)
                        return changes
                else:
                    self.consecutive = 0
                if tally.failures or tally.slow or self.consecutive:
                    calls, failures, slow = tally.totals(now)
                    why = self.config.trip_reason(calls, failures, slow, self.consecutive)
                    if why is not None:
                        changes = []
                        self._open(now, why, changes)
                        return changes
                if not self.warm and self.successes is not None:
                    self.warm = tally.calls >= self.min_calls
                return None
            if ticket in self.probes:
                del self.probes[ticket]
                self.verdicts += 1
                changes = []
                if outcome & FAILURE:
                    self.probe_failures += 1
                    if hint is not None:
                        self._open(now, f"a probe asked for {hint:g}s", changes, hint)
                        return changes
                if outcome & SLOW:
                    self.probe_slow += 1
                self._expire_probes(now, changes)
                if self.state is HALF_OPEN:
                    self._decide(now, changes)
                return changes
            return None  # a late verdict from an earlier generation
        finally:
            lock.release()

    def release(self, ticket: int) -> None:
        """The call holding *ticket* ended without a verdict (cancelled, or ignored)."""
        if ticket < 0 or ticket == self.closed:
            return
        with self.lock:
            self.probes.pop(ticket, None)

    def take_over(self, old: _BreakerCore) -> None:
        """Start from *old*'s state (a reload changed the settings): an open breaker
        stays open until the same time, a manual state stays, half-open probes stay
        with *old* (this one may probe at once), and CLOSED keeps its window's
        counts when the window has the same shape. Nothing is emitted: the state
        did not change. Call before this breaker is used."""
        with old.lock:
            old._fold()
            state, open_until, opens = old.state, old.open_until, old.opens
            since, consecutive = old.since, old.consecutive
            same_window = old.config.window == self.config.window
            tally = copy.deepcopy(old.tally) if same_window else None
        with self.lock:
            now = self.now()
            if state is HALF_OPEN:
                state, open_until = OPEN, now  # open, and due to probe again
            self.opens = opens
            if state is OPEN:
                self.open_until = open_until
            if state is not CLOSED:
                self._move(state, "kept across a reload", now, [])
            elif tally is not None:
                self.tally = tally
                self.consecutive = consecutive
                if self.successes is not None:
                    self.warm = tally.calls >= self.min_calls
            self.since = since

    def transition(self, new: CircuitState, why: str) -> list[_Change]:
        """Move to *new* by hand (``reset``/``force_open``/``disable``)."""
        changes: list[_Change] = []
        with self.lock:
            self._move(new, why, self.now(), changes)
        return changes

    def current(self) -> tuple[CircuitState, list[_Change]]:
        changes: list[_Change] = []
        with self.lock:
            self._refresh(self.now(), changes)
            return self.state, changes

    def snapshot(self) -> tuple[CircuitBreakerStats, list[_Change]]:
        changes: list[_Change] = []
        with self.lock:
            now = self.now()
            self._refresh(now, changes)
            if self.state is CLOSED:
                self._fold()
            calls, failures, slow = self.tally.totals(now)
            stats = CircuitBreakerStats(
                state=self.state,
                calls=calls,
                failed_calls=failures,
                slow_calls=slow,
                failure_rate=failures / calls if calls else 0.0,
                slow_call_rate=slow / calls if calls else 0.0,
                consecutive_failures=self.consecutive,
                rejected=self.rejected.value(),
                since=self.since,
                retry_after=(
                    retry_after_until(self.open_until, now) if self.state is OPEN else None
                ),
                probes_in_flight=len(self.probes),
                generation=self.generation,
            )
        return stats, changes


class CircuitBreaker(PolicyBase):
    """Stop calling a failing dependency; let a few probes test it before closing again.

    Args:
        failure_rate: open when this fraction of the window's calls failed
            (default 0.5; in (0, 1]).
        slow_call_rate: open when this fraction of the window's calls were slow
            (default 1.0: all of them).
        slow_call_duration: a call taking longer than this is slow (default 60 s).
        window: ``CountWindow(size)`` (default ``CountWindow(100)``: the last 100
            calls) or ``TimeWindow(seconds)`` (the calls of the last *seconds*).
        minimum_calls: no verdict before the window holds this many calls
            (default 20; for a ``CountWindow``, at most its size).
        half_open_calls: probes admitted in HALF_OPEN, and needed to decide (default 5).
        open_for: how long the breaker stays OPEN (default 30 s).
        record: exception types (or a predicate) that count as failures
            (default ``Exception``); other exceptions count as successes.
        ignore: exception types (or a predicate) never counted, even if they match
            ``record`` (default none).
        store: where the state lives; ``None`` (the default) keeps it in memory; a
            ``RedisStore``, ``AsyncRedisStore`` or ``redis://`` URL shares it with
            every replica using the same ``name``: the breaker is then a
            :class:`resilient.backends.redis.SharedCircuitBreaker`.
        consecutive_failures: also open after this many failures in a row
            (default ``None``: off).
        record_result: a predicate on the returned value; true counts the call as a
            failure (e.g. an HTTP 5xx response).
        half_open_max_wait: a probe that has not reported after this long counts as
            a failed, slow probe and frees its place (default 60 s), so HALF_OPEN
            never wedges.
        open_for_multiplier: each re-open in a row (HALF_OPEN back to OPEN) stays
            open this many times longer (default 1.0: no growth).
        max_open_for: the cap on the grown open duration (default ``None``: no cap).
        open_on_retry_after: when true, a failure carrying a ``retry_after`` number
            of seconds (an exception or a ``record_result`` result, e.g. HTTP 429 or
            503 with ``Retry-After``) opens the breaker for that long at once; a
            callable ``(outcome) -> seconds | None`` reads the hint itself.
        max_retry_after: the cap on such a hint (default 300 s).
        observe_only: run the state machine and emit events, but never reject.
        name, clock, listeners: as for every policy.

    Durations accept seconds, a ``timedelta`` or a string such as ``"250ms"``.
    """

    kind = "circuit_breaker"

    def __new__(cls, *args: Any, store: Any = None, **kwargs: Any) -> CircuitBreaker:
        if cls is CircuitBreaker and store is not None and not _is_memory_url(store):
            from .backends.redis._breaker import SharedCircuitBreaker

            return super().__new__(SharedCircuitBreaker)
        return super().__new__(cls)

    def __init__(
        self,
        *,
        name: str | None = None,
        failure_rate: float = 0.5,
        slow_call_rate: float = 1.0,
        slow_call_duration: Duration = 60.0,
        window: Window = DEFAULT_WINDOW,
        minimum_calls: int = 20,
        half_open_calls: int = 5,
        open_for: Duration = 30.0,
        record: ExceptionSpec = Exception,
        ignore: ExceptionSpec = (),
        store: StoreCore | str | None = None,
        consecutive_failures: int | None = None,
        record_result: Callable[[Any], bool] | None = None,
        half_open_max_wait: Duration = 60.0,
        open_for_multiplier: float = 1.0,
        max_open_for: Duration | None = None,
        open_on_retry_after: bool | Callable[[object], float | None] = False,
        max_retry_after: Duration = 300.0,
        observe_only: bool = False,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        if store is not None and not _is_memory_url(store):
            raise ConfigError("store", store, "None, a Redis store or a redis:// URL")
        self.config = CircuitBreakerConfig(
            failure_rate=failure_rate,
            slow_call_rate=slow_call_rate,
            slow_call_duration=slow_call_duration,  # type: ignore[arg-type]
            window=window,
            minimum_calls=minimum_calls,
            half_open_calls=half_open_calls,
            open_for=open_for,  # type: ignore[arg-type]
            record=record,
            ignore=ignore,
            record_result=record_result,
            consecutive_failures=consecutive_failures,
            half_open_max_wait=half_open_max_wait,  # type: ignore[arg-type]
            open_for_multiplier=open_for_multiplier,
            max_open_for=max_open_for,  # type: ignore[arg-type]
            open_on_retry_after=open_on_retry_after,
            max_retry_after=max_retry_after,  # type: ignore[arg-type]
            observe_only=observe_only,
        )
        self._init_base(name, clock, listeners)
        self._core = _BreakerCore(self.config, _monotonic(self.clock))
        self._judge_results = self.config.record_result is not None
        self._observe_only = observe_only
        self._maybe_logs_rejections = logging_maybe_enabled(CallRejected)

    # -- state and manual control ----------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state (an OPEN breaker whose ``open_for`` has passed reads HALF_OPEN)."""
        state, changes = self._core.current()
        if changes:
            self._emit_changes(changes)
        return state

    def stats(self) -> CircuitBreakerStats:
        """A frozen snapshot of the state and the window's counts."""
        stats, changes = self._core.snapshot()
        if changes:
            self._emit_changes(changes)
        return stats

    def _take_over(self, old: CircuitBreaker) -> bool:
        """Carry *old*'s state into this (new, unused) breaker when a reload changes the
        settings; ``False`` when it cannot (a shared breaker keeps its state in its store)."""
        if type(self) is not CircuitBreaker or type(old) is not CircuitBreaker:
            return False
        self._core.take_over(old._core)
        return True

    def reset(self) -> None:
        """Return to CLOSED with an empty window (and forget re-opens in a row)."""
        self._emit_changes(self._core.transition(CLOSED, "reset()"))

    def force_open(self) -> None:
        """Reject every call until :meth:`reset` (``CircuitOpenError``, no ``retry_after``)."""
        self._emit_changes(self._core.transition(FORCED_OPEN, "force_open()"))

    def disable(self) -> None:
        """Let every call through without recording anything, until :meth:`reset`."""
        self._emit_changes(self._core.transition(DISABLED, "disable()"))

    # -- driver helpers (shared by call and acall; never hold the lock) --------------------

    def _emit_changes(self, changes: list[_Change]) -> None:
        emit, name, kind = self._emitter.emit, self.name, self.kind
        for change in changes:
            emit(
                CircuitStateChanged(
                    policy=name,
                    kind=kind,
                    at=change.at,
                    old=change.old,
                    new=change.new,
                    why=change.why,
                )
            )

    def _admit(self) -> int:
        core = self._core
        until = core.gate
        if until > _NEVER and _LOCK_FREE and not self._observe_only:
            now = core.now()
            if now < until:
                raise self._refuse(until, now)
        ticket, retry_after, reason, changes = core.admit()
        if changes:
            self._emit_changes(changes)
        if ticket >= 0:
            return ticket
        self._reject(self._core.now(), reason, retry_after, self._observe_only)
        return _PASS

    def _reject(self, at: float, reason: str, retry_after: float | None, observe: bool) -> None:
        """A call the breaker refused: ``CallRejected`` if anyone would see it, then
        ``CircuitOpenError`` raised, unless *observe* (observe-only: the call passes)."""
        if self._emitter.wants(CallRejected):  # an open breaker may refuse a flood
            self._emitter.emit(
                CallRejected(
                    policy=self.name,
                    kind=self.kind,
                    at=at,
                    reason=reason,
                    retry_after=retry_after,
                    attributes={"observe_only": True} if observe else {},
                )
            )
        if not observe:
            raise new_error(CircuitOpenError, self.name, None, reason, retry_after)

    def _refuse(self, until: float, now: float) -> CircuitOpenError:
        """The lock-free rejection while OPEN (:meth:`_BreakerCore.admit`'s first branch,
        for callers that checked ``now < core.gate`` themselves): counts it, emits
        ``CallRejected`` if anyone would see it, and returns the error to raise.
        The decorators inline this (see :meth:`_wrap`)."""
        self._core.rejected.add()
        wait = until - now
        if now + wait < until:  # pragma: no cover - see retry_after_until
            wait = retry_after_until(until, now)
        if self._emitter.observed or self._maybe_logs_rejections():
            self._announce_rejection(now, wait)
        return new_error(CircuitOpenError, self.name, None, "circuit_open", wait)

    def _announce_rejection(self, at: float, wait: float) -> None:
        """Emit ``CallRejected`` for a lock-free rejection, if anyone would see it."""
        if self._emitter.wants(CallRejected):
            self._emitter.emit(
                CallRejected(
                    policy=self.name,
                    kind=self.kind,
                    at=at,
                    reason="circuit_open",
                    retry_after=wait,
                )
            )

    def _succeeded(self, ticket: int, start: float, result: object) -> None:
        """The success path when a result predicate or a per-call listener is involved."""
        core, cfg = self._core, self.config
        now = core.now()
        outcome = SLOW if now - start > core.slow_after else 0
        hint = None
        if cfg.record_result is not None:
            try:
                if cfg.record_result(result):
                    outcome |= FAILURE
                    hint = cfg.hinted_open(result)
            except BaseException:
                core.release(ticket)
                raise
        changes = core.record(ticket, outcome, now, hint)
        if changes:
            self._emit_changes(changes)
        if self._emitter.listening:
            event: CallSucceeded | CallFailed
            if outcome & FAILURE:
                event = CallFailed(policy=self.name, kind=self.kind, at=now, duration=now - start)
            else:
                event = CallSucceeded(
                    policy=self.name, kind=self.kind, at=now, duration=now - start
                )
            self._emitter.emit(event)

    def _failed(self, ticket: int, start: float, exc: Exception) -> None:
        core = self._core
        now = core.now()
        cfg = self.config
        try:
            verdict = cfg.classify(exc)
            hint = cfg.hinted_open(exc) if verdict == FAILURE else None
        except BaseException:
            core.release(ticket)
            raise
        if verdict == IGNORED:
            core.release(ticket)
        else:
            outcome = verdict | (SLOW if now - start > core.slow_after else 0)
            changes = core.record(ticket, outcome, now, hint)
            if changes:
                self._emit_changes(changes)
        if self._emitter.listening:
            self._emitter.emit(
                CallFailed(
                    policy=self.name, kind=self.kind, at=now, duration=now - start, exception=exc
                )
            )

    # -- the drivers --------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` if the breaker admits it, and record the outcome."""
        core = self._core
        ticket = core.fast
        if ticket < 0:
            ticket = self._admit()
        start = core.now()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failed(ticket, start, exc)
            raise
        except BaseException:
            core.release(ticket)
            raise
        if self._judge_results or self._emitter.listening:
            self._succeeded(ticket, start, result)
        else:
            changes = core.succeeded(ticket, start)
            if changes:
                self._emit_changes(changes)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` if the breaker admits it, and record the outcome."""
        core = self._core
        ticket = core.fast
        if ticket < 0:
            ticket = self._admit()
        start = core.now()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._failed(ticket, start, exc)
            raise
        except BaseException:
            core.release(ticket)
            raise
        if self._judge_results or self._emitter.listening:
            self._succeeded(ticket, start, result)
        else:
            changes = core.succeeded(ticket, start)
            if changes:
                self._emit_changes(changes)
        return result

    # -- the decorator: the drivers with `fn` and the helpers bound once ---------------------

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        core, now, admit, failed = self._core, self._core.now, self._admit, self._failed
        # `gate > never` means OPEN; never = +inf turns the inlined refusal off.
        never = _NEVER if _LOCK_FREE and not self._observe_only else math.inf
        count_rejected, name = core.rejected.add, self.name
        maybe_logs, announce = self._maybe_logs_rejections, self._announce_rejection
        judge, emitter, succeeded = self._judge_results, self._emitter, self._succeeded
        emit_changes = self._emit_changes

        def guarded(*args: Any, **kwargs: Any) -> Any:
            ticket = core.fast
            if ticket < 0:
                until = core.gate
                if until > never:  # OPEN: self._refuse(), inlined
                    start = now()
                    if start < until:
                        count_rejected()
                        wait = until - start
                        if start + wait < until:  # pragma: no cover - see retry_after_until
                            wait = retry_after_until(until, start)
                        if emitter.observed or maybe_logs():
                            announce(start, wait)
                        raise new_error(CircuitOpenError, name, None, "circuit_open", wait)
                ticket = admit()
            start = now()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                failed(ticket, start, exc)
                raise
            except BaseException:
                core.release(ticket)
                raise
            if judge or emitter.listening:
                succeeded(ticket, start, result)
            else:
                changes = core.succeeded(ticket, start)
                if changes:
                    emit_changes(changes)
            return result

        return guarded

    def _awrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        core, now, admit, failed = self._core, self._core.now, self._admit, self._failed
        # `gate > never` means OPEN; never = +inf turns the inlined refusal off.
        never = _NEVER if _LOCK_FREE and not self._observe_only else math.inf
        count_rejected, name = core.rejected.add, self.name
        maybe_logs, announce = self._maybe_logs_rejections, self._announce_rejection
        judge, emitter, succeeded = self._judge_results, self._emitter, self._succeeded
        emit_changes = self._emit_changes

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            ticket = core.fast
            if ticket < 0:
                until = core.gate
                if until > never:  # OPEN: self._refuse(), inlined
                    start = now()
                    if start < until:
                        count_rejected()
                        wait = until - start
                        if start + wait < until:  # pragma: no cover - see retry_after_until
                            wait = retry_after_until(until, start)
                        if emitter.observed or maybe_logs():
                            announce(start, wait)
                        raise new_error(CircuitOpenError, name, None, "circuit_open", wait)
                ticket = admit()
            start = now()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                failed(ticket, start, exc)
                raise
            except BaseException:
                core.release(ticket)
                raise
            if judge or emitter.listening:
                succeeded(ticket, start, result)
            else:
                changes = core.succeeded(ticket, start)
                if changes:
                    emit_changes(changes)
            return result

        return guarded

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self._core.state.value!r})"
