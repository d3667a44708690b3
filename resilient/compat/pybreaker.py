"""Run an existing ``pybreaker.CircuitBreaker`` as a resilient policy, or replace it.

Two ways off pybreaker, for code that has one configured (and maybe shared
through its Redis storage):

* :func:`wrap` keeps the pybreaker — its settings, its storage, its listeners —
  and drives it as a resilient policy (``call``, ``acall``, decorator, pipelines)::

      import pybreaker
      from resilient.compat.pybreaker import wrap

      legacy = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
      breaker = wrap(legacy)
      await breaker.acall(fetch, url)

* :func:`migrate` builds the equivalent :class:`resilient.CircuitBreaker` from the
  pybreaker's settings, for when you are ready to drop it.

What :func:`wrap` fixes, compared with calling the pybreaker directly:

* **Async accounting.** pybreaker has no asyncio support: its ``call`` on a
  coroutine function records the *creation* of the coroutine as a success, so
  awaited failures never count. The wrapper records the outcome of the awaited
  call.
* **No lock around your call.** pybreaker holds one lock across the protected
  call, serialising every caller. The wrapper takes the pybreaker's lock only to
  admit a call and to record its outcome, never while it runs.
* **Half-open admits one probe at a time**, and rejects the others at once
  (pybreaker makes them wait for the lock). A probe that never reports (hung) is
  forgotten after ``probe_timeout``, so the breaker cannot wedge.
* **Cancellation is not failure.** Only ``Exception`` is recorded; a
  ``CancelledError`` or ``KeyboardInterrupt`` frees the probe and propagates
  (pybreaker records any ``BaseException`` as a failure).
* **Late verdicts are dropped.** An outcome counts only if the breaker is still
  in the state that admitted the call (a call admitted while CLOSED that fails
  after another call tripped the breaker does not count again).
* **Rejections say when to come back.** An open breaker raises
  :class:`PyBreakerOpenError`, a :class:`resilient.CircuitOpenError` (and also a
  ``pybreaker.CircuitBreakerError``, so existing ``except`` clauses still match)
  whose ``retry_after`` is the time left until pybreaker lets a probe through.
* **The call's own exception propagates.** When a failure trips the breaker,
  pybreaker (with ``throw_new_error_on_trip=True``) replaces it with a
  ``CircuitBreakerError``; the wrapper raises the failure itself, and the
  *next* call is rejected.

The pybreaker's own state machine still decides everything else (``fail_max``,
``reset_timeout``, ``success_threshold``, ``exclude`` — an excluded exception
still counts as a success, as in pybreaker) and its listeners still fire. Its
state changes are also bridged to resilient events (``CircuitStateChanged``,
with ``old``/``new`` as :class:`resilient.CircuitState`), wherever they come from,
and the wrapper emits ``CallRejected``, ``CallSucceeded`` and ``CallFailed`` like
:class:`resilient.CircuitBreaker`. Note that pybreaker reads the wall clock
(``datetime.now``) and, with ``CircuitRedisStorage``, does blocking Redis I/O on
every call, also from ``acall``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

import pybreaker as _pb

from .._circuit_breaker import CircuitBreaker, CircuitState
from .._clock import Clock
from .._duration import to_seconds
from .._errors import CircuitOpenError, ConfigError
from .._pipeline import PolicyBase
from .._types import P, T
from .._windows import CountWindow, TimeWindow
from ..observability._emit import Listener
from ..observability._events import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    Event,
)

__all__ = [
    "PyBreakerOpenError",
    "PyBreakerPolicy",
    "migrate",
    "pybreaker_clock",
    "state_of",
    "wrap",
]

_STATES = {
    _pb.STATE_CLOSED: CircuitState.CLOSED,
    _pb.STATE_OPEN: CircuitState.OPEN,
    _pb.STATE_HALF_OPEN: CircuitState.HALF_OPEN,
}

NEVER_SLOW = 1e9
"""``slow_call_duration`` given by :func:`migrate` (pybreaker has no slow calls): ~31 years."""

UNREACHABLE_CALLS = 2**31 - 1
"""``minimum_calls`` given by :func:`migrate` when only ``consecutive_failures`` may trip."""


def _pybreaker_now() -> datetime:
    """pybreaker's clock, read where pybreaker reads it (so a test that fakes it fakes ours)."""
    module = vars(_pb)
    now: datetime = module["datetime"].now(module["UTC"])
    return now


