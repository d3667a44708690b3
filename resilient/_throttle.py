"""Throttle: client-side adaptive throttling (Google SRE book, "Handling Overload").

Each client keeps, over a sliding ``window`` (default two minutes):

* ``requests``: the calls the application attempted through the throttle,
  including those it refused locally;
* ``accepts``: the calls the dependency accepted, i.e. that ended without an
  overload signal.

and refuses a new call locally with probability::

    p_reject = max(0, (requests - k * accepts) / (requests + 1))

While the dependency accepts everything, ``requests <= k * accepts`` and
nothing is refused. When it starts refusing, the client sheds just enough
load that what it still sends is about ``k`` times what gets accepted: a
graded answer where a circuit breaker is all or nothing. ``k`` (default 2)
trades wasted work at the dependency (large ``k``) for slower recovery (``k``
near 1).

What counts as "not accepted" is ``rejected_on``: exceptions that mean
overload (default: the library's :class:`~resilient.RejectedError`, e.g. a 429
or 503 mapped to one by an adapter, and ``TimeoutError``, which includes
:class:`~resilient.TimeoutExceededError`), and ``rejected_if`` for results (a
response with status 503). Any other exception is an *accept*: the dependency
answered, it just said no to this request. A cancelled call counts as neither
(its request stays counted).

The draw uses an injectable ``rng`` so that tests are deterministic. Counts
live in ``buckets`` slices of ``window / buckets``, so memory is constant and
old outcomes leave the window one slice at a time.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from ._clock import Clock
from ._duration import Duration, to_seconds
from ._errors import ConfigError, RateLimitedError, RejectedError
from ._pipeline import PolicyBase
from ._types import P, T
from .observability._emit import Listener
from .observability._events import CallFailed, CallRejected, CallSucceeded

__all__ = ["Throttle", "ThrottleConfig", "ThrottleStats"]

ExceptionPredicate: TypeAlias = Callable[[BaseException], bool]
RejectedOn: TypeAlias = "type[BaseException] | tuple[type[BaseException], ...] | ExceptionPredicate"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleConfig:
    """The validated settings of a :class:`Throttle` (see its docs)."""

    k: float = 2.0
    window: float = 120.0
    buckets: int = 24
    min_requests: int = 0
    max_reject: float = 1.0
    rejected_on: RejectedOn = (RejectedError, TimeoutError)
    rejected_if: Callable[[Any], bool] | None = None
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        k = self.k
        if isinstance(k, bool) or not isinstance(k, int | float) or not 1 <= k <= 1000:
            raise ConfigError("k", k, "a number >= 1 (requests allowed per accepted request)")
        object.__setattr__(self, "k", float(k))
        object.__setattr__(self, "window", to_seconds(self.window, name="window", allow_zero=False))
        buckets = self.buckets
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 10_000:
            raise ConfigError("buckets", buckets, "an int between 1 and 10000")
        low = self.min_requests
        if isinstance(low, bool) or not isinstance(low, int) or low < 0:
            raise ConfigError("min_requests", low, "an int >= 0")
        cap = self.max_reject
        if isinstance(cap, bool) or not isinstance(cap, int | float) or not 0 < cap <= 1:
            raise ConfigError("max_reject", cap, "a probability in (0, 1]")
        object.__setattr__(self, "max_reject", float(cap))
        rejected_on = self.rejected_on
        if isinstance(rejected_on, type) and issubclass(rejected_on, BaseException):
            object.__setattr__(self, "rejected_on", (rejected_on,))
        elif isinstance(rejected_on, tuple):
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in rejected_on):
                raise ConfigError("rejected_on", rejected_on, "exception types or a predicate")
        elif isinstance(rejected_on, type) or not callable(rejected_on):
            raise ConfigError("rejected_on", rejected_on, "exception types or a predicate")
        if self.rejected_if is not None and not callable(self.rejected_if):
            raise ConfigError(
                "rejected_if", self.rejected_if, "a callable(result) -> bool, or None"
            )
        if not callable(self.rng):
            raise ConfigError("rng", self.rng, "a callable returning floats in [0, 1)")

    def is_rejection(self, exc: BaseException) -> bool:
        """Whether *exc* means the dependency did not accept the call (overload)."""
        rejected_on = self.rejected_on
        if isinstance(rejected_on, tuple):
            return isinstance(exc, rejected_on)
        return bool(rejected_on(exc))


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleStats:
    """A snapshot of a throttle, from :meth:`Throttle.stats`.

    Attributes:
        requests: calls attempted in the window (those refused locally included).
        accepts: calls the dependency accepted in the window.
        reject_probability: the probability that the next call is refused locally.
        throttled: calls refused locally since creation.
        k: the multiplier in the formula.
        window: the window's length in seconds.
    """

    requests: int
    accepts: int
    reject_probability: float
    throttled: int
    k: float
    window: float


_EMPTY = -(1 << 62)
"""The epoch of a slice that holds nothing."""


class _Counts:
    """Requests and accepts per time slice, under a short lock (sans-I/O)."""

    __slots__ = (
        "accepts",
        "epochs",
        "lock",
        "requests",
        "total_accepts",
        "total_requests",
        "width",
    )

    def __init__(self, window: float, buckets: int) -> None:
        self.width = window / buckets
        self.requests = [0] * buckets
        self.accepts = [0] * buckets
        self.epochs = [_EMPTY] * buckets
        self.total_requests = 0
        self.total_accepts = 0
        self.lock = threading.Lock()

    def _roll(self, now: float) -> int:
        """Expire the slices that left the window; the slot of *now* (lock held)."""
        epoch = math.floor(now / self.width)
        size = len(self.epochs)
        index = epoch % size
        if self.epochs[index] != epoch:
            oldest = epoch - size + 1
            for i, seen in enumerate(self.epochs):
                if seen != _EMPTY and seen < oldest:
                    self.total_requests -= self.requests[i]
                    self.total_accepts -= self.accepts[i]
                    self.requests[i] = self.accepts[i] = 0
                    self.epochs[i] = _EMPTY
            self.epochs[index] = epoch
        return index

    def admit(self, now: float, draw: Callable[[], float], cfg: ThrottleConfig) -> float | None:
        """Count a request; ``None`` if it may go, else the probability it was refused with."""
        with self.lock:
            index = self._roll(now)
            p = _probability(self.total_requests, self.total_accepts, cfg)
            self.requests[index] += 1
            self.total_requests += 1
        if p > 0 and draw() < p:
            return p
        return None

    def accepted(self, now: float) -> None:
        with self.lock:
            index = self._roll(now)
            self.accepts[index] += 1
            self.total_accepts += 1

    def snapshot(self, now: float, cfg: ThrottleConfig) -> tuple[int, int, float]:
        with self.lock:
            self._roll(now)
            requests, accepts = self.total_requests, self.total_accepts
        return requests, accepts, _probability(requests, accepts, cfg)


def _probability(requests: int, accepts: int, cfg: ThrottleConfig) -> float:
    if requests < cfg.min_requests:
        return 0.0
    p = (requests - cfg.k * accepts) / (requests + 1)
    if p <= 0:
        return 0.0
    return min(p, cfg.max_reject)


class Throttle(PolicyBase):
    """Refuse a share of calls locally while the dependency is refusing them.

    Args:
        k: requests allowed per accepted request before shedding starts (default 2:
            the SRE book's value; lower sheds sooner).
        window: how long outcomes count (seconds, ``timedelta`` or ``"2m"``; default
            two minutes).
        buckets: slices the window is kept in (default 24: five seconds each).
        min_requests: no call is refused while the window holds fewer requests
            (default 0: the formula alone decides).
        max_reject: the cap on the probability of refusing (default 1: none; 0.9
            keeps one call in ten probing a dependency that refuses everything).
        rejected_on: exceptions that mean "not accepted" (default
            :class:`RejectedError` and ``TimeoutError``), as types or a predicate.
        rejected_if: a predicate on results that means "not accepted" (HTTP 503).
        rng: the random source (floats in ``[0, 1)``); inject one for tests.
        name, clock, listeners: as for every policy.

    A refused call raises :class:`RateLimitedError` with ``reason="throttled"``
    (``retry_after`` is ``None``: the refusal is a draw, the next call may pass)
    and emits ``CallRejected``.
    """

    kind = "throttle"

    def __init__(
        self,
        k: float = 2.0,
        *,
        window: Duration = 120.0,
        buckets: int = 24,
        min_requests: int = 0,
        max_reject: float = 1.0,
        rejected_on: RejectedOn = (RejectedError, TimeoutError),
        rejected_if: Callable[[Any], bool] | None = None,
        rng: Callable[[], float] = random.random,
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        self.config = ThrottleConfig(
            k=k,
            window=window,  # type: ignore[arg-type]
            buckets=buckets,
            min_requests=min_requests,
            max_reject=max_reject,
            rejected_on=rejected_on,
            rejected_if=rejected_if,
            rng=rng,
        )
        self._init_base(name, clock, listeners)
        self._counts = _Counts(self.config.window, self.config.buckets)
        self._throttled = 0

    def stats(self) -> ThrottleStats:
        """A frozen snapshot of the window and the current probability of refusing."""
        cfg = self.config
        requests, accepts, p = self._counts.snapshot(self.clock.monotonic(), cfg)
        return ThrottleStats(
            requests=requests,
            accepts=accepts,
            reject_probability=p,
            throttled=self._throttled,
            k=cfg.k,
            window=cfg.window,
        )

    @property
    def reject_probability(self) -> float:
        """The probability that the next call is refused locally."""
        return self.stats().reject_probability

    # -- the two halves of a call ------------------------------------------------------------

    def _admit(self) -> float:
        """Count the request and draw; raise ``RateLimitedError`` if it is refused."""
        cfg = self.config
        refused = self._counts.admit(self.clock.monotonic(), cfg.rng, cfg)
        if refused is None:
            return self.clock.monotonic()
        with self._counts.lock:
            self._throttled += 1
        if self._emitter.wants(CallRejected):
            self._emitter.emit(
                CallRejected(
                    policy=self.name,
                    kind=self.kind,
                    at=self.clock.monotonic(),
                    reason="throttled",
                    stats=self.stats(),
                )
            )
        raise RateLimitedError(self.name, reason="throttled")

    def _done(self, start: float, result: object, exc: BaseException | None) -> None:
        cfg = self.config
        if exc is None:
            accepted = cfg.rejected_if is None or not cfg.rejected_if(result)
        else:
            accepted = not cfg.is_rejection(exc)
        now = self.clock.monotonic()
        if accepted:
            self._counts.accepted(now)
        if self._emitter.listening:
            event: CallSucceeded | CallFailed
            if exc is None:
                event = CallSucceeded(
                    policy=self.name, kind=self.kind, at=now, duration=now - start
                )
            else:
                event = CallFailed(
                    policy=self.name, kind=self.kind, at=now, duration=now - start, exception=exc
                )
            self._emitter.emit(event)

    # -- the drivers ---------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` unless the throttle refuses it."""
        start = self._admit()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._done(start, None, exc)
            raise
        self._done(start, result, None)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` unless the throttle refuses it."""
        start = self._admit()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._done(start, None, exc)
            raise
        self._done(start, result, None)
        return result

    def __repr__(self) -> str:
        cfg = self.config
        return f"Throttle(k={cfg.k:g}, window={cfg.window:g}, name={self.name!r})"
