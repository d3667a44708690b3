"""Overload protection, simulated on a fake clock: goodput and latency of an overloaded
dependency with no protection, static bulkheads and the adaptive concurrency limit; the
throttle's shed share against the SRE formula; retry amplification with a budget.

The dependency: ``WORKERS`` workers shared by every request in flight (processor
sharing: past ``WORKERS`` concurrent requests each one slows down), service times
log-normal around ``SERVICE``. Requests arrive at random (Poisson) at ``LOAD`` times
the capacity, and their callers give up after ``TIMEOUT``: a response after that is
wasted work. Half-way through, half the workers go away (a replica dies), so the
capacity halves. A limiter in front of the dependency admits or sheds each request at
once (no queue); the dependency keeps working on requests whose callers gave up.

Time is a :class:`~resilient.testing.FakeClock` moved from event to event: the run
measures the policies' decisions, not the machine, and gives the same numbers anywhere
(the seed is fixed).
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import resilient as rs
from resilient.testing import FakeClock

from ._harness import Table

NAME = "adaptive"

WORKERS = 20
SERVICE = 0.010  # seconds: capacity 2,000 requests/s with every worker
LOAD = 1.5  # offered: 3,000 requests/s
TIMEOUT = 1.0
SIGMA = 0.5  # spread of the service time (log-normal)


class _Unlimited:
    """No protection: every request goes to the dependency."""

    limit = math.inf

    def try_acquire(self) -> Any:
        return _NOTHING


class _Nothing:
    def success(self) -> None:
        pass


_NOTHING = _Nothing()


class _Fixed:
    """A static cap on the requests in flight: what ``Bulkhead(n)`` does (no queue)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> Any:
        if self.in_flight >= self.limit:
            return None
        self.in_flight += 1
        return self

    def success(self) -> None:
        self.in_flight -= 1


@dataclass
class _Phase:
    served: int = 0
    late: int = 0
    shed: int = 0
    offered: int = 0
    latencies: list[float] = field(default_factory=list)
    limits: list[float] = field(default_factory=list)


def simulate(limiter: Any, clock: FakeClock, duration: float, seed: int = 11) -> list[_Phase]:
    """Run *duration* seconds (capacity halves at ``duration / 2``); one result per phase,
    each measured over its second half (the limit has had time to settle)."""
    rnd = random.Random(seed)
    workers = WORKERS
    rate = LOAD * WORKERS / SERVICE
    half = duration / 2
    phases = [_Phase(), _Phase()]
    now = clock.monotonic()
    origin = now
    done = 0.0  # work each request in service has received (processor sharing)
    jobs: list[tuple[float, int, float, Any]] = []
    seq = 0
    next_arrival = now + rnd.expovariate(rate)
    next_probe = now
    changed = False

    def phase(at: float) -> _Phase | None:
        t = at - origin
        if half / 2 <= t < half:
            return phases[0]
        if t >= half * 1.5:
            return phases[1]
        return None

    while now - origin < duration:
        speed = min(1.0, workers / len(jobs)) if jobs else 0.0
        next_done = now + (jobs[0][0] - done) / speed if jobs else math.inf
        change_at = math.inf if changed else origin + half
        at = min(next_arrival, next_done, change_at)
        done += (at - now) * speed
        now = at
        clock.advance(max(0.0, now - clock.monotonic()))
        if at == change_at:
            workers, changed = WORKERS // 2, True
        elif at == next_arrival:
            permit = limiter.try_acquire()
            current = phase(now)
            if current is not None:
                current.offered += 1
            if permit is None:
                if current is not None:
                    current.shed += 1
            else:
                seq += 1
                work = SERVICE * rnd.lognormvariate(-SIGMA * SIGMA / 2, SIGMA)
                heapq.heappush(jobs, (done + work, seq, now, permit))
            next_arrival = now + rnd.expovariate(rate)
        else:
            _, _, started, permit = heapq.heappop(jobs)
            permit.success()
            current = phase(now)
            if current is not None:
                latency = now - started
                if latency <= TIMEOUT:
                    current.served += 1
                    current.latencies.append(latency)
                else:
                    current.late += 1
        if now >= next_probe:
            current = phase(now)
            if current is not None:
                current.limits.append(limiter.limit)
            next_probe = now + 0.05
    return phases


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:,.0f}"


def _limit(values: list[float]) -> str:
    if not values or math.isinf(values[0]):
        return "-"
    return f"{statistics.fmean(values):.0f}"


