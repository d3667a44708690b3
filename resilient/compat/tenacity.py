"""Use tenacity's ``stop_*``, ``wait_*`` and ``retry_*`` strategies with :class:`resilient.Retry`.

For code that already describes its retries with tenacity::

    from tenacity import retry_if_exception_type, stop_after_attempt, wait_exponential
    from resilient.compat.tenacity import retry_from_tenacity

    retry = retry_from_tenacity(
        stop=stop_after_attempt(5),
        wait=wait_exponential(multiplier=0.5, max=8),
        retry=retry_if_exception_type(ConnectionError),
    )
    retry.call(fetch, url)          # or: await retry.acall(afetch, url); or @retry

The result is a :class:`resilient.Retry`: it runs sync and async functions,
re-raises the last exception (never a ``RetryError``), emits resilient's events
and honours ``set_testing()``. The strategies themselves are called as tenacity
calls them, with a small stand-in for tenacity's ``RetryCallState``
(``attempt_number``, ``outcome``, ``start_time``, ``outcome_timestamp``,
``seconds_since_start``, ``idle_for``, ``upcoming_sleep``, ``fn``, ``args``,
``kwargs``), so custom strategies keep working. (Given to an adapter, which runs
its own copy of a ``Retry``, the strategies still see the attempt number and the
outcome, but not the call's timings or arguments.)

How each kind of strategy maps:

* ``wait``: called before every retry; its answer is the delay. Any wait works,
  ``wait_exception`` (which reads the outcome) included. A server hint (an
  outcome's ``retry_after``) still wins, as with every ``Retry``.
* ``retry``: called on each failed attempt (and, for result strategies such as
  ``retry_if_result``, on each returned value). Raising ``tenacity.TryAgain``
  retries whatever the strategy says, as in tenacity. Cancellation and other
  ``BaseException`` are never retried (tenacity's ``retry_if_not_exception_type``
  retries ``CancelledError``).
* ``stop``: only limits resilient can enforce up front are accepted:
  ``stop_after_attempt(n)`` becomes ``attempts=n``; ``stop_after_delay(d)`` and
  ``stop_before_delay(d)`` become ``deadline=d``; ``stop_any`` (or ``|``) of those
  takes the tightest of each. A deadline is stricter than ``stop_after_delay``:
  no attempt *starts* after it (tenacity may start one more), and it is
  published to :func:`resilient.remaining` for I/O timeouts to shrink to.
  ``stop_never``, ``stop_all`` (``&``), ``stop_when_event_set`` and custom stop
  callables raise :class:`~resilient.ConfigError`, naming the strategy.

A strategy you leave out keeps resilient's default (3 attempts, exponential
backoff with full jitter, retry on ``OSError``), not tenacity's (retry on every
exception, forever, without waiting). The library's own rejections
(:class:`~resilient.RejectedError`) are not retried unless ``retry_rejected=True``.

tenacity is imported only when one of these functions needs it (install the
``tenacity`` extra).
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from .._errors import ConfigError
from .._retry import Retry, RetryOn, default_retry_after
from .._types import P, T
from ..observability._events import Event, RetryScheduled

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "RetryCallStateShim",
    "StopLimits",
    "TenacityRetry",
    "backoff_from_tenacity",
    "from_retrying",
    "retry_from_tenacity",
    "retry_predicates_from_tenacity",
    "stop_from_tenacity",
]

UNLIMITED_ATTEMPTS = sys.maxsize
"""``attempts`` given to a :class:`Retry` whose only stop is a delay."""

_TENACITY_ONLY = {
    "before": "use a listener (resilient.observability): events replace hooks",
    "after": "use a listener for RetryScheduled / CallFailed events",
    "before_sleep": "use a listener for RetryScheduled events (attempt, delay, cause)",
    "retry_error_callback": "wrap the retry in resilient.Fallback(handler=...)",
    "retry_error_cls": "resilient re-raises the last exception itself, never a RetryError",
    "sleep": "pass clock= (resilient.testing.FakeClock in tests)",
    "name": None,  # accepted: Retry takes name= too
}


def _tenacity() -> ModuleType:
    try:
        import tenacity
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test suite
        msg = (
            "resilient.compat.tenacity needs tenacity: pip install 'resilient-middleware[tenacity]'"
        )
        raise ImportError(msg) from exc
    return tenacity


def _describe(strategy: object) -> str:
    kind = type(strategy)
    if kind.__name__ in ("_stop_never", "_retry_never", "_retry_always"):
        return kind.__name__[1:]
    if kind.__module__.startswith("tenacity"):
        return kind.__name__
    return getattr(strategy, "__qualname__", None) or repr(strategy)


# --------------------------------------------------------------------------- call state


class _Call:
    """What one call through a :class:`TenacityRetry` has done so far."""

    __slots__ = (
        "args",
        "attempt",
        "clock_now",
        "fn",
        "idle_for",
        "kwargs",
        "outcome",
        "owner",
        "start",
    )

    def __init__(
        self,
        owner: object,
        start: float,
        clock_now: Callable[[], float],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.owner = owner
        self.clock_now = clock_now
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.attempt = 1  # the attempt whose outcome is judged next
        self.idle_for = 0.0
        self.outcome: tuple[int, object, bool, float] | None = None  # attempt, value, failed, at
        self.start = start


_CURRENT: ContextVar[_Call | None] = ContextVar("resilient_tenacity_call", default=None)

_LAST: ContextVar[tuple[object, object] | None] = ContextVar(
    "resilient_tenacity_outcome", default=None
)
"""(owner, outcome) of the last outcome about to be waited on, for a retry driven outside
``TenacityRetry.call`` (the adapters copy a ``Retry``'s settings into their own): the
outcome is recorded just before the wait is asked, in the same thread or task."""


class RetryCallStateShim:
    """The parts of tenacity's ``RetryCallState`` that strategies read.

    Attributes:
        attempt_number: the attempt (1-based) whose outcome is being judged, or after
            which the wait is computed.
        outcome: a finished ``tenacity.Future`` holding that attempt's result or
            exception (``None`` when unknown).
        start_time: the policy clock's time when the call started.
        outcome_timestamp: the policy clock's time when the outcome was seen.
        idle_for: seconds slept between attempts so far in this call.
        upcoming_sleep: always ``0.0`` (resilient decides the stop before the wait).
        fn, args, kwargs: the call being retried (``None``/empty when unknown).
    """

    __slots__ = (
        "args",
        "attempt_number",
        "fn",
        "idle_for",
        "kwargs",
        "next_action",
        "outcome",
        "outcome_timestamp",
        "retry_object",
        "start_time",
        "upcoming_sleep",
    )

    def __init__(
        self,
        attempt_number: int,
        outcome: Any = None,
        *,
        start_time: float = 0.0,
        outcome_timestamp: float | None = None,
        idle_for: float = 0.0,
        fn: Callable[..., Any] | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.attempt_number = attempt_number
        self.outcome = outcome
        self.start_time = start_time
        self.outcome_timestamp = outcome_timestamp
        self.idle_for = idle_for
        self.upcoming_sleep = 0.0
        self.next_action = None
        self.retry_object = None
        self.fn = fn
        self.args = args
        self.kwargs = kwargs if kwargs is not None else {}

    @property
    def seconds_since_start(self) -> float | None:
        """Seconds from the start of the call to the outcome (``None`` when unknown)."""
        if self.outcome_timestamp is None:
            return None
        return self.outcome_timestamp - self.start_time

    def get_fn_name(self) -> str:
        """The retried function's qualified name (``"<unknown>"`` when unknown)."""
        fn = self.fn
        if fn is None:
            return "<unknown>"
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)!s}".lstrip(".")

    def __repr__(self) -> str:
        return f"RetryCallStateShim(attempt_number={self.attempt_number})"