@contextmanager
def pybreaker_clock(clock: Clock, *, epoch: datetime | None = None) -> Iterator[None]:
    """For tests: make pybreaker (and :func:`wrap`) read the time from *clock*.

    pybreaker measures ``reset_timeout`` with ``datetime.now()``, so a test of code
    that uses it would have to wait for real. Inside this context, pybreaker's
    ``now`` is *epoch* (default 2000-01-01 UTC) plus ``clock.monotonic()``
    seconds, so a :class:`~resilient.testing.FakeClock` drives it::

        clock = FakeClock()
        with pybreaker_clock(clock):
            ...
            clock.advance(30)   # pybreaker's reset_timeout has passed

    It patches pybreaker's module for the whole process: do not run such tests
    in parallel threads.
    """
    origin = epoch if epoch is not None else datetime(2000, 1, 1, tzinfo=UTC)
    module = vars(_pb)
    real = module["datetime"]

    class _ClockedDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
            at = origin + timedelta(seconds=clock.monotonic())
            return at.astimezone(tz) if tz is not None else at.replace(tzinfo=None)

    module["datetime"] = _ClockedDatetime
    try:
        yield
    finally:
        module["datetime"] = real


def state_of(name: str | None) -> CircuitState | None:
    """The :class:`resilient.CircuitState` for a pybreaker state name (``"half-open"``...)."""
    if name is None:
        return None
    return _STATES[name]


class PyBreakerOpenError(CircuitOpenError, _pb.CircuitBreakerError):
    """A wrapped pybreaker rejected the call: it is open, or its half-open probe is taken.

    Both a :class:`resilient.CircuitOpenError` (``policy``, ``reason``,
    ``retry_after``) and a ``pybreaker.CircuitBreakerError``.
    """


class _Bridge(_pb.CircuitBreakerListener):
    """Turns the pybreaker's state changes into resilient events.

    A change made while the wrapper holds the pybreaker's lock (on this thread) is
    buffered and emitted once the lock is released; any other change (a direct
    ``breaker.call``, another process's change noticed through Redis) is emitted
    where pybreaker reports it.
    """

    def __init__(self, policy: PyBreakerPolicy) -> None:
        self.policy = policy
        self.local = threading.local()

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        policy = self.policy
        event = CircuitStateChanged(
            policy=policy.name,
            kind=policy.kind,
            at=policy.clock.monotonic(),
            old=state_of(getattr(old_state, "name", None)),
            new=state_of(new_state.name),
            why="pybreaker",
        )
        buffer: list[Event] | None = getattr(self.local, "buffer", None)
        if buffer is not None:
            buffer.append(event)
        else:
            policy._emitter.emit(event)

    def begin(self) -> None:
        """Buffer this thread's state changes (nested calls share the outer buffer)."""
        local = self.local
        local.depth = getattr(local, "depth", 0) + 1
        if local.depth == 1:
            local.buffer = []

    def end(self) -> list[Event]:
        """The buffered changes, once the outermost :meth:`begin` ends (else none yet)."""
        local = self.local
        local.depth -= 1
        if local.depth:
            return []
        events: list[Event] = local.buffer
        local.buffer = None
        return events


class _Ticket:
    """An admitted call: the pybreaker state object that admitted it, and its probe id."""

    __slots__ = ("probe", "start", "state")

    def __init__(self, state: Any, probe: int, start: float) -> None:
        self.state = state
        self.probe = probe  # 0: not a probe
        self.start = start