def overload(quick: bool) -> list[Table]:
    duration = 40.0 if quick else 120.0
    measured = duration / 4
    candidates: list[tuple[str, Any]] = [
        ("no protection", lambda clock: _Unlimited()),
        ("static bulkhead, 20 (sized for full capacity)", lambda clock: _Fixed(20)),
        ("static bulkhead, 100 (generous)", lambda clock: _Fixed(100)),
        (
            "AdaptiveConcurrency, gradient2 (defaults)",
            lambda clock: rs.AdaptiveConcurrency("gradient2", clock=clock, max_limit=1000),
        ),
        (
            "AdaptiveConcurrency, aimd (slow call: > 50 ms)",
            lambda clock: rs.AdaptiveConcurrency(
                rs.AIMD(latency_threshold=0.05), clock=clock, max_limit=1000
            ),
        ),
        (
            "AdaptiveConcurrency, vegas (defaults)",
            lambda clock: rs.AdaptiveConcurrency("vegas", clock=clock, max_limit=1000),
        ),
    ]
    tables = []
    titles = (
        "Overloaded dependency: 20 workers (2,000 req/s), offered 3,000 req/s",
        "After half the workers go away: 10 workers (1,000 req/s), offered 3,000 req/s",
    )
    results = []
    for label, make in candidates:
        clock = FakeClock()
        results.append((label, simulate(make(clock), clock, duration)))
    for index, title in enumerate(titles):
        capacity = WORKERS / SERVICE / (1 if index == 0 else 2)
        table = Table(
            title,
            [
                "protection",
                "goodput (req/s)",
                "of capacity",
                "late (req/s)",
                "shed (req/s)",
                "p50 (ms)",
                "p99 (ms)",
                "mean limit",
            ],
        )
        for label, phases in results:
            p = phases[index]
            goodput = p.served / measured
            table.add(
                label,
                f"{goodput:,.0f}",
                f"{goodput / capacity:.0%}",
                f"{p.late / measured:,.0f}",
                f"{p.shed / measured:,.0f}",
                _ms(p.latencies, 0.5),
                _ms(p.latencies, 0.99),
                _limit(p.limits),
            )
        table.notes.append(
            f"Simulated on a fake clock, {duration:g} s (capacity halves at {duration / 2:g} s); "
            f"each phase measured over its last {measured:g} s. Service {SERVICE * 1000:g} ms "
            f"(log-normal, sigma {SIGMA}), callers give up after {TIMEOUT:g} s: goodput counts "
            "responses within that, latency percentiles are theirs; 'late' responses were "
            "computed for nobody; 'shed' requests were refused at once."
        )
        tables.append(table)
    tables[-1].notes.append(
        "Unprotected, the queue grows without bound: latency passes the callers' timeout and "
        "goodput collapses while the dependency stays busy. A static limit protects only as "
        "well as it was sized: the generous one queues 100 requests (5x the latency), and "
        "each lost worker multiplies the latency of a fixed limit. The adaptive limits follow "
        "the capacity: Gradient2 tolerates latency up to 1.5x the no-load latency "
        "(`tolerance`), AIMD stays under its threshold, Vegas keeps a queue of a few requests."
    )
    return tables


def throttle(quick: bool) -> Table:
    """The share the throttle sheds against a dependency that accepts a fixed rate."""
    offered, capacity = 100, 20
    seconds = 120 if quick else 600
    table = Table(
        "Throttle: offered 100 req/s, the dependency accepts 20 req/s",
        ["k", "shed locally", "formula: 1 - k x 20/100", "sent (req/s)", "accepted (req/s)"],
    )
    for k in (1.1, 1.5, 2.0, 3.0):
        clock = FakeClock()
        policy = rs.Throttle(k, window="30s", rng=random.Random(5).random, clock=clock)
        bucket = [float(capacity), 0.0]  # tokens, last refill

        def dependency() -> None:
            now = clock.monotonic()
            tokens = min(capacity, bucket[0] + (now - bucket[1]) * capacity)
            bucket[:] = [tokens, now]
            if tokens < 1:
                raise rs.RejectedError("dependency", reason="overloaded")
            bucket[0] = tokens - 1

        sent = accepted = shed = 0
        for i in range(offered * seconds):
            clock.advance(1 / offered)
            measuring = i >= offered * 60
            try:
                policy.call(dependency)
                accepted += measuring
                sent += measuring
            except rs.RateLimitedError:
                shed += measuring
            except rs.RejectedError:
                sent += measuring
        span = seconds - 60
        table.add(
            f"{k:g}",
            f"{shed / (offered * span):.1%}",
            f"{max(0.0, 1 - k * capacity / offered):.1%}",
            f"{sent / span:.1f}",
            f"{accepted / span:.1f}",
        )
    table.notes.append(
        "A refused request still counts as a request, so the client keeps sending about k times "
        "what the dependency accepts. Window 30 s; measured after the first minute."
    )
    return table


def budget(quick: bool) -> Table:
    """Attempts reaching a dead dependency, per call, with and without a retry budget."""
    calls = 2_000 if quick else 20_000
    table = Table(
        "Retry amplification in a full outage (Retry(attempts=3), 100 calls/s)",
        ["retry budget", "attempts per call"],
    )
    for label, make in (
        ("none", lambda clock: None),
        (
            "RetryBudget(ratio=0.2, min_per_second=3)",
            lambda clock: rs.RetryBudget(0.2, min_per_second=3, clock=clock),
        ),
        (
            "RetryBudget(ratio=0.1, min_per_second=0)",
            lambda clock: rs.RetryBudget(0.1, min_per_second=0, clock=clock),
        ),
    ):
        clock = FakeClock()
        retry = rs.Retry(3, backoff=rs.Backoff.constant(0), budget=make(clock), clock=clock)
        attempts = 0

        def down() -> None:
            nonlocal attempts
            attempts += 1
            raise ConnectionError

        for _ in range(calls):
            clock.advance(0.01)
            with contextlib.suppress(ConnectionError):
                retry.call(down)
        table.add(label, f"{attempts / calls:.2f}")
    table.notes.append(
        "Every process naming the same budget through Redis (RedisRetryBudget) shares these "
        "counts, so the whole fleet stays within the ratio."
    )
    return table


def run(quick: bool) -> list[Table]:
    return [*overload(quick), throttle(quick), budget(quick)]