def _future(attempt: int, value: object, failed: bool) -> Any:
    return _tenacity().Future.construct(attempt, value, failed)


def _state(owner: object | None, attempt: int | None, value: object, failed: bool) -> Any:
    """A shim for judging (or waiting after) an outcome; *attempt* ``None``: the current one."""
    call = _CURRENT.get()
    if call is None or (owner is not None and call.owner is not owner):
        number = attempt if attempt is not None else 1
        return RetryCallStateShim(number, _future(number, value, failed))
    number = attempt if attempt is not None else call.attempt
    now = call.clock_now()
    return RetryCallStateShim(
        number,
        _future(number, value, failed),
        start_time=call.start,
        outcome_timestamp=now,
        idle_for=call.idle_for,
        fn=call.fn,
        args=call.args,
        kwargs=call.kwargs,
    )


# --------------------------------------------------------------------------- wait


def backoff_from_tenacity(
    wait: Callable[[Any], float], *, owner: object = None
) -> Callable[[int], float]:
    """A :class:`~resilient.Retry` ``backoff`` callable that asks a tenacity ``wait_*``.

    On its own (``Retry(backoff=backoff_from_tenacity(wait_exponential(max=10)))``)
    it suits waits that depend only on the attempt number (``wait_fixed``,
    ``wait_exponential``, ``wait_random_exponential``, ``wait_chain``...).
    Inside :func:`retry_from_tenacity` the wait also sees the outcome and the
    call's timings, so ``wait_exception`` and custom waits work too.

    Args:
        wait: a tenacity wait strategy, or any callable taking a ``RetryCallState``
            and returning seconds.
        owner: internal; ties the wait to one :class:`TenacityRetry`.

    Raises:
        ConfigError: *wait* is not callable.
    """
    if not callable(wait) or inspect.iscoroutinefunction(wait):
        raise ConfigError("wait", wait, "a tenacity wait strategy (sync callable(retry_state))")

    def backoff(retry: int) -> float:
        call = _CURRENT.get()
        state: Any
        if call is not None and (owner is None or call.owner is owner) and call.outcome is not None:
            attempt, value, failed, at = call.outcome
            state = RetryCallStateShim(
                retry,
                _future(attempt, value, failed),
                start_time=call.start,
                outcome_timestamp=at,
                idle_for=call.idle_for,
                fn=call.fn,
                args=call.args,
                kwargs=call.kwargs,
            )
        else:
            last = _LAST.get()
            if last is not None and last[0] is owner:
                value = last[1]
                state = RetryCallStateShim(
                    retry, _future(retry, value, isinstance(value, BaseException))
                )
            else:
                state = RetryCallStateShim(retry)
        return float(wait(state))

    backoff.__qualname__ = f"backoff_from_tenacity({_describe(wait)})"
    return backoff


