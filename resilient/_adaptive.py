"""AdaptiveConcurrency: a concurrency limit that moves with the latency it measures.

A static bulkhead is a guess: too low and it throws capacity away, too high and
the dependency queues work it cannot finish in time. An adaptive limit measures
how long each call holds its slot (on the policy's clock) and moves the limit:
up while latency stays flat, down when latency rises or calls are dropped, so
it settles near the concurrency the dependency can serve without queueing.
Calls beyond the limit are refused at once (or after a short, bounded wait in
a FIFO queue) with :class:`~resilient.BulkheadFullError`, cheaply, instead of
adding to the pile.

Three algorithms, after Netflix's concurrency-limits:

* :class:`Gradient2` (default): compares a short-term latency (the mean of
  the last few calls) with a long-term one (an average over ``long_window``
  calls, capped by the latency measured at low concurrency now and then); their
  ratio, scaled by ``tolerance`` and kept in [0.5, 1], multiplies the limit, and
  ``queue_size`` is added so the limit keeps probing upwards. Each step moves
  the limit ``smoothing`` of the way.
* :class:`AIMD`: additive increase while calls succeed under
  ``latency_threshold``, multiplicative decrease (``backoff_ratio``) on a drop
  or a slow call, at most once per round of calls (like TCP).
* :class:`Vegas`: estimates the queue at the dependency from the no-load
  latency (measured at low concurrency now and then) and keeps it between
  ``alpha`` and ``beta`` (multiples of ``log10(limit)``).

Outcomes: a call that returns, or raises an exception outside ``drop_on``, is
a latency sample. One that raises an exception matching ``drop_on`` (default:
``TimeoutError``, which includes :class:`~resilient.TimeoutExceededError`, and
:class:`~resilient.RejectedError`) is a *drop*, the overload signal. A call
that is cancelled (``CancelledError``, ``KeyboardInterrupt``: any
``BaseException`` that is not an ``Exception``) frees its slot and teaches the
limit nothing. Put a ``Timeout`` *inside* the limit, so a timed-out call is
reported as a drop rather than an outer cancellation.

The slots, the FIFO queue and ``max_wait`` are the bulkhead's (threads and
tasks share one queue, the wait is measured on the clock).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, TypeAlias

from ._bulkhead import (
    BulkheadConfig,
    SlotPolicy,
    _BulkheadCore,
    _TaskWaiter,
    _ThreadWaiter,
)
from ._clock import Clock
from ._duration import Duration, to_seconds
from ._errors import BulkheadFullError, ConfigError, RejectedError, new_error
from ._types import P, T
from .observability._emit import Listener
from .observability._events import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    ConcurrencyLimitChanged,
)

__all__ = [
    "AIMD",
    "AdaptiveConcurrency",
    "AdaptiveConcurrencyConfig",
    "AdaptiveConcurrencyStats",
    "Gradient2",
    "LimitAlgorithm",
    "Permit",
    "Sample",
    "Vegas",
]

ExceptionPredicate: TypeAlias = Callable[[BaseException], bool]
DropOn: TypeAlias = "type[BaseException] | tuple[type[BaseException], ...] | ExceptionPredicate"
AlgorithmName: TypeAlias = Literal["gradient2", "aimd", "vegas"]

_MIN_RTT = 1e-6
"""Latencies are floored at a microsecond (a fake clock may measure zero)."""
_PROBE_CONCURRENCY = 3
"""Gradient2 and Vegas measure the no-load latency with at most this many calls in flight."""
_LATENCY_WEIGHT = 0.1
"""Weight of each sample in the smoothed latency reported by stats and retry hints."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One finished call, as a limit algorithm sees it.

    Attributes:
        start: the clock time at which the call got its slot.
        rtt: seconds it held the slot.
        in_flight: calls holding a slot when it started, itself included.
        dropped: it ended with an overload signal (an exception matching ``drop_on``).
    """

    start: float
    rtt: float
    in_flight: int
    dropped: bool


class _Estimator:
    """The moving state of one algorithm in one policy (guarded by the policy's lock).

    Samples are gathered in windows of ``window`` calls; each full window is one
    update with the window's mean latency, its largest ``in_flight``, its first
    start, and ``dropped`` if any call of it was dropped.
    """

    __slots__ = (
        "high",
        "limit",
        "low",
        "w_count",
        "w_dropped",
        "w_first",
        "w_in_flight",
        "w_total",
        "window",
    )

    def __init__(self, initial: float, low: float, high: float, window: int = 1) -> None:
        self.limit = float(initial)
        self.low = float(low)
        self.high = float(high)
        self.window = window
        self.w_count = 0
        self.w_total = 0.0
        self.w_in_flight = 0
        self.w_first = math.inf
        self.w_dropped = False

    def clamp(self, value: float) -> float:
        return min(self.high, max(self.low, value))

    def current(self) -> float:
        """The limit to apply now."""
        return self.limit

    def feed(self, sample: Sample, now: float) -> None:
        """Take one sample; update once a window is full."""
        if self.window == 1:
            self.update(sample, now)
            return
        self.w_count += 1
        self.w_total += sample.rtt
        self.w_in_flight = max(self.w_in_flight, sample.in_flight)
        self.w_first = min(self.w_first, sample.start)
        self.w_dropped = self.w_dropped or sample.dropped
        if self.w_count >= self.window:
            merged = Sample(
                self.w_first, self.w_total / self.w_count, self.w_in_flight, self.w_dropped
            )
            self.w_count = self.w_in_flight = 0
            self.w_total = 0.0
            self.w_first = math.inf
            self.w_dropped = False
            self.update(merged, now)

    def update(self, sample: Sample, now: float) -> None:
        raise NotImplementedError  # pragma: no cover

    def baseline(self) -> float | None:
        """The latency this algorithm compares recent calls with, if it has one."""
        return None


def _count(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(name, value, f"an int in [{low}, {high}]")
    return value


def _number(name: str, value: object, *, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(name, value, f"a number in [{low:g}, {high:g}]")
    if not low <= value <= high:
        raise ConfigError(name, value, f"a number in [{low:g}, {high:g}]")
    return float(value)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ConfigError(name, value, "a finite number > 0")
    return float(value)


class _Probing(_Estimator):
    """An estimator that now and then measures the no-load latency: the limit drops
    to a few calls until ``probe_samples`` calls have run at that concurrency."""

    __slots__ = (
        "probe_count",
        "probe_limit",
        "probe_samples",
        "probe_seen",
        "probe_since",
        "probe_total",
        "probing",
    )

    def __init__(
        self, initial: float, low: float, high: float, window: int, probe_samples: int
    ) -> None:
        super().__init__(initial, low, high, window)
        self.probe_samples = probe_samples
        self.probing = False
        self.probe_limit = 0.0
        self.probe_since = 0.0
        self.probe_total = 0.0
        self.probe_count = 0
        self.probe_seen = 0

    def current(self) -> float:
        return self.probe_limit if self.probing else self.limit

    def feed(self, sample: Sample, now: float) -> None:
        if self.probing:
            self._probe(sample, now)
            return
        _Estimator.feed(self, sample, now)
        if self._due(now):
            self.probing = True
            self.probe_limit = max(self.low, min(self.limit, _PROBE_CONCURRENCY))
            self.probe_since = now
            self.probe_total = 0.0
            self.probe_count = self.probe_seen = 0

    def _probe(self, sample: Sample, now: float) -> None:
        # Only calls that started after the probe began, at its concurrency, count.
        self.probe_seen += 1
        if sample.start >= self.probe_since and sample.in_flight <= self.probe_limit:
            self.probe_total += max(sample.rtt, _MIN_RTT)
            self.probe_count += 1
        if self.probe_count >= self.probe_samples or self.probe_seen >= 100 * self.probe_samples:
            self.probing = False
            if self.probe_count:
                self._probed(self.probe_total / self.probe_count, now)

    def _due(self, now: float) -> bool:
        raise NotImplementedError  # pragma: no cover

    def _probed(self, latency: float, now: float) -> None:
        raise NotImplementedError  # pragma: no cover


class LimitAlgorithm:
    """Base of the limit algorithms: a frozen configuration that starts the moving
    state of each policy using it (one instance may serve many policies)."""

    __slots__ = ()

    name: ClassVar[str] = "algorithm"
    default_smoothing: ClassVar[float | None] = None

    def _start(self, initial: int, low: int, high: int, smoothing: float | None) -> _Estimator:
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True, slots=True, kw_only=True)
class Gradient2(LimitAlgorithm):
    """The limit follows the ratio of long-term to short-term latency.

    Samples are taken in windows of ``window`` calls; each window's mean latency
    is the short-term latency. Per window: ``gradient = clamp(tolerance * long /
    short, 0.5, 1)``, the target is ``limit * gradient + queue_size``, and the
    limit moves ``smoothing`` of the way towards it. ``long`` is an exponential
    average over ``long_window`` calls (a plain average for the first ten
    windows); when it is more than twice the short-term latency (recovering from
    a spike) it decays 5 % per window. While fewer than half the slots are in use
    the limit does not grow (the caller, not the dependency, sets the pace). A
    window with a drop counts as the lowest gradient, 0.5.

    Left alone, a long-term average follows a latency that stays high, and the
    limit creeps upwards under sustained overload. So, as Envoy's gradient
    controller does, every ``probe_interval`` seconds (and once at the start) the
    limit drops to 3 calls (or ``min_limit``) until ``probe_samples`` calls have
    run at that concurrency: their mean latency caps the long-term latency until
    the next probe. A probe costs a brief dip in throughput; ``None`` turns
    probes off.

    Args:
        tolerance: how much slower than the long-term latency a window may be
            before the limit shrinks (1.5: 50 % slower).
        long_window: calls in the long-term average.
        queue_size: slots added on top of ``limit * gradient`` at every step: the
            headroom that lets the limit grow, and lets a few calls queue.
        window: calls per update (their mean latency is one measurement).
        probe_interval: seconds between two no-load probes (``None``: no probes).
        probe_samples: calls measured by a probe.
    """

    name: ClassVar[str] = "gradient2"
    default_smoothing: ClassVar[float | None] = 0.2

    tolerance: float = 1.5
    long_window: int = 600
    queue_size: float = 4.0
    window: int = 10
    probe_interval: Duration | None = 60.0
    probe_samples: int = 50

    def __post_init__(self) -> None:
        object.__setattr__(self, "tolerance", _number("tolerance", self.tolerance, low=1, high=100))
        _count("long_window", self.long_window, 1, 10**7)
        object.__setattr__(
            self, "queue_size", _number("queue_size", self.queue_size, low=0, high=1e6)
        )
        _count("window", self.window, 1, 10**6)
        if self.probe_interval is not None:
            object.__setattr__(
                self,
                "probe_interval",
                to_seconds(self.probe_interval, name="probe_interval", allow_zero=False),
            )
        _count("probe_samples", self.probe_samples, 1, 10**6)

    def _start(self, initial: int, low: int, high: int, smoothing: float | None) -> _Estimator:
        assert smoothing is not None
        return _Gradient2State(self, initial, low, high, smoothing)


class _Gradient2State(_Probing):
    __slots__ = (
        "decay",
        "floor",
        "long",
        "next_probe",
        "probe_every",
        "queue_size",
        "smoothing",
        "tolerance",
        "updates",
    )

    _WARMUP: ClassVar[int] = 10

    def __init__(self, cfg: Gradient2, initial: int, low: int, high: int, smoothing: float) -> None:
        super().__init__(initial, low, high, cfg.window, cfg.probe_samples)
        self.tolerance = cfg.tolerance
        self.queue_size = cfg.queue_size
        self.decay = 2.0 / (max(1.0, cfg.long_window / cfg.window) + 1)
        self.smoothing = smoothing
        self.long = 0.0
        self.updates = 0
        every = cfg.probe_interval
        self.probe_every = 0.0 if every is None else to_seconds(every, name="probe_interval")
        self.next_probe = 0.0
        self.floor = math.inf

    def _due(self, now: float) -> bool:
        # The first probe follows the first window; then one every probe_interval.
        return bool(self.probe_every) and self.updates > 0 and now >= self.next_probe

    def _probed(self, latency: float, now: float) -> None:
        # The long-term latency may not exceed the no-load latency until the next
        # probe, so it cannot drift upwards with a limit that stays too high.
        self.floor = latency
        self.long = min(self.long, latency)
        self.next_probe = now + self.probe_every

    def update(self, sample: Sample, now: float) -> None:
        short = max(sample.rtt, _MIN_RTT)
        self.updates += 1
        if self.updates <= self._WARMUP:
            self.long += (short - self.long) / self.updates
        else:
            self.long += (short - self.long) * self.decay
        self.long = min(self.long, self.floor)
        if self.long > 2 * short:  # recovering from a spike: forget it faster
            self.long *= 0.95
        limit = self.limit
        if sample.dropped:
            gradient = 0.5
        else:
            if sample.in_flight * 2 < limit:
                return  # the caller sets the pace: no evidence for a larger limit
            gradient = max(0.5, min(1.0, self.tolerance * self.long / short))
        target = limit * gradient + self.queue_size
        self.limit = self.clamp(limit + (target - limit) * self.smoothing)

    def baseline(self) -> float | None:
        return self.long if self.updates else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AIMD(LimitAlgorithm):
    """Additive increase, multiplicative decrease (the loss-based rule of TCP).

    A call that succeeds within ``latency_threshold`` while at least half the slots
    are in use adds ``increase / limit`` (``increase`` per full round of calls); a
    drop, or a call slower than the threshold, multiplies the limit by
    ``backoff_ratio``, once per round: calls that started before the last decrease
    do not decrease it again.

    Args:
        latency_threshold: a call slower than this counts as a drop (seconds or
            ``"250ms"``; ``None``: only drops decrease the limit).
        backoff_ratio: the multiplicative decrease, in (0, 1).
        increase: slots added per round of calls.
    """

    name: ClassVar[str] = "aimd"

    latency_threshold: Duration | None = 5.0
    backoff_ratio: float = 0.9
    increase: float = 1.0

    def __post_init__(self) -> None:
        if self.latency_threshold is not None:
            object.__setattr__(
                self,
                "latency_threshold",
                to_seconds(self.latency_threshold, name="latency_threshold", allow_zero=False),
            )
        ratio = self.backoff_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio < 1:
            raise ConfigError("backoff_ratio", ratio, "a number in (0, 1), such as 0.9")
        object.__setattr__(self, "backoff_ratio", float(ratio))
        object.__setattr__(self, "increase", _positive("increase", self.increase))

    def _start(self, initial: int, low: int, high: int, smoothing: float | None) -> _Estimator:
        return _AIMDState(self, initial, low, high)


class _AIMDState(_Estimator):
    __slots__ = ("backed_off_at", "increase", "ratio", "threshold")

    def __init__(self, cfg: AIMD, initial: int, low: int, high: int) -> None:
        super().__init__(initial, low, high)
        limit = cfg.latency_threshold
        self.threshold = math.inf if limit is None else to_seconds(limit, name="latency_threshold")
        self.ratio = cfg.backoff_ratio
        self.increase = cfg.increase
        self.backed_off_at = -math.inf

    def update(self, sample: Sample, now: float) -> None:
        if sample.dropped or sample.rtt > self.threshold:
            if sample.start >= self.backed_off_at:
                self.limit = self.clamp(self.limit * self.ratio)
                self.backed_off_at = now
        elif sample.in_flight * 2 >= self.limit:
            self.limit = self.clamp(self.limit + self.increase / self.limit)

    def baseline(self) -> float | None:
        return None if self.threshold == math.inf else self.threshold


@dataclass(frozen=True, slots=True, kw_only=True)
class Vegas(LimitAlgorithm):
    """Keep the estimated queue at the dependency small (TCP Vegas).

    The no-load latency is measured by probes, as Gradient2 does (the limit drops
    to 3 calls until ``probe_samples`` calls ran at that concurrency): one at the
    start, then one every ``probe_multiplier * limit`` windows (with jitter), so
    it follows a dependency that became slower for good; a window at 3 calls in
    flight or fewer that is faster lowers it in between. Per window of ``window``
    calls, the queue is estimated as ``limit * (1 - no_load / latency)``; with
    ``step = max(1, log10(limit))`` the limit grows by ``beta * step`` when the
    queue is at most ``step``, by ``step`` when it is under ``alpha * step``, and
    shrinks by ``step`` above ``beta * step`` or on a drop; each change moves the
    limit ``smoothing`` of the way.

    Args:
        alpha: the queue (in steps) below which the limit grows.
        beta: the queue (in steps) above which it shrinks.
        probe_multiplier: rounds of the limit between two probes.
        window: calls per update (their mean latency is one measurement).
        probe_samples: calls measured by a probe.
        rng: the jitter of the probes (floats in ``[0, 1)``).
    """

    name: ClassVar[str] = "vegas"
    default_smoothing: ClassVar[float | None] = 1.0

    alpha: float = 3.0
    beta: float = 6.0
    probe_multiplier: float = 30.0
    window: int = 10
    probe_samples: int = 50
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        alpha = _positive("alpha", self.alpha)
        beta = _positive("beta", self.beta)
        if beta <= alpha:
            raise ConfigError("beta", self.beta, f"a number > alpha ({alpha:g})")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)
        object.__setattr__(
            self, "probe_multiplier", _positive("probe_multiplier", self.probe_multiplier)
        )
        _count("window", self.window, 1, 10**6)
        _count("probe_samples", self.probe_samples, 1, 10**6)
        if not callable(self.rng):
            raise ConfigError("rng", self.rng, "a callable returning floats in [0, 1)")

    def _start(self, initial: int, low: int, high: int, smoothing: float | None) -> _Estimator:
        assert smoothing is not None
        return _VegasState(self, initial, low, high, smoothing)


class _VegasState(_Probing):
    __slots__ = (
        "alpha",
        "beta",
        "multiplier",
        "next_probe",
        "no_load",
        "rng",
        "smoothing",
        "updates",
    )

    def __init__(self, cfg: Vegas, initial: int, low: int, high: int, smoothing: float) -> None:
        super().__init__(initial, low, high, cfg.window, cfg.probe_samples)
        self.alpha = cfg.alpha
        self.beta = cfg.beta
        self.multiplier = cfg.probe_multiplier
        self.rng = cfg.rng
        self.smoothing = smoothing
        self.no_load = 0.0
        self.updates = 0
        self.next_probe = 0.0  # probe at once, then every probe_multiplier rounds

    def _jitter(self) -> float:
        return (0.5 + 0.5 * self.rng()) * self.multiplier

    def _due(self, now: float) -> bool:
        return self.no_load > 0 and self.updates >= self.next_probe * self.limit

    def _probed(self, latency: float, now: float) -> None:
        self.no_load = latency  # the dependency may have changed for good
        self.updates = 0
        self.next_probe = self._jitter()

    def update(self, sample: Sample, now: float) -> None:
        rtt = max(sample.rtt, _MIN_RTT)
        if self.no_load == 0.0:
            self.no_load = rtt  # a first guess, until the first probe
            return
        if rtt < self.no_load and sample.in_flight <= _PROBE_CONCURRENCY:
            self.no_load = rtt  # only a call at low concurrency is a no-load measurement
        self.updates += 1
        limit = self.limit
        step = max(1.0, math.log10(limit))
        if sample.dropped:
            target = limit - step
        elif sample.in_flight * 2 < limit:
            return
        else:
            queue = math.ceil(limit * (1 - self.no_load / rtt))
            if queue <= step:
                target = limit + self.beta * step
            elif queue < self.alpha * step:
                target = limit + step
            elif queue > self.beta * step:
                target = limit - step
            else:
                return
        target = self.clamp(target)
        self.limit = self.clamp(limit + (target - limit) * self.smoothing)

    def baseline(self) -> float | None:
        return self.no_load or None


_ALGORITHMS: dict[str, type[LimitAlgorithm]] = {
    "gradient2": Gradient2,
    "aimd": AIMD,
    "vegas": Vegas,
}


def _drop_on(value: object) -> DropOn:
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, tuple) and all(
        isinstance(item, type) and issubclass(item, BaseException) for item in value
    ):
        return value
    if callable(value) and not isinstance(value, type | tuple):
        return value
    raise ConfigError("drop_on", value, "exception types or a predicate(exception) -> bool")


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveConcurrencyConfig:
    """The validated settings of an :class:`AdaptiveConcurrency` (see its docs)."""

    algorithm: LimitAlgorithm = field(default_factory=Gradient2)
    min_limit: int = 1
    max_limit: int = 200
    initial_limit: int = 20
    smoothing: float | None = None
    max_queued: int = 0
    max_wait: float | None = 0.0
    drop_on: DropOn = (TimeoutError, RejectedError)

    def __post_init__(self) -> None:
        algorithm: object = self.algorithm
        if isinstance(algorithm, str):
            kind = _ALGORITHMS.get(algorithm.strip().lower())
            if kind is None:
                raise ConfigError(
                    "algorithm", algorithm, "'gradient2', 'aimd', 'vegas' or an algorithm object"
                )
            algorithm = kind()
            object.__setattr__(self, "algorithm", algorithm)
        if not isinstance(algorithm, LimitAlgorithm):
            raise ConfigError(
                "algorithm", algorithm, "'gradient2', 'aimd', 'vegas' or an algorithm object"
            )
        for name in ("min_limit", "max_limit", "initial_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**6:
                raise ConfigError(name, value, "an int in [1, 1000000]")
        if self.max_limit < self.min_limit:
            raise ConfigError(
                "max_limit", self.max_limit, f"an int >= min_limit ({self.min_limit})"
            )
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ConfigError(
                "initial_limit",
                self.initial_limit,
                f"an int between min_limit ({self.min_limit}) and max_limit ({self.max_limit})",
            )
        if self.smoothing is None:
            object.__setattr__(self, "smoothing", algorithm.default_smoothing)
        elif algorithm.default_smoothing is None:
            raise ConfigError(
                "smoothing",
                self.smoothing,
                f"None for {algorithm.name} (it moves by its own steps)",
            )
        else:
            smoothing = self.smoothing
            if (
                isinstance(smoothing, bool)
                or not isinstance(smoothing, int | float)
                or not 0 < smoothing <= 1
            ):
                raise ConfigError("smoothing", smoothing, "a number in (0, 1]")
            object.__setattr__(self, "smoothing", float(smoothing))
        queue = BulkheadConfig(
            max_concurrent=self.initial_limit, max_queued=self.max_queued, max_wait=self.max_wait
        )
        object.__setattr__(self, "max_wait", queue.max_wait)
        object.__setattr__(self, "drop_on", _drop_on(self.drop_on))

    def is_drop(self, exc: BaseException) -> bool:
        """Whether *exc* is an overload signal (a drop) rather than a latency sample."""
        drop_on = self.drop_on
        if isinstance(drop_on, tuple):
            return isinstance(exc, drop_on)
        return bool(drop_on(exc))


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveConcurrencyStats:
    """A snapshot of an adaptive limit, from :meth:`AdaptiveConcurrency.stats`.

    Attributes:
        algorithm: ``"gradient2"``, ``"aimd"`` or ``"vegas"``.
        limit: the slots now (the estimate rounded down, at least ``min_limit``).
        estimate: the algorithm's unrounded limit.
        min_limit, max_limit: the bounds.
        in_flight: calls holding a slot now (may exceed a limit that just shrank).
        queued: callers waiting now.
        admitted: calls admitted since creation.
        rejected: callers refused at once (slots and queue full).
        timed_out: waiters that gave up after ``max_wait``.
        samples: calls whose latency was measured (drops included).
        dropped: calls that ended with an overload signal (``drop_on``).
        latency: the smoothed latency of recent calls, in seconds (``None``: no sample yet).
        baseline: what the algorithm compares latency with (Gradient2: the long-term
            latency; Vegas: the no-load latency; AIMD: its threshold), or ``None``.
    """

    algorithm: str
    limit: int
    estimate: float
    min_limit: int
    max_limit: int
    in_flight: int
    queued: int
    admitted: int
    rejected: int
    timed_out: int
    samples: int
    dropped: int
    latency: float | None
    baseline: float | None


class Permit:
    """A slot taken with :meth:`AdaptiveConcurrency.try_acquire`: report how the work
    it guards ended, exactly once (later reports are ignored).

    For work that is not one function call (a streamed response, a job handed to
    another thread), or for driving the limit from a simulation.
    """

    __slots__ = ("_done", "_policy", "in_flight", "start")

    def __init__(self, policy: AdaptiveConcurrency, start: float, in_flight: int) -> None:
        self._policy = policy
        self._done = False
        self.start = start
        """The clock time at which the slot was taken."""
        self.in_flight = in_flight
        """Calls holding a slot when it was taken, itself included."""

    def success(self) -> None:
        """The work ended normally: its latency is a sample."""
        if not self._done:
            self._done = True
            self._policy._sample(self.start, self.in_flight, False)

    def drop(self) -> None:
        """The work ended with an overload signal (timed out, refused downstream)."""
        if not self._done:
            self._done = True
            self._policy._sample(self.start, self.in_flight, True)

    def ignore(self) -> None:
        """Give the slot back without a sample (cancelled, or not representative)."""
        if not self._done:
            self._done = True
            self._policy._core.leave()

    def __repr__(self) -> str:
        state = "done" if self._done else "held"
        return f"<Permit {state} start={self.start!r} in_flight={self.in_flight}>"


class AdaptiveConcurrency(SlotPolicy):
    """Limit concurrent calls to a number that follows the dependency's latency.

    Args:
        algorithm: ``"gradient2"`` (default), ``"aimd"``, ``"vegas"``, or a
            configured :class:`Gradient2`, :class:`AIMD` or :class:`Vegas`.
        min_limit: the limit never goes below this (default 1).
        max_limit: nor above this (default 200).
        initial_limit: the limit before any sample (default 20).
        smoothing: how far each update moves the limit towards the algorithm's
            target, in (0, 1] (``None``: Gradient2 0.2, Vegas 1.0; AIMD has none).
        max_queued: callers allowed to wait for a slot (default 0: refuse at once).
        max_wait: how long a queued caller waits at most (required, > 0, with a queue).
        drop_on: exceptions that are overload signals (default ``TimeoutError`` and
            :class:`RejectedError`), as types or a predicate; other exceptions are
            ordinary latency samples, and cancellation is neither.
        name, clock, listeners: as for every policy.

    Refusals raise :class:`BulkheadFullError` (reason ``"bulkhead_full"`` or
    ``"bulkhead_timeout"``) whose ``retry_after`` is the smoothed latency of
    recent calls (about when a slot frees up; ``None`` before the first sample),
    and emit ``CallRejected``.
    """

    kind = "adaptive_concurrency"

    def __init__(
        self,
        algorithm: AlgorithmName | LimitAlgorithm = "gradient2",
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        initial_limit: int = 20,
        smoothing: float | None = None,
        max_queued: int = 0,
        max_wait: Duration | None = 0.0,
        drop_on: DropOn = (TimeoutError, RejectedError),
        name: str | None = None,
        clock: Clock | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        self.config = AdaptiveConcurrencyConfig(
            algorithm=algorithm,  # type: ignore[arg-type]
            min_limit=min_limit,
            max_limit=max_limit,
            initial_limit=initial_limit,
            smoothing=smoothing,
            max_queued=max_queued,
            max_wait=max_wait,  # type: ignore[arg-type]
            drop_on=drop_on,
        )
        self._init_base(name, clock, listeners)
        cfg = self.config
        self._estimator = cfg.algorithm._start(
            cfg.initial_limit, cfg.min_limit, cfg.max_limit, cfg.smoothing
        )
        self._core = _BulkheadCore(
            BulkheadConfig(
                max_concurrent=cfg.initial_limit, max_queued=cfg.max_queued, max_wait=cfg.max_wait
            ),
            self.clock.monotonic,
        )
        self._samples = 0
        self._dropped = 0
        self._latency: float | None = None

    # -- the limit -----------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """The number of slots now."""
        return self._core.max_concurrent

    def _sample(self, start: float, in_flight: int, dropped: bool) -> None:
        """A call that held a slot since *start* ended: update the limit, free the slot."""
        now = self.clock.monotonic()
        sample = Sample(start, now - start, in_flight, dropped)
        floor = self.config.min_limit
        estimator = self._estimator
        core = self._core
        moved: list[int] = []

        def resize() -> int:  # runs under the slots' lock
            self._samples += 1
            if dropped:
                self._dropped += 1
            latency = self._latency
            rtt = sample.rtt
            self._latency = rtt if latency is None else latency + (rtt - latency) * _LATENCY_WEIGHT
            estimator.feed(sample, now)
            slots = max(floor, int(estimator.current()))
            if slots != core.max_concurrent:
                moved.extend((core.max_concurrent, slots))
            return slots

        core.leave(resize)
        if moved and self._emitter.wants(ConcurrencyLimitChanged):
            self._emitter.emit(
                ConcurrencyLimitChanged(
                    policy=self.name, kind=self.kind, at=now, old=moved[0], new=moved[1]
                )
            )

    def try_acquire(self) -> Permit | None:
        """Take a slot without waiting: a :class:`Permit` to report on, or ``None``
        (counted as a rejection; no event) when the limit is reached."""
        core = self._core
        if not core.try_enter():
            return None
        return Permit(self, self.clock.monotonic(), core.in_flight)

    def stats(self) -> AdaptiveConcurrencyStats:
        """A frozen snapshot of the limit, the slots and the counters."""
        core = self._core
        with core.lock:
            if core.waiters:
                core._expire(core.now())
            estimator = self._estimator
            return AdaptiveConcurrencyStats(
                algorithm=self.config.algorithm.name,
                limit=core.max_concurrent,
                estimate=estimator.limit,
                min_limit=self.config.min_limit,
                max_limit=self.config.max_limit,
                in_flight=core.in_flight,
                queued=len(core.waiters),
                admitted=core.admitted,
                rejected=core.rejected,
                timed_out=core.timed_out,
                samples=self._samples,
                dropped=self._dropped,
                latency=self._latency,
                baseline=estimator.baseline(),
            )

    # -- driver helpers --------------------------------------------------------------------

    def _retry_after(self) -> float | None:
        latency = self._latency
        return None if latency is None else max(latency, 1e-3)

    def _reject(self, reason: str) -> BulkheadFullError:
        retry_after = self._retry_after()
        if self._emitter.wants(CallRejected):
            self._emitter.emit(
                CallRejected(
                    policy=self.name,
                    kind=self.kind,
                    at=self.clock.monotonic(),
                    reason=reason,
                    retry_after=retry_after,
                )
            )
        return new_error(BulkheadFullError, self.name, None, reason, retry_after)

    def _ended(self, start: float, in_flight: int, exc: BaseException | None) -> None:
        if exc is not None and not isinstance(exc, Exception):
            self._core.leave()  # cancelled or interrupted: no sample
            return
        self._sample(start, in_flight, exc is not None and self.config.is_drop(exc))
        if self._emitter.listening:
            now = self.clock.monotonic()
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

    # -- the drivers -------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a slot, waiting in the queue if allowed."""
        core = self._core
        waiter = core.enter(_ThreadWaiter)
        if waiter is not None:
            self._wait(waiter)
        in_flight = core.in_flight
        start = self.clock.monotonic()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._ended(start, in_flight, exc)
            raise
        self._ended(start, in_flight, None)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` in a slot, waiting in the queue if allowed."""
        core = self._core
        waiter = core.enter(_TaskWaiter)
        if waiter is not None:
            await self._await_turn(waiter)
        in_flight = core.in_flight
        start = self.clock.monotonic()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._ended(start, in_flight, exc)
            raise
        self._ended(start, in_flight, None)
        return result

    def __repr__(self) -> str:
        cfg = self.config
        return (
            f"AdaptiveConcurrency({cfg.algorithm.name!r}, limit={self.limit}, "
            f"min_limit={cfg.min_limit}, max_limit={cfg.max_limit}, name={self.name!r})"
        )
