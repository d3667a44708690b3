"""Retry: run a call again when it fails transiently.

``attempts`` counts every try (3 = one call and up to two retries). Between
tries the driver sleeps for the backoff's delay, or for a server hint
(``retry_after``) when the outcome carries one; a ``deadline`` caps the whole
call and is never slept past. When the tries run out, the **last exception is
re-raised** (with a note saying how many attempts were made), not wrapped; if
the last outcome was a *result* that ``retry_if`` still rejects, that result is
returned.

The library's own rejections (:class:`RejectedError`: an open breaker, a full
bulkhead, a rate limit) are not retried unless ``retry_rejected=True``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._backoff import Backoff, BackoffFunction
from ._budget import RetryBudget
from ._clock import Clock, pop_deadline, push_deadline
from ._duration import to_seconds
from ._errors import ConfigError, RejectedError
from ._pipeline import PolicyBase
from ._types import P, T
from .observability._emit import Listener
from .observability._events import CallFailed, CallRejected, CallSucceeded, RetryScheduled

__all__ = ["Retry", "RetryConfig"]

ExceptionPredicate: TypeAlias = Callable[[BaseException], bool]
RetryOn: TypeAlias = "type[BaseException] | tuple[type[BaseException], ...] | ExceptionPredicate"


def default_retry_after(outcome: object) -> float | None:
    """The hint an outcome carries: its ``retry_after`` attribute, if a number."""
    hint = getattr(outcome, "retry_after", None)
    if isinstance(hint, int | float) and not isinstance(hint, bool) and not math.isnan(hint):
        return float(hint)
    return None


class _Testing:
    """Process-wide test mode set by :func:`resilient.testing.set_testing`."""

    __slots__ = ("attempts", "enabled")

    def __init__(self) -> None:
        self.enabled = False
        self.attempts: int | None = None


TESTING = _Testing()


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryConfig:
    """The validated settings of a :class:`Retry` (see its docs)."""

    attempts: int = 3
    backoff: Backoff | BackoffFunction = field(default_factory=Backoff)
    retry_on: RetryOn = (OSError,)
    retry_if: Callable[[Any], bool] | None = None
    retry_after: Callable[[object], float | None] = default_retry_after
    deadline: float | None = None
    max_retry_after: float = 60.0
    retry_rejected: bool = False
    rng: Callable[[], float] = random.random
    budget: RetryBudget | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise ConfigError(
                "attempts", self.attempts, "an int >= 1 (total tries, first included)"
            )
        if not isinstance(self.backoff, Backoff) and not callable(self.backoff):
            raise ConfigError(
                "backoff", self.backoff, "a Backoff or a callable(retry_number) -> seconds"
            )
        retry_on = self.retry_on
        if isinstance(retry_on, type):
            if not issubclass(retry_on, BaseException):
                raise ConfigError("retry_on", retry_on, "exception types or a predicate")
            object.__setattr__(self, "retry_on", (retry_on,))
        elif isinstance(retry_on, tuple):
            for item in retry_on:
                if not (isinstance(item, type) and issubclass(item, BaseException)):
                    raise ConfigError("retry_on", retry_on, "exception types or a predicate")
        elif not callable(retry_on):
            raise ConfigError("retry_on", retry_on, "exception types or a predicate")
        if self.retry_if is not None and not callable(self.retry_if):
            raise ConfigError("retry_if", self.retry_if, "a callable(result) -> bool, or None")
        if not callable(self.retry_after):
            raise ConfigError(
                "retry_after", self.retry_after, "a callable(outcome) -> seconds or None"
            )
        if self.deadline is not None:
            deadline = to_seconds(self.deadline, name="deadline", allow_zero=False)
            object.__setattr__(self, "deadline", deadline)
        object.__setattr__(
            self, "max_retry_after", to_seconds(self.max_retry_after, name="max_retry_after")
        )
        if not callable(self.rng):
            raise ConfigError("rng", self.rng, "a callable returning floats in [0, 1)")
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise ConfigError("budget", self.budget, "a RetryBudget or None")

    def should_retry_exception(self, exc: BaseException) -> bool:
        """Whether *exc* is a transient failure worth another try."""
        if isinstance(exc, RejectedError) and not self.retry_rejected:
            return False
        retry_on = self.retry_on
        if isinstance(retry_on, tuple):
            return isinstance(exc, retry_on)
        return bool(retry_on(exc))

    def delay(self, retry: int, previous: float | None) -> float:
        """The computed (hint-free) delay before retry number *retry*."""
        backoff = self.backoff
        if isinstance(backoff, Backoff):
            return backoff.delay(retry, previous, self.rng)
        value = backoff(retry)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or math.isnan(value)
            or value < 0
        ):
            raise ConfigError("backoff", value, "the custom backoff to return seconds >= 0")
        return float(value)


class _Attempts:
    """The bookkeeping of one call (created only once a first attempt failed)."""

    __slots__ = (
        "cfg",
        "clock",
        "deadline_at",
        "denied",
        "max_attempts",
        "number",
        "previous",
        "reason",
    )

    def __init__(self, cfg: RetryConfig, clock: Clock, started: float) -> None:
        self.cfg = cfg
        self.clock = clock
        self.number = 1
        self.previous: float | None = None
        self.reason = ""
        self.denied = False
        self.deadline_at = started + cfg.deadline if cfg.deadline is not None else math.inf
        self.max_attempts = cfg.attempts
        if TESTING.enabled and TESTING.attempts is not None:
            self.max_attempts = min(self.max_attempts, TESTING.attempts)

    def next_delay(self, outcome: object) -> float | None:
        """The delay before the next try, or ``None`` to give up (``reason`` says why).

        A delay is only a proposal: the driver asks the budget (if any), then calls
        :meth:`commit` or :meth:`deny`.
        """
        cfg = self.cfg
        if self.number >= self.max_attempts:
            self.reason = f"gave up after {self.number} attempt{'s' * (self.number > 1)}"
            return None
        hint = cfg.retry_after(outcome)
        if hint is not None and hint < 0:
            self.reason = f"the server asked not to retry, after {self.number} attempt(s)"
            return None
        if hint is not None:
            delay = min(hint, cfg.max_retry_after)
        else:
            delay = cfg.delay(self.number, self.previous)
        if TESTING.enabled:
            delay = 0.0
        now = self.clock.monotonic()
        if now + delay > self.deadline_at:
            self.reason = (
                f"gave up after {self.number} attempt(s): the next try would start past the "
                f"{cfg.deadline}s deadline"
            )
            return None
        return delay

    def commit(self, delay: float) -> None:
        """The retry after *delay* goes ahead (the budget, if any, allowed it)."""
        self.previous = delay
        self.number += 1

    def deny(self) -> None:
        """The budget refused the retry: the call ends here."""
        self.reason = f"the retry budget is spent, after {self.number} attempt(s)"
        self.denied = True


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if callable(close):
        close()


async def _aclose(result: object) -> None:
    aclose = getattr(result, "aclose", None)
    if callable(aclose):
        await aclose()
        return
    close = getattr(result, "close", None)
    if callable(close):
        outcome = close()
        if isinstance(outcome, Awaitable):
            await outcome


class Retry(PolicyBase):
    """Try a call up to ``attempts`` times, sleeping between tries.

    Args:
        attempts: total tries including the first (default 3).
        backoff: a :class:`Backoff` (default exponential 0.1 s doubling to 10 s,
            full jitter) or a callable ``(retry_number) -> seconds``.
        retry_on: exception types to retry (default ``(OSError,)``, which includes
            ``ConnectionError`` and ``TimeoutError``), or a predicate on the exception.
        retry_if: a predicate on the *result*; true means "retry" (e.g. HTTP 503). A
            discarded result is closed (``close()``/``aclose()``) before sleeping.
        retry_after: reads a server hint (seconds) from an exception or result;
            by default its ``retry_after`` attribute. A hint replaces the computed
            delay, is capped by ``max_retry_after`` and by the deadline; a negative
            hint means "do not retry".
        deadline: a budget in seconds for the whole call, published for adapters
            (:func:`resilient.remaining`); no sleep ever runs past it. ``None``: none.
        max_retry_after: the cap on server hints (default 60 s).
        retry_rejected: also retry the library's own rejections (default False).
        budget: a :class:`RetryBudget` (shareable) that caps retries to a share of
            recent calls; a denied retry ends the call (a ``CallRejected`` event
            with reason ``"retry_budget"`` is emitted). ``None``: no budget.
        rng: the random source for jitter (floats in ``[0, 1)``).
        name, clock, listeners: as for every policy.
    """

    kind = "retry"

    def __init__(
        self,
        attempts: int = 3,
        *,
        backoff: Backoff | BackoffFunction | None = None,
        retry_on: RetryOn = (OSError,),
        retry_if: Callable[[Any], bool] | None = None,
        retry_after: Callable[[object], float | None] = default_retry_after,
        deadline: float | str | None = None,
        max_retry_after: float | str = 60.0,
        retry_rejected: bool = False,
        budget: RetryBudget | None = None,
        rng: Callable[[], float] = random.random,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        self.config = RetryConfig(
            attempts=attempts,
            backoff=backoff if backoff is not None else Backoff(),
            retry_on=retry_on,
            retry_if=retry_if,
            retry_after=retry_after,
            deadline=deadline,  # type: ignore[arg-type]
            max_retry_after=max_retry_after,  # type: ignore[arg-type]
            retry_rejected=retry_rejected,
            rng=rng,
            budget=budget,
        )
        self._init_base(name, clock, listeners)
        cfg = self.config
        self._plain = cfg.deadline is None and cfg.retry_if is None and cfg.budget is None

    def _on_failure(
        self, attempts: _Attempts | None, started: float, exc: Exception
    ) -> tuple[_Attempts, float | None]:
        """The proposed delay after *exc* (``None``: give up), before the budget's say."""
        if attempts is None:
            attempts = _Attempts(self.config, self.clock, started)
        if not self.config.should_retry_exception(exc):
            attempts.reason = f"{type(exc).__name__} is not retried, attempt {attempts.number}"
            return attempts, None
        return attempts, attempts.next_delay(exc)

    def _on_result(
        self, attempts: _Attempts | None, started: float, result: object
    ) -> tuple[_Attempts, float | None]:
        """The proposed delay after a result ``retry_if`` rejected (``None``: give up)."""
        if attempts is None:
            attempts = _Attempts(self.config, self.clock, started)
        return attempts, attempts.next_delay(result)

    def _settle(
        self,
        attempts: _Attempts,
        delay: float | None,
        granted: bool,
        exc: BaseException | None,
        result: object,
    ) -> float | None:
        """Apply the budget's answer (*granted*) to a proposed delay, and report it."""
        if delay is None:
            return None
        if not granted:
            attempts.deny()
            self._denied(attempts)
            return None
        attempts.commit(delay)
        self._scheduled(attempts, delay, exc, result)
        return delay

    def _spend(self, delay: float | None) -> bool:
        budget = self.config.budget
        return delay is not None and (budget is None or budget.try_spend())

    async def _aspend(self, delay: float | None) -> bool:
        budget = self.config.budget
        return delay is not None and (budget is None or await budget.atry_spend())

    def _denied(self, attempts: _Attempts) -> None:
        budget = self.config.budget
        self._emitter.emit(
            CallRejected(
                policy=self.name,
                kind=self.kind,
                at=self.clock.monotonic(),
                reason="retry_budget",
                stats=budget.stats() if budget is not None else None,
            )
        )

    def _scheduled(
        self, attempts: _Attempts, delay: float, exc: BaseException | None, result: object
    ) -> None:
        self._emitter.emit(
            RetryScheduled(
                policy=self.name,
                kind=self.kind,
                at=self.clock.monotonic(),
                attempt=attempts.number - 1,
                delay=delay,
                cause=exc,
                result=result,
            )
        )

    def _give_up(self, attempts: _Attempts, started: float, exc: BaseException | None) -> None:
        if exc is not None:
            exc.add_note(f"resilient: retry {self.name!r} {attempts.reason}")
        if self._emitter.listening:
            self._emitter.emit(
                CallFailed(
                    policy=self.name,
                    kind=self.kind,
                    at=self.clock.monotonic(),
                    duration=self.clock.monotonic() - started,
                    exception=exc,
                )
            )

    def _succeeded(self, started: float) -> None:
        now = self.clock.monotonic()
        self._emitter.emit(
            CallSucceeded(policy=self.name, kind=self.kind, at=now, duration=now - started)
        )

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)``, retrying it as configured."""
        if self._plain and not self._emitter.listening:
            # Fast path: no deadline, no result predicate, nobody listening.
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                first: Exception = exc
            return self._call(fn, args, kwargs, first)
        return self._call(fn, args, kwargs, None)

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        emitter, plain, slow = self._emitter, self._plain, self._call

        def retried(*args: Any, **kwargs: Any) -> Any:
            if plain and not emitter.listening:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    first: Exception = exc
                return slow(fn, args, kwargs, first)
            return slow(fn, args, kwargs, None)

        return retried

    def _awrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        emitter, plain, slow = self._emitter, self._plain, self._acall

        async def retried(*args: Any, **kwargs: Any) -> Any:
            if plain and not emitter.listening:
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    first: Exception = exc
                return await slow(fn, args, kwargs, first)
            return await slow(fn, args, kwargs, None)

        return retried

    def _call(self, fn: Callable[..., T], args: Any, kwargs: Any, first: Exception | None) -> T:
        cfg, clock = self.config, self.clock
        listening = self._emitter.listening
        started = clock.monotonic()
        if cfg.budget is not None:
            cfg.budget.record_call()
        token = push_deadline(clock, cfg.deadline, self.name)[1] if cfg.deadline else None
        attempts: _Attempts | None = None
        try:
            if first is not None:
                attempts, delay = self._on_failure(attempts, started, first)
                delay = self._settle(attempts, delay, self._spend(delay), first, None)
                if delay is None:
                    self._give_up(attempts, started, first)
                    raise first
                clock.sleep(delay)
            while True:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    attempts, delay = self._on_failure(attempts, started, exc)
                    delay = self._settle(attempts, delay, self._spend(delay), exc, None)
                    if delay is None:
                        self._give_up(attempts, started, exc)
                        raise
                else:
                    if cfg.retry_if is None or not cfg.retry_if(result):
                        if listening:
                            self._succeeded(started)
                        return result
                    attempts, delay = self._on_result(attempts, started, result)
                    delay = self._settle(attempts, delay, self._spend(delay), None, result)
                    if delay is None:
                        self._give_up(attempts, started, None)
                        return result
                    _close(result)
                clock.sleep(delay)
        finally:
            if token is not None:
                pop_deadline(token)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)``, retrying it as configured."""
        if self._plain and not self._emitter.listening:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                first: Exception = exc
            return await self._acall(fn, args, kwargs, first)
        return await self._acall(fn, args, kwargs, None)

    async def _acall(
        self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any, first: Exception | None
    ) -> T:
        cfg, clock = self.config, self.clock
        listening = self._emitter.listening
        started = clock.monotonic()
        if cfg.budget is not None:
            await cfg.budget.arecord_call()
        token = push_deadline(clock, cfg.deadline, self.name)[1] if cfg.deadline else None
        attempts: _Attempts | None = None
        try:
            if first is not None:
                attempts, delay = self._on_failure(attempts, started, first)
                delay = self._settle(attempts, delay, await self._aspend(delay), first, None)
                if delay is None:
                    self._give_up(attempts, started, first)
                    raise first
                await clock.asleep(delay)
            while True:
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    attempts, delay = self._on_failure(attempts, started, exc)
                    delay = self._settle(attempts, delay, await self._aspend(delay), exc, None)
                    if delay is None:
                        self._give_up(attempts, started, exc)
                        raise
                else:
                    if cfg.retry_if is None or not cfg.retry_if(result):
                        if listening:
                            self._succeeded(started)
                        return result
                    attempts, delay = self._on_result(attempts, started, result)
                    delay = self._settle(attempts, delay, await self._aspend(delay), None, result)
                    if delay is None:
                        self._give_up(attempts, started, None)
                        return result
                    await _aclose(result)
                await clock.asleep(delay)
        finally:
            if token is not None:
                pop_deadline(token)

    def __repr__(self) -> str:
        return f"Retry(attempts={self.config.attempts}, name={self.name!r})"