# --------------------------------------------------------------------------- retry


def _needs_results(strategy: object) -> bool:
    """Whether *strategy* may ask to retry a returned value (so ``retry_if`` is needed)."""
    t = _tenacity()
    if isinstance(strategy, t.retry_any):
        return any(_needs_results(s) for s in strategy.retries)
    if isinstance(strategy, t.retry_all):
        return all(_needs_results(s) for s in strategy.retries)
    if isinstance(strategy, t.retry_unless_exception_type | t.retry_if_not_exception_message):
        return True  # both retry every returned value
    if isinstance(strategy, t.retry_if_exception | t.retry_if_exception_cause_type):
        return False
    return strategy is not t.retry_never


def _needs_exceptions(strategy: object) -> bool:
    t = _tenacity()
    if isinstance(strategy, t.retry_any):
        return any(_needs_exceptions(s) for s in strategy.retries)
    if isinstance(strategy, t.retry_all):
        return all(_needs_exceptions(s) for s in strategy.retries)
    if isinstance(strategy, t.retry_if_result | t.retry_if_not_result):
        return False
    return strategy is not t.retry_never


def retry_predicates_from_tenacity(
    retry: Callable[[Any], bool], *, owner: object = None
) -> tuple[RetryOn, Callable[[Any], bool] | None]:
    """``(retry_on, retry_if)`` for :class:`~resilient.Retry` from a tenacity ``retry_*``.

    ``retry_if_exception_type(types)`` becomes the tuple of types itself; any other
    strategy (``retry_if_exception``, ``retry_if_not_exception_type``,
    ``retry_if_exception_message``, ``retry_if_exception_cause_type``,
    ``retry_any``/``retry_all`` and ``|``/``&`` combinations, custom callables) is
    asked on each outcome, exactly as tenacity asks it. ``retry_if`` is ``None``
    unless the strategy can retry a returned value (``retry_if_result``...).
    Raising ``tenacity.TryAgain`` always retries.

    Args:
        retry: a tenacity retry strategy or any callable taking a ``RetryCallState``.
        owner: internal; ties the predicates to one :class:`TenacityRetry`.

    Raises:
        ConfigError: *retry* is not callable.
    """
    if not callable(retry) or inspect.iscoroutinefunction(retry):
        raise ConfigError("retry", retry, "a tenacity retry strategy (sync callable(retry_state))")
    t = _tenacity()
    try_again = t.TryAgain
    retry_on: RetryOn
    if type(retry) is t.retry_if_exception_type:
        types = getattr(retry, "exception_types", Exception)
        retry_on = (*types, try_again) if isinstance(types, tuple) else (types, try_again)
    elif _needs_exceptions(retry):

        def on_exception(exc: BaseException) -> bool:
            if isinstance(exc, try_again):
                return True
            return bool(retry(_state(owner, None, exc, True)))

        on_exception.__qualname__ = f"retry_on({_describe(retry)})"
        retry_on = on_exception
    else:
        retry_on = (try_again,)
    retry_if: Callable[[Any], bool] | None = None
    if _needs_results(retry):

        def on_result(result: Any) -> bool:
            return bool(retry(_state(owner, None, result, False)))

        on_result.__qualname__ = f"retry_if({_describe(retry)})"
        retry_if = on_result
    return retry_on, retry_if


