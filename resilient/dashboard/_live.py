"""``LiveStats``: a listener that turns the event stream into rolling rates.

It hears the same events as the metric listeners (``CallSucceeded``, ``CallFailed``,
``CallRejected``, ``RetryScheduled``, ``TimeoutExceeded``, ``CircuitStateChanged``)
and keeps, per policy and policy type, a ring of one-second buckets on its clock:
calls, failures, rejections by reason, retries and timeouts. Rates are read from
the ring (events per second over the last ``window`` seconds), and the ring is the
short history a dashboard chart draws.

Memory is bounded: ``history`` buckets per series, at most ``max_series`` series
(policy, type), and per policy at most ``max_keys`` keys with their own rejection
counts (the least recently rejected key is forgotten first). Recording an event is
a dictionary lookup and a few integer updates under a short lock; nothing in it
waits, allocates per viewer or does I/O. Circuit state changes are also handed to
*watchers* (the dashboard's live stream wakes on them), outside the lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .._clock import SYSTEM_CLOCK, Clock
from .._errors import ConfigError
from ..observability._events import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    Event,
    RetryScheduled,
    TimeoutExceeded,
    plain,
)

__all__ = ["LiveStats", "StateChange"]

_CALLS, _FAILURES, _RETRIES, _TIMEOUTS = 0, 1, 2, 3

# The policy types whose call events count a card's calls (rate limiters emit none).
CALL_KINDS = frozenset(
    {"retry", "circuit_breaker", "bulkhead", "adaptive_concurrency", "throttle", "fallback"}
)

_KEY_TEXT = 100


class StateChange:
    """A circuit state change as the dashboard reports it (plain values)."""

    __slots__ = ("at", "key", "new", "old", "policy", "time", "why")

    def __init__(self, event: CircuitStateChanged, wall: float) -> None:
        self.policy = event.policy
        self.key = None if event.key is None else str(event.key)[:_KEY_TEXT]
        self.old = plain(event.old)
        self.new = plain(event.new)
        self.why = event.why
        self.at = event.at
        self.time = wall

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "why": self.why,
            "time": round(self.time, 3),
        }


class _Ring:
    """Counts per time bucket for one series: four counters and rejections by reason."""

    __slots__ = ("counts", "epochs", "first", "rejections")

    def __init__(self, size: int, epoch: int) -> None:
        self.epochs = [-1] * size
        self.counts = [[0, 0, 0, 0] for _ in range(size)]
        self.rejections: list[dict[str, int] | None] = [None] * size
        self.first = epoch

    def slot(self, epoch: int) -> int:
        """The bucket index for *epoch*, emptied if it held an older second (lock held)."""
        index = epoch % len(self.epochs)
        if self.epochs[index] != epoch:
            self.epochs[index] = epoch
            counts = self.counts[index]
            counts[0] = counts[1] = counts[2] = counts[3] = 0
            self.rejections[index] = None
        return index

    def reject(self, epoch: int, reason: str) -> None:
        index = self.slot(epoch)
        found = self.rejections[index]
        if found is None:
            self.rejections[index] = {reason: 1}
        else:
            found[reason] = found.get(reason, 0) + 1

    def totals(self, oldest: int, newest: int) -> tuple[list[int], dict[str, int]]:
        """Counts and rejections by reason over the epochs ``oldest..newest`` (lock held)."""
        sums = [0, 0, 0, 0]
        reasons: dict[str, int] = {}
        for index, epoch in enumerate(self.epochs):
            if oldest <= epoch <= newest:
                counts = self.counts[index]
                for i in range(4):
                    sums[i] += counts[i]
                found = self.rejections[index]
                if found:
                    for reason, count in found.items():
                        reasons[reason] = reasons.get(reason, 0) + count
        return sums, reasons

    def per_epoch(self, epoch: int) -> tuple[list[int], int] | None:
        """The counts and the rejection total of one epoch, or ``None`` (lock held)."""
        index = epoch % len(self.epochs)
        if self.epochs[index] != epoch:
            return None
        found = self.rejections[index]
        return self.counts[index], sum(found.values()) if found else 0


class LiveStats:
    """A listener that keeps rolling per-policy rates for a live view.

    Give it to the policies (``attach()``, or a policy's ``listeners=``), then read
    :meth:`rates` and :meth:`history`. The dashboard makes one for the policies it
    shows; build your own to share one between several views.

    Args:
        clock: the clock its buckets follow (``FakeClock`` in tests); default the
            system clock.
        window: the seconds a rate is averaged over (default 10).
        history: the seconds of per-second history kept (default 60; at least *window*).
        max_series: the most (policy, type) series kept; events of further ones
            are counted in :attr:`dropped` only.
        max_keys: per policy, the most keys with their own rejection counts.

    Attributes:
        call_events: ``True``: it needs the per-call events (calls per second).
        dropped: events not recorded because ``max_series`` was reached.
    """

    call_events = True

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        window: float = 10.0,
        history: int = 60,
        max_series: int = 1000,
        max_keys: int = 100,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int | float) or not window >= 1:
            raise ConfigError("window", window, "a number of seconds >= 1")
        if isinstance(history, bool) or not isinstance(history, int) or history < window:
            raise ConfigError("history", history, f"an int >= window ({window:g})")
        for name, value in (("max_series", max_series), ("max_keys", max_keys)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "an int >= 1")
        self.clock = clock or SYSTEM_CLOCK
        self.window = float(window)
        self.history_size = history
        self.max_series = max_series
        self.max_keys = max_keys
        self.dropped = 0
        self._now: Callable[[], float] = time.monotonic if clock is None else self.clock.monotonic
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Ring] = {}
        self._keys: dict[str, OrderedDict[str, _Ring]] = {}
        self._changes: deque[StateChange] = deque(maxlen=50)
        self._watchers: tuple[Callable[[StateChange], object], ...] = ()

    # -- recording (the app's path: short, never waits) -----------------------------------

    def __call__(self, event: Event) -> None:
        epoch = int(self._now())
        kind = type(event)
        key = (event.policy, event.kind)
        lock = self._lock
        lock.acquire()
        try:
            ring = self._series.get(key)
            if ring is None:
                ring = self._new_series(event.policy, event.kind, epoch)
                if ring is None:
                    return
            if kind is CallSucceeded:  # the common case, inlined
                epochs = ring.epochs
                index = epoch % len(epochs)
                if epochs[index] == epoch:
                    ring.counts[index][_CALLS] += 1
                else:
                    ring.counts[ring.slot(epoch)][_CALLS] += 1
            elif kind is CallFailed:
                counts = ring.counts[ring.slot(epoch)]
                counts[_CALLS] += 1
                counts[_FAILURES] += 1
            elif kind is CallRejected:
                reason = event.reason  # type: ignore[attr-defined]
                ring.reject(epoch, reason)
                if event.key is not None:
                    self._key_ring(event.policy, event.key, epoch).reject(epoch, reason)
            elif kind is RetryScheduled:
                ring.counts[ring.slot(epoch)][_RETRIES] += 1
            elif kind is TimeoutExceeded:
                ring.counts[ring.slot(epoch)][_TIMEOUTS] += 1
            elif kind is not CircuitStateChanged:
                return
        finally:
            lock.release()
        if kind is CircuitStateChanged:
            change = StateChange(event, time.time())  # type: ignore[arg-type]
            with self._lock:
                self._changes.append(change)
                watchers = self._watchers
            for watcher in watchers:
                try:
                    watcher(change)
                except Exception:  # a watcher must not break the policy's path
                    import logging

                    logging.getLogger("resilient").exception(
                        "resilient: a live-stats watcher raised"
                    )

    def _new_series(self, policy: str, kind: str, epoch: int) -> _Ring | None:
        if len(self._series) >= self.max_series:
            self.dropped += 1
            return None
        ring = self._series[(policy, kind)] = _Ring(self.history_size, epoch)
        return ring

    def _key_ring(self, policy: str, key: object, epoch: int) -> _Ring:
        keys = self._keys.get(policy)
        if keys is None:
            keys = self._keys[policy] = OrderedDict()
        text = key if isinstance(key, str) else str(key)
        text = text[:_KEY_TEXT]
        ring = keys.get(text)
        if ring is None:
            if len(keys) >= self.max_keys:
                keys.popitem(last=False)
            ring = keys[text] = _Ring(self.history_size, epoch)
        else:
            keys.move_to_end(text)
        return ring

    # -- watchers --------------------------------------------------------------------------

    def watch(self, watcher: Callable[[StateChange], object]) -> None:
        """Call *watcher* (from the thread of the policy) on every circuit state change.
        It must return at once (schedule work elsewhere) and should not raise."""
        with self._lock:
            self._watchers = (*self._watchers, watcher)

    def unwatch(self, watcher: Callable[[StateChange], object]) -> None:
        with self._lock:
            self._watchers = tuple(w for w in self._watchers if w is not watcher)

    def changes(self, since: float | None = None) -> list[StateChange]:
        """The last 50 circuit state changes (those after wall time *since*), oldest first."""
        with self._lock:
            found = list(self._changes)
        return found if since is None else [c for c in found if c.time > since]

    # -- attaching -------------------------------------------------------------------------

    def attach(self, policies: Iterable[Any]) -> int:
        """Add this listener to the policies' own listeners (pipelines are opened; a
        policy that has it already is skipped); how many policies it was added to."""
        from ..observability._emit import Emitter

        added = 0
        for policy in policies:
            emitter = getattr(policy, "_emitter", None)
            if isinstance(emitter, Emitter) and self not in emitter.local:
                emitter.add_local([self])
                added += 1
        return added

    # -- reading ---------------------------------------------------------------------------

    def rates(self, policy: str, kinds: Sequence[str] = ()) -> dict[str, Any]:
        """Events per second of *policy* over the last ``window`` seconds.

        *kinds*: the policy types of its steps, outermost first: calls are counted at
        the outermost step that reports calls (so that a retry's attempts are not
        counted twice). Rejections, retries and timeouts are summed over the steps.

        Returns ``{"window", "calls", "failures", "rejections": {reason: rate},
        "rejected", "retries", "timeouts"}`` (rates rounded to 3 decimals); ``calls``
        and ``failures`` are ``None`` when no step reports calls (a rate limiter alone).
        """
        now = self._now()
        newest = int(now)
        oldest = newest - int(self.window) + 1
        with self._lock:
            found = {k: ring for (p, k), ring in self._series.items() if p == policy}
            totals = {k: ring.totals(oldest, newest) for k, ring in found.items()}
            first = min((ring.first for ring in found.values()), default=newest)
        span = self._span(now, oldest, first)
        counter = _caller(kinds, totals)
        calls: float | None = None  # no step reports its calls (rate limiters only)
        failures: float | None = None
        if counter is not None:
            calls = _per(totals[counter][0][_CALLS], span)
            failures = _per(totals[counter][0][_FAILURES], span)
        elif any(kind in CALL_KINDS for kind in kinds):
            calls = failures = 0.0
        retries = sum(t[0][_RETRIES] for t in totals.values())
        timeouts = sum(t[0][_TIMEOUTS] for t in totals.values())
        reasons: dict[str, int] = {}
        for _, by_reason in totals.values():
            for reason, count in by_reason.items():
                reasons[reason] = reasons.get(reason, 0) + count
        return {
            "window": self.window,
            "calls": calls,
            "failures": failures,
            "rejections": {reason: _per(count, span) for reason, count in sorted(reasons.items())},
            "rejected": _per(sum(reasons.values()), span),
            "retries": _per(retries, span),
            "timeouts": _per(timeouts, span),
        }

    def key_rates(self, policy: str) -> dict[str, float]:
        """Rejections per second of each of *policy*'s keys with recent rejections."""
        now = self._now()
        newest = int(now)
        oldest = newest - int(self.window) + 1
        out: dict[str, float] = {}
        with self._lock:
            keys = self._keys.get(policy)
            if not keys:
                return out
            for text, ring in keys.items():
                _, reasons = ring.totals(oldest, newest)
                total = sum(reasons.values())
                if total:
                    out[text] = _per(total, self._span(now, oldest, ring.first))
        return out

    def history(
        self, policy: str, kinds: Sequence[str] = (), seconds: int | None = None
    ) -> dict[str, Any]:
        """Per-second counts of the last *seconds* (default: all kept), oldest first:
        ``{"end": last second (clock time), "calls": [...], "rejected": [...],
        "retries": [...], "failures": [...]}``; the current, partial second is left out."""
        size = self.history_size if seconds is None else max(1, min(seconds, self.history_size))
        newest = int(self._now()) - 1
        calls = [0] * size
        failures = [0] * size
        rejected = [0] * size
        retries = [0] * size
        with self._lock:
            found = {k: ring for (p, k), ring in self._series.items() if p == policy}
            counter = _caller(kinds, found)
            for offset in range(size):
                epoch = newest - size + 1 + offset
                for kind, ring in found.items():
                    got = ring.per_epoch(epoch)
                    if got is None:
                        continue
                    counts, rejections = got
                    if kind == counter:
                        calls[offset] += counts[_CALLS]
                        failures[offset] += counts[_FAILURES]
                    retries[offset] += counts[_RETRIES]
                    rejected[offset] += rejections
        return {
            "end": newest,
            "calls": calls,
            "failures": failures,
            "rejected": rejected,
            "retries": retries,
        }

    def _span(self, now: float, oldest: int, first: int) -> float:
        """Seconds the window covers: whole seconds since *oldest* (or since the series
        began), plus the current partial one; at least one second."""
        start = max(oldest, first)
        return max(1.0, now - start)

    def __repr__(self) -> str:
        return f"LiveStats(window={self.window:g}, series={len(self._series)})"


def _caller(kinds: Sequence[str], found: dict[str, Any]) -> str | None:
    """The series whose calls are a card's calls: the outermost call-reporting step."""
    for kind in kinds:
        if kind in CALL_KINDS and kind in found:
            return kind
    for kind in found:
        if kind in CALL_KINDS:
            return kind
    return None


def _per(count: int, span: float) -> float:
    return round(count / span, 3) if count else 0.0