class PyBreakerPolicy(PolicyBase):
    """A ``pybreaker.CircuitBreaker`` driven as a resilient policy (see :func:`wrap`).

    Attributes:
        breaker: the wrapped pybreaker.
    """

    kind = "circuit_breaker"

    def __init__(
        self,
        breaker: _pb.CircuitBreaker,
        *,
        probe_timeout: float | str = 60.0,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        if not isinstance(breaker, _pb.CircuitBreaker):
            raise ConfigError("breaker", breaker, "a pybreaker.CircuitBreaker")
        self.breaker = breaker
        self.probe_timeout = to_seconds(probe_timeout, name="probe_timeout", allow_zero=False)
        self._init_base(name or breaker.name or None, clock, listeners)
        self._probe = 0  # id of the half-open probe in flight (0: none)
        self._probe_expires = 0.0
        self._probes = 0  # probe ids handed out
        self._bridge = _Bridge(self)
        breaker.add_listener(self._bridge)

    # -- state ---------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The pybreaker's state as a :class:`resilient.CircuitState` (an open breaker
        whose ``reset_timeout`` has passed reads OPEN until the next call, as in pybreaker)."""
        self._bridge.begin()
        try:
            name = self.breaker.current_state
        finally:
            self._flush()
        return _STATES[name]

    def detach(self) -> None:
        """Stop bridging the pybreaker's state changes (remove the wrapper's listener)."""
        if self._bridge in self.breaker.listeners:
            self.breaker.remove_listener(self._bridge)

    def _flush(self) -> None:
        for event in self._bridge.end():
            self._emitter.emit(event)

    def _open_for(self) -> float | None:
        """Seconds until the open pybreaker admits a probe (``None``: it does now).

        Read with pybreaker's own clock and rule (``now < opened_at + reset_timeout``
        rejects), rounded up to the microsecond, so waiting that long is enough."""
        opened_at = self.breaker._state_storage.opened_at
        if opened_at is None:
            return None
        until = opened_at + timedelta(seconds=self.breaker.reset_timeout)
        now = _pybreaker_now()
        if now >= until:
            return None
        micros = (until - now) // timedelta(microseconds=1)
        wait = micros / 1_000_000
        while wait * 1_000_000 < micros:
            wait = math.nextafter(wait, math.inf)
        return wait

    # -- admission and verdicts (the pybreaker's lock held briefly, never over a call) --

    def _admit(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> _Ticket:
        breaker = self.breaker
        reason = ""
        retry_after: float | None = None
        probe = 0
        self._bridge.begin()
        try:
            with breaker._lock:
                state = breaker.state
                if state.name == _pb.STATE_OPEN:
                    retry_after = self._open_for()
                    if retry_after is not None:
                        reason = "circuit_open"
                    else:
                        breaker.half_open()
                        state = breaker.state
                if not reason and state.name == _pb.STATE_HALF_OPEN:
                    now = self.clock.monotonic()
                    if self._probe and now < self._probe_expires:
                        reason = "half_open_full"
                    else:
                        self._probes += 1
                        probe = self._probe = self._probes
                        self._probe_expires = now + self.probe_timeout
                if not reason:
                    try:
                        for listener in breaker.listeners:
                            if listener is not self._bridge:
                                listener.before_call(breaker, fn, *args, **kwargs)
                    except BaseException:
                        if probe and self._probe == probe:
                            self._probe = 0
                        raise
        finally:
            self._flush()
        if reason:
            self._emitter.emit(
                CallRejected(
                    policy=self.name,
                    kind=self.kind,
                    at=self.clock.monotonic(),
                    reason=reason,
                    retry_after=retry_after,
                )
            )
            raise PyBreakerOpenError(self.name, reason=reason, retry_after=retry_after)
        return _Ticket(state, probe, self.clock.monotonic())

    def _record(self, ticket: _Ticket, exc: Exception | None) -> None:
        breaker = self.breaker
        self._bridge.begin()
        try:
            with breaker._lock:
                if ticket.probe:
                    if ticket.probe != self._probe:
                        return  # a probe that outlived probe_timeout: its verdict is stale
                    self._probe = 0
                state = breaker.state
                if state is not ticket.state:
                    return  # the breaker changed state since admission: a late verdict
                if exc is None:
                    state._handle_success()
                    return
                traceback = exc.__traceback__
                try:
                    state._handle_error(exc, reraise=False)
                except _pb.CircuitBreakerError:
                    pass  # the failure tripped the breaker; the caller gets the failure
                except Exception as raised:
                    if raised is not exc:
                        raise
                finally:
                    exc.__traceback__ = traceback
        finally:
            self._flush()

    def _release(self, ticket: _Ticket) -> None:
        if ticket.probe:
            with self.breaker._lock:
                if self._probe == ticket.probe:
                    self._probe = 0

    def _succeeded(self, ticket: _Ticket) -> None:
        self._record(ticket, None)
        if self._emitter.listening:
            now = self.clock.monotonic()
            self._emitter.emit(
                CallSucceeded(policy=self.name, kind=self.kind, at=now, duration=now - ticket.start)
            )

    def _failed(self, ticket: _Ticket, exc: Exception) -> None:
        self._record(ticket, exc)
        if self._emitter.listening:
            now = self.clock.monotonic()
            self._emitter.emit(
                CallFailed(
                    policy=self.name,
                    kind=self.kind,
                    at=now,
                    duration=now - ticket.start,
                    exception=exc,
                )
            )

    # -- the drivers -----------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` if the pybreaker admits it, and record the outcome.

        Raises:
            PyBreakerOpenError: the breaker is open (``retry_after`` set) or its
                half-open probe is taken.
        """
        ticket = self._admit(fn, args, kwargs)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failed(ticket, exc)
            raise
        except BaseException:
            self._release(ticket)
            raise
        self._succeeded(ticket)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` if the pybreaker admits it, and record the
        outcome of the awaited call (see :meth:`call`)."""
        ticket = self._admit(fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._failed(ticket, exc)
            raise
        except BaseException:
            self._release(ticket)
            raise
        self._succeeded(ticket)
        return result

    def __repr__(self) -> str:
        return f"PyBreakerPolicy(name={self.name!r}, state={self.breaker.current_state!r})"


def wrap(
    breaker: _pb.CircuitBreaker,
    *,
    probe_timeout: float | str = 60.0,
    name: str | None = None,
    clock: Clock | None = None,
    listeners: Sequence[Listener] | None = None,
) -> PyBreakerPolicy:
    """Drive an existing ``pybreaker.CircuitBreaker`` as a resilient policy.

    Args:
        breaker: the pybreaker (memory or Redis storage; its listeners keep firing).
        probe_timeout: a half-open probe that has not reported after this long
            (seconds, or ``"30s"``) no longer blocks the next probe (default 60 s).
        name: the policy name in events; default the pybreaker's ``name``, else
            ``"circuit_breaker"``.
        clock: measures call durations and probe timeouts (pybreaker's own
            ``reset_timeout`` runs on its wall clock).
        listeners: resilient listeners for this policy's events.

    Returns:
        A :class:`PyBreakerPolicy` (``call``, ``acall``, decorator, pipeline member).
    """
    return PyBreakerPolicy(
        breaker, probe_timeout=probe_timeout, name=name, clock=clock, listeners=listeners
    )


def _excluded(exclusions: tuple[Any, ...]) -> Callable[[BaseException], bool]:
    def excluded(exc: BaseException) -> bool:
        for exclusion in exclusions:
            if isinstance(exclusion, type):
                if isinstance(exc, exclusion):
                    return True
            elif exclusion(exc):
                return True
        return False

    return excluded


def migrate(
    breaker: _pb.CircuitBreaker,
    *,
    excluded: Literal["success", "ignore"] = "success",
    **overrides: Any,
) -> CircuitBreaker:
    """A :class:`resilient.CircuitBreaker` that behaves like *breaker*.

    The settings map as follows:

    * ``fail_max`` to ``consecutive_failures`` (the failure-rate window is set so
      that only this rule can trip);
    * ``reset_timeout`` to ``open_for``;
    * ``success_threshold`` *n* to ``half_open_calls=n`` with a probe failure rate of
      ``1/n``: *n* successes close, one failure re-opens;
    * ``exclude`` to ``record`` (an excluded exception is a success) or ``ignore``;
    * ``name`` to ``name``.

    The new breaker starts CLOSED and in memory; slow calls never count. It
    differs from pybreaker where pybreaker is wrong for concurrent code: only
    ``Exception`` counts (never cancellation), half-open admits exactly *n*
    concurrent probes and rejects the rest, the tripping call raises its own
    exception, and rejections carry ``retry_after``.

    Args:
        breaker: the pybreaker to copy the settings of.
        excluded: what an excluded exception is: ``"success"`` (pybreaker's rule:
            it resets the failure streak and can close a half-open breaker) or
            ``"ignore"`` (not counted at all, resilient's ``ignore=``).
        **overrides: any :class:`resilient.CircuitBreaker` argument, applied last
            (``clock=``, ``listeners=``, ``open_for_multiplier=``...).

    Raises:
        ConfigError: the pybreaker keeps its state in Redis (pass ``store=``) or has
            listeners (pass resilient ``listeners=``) that the new breaker would
            silently lose; or a setting resilient rejects (``reset_timeout=0``).
    """
    if not isinstance(breaker, _pb.CircuitBreaker):
        raise ConfigError("breaker", breaker, "a pybreaker.CircuitBreaker")
    if excluded not in ("success", "ignore"):
        raise ConfigError("excluded", excluded, '"success" or "ignore"')
    storage = breaker._state_storage
    if not isinstance(storage, _pb.CircuitMemoryStorage) and "store" not in overrides:
        raise ConfigError(
            "state_storage",
            type(storage).__name__,
            "CircuitMemoryStorage, or store= for the shared state of the new breaker",
        )
    foreign = [
        type(listener).__name__
        for listener in breaker.listeners
        if not isinstance(listener, _Bridge)
    ]
    if foreign and "listeners" not in overrides:
        raise ConfigError(
            "listeners",
            foreign,
            "no pybreaker listeners, or listeners= with resilient listeners replacing them",
        )
    fail_max = breaker.fail_max
    probes = getattr(breaker, "success_threshold", 1)
    settings: dict[str, Any] = {
        "name": breaker.name or None,
        "consecutive_failures": fail_max,
        "open_for": breaker.reset_timeout,
        "half_open_calls": probes,
        "slow_call_duration": NEVER_SLOW,
    }
    if probes == 1:
        # The last fail_max calls all failed <=> fail_max failures in a row.
        settings.update(failure_rate=1.0, window=CountWindow(fail_max), minimum_calls=fail_max)
    else:
        # One failed probe in n must re-open: a failure rate of 1/n, which must then
        # never trip a CLOSED breaker: its window never holds minimum_calls.
        settings.update(
            failure_rate=1.0 / probes,
            window=TimeWindow(60.0, buckets=1),
            minimum_calls=UNREACHABLE_CALLS,
        )
    exclusions = breaker.excluded_exceptions
    if exclusions:
        is_excluded = _excluded(exclusions)
        if excluded == "success":

            def recorded(exc: BaseException) -> bool:
                return not is_excluded(exc)

            settings["record"] = recorded
        else:
            settings["ignore"] = is_excluded
    settings.update(overrides)
    return CircuitBreaker(**settings)