# --------------------------------------------------------------------------- stop


class StopLimits(NamedTuple):
    """What a tenacity stop strategy becomes: ``attempts`` and ``deadline`` (seconds);
    ``None`` where the strategy sets no such limit."""

    attempts: int | None
    deadline: float | None


def stop_from_tenacity(stop: object) -> StopLimits:
    """The :class:`~resilient.Retry` limits equivalent to a tenacity ``stop_*``.

    ``stop_after_attempt(n)`` gives ``attempts=n``; ``stop_after_delay(d)`` and
    ``stop_before_delay(d)`` give ``deadline=d``; ``stop_any(...)`` (``a | b``) the
    tightest of each of its parts.

    Raises:
        ConfigError: for ``stop_never`` (resilient always bounds a retry),
            ``stop_all``, ``stop_when_event_set`` and custom stop callables, naming
            the strategy.
    """
    t = _tenacity()
    if isinstance(stop, t.stop_after_attempt):
        attempts = stop.max_attempt_number
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError("stop", attempts, "stop_after_attempt(n) with an int n >= 1")
        return StopLimits(attempts, None)
    if isinstance(stop, t.stop_after_delay | t.stop_before_delay):
        delay = float(stop.max_delay)
        if not 0 < delay < math.inf:
            raise ConfigError("stop", stop.max_delay, f"{_describe(stop)} with a delay > 0")
        return StopLimits(None, delay)
    if isinstance(stop, t.stop_any):
        limits = [stop_from_tenacity(part) for part in stop.stops]
        if not limits:
            raise ConfigError("stop", "stop_any()", "stop_any with at least one strategy")
        counts = [lim.attempts for lim in limits if lim.attempts is not None]
        delays = [lim.deadline for lim in limits if lim.deadline is not None]
        return StopLimits(min(counts) if counts else None, min(delays) if delays else None)
    name = _describe(stop)
    hints = {
        "stop_never": "a bound: resilient never retries forever (stop_after_attempt / "
        "stop_after_delay, or attempts=)",
        "stop_all": "stop_after_attempt, stop_after_delay, stop_before_delay or stop_any of "
        "them (stop_all cannot be enforced up front)",
        "stop_when_event_set": "stop_after_attempt, stop_after_delay, stop_before_delay or "
        "stop_any of them (to abandon a call, cancel it)",
    }
    expected = hints.get(
        name, "stop_after_attempt, stop_after_delay, stop_before_delay or stop_any of them"
    )
    raise ConfigError("stop", name, expected)


