"""Sliding windows that tally a circuit breaker's recent outcomes in O(1) per call.

Two shapes, chosen with the breaker's ``window=`` argument:

* :class:`CountWindow` ``(size)``: the last ``size`` recorded calls (a ring).
* :class:`TimeWindow` ``(seconds, buckets=10)``: the calls recorded in the last
  ``seconds``, kept in ``buckets`` equal buckets of ``seconds / buckets`` each.
  Time is cut into buckets numbered ``floor(t / width)`` on the policy's clock;
  at time ``now`` the window holds the buckets numbered
  ``floor(now / width) - buckets + 1`` to ``floor(now / width)``, so an outcome
  stays counted for between ``seconds - width`` and ``seconds``.

Each outcome is a small int of flags (:data:`FAILURE`, :data:`SLOW`); a window
keeps three running totals (calls, failures, slow calls), so reading a rate never
scans the window. These are the exact rules a shared (Redis) store mirrors.

The tallies are not thread-safe on their own: the breaker's core calls them under
its lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeAlias

from ._duration import Duration, to_seconds
from ._errors import ConfigError

__all__ = [
    "FAILURE",
    "SLOW",
    "CountTally",
    "CountWindow",
    "Tally",
    "TimeTally",
    "TimeWindow",
    "Window",
]

FAILURE = 1
"""Outcome flag: the call failed."""
SLOW = 2
"""Outcome flag: the call took longer than ``slow_call_duration``."""

_MAX_BUCKETS = 10_000
_MAX_SIZE = 1_000_000
"""The largest count window: a byte per call, so at most 1 MB per breaker."""


def _positive_int(value: object, name: str, limit: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, value, "an int >= 1")
    if limit is not None and value > limit:
        raise ConfigError(name, value, f"an int between 1 and {limit}")
    return value


@dataclass(frozen=True, slots=True)
class CountWindow:
    """Judge the breaker on its last ``size`` calls (default 100, at most 1,000,000)."""

    size: int = 100

    def __post_init__(self) -> None:
        _positive_int(self.size, "window.size", _MAX_SIZE)

    def tally(self) -> CountTally:
        """A fresh, empty tally for this window."""
        return CountTally(self.size)


@dataclass(frozen=True, slots=True, init=False)
class TimeWindow:
    """Judge the breaker on the calls of the last ``seconds`` (default 60 s).

    ``buckets`` (default 10) sets the resolution: outcomes expire a bucket
    (``seconds / buckets``) at a time. ``seconds`` accepts a number, a
    ``timedelta`` or a string such as ``"30s"``; it is stored in seconds.
    """

    seconds: float
    buckets: int

    def __init__(self, seconds: Duration = 60.0, buckets: int = 10) -> None:
        object.__setattr__(
            self, "seconds", to_seconds(seconds, name="window.seconds", allow_zero=False)
        )
        object.__setattr__(self, "buckets", _positive_int(buckets, "window.buckets", _MAX_BUCKETS))

    @property
    def width(self) -> float:
        """The duration of one bucket, in seconds."""
        return self.seconds / self.buckets

    def tally(self) -> TimeTally:
        """A fresh, empty tally for this window."""
        return TimeTally(self.width, self.buckets)


Window: TypeAlias = CountWindow | TimeWindow
"""Either window shape."""


class CountTally:
    """Running totals over the last ``size`` outcomes (a ring of flag bytes)."""

    __slots__ = ("calls", "failures", "pos", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring = bytearray(size)
        self.pos = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome (flags), evicting the oldest once the ring is full."""
        pos = self.pos
        if self.calls == self.size:
            old = self.ring[pos]
            if old:
                self.failures -= old & FAILURE
                self.slow -= (old & SLOW) >> 1
        else:
            self.calls += 1
        self.ring[pos] = outcome
        if outcome:
            self.failures += outcome & FAILURE
            self.slow += (outcome & SLOW) >> 1
        pos += 1
        self.pos = 0 if pos == self.size else pos

    def add_successes(self, count: int) -> None:
        """Add *count* plain successes (as *count* ``record(0, now)`` calls would)."""
        if count >= self.size:
            self.ring = bytearray(self.size)
            self.calls = self.size
            self.failures = self.slow = 0
            return
        for _ in range(count):
            self.record(0, 0.0)

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` currently in the window."""
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        """Forget every outcome."""
        self.ring = bytearray(self.size)
        self.pos = self.calls = self.failures = self.slow = 0


class TimeTally:
    """Running totals over the outcomes of the last ``count`` buckets of ``width`` seconds."""

    __slots__ = (
        "bucket_calls",
        "bucket_failures",
        "bucket_slow",
        "calls",
        "count",
        "failures",
        "head",
        "slow",
        "width",
    )

    def __init__(self, width: float, count: int) -> None:
        self.width = width
        self.count = count
        self.bucket_calls = [0] * count
        self.bucket_failures = [0] * count
        self.bucket_slow = [0] * count
        self.head: int | None = None  # number of the newest bucket seen
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def _advance(self, index: int) -> None:
        head = self.head
        if head is None or index - head >= self.count:
            self.clear()
        elif index > head:
            count = self.count
            calls, failures, slow = self.bucket_calls, self.bucket_failures, self.bucket_slow
            for number in range(head + 1, index + 1):
                slot = number % count
                if calls[slot]:
                    self.calls -= calls[slot]
                    self.failures -= failures[slot]
                    self.slow -= slow[slot]
                    calls[slot] = failures[slot] = slow[slot] = 0
        else:
            return
        self.head = index

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome (flags) that ended at time *now*."""
        index = math.floor(now / self.width)
        self._advance(index)
        head = self.head
        assert head is not None
        if index <= head - self.count:
            return  # ended before the window's oldest bucket (a late report): already expired
        slot = index % self.count
        self.bucket_calls[slot] += 1
        self.calls += 1
        if outcome:
            failed, slow = outcome & FAILURE, (outcome & SLOW) >> 1
            self.bucket_failures[slot] += failed
            self.bucket_slow[slot] += slow
            self.failures += failed
            self.slow += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` in the window as seen at time *now*."""
        self._advance(math.floor(now / self.width))
        return self.calls, self.failures, self.slow

    def clear(self) -> None:
        """Forget every outcome."""
        count = self.count
        self.bucket_calls = [0] * count
        self.bucket_failures = [0] * count
        self.bucket_slow = [0] * count
        self.head = None
        self.calls = self.failures = self.slow = 0


Tally: TypeAlias = CountTally | TimeTally
"""The running state of either window."""
