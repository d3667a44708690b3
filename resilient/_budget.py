"""Retry budget: retries limited to a share of recent calls, so a fleet of
clients cannot multiply an outage.

Every call through a :class:`Retry` that names the budget *deposits* ``ratio``
of a retry; every retry *withdraws* one. Deposits expire after ``ttl``
seconds. On top of that, ``min_per_second`` retries are always allowed, so
low-traffic callers can still retry. With the defaults (``ratio=0.2``,
``min_per_second=3``, ``ttl=10s``) retries add at most 20 % load (plus
3 per second) however hard the dependency fails.

One budget can be shared by several ``Retry`` policies (and adapters): pass the
same object, or name it in a policy file's ``budgets:`` section. The state is
kept in ``buckets`` time slices of ``ttl / buckets`` seconds, so memory is
constant. :class:`~resilient.backends.redis.RedisRetryBudget` keeps the same
counts in Redis, so that a whole fleet shares one budget.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from ._clock import SYSTEM_CLOCK, Clock
from ._duration import to_seconds
from ._errors import ConfigError

__all__ = ["RetryBudget", "RetryBudgetStats"]


@dataclass(frozen=True, slots=True)
class RetryBudgetStats:
    """A snapshot: calls and retries in the current window, and retries left now."""

    calls: int
    retries: int
    denied: int
    available: float


class RetryBudget:
    """Allow retries up to ``ratio`` of recent calls plus ``min_per_second``.

    Args:
        ratio: retries allowed per call (0.2 = 20 % extra load at most).
        min_per_second: retries always allowed per second regardless of traffic.
        ttl: how long a call's deposit counts (seconds or "10s").
        buckets: time slices the window is kept in (precision vs memory).
        clock: the time source (``FakeClock`` in tests).
    """

    def __init__(
        self,
        ratio: float = 0.2,
        *,
        min_per_second: float = 3.0,
        ttl: float | str = 10.0,
        buckets: int = 10,
        name: str = "retry_budget",
        clock: Clock | None = None,
    ) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1000:
            raise ConfigError("ratio", ratio, "a number >= 0 (retries per call)")
        if (
            isinstance(min_per_second, bool)
            or not isinstance(min_per_second, int | float)
            or not 0 <= min_per_second < math.inf
        ):
            raise ConfigError("min_per_second", min_per_second, "a finite number >= 0")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 1000:
            raise ConfigError("buckets", buckets, "an int between 1 and 1000")
        self.ratio = float(ratio)
        self.min_per_second = float(min_per_second)
        self.ttl = to_seconds(ttl, name="ttl", allow_zero=False)
        self.name = name
        self.clock = clock or SYSTEM_CLOCK
        self._width = self.ttl / buckets
        self._calls = [0] * buckets
        self._retries = [0] * buckets
        self._epochs = [-1] * buckets
        self._denied = 0
        self._lock = threading.Lock()

    def _slot(self, now: float) -> int:
        """The bucket for *now*, cleared if it holds an expired slice (lock held)."""
        epoch = int(now // self._width)
        index = epoch % len(self._epochs)
        if self._epochs[index] != epoch:
            self._epochs[index] = epoch
            self._calls[index] = 0
            self._retries[index] = 0
        return index

    def _live(self, now: float) -> tuple[int, int]:
        oldest = int(now // self._width) - len(self._epochs) + 1
        calls = retries = 0
        for i, epoch in enumerate(self._epochs):
            if epoch >= oldest:
                calls += self._calls[i]
                retries += self._retries[i]
        return calls, retries

    def _available(self, calls: int, retries: int) -> float:
        return self.min_per_second * self.ttl + self.ratio * calls - retries

    def record_call(self) -> None:
        """A call started (its first attempt): deposit ``ratio`` of a retry."""
        now = self.clock.monotonic()
        with self._lock:
            self._calls[self._slot(now)] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; ``False`` (and nothing taken) if it is empty."""
        now = self.clock.monotonic()
        with self._lock:
            calls, retries = self._live(now)
            if self._available(calls, retries) < 1:
                self._denied += 1
                return False
            self._retries[self._slot(now)] += 1
            return True

    async def arecord_call(self) -> None:
        """Async :meth:`record_call` (what ``Retry.acall`` uses; here, the same)."""
        self.record_call()

    async def atry_spend(self) -> bool:
        """Async :meth:`try_spend` (what ``Retry.acall`` uses; here, the same)."""
        return self.try_spend()

    def stats(self) -> RetryBudgetStats:
        now = self.clock.monotonic()
        with self._lock:
            calls, retries = self._live(now)
            return RetryBudgetStats(calls, retries, self._denied, self._available(calls, retries))

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio}, min_per_second={self.min_per_second}, ttl={self.ttl})"
        )