# --------------------------------------------------------------------------- the policy


class TenacityRetry(Retry):
    """A :class:`~resilient.Retry` driven by tenacity strategies (see :func:`retry_from_tenacity`).

    It behaves like any ``Retry``; in addition each call records its start, the
    last outcome and the time slept, which the strategies read through their
    ``RetryCallState``. Attributes ``stop``, ``wait`` and ``retry_strategy`` keep
    the strategies it was built from.
    """

    def __init__(
        self,
        *,
        stop: object = None,
        wait: Callable[[Any], float] | None = None,
        retry: Callable[[Any], bool] | None = None,
        **retry_kwargs: Any,
    ) -> None:
        self._owner = owner = object()
        self.stop = stop
        self.wait = wait
        self.retry_strategy = retry
        kwargs = _checked_kwargs(retry_kwargs)
        if stop is not None:
            for key in ("attempts", "deadline"):
                if key in kwargs:
                    raise ConfigError(key, kwargs[key], "to be left out when stop= is given")
            limits = stop_from_tenacity(stop)
            kwargs["attempts"] = limits.attempts or UNLIMITED_ATTEMPTS
            if limits.deadline is not None:
                kwargs["deadline"] = limits.deadline
        if wait is not None:
            if "backoff" in kwargs:
                raise ConfigError(
                    "backoff", kwargs["backoff"], "to be left out when wait= is given"
                )
            kwargs["backoff"] = backoff_from_tenacity(wait, owner=owner)
        if retry is not None:
            for key in ("retry_on", "retry_if"):
                if key in kwargs:
                    raise ConfigError(key, kwargs[key], "to be left out when retry= is given")
            kwargs["retry_on"], kwargs["retry_if"] = retry_predicates_from_tenacity(
                retry, owner=owner
            )
        hint: Callable[[object], float | None] = kwargs.get("retry_after", default_retry_after)

        def retry_after(outcome: object) -> float | None:
            # Called once per outcome that may be retried, just before the wait:
            # remember it for the wait and move on to the next attempt number.
            call = _CURRENT.get()
            if call is not None and call.owner is owner:
                failed = isinstance(outcome, BaseException)
                call.outcome = (call.attempt, outcome, failed, call.clock_now())
                call.attempt += 1
            else:
                _LAST.set((owner, outcome))
            return hint(outcome)

        kwargs["retry_after"] = retry_after

        def slept(event: Event) -> None:
            if isinstance(event, RetryScheduled):
                call = _CURRENT.get()
                if call is not None and call.owner is owner:
                    call.idle_for += event.delay

        slept.call_events = False  # type: ignore[attr-defined]
        kwargs["listeners"] = [slept, *(kwargs.get("listeners") or ())]
        super().__init__(**kwargs)

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)``, retrying it as the strategies say."""
        clock = self.clock
        token = _CURRENT.set(
            _Call(self._owner, clock.monotonic(), clock.monotonic, fn, args, kwargs)
        )
        try:
            return super().call(fn, *args, **kwargs)
        finally:
            _CURRENT.reset(token)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``, retrying it as the strategies say."""
        clock = self.clock
        token = _CURRENT.set(
            _Call(self._owner, clock.monotonic(), clock.monotonic, fn, args, kwargs)
        )
        try:
            return await super().acall(fn, *args, **kwargs)
        finally:
            _CURRENT.reset(token)

    # Decorated functions go through call()/acall(), which track the call's state.

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        call = self.call

        def retried(*args: Any, **kwargs: Any) -> Any:
            return call(fn, *args, **kwargs)

        return retried

    def _awrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        acall = self.acall

        async def retried(*args: Any, **kwargs: Any) -> Any:
            return await acall(fn, *args, **kwargs)

        return retried

    def __repr__(self) -> str:
        parts = [
            f"{label}={_describe(value)}"
            for label, value in (
                ("stop", self.stop),
                ("wait", self.wait),
                ("retry", self.retry_strategy),
            )
            if value is not None
        ]
        parts.append(f"name={self.name!r}")
        return f"TenacityRetry({', '.join(parts)})"


def _checked_kwargs(retry_kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(retry_kwargs)
    for key in list(kwargs):
        if key in _TENACITY_ONLY and _TENACITY_ONLY[key] is not None:
            raise ConfigError(key, kwargs[key], f"nothing: {_TENACITY_ONLY[key]}")
    reraise = kwargs.pop("reraise", True)
    if reraise is not True:
        raise ConfigError(
            "reraise", reraise, "True or nothing: resilient always re-raises the last exception"
        )
    return kwargs


def retry_from_tenacity(
    *,
    stop: object = None,
    wait: Callable[[Any], float] | None = None,
    retry: Callable[[Any], bool] | None = None,
    **retry_kwargs: Any,
) -> TenacityRetry:
    """A :class:`~resilient.Retry` driven by tenacity ``stop``, ``wait`` and ``retry`` strategies.

    Args:
        stop: ``stop_after_attempt``, ``stop_after_delay``, ``stop_before_delay`` or
            ``stop_any`` of them. ``None``: ``attempts``/``deadline`` from
            *retry_kwargs*, else resilient's default (3 attempts).
        wait: any tenacity wait strategy (or callable of a ``RetryCallState``).
            ``None``: ``backoff`` from *retry_kwargs*, else resilient's default.
        retry: any tenacity retry strategy (or callable of a ``RetryCallState``).
            ``None``: ``retry_on``/``retry_if`` from *retry_kwargs*, else
            resilient's default (``OSError``).
        **retry_kwargs: any other :class:`~resilient.Retry` argument (``name``,
            ``clock``, ``listeners``, ``budget``, ``retry_after``, ``max_retry_after``,
            ``retry_rejected``...). ``reraise=True`` is accepted (it is what
            resilient always does).

    Raises:
        ConfigError: an unsupported stop strategy, a tenacity-only argument
            (``before_sleep``, ``retry_error_callback``... with what to use instead),
            or a limit given twice (``stop=`` and ``attempts=``).
    """
    return TenacityRetry(stop=stop, wait=wait, retry=retry, **retry_kwargs)


def from_retrying(retrying: Any, **retry_kwargs: Any) -> TenacityRetry:
    """A :class:`~resilient.Retry` equivalent to a tenacity ``Retrying`` / ``AsyncRetrying``.

    Also accepts a function decorated with ``@tenacity.retry(...)`` (its ``.retry``
    attribute). tenacity's own defaults then apply where the ``Retrying`` left them:
    every exception is retried and there is no wait; ``stop_never`` is refused
    (pass ``attempts=`` in *retry_kwargs* to bound it).

    Raises:
        ConfigError: the ``Retrying`` uses hooks (``before``, ``after``,
            ``before_sleep``, ``retry_error_callback``), or an unsupported stop
            strategy. (``reraise`` is moot: resilient always re-raises the last
            exception, where tenacity's default wraps it in a ``RetryError``.)
    """
    t = _tenacity()
    inner = getattr(retrying, "retry", None)
    if not isinstance(retrying, t.BaseRetrying) and isinstance(inner, t.BaseRetrying):
        retrying = inner
    if not isinstance(retrying, t.BaseRetrying):
        raise ConfigError(
            "retrying", retrying, "a tenacity Retrying, AsyncRetrying or @retry-decorated function"
        )
    for hook in ("before", "after", "before_sleep", "retry_error_callback"):
        value = getattr(retrying, hook, None)
        if value is not None and value is not getattr(t, f"{hook}_nothing", None):
            raise ConfigError(hook, _describe(value), f"no hook: {_TENACITY_ONLY[hook]}")
    stop = retrying.stop
    if stop is t.stop_never and "attempts" in retry_kwargs:
        stop = None
    return TenacityRetry(stop=stop, wait=retrying.wait, retry=retrying.retry, **retry_kwargs)
