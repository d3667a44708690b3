"""``resilient demo``: policies against a built-in flaky service, in memory.

Everything runs in this process on the real clock with short delays, so the
demo ends by itself in a second or two and needs no network.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ._backoff import Backoff
from ._circuit_breaker import CircuitBreaker
from ._errors import CircuitOpenError, RateLimitedError, ResilienceError
from ._fallback import Fallback
from ._pipeline import Pipeline
from ._rate_limit import TokenBucket
from ._retry import Retry
from ._timeout import Timeout
from ._windows import CountWindow
from .observability._events import Event, RetryScheduled
from .testing import FakeClock, RecordingListener

__all__ = ["FlakyService", "run_demo"]


class ServiceUnavailableError(ConnectionError):
    """The flaky service's transient failure."""


@dataclass
class FlakyService:
    """A pretend upstream: each request fails transiently with probability
    ``failure_rate`` (seeded, so every run tells the same story)."""

    failure_rate: float = 0.5
    seed: int = 7
    calls: int = 0
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def fetch(self, item: int) -> str:
        self.calls += 1
        if self._rng.random() < self.failure_rate:
            raise ServiceUnavailableError(f"upstream unavailable (item {item})")
        return f"item-{item}"

    async def afetch(self, item: int) -> str:
        await asyncio.sleep(0)
        return self.fetch(item)


class _Table:
    def __init__(self, title: str, columns: list[str]) -> None:
        self.title, self.columns, self.rows = title, columns, []  # type: ignore[var-annotated]

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
        line = "+".join("-" * (w + 2) for w in widths)
        out = [f"\n{self.title}", f"+{line}+"]
        out.append(
            "| " + " | ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)) + " |"
        )
        out.append(f"+{line}+")
        for row in self.rows:
            out.append(
                "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
            )
        out.append(f"+{line}+")
        return "\n".join(out)


def _waits(events: list[Event]) -> str:
    delays = [f"{e.delay * 1000:.0f}ms" for e in events if isinstance(e, RetryScheduled)]
    return ", ".join(delays) or "-"


def _retry_pipeline(recorder: RecordingListener, seed: int) -> Pipeline:
    retry = Retry(
        attempts=4,
        backoff=Backoff.exponential(initial=0.01, maximum=0.08, jitter="full"),
        retry_on=ConnectionError,
        rng=random.Random(seed).random,  # a seeded jitter: every run tells the same story
        listeners=[recorder],
        name="upstream-retry",
    )
    return Pipeline(
        Fallback(handler=lambda exc: f"fallback ({type(exc).__name__})"),
        Timeout(1.0, name="total"),
        retry,
        name="upstream",
    )


def _retry_section(
    title: str, runner: Callable[[Pipeline, FlakyService, int], str], seed: int
) -> str:
    recorder = RecordingListener()
    pipeline = _retry_pipeline(recorder, seed)
    service = FlakyService(failure_rate=0.55, seed=seed)
    table = _Table(title, ["request", "attempts", "waits", "outcome"])
    for item in range(1, 7):
        recorder.clear()
        before = service.calls
        try:
            outcome = runner(pipeline, service, item)
        except ResilienceError as exc:  # pragma: no cover - the fallback answers instead
            outcome = f"{type(exc).__name__}"
        table.add(item, service.calls - before, _waits(recorder.events), outcome)
    return table.render()


def _sync_runner(pipeline: Pipeline, service: FlakyService, item: int) -> str:
    return pipeline.call(service.fetch, item)


def _async_runner(pipeline: Pipeline, service: FlakyService, item: int) -> str:
    return asyncio.run(pipeline.acall(service.afetch, item))


def _breaker_section() -> str:
    """A breaker against a service that is down from t=3s to t=8s, on simulated time."""
    clock = FakeClock()
    breaker = CircuitBreaker(
        name="db",
        window=CountWindow(8),
        minimum_calls=4,
        failure_rate=0.5,
        open_for=2.0,
        half_open_calls=2,
        clock=clock,
    )

    def query() -> str:
        if 3.0 <= clock.monotonic() < 8.0:
            raise ServiceUnavailableError("database unavailable")
        return "rows"

    table = _Table(
        "Circuit breaker on simulated time (service down from 3s to 8s; a call every 0.5s)",
        ["time", "calls", "outcome", "state after"],
    )
    runs: list[list[object]] = []
    for step in range(30):
        clock.advance(0.0 if step == 0 else 0.5)
        try:
            breaker.call(query)
            outcome = "ok"
        except CircuitOpenError as exc:
            outcome = f"rejected, retry after {exc.retry_after:.1f}s"
        except ServiceUnavailableError:
            outcome = "failed"
        state = str(breaker.state)
        now = clock.monotonic()
        if runs and runs[-1][2] == outcome and runs[-1][3] == state and "rejected" not in outcome:
            runs[-1][1] = int(str(runs[-1][1])) + 1
            runs[-1][0] = f"{str(runs[-1][0]).split('-')[0]}-{now:.1f}s"
        else:
            runs.append([f"{now:.1f}s", 1, outcome, state])
    for run in runs:
        table.add(*run)
    return table.render()


def _limiter_section() -> str:
    """A token bucket rejecting, then pacing, a burst of 8 calls on simulated time."""
    clock = FakeClock()
    strict = TokenBucket("5/s", burst=5, clock=clock, name="api")
    table = _Table(
        "Rate limiter on simulated time: TokenBucket('5/s', burst=5), a burst of 8 calls",
        ["call", "without max_wait", "with max_wait=1s (paced)"],
    )
    rejected = []
    for _ in range(8):
        try:
            strict.call(lambda: None)
            rejected.append("allowed")
        except RateLimitedError as exc:
            rejected.append(f"rejected, retry after {exc.retry_after:.2f}s")
    paced_clock = FakeClock()
    paced = TokenBucket("5/s", burst=5, max_wait=1.0, clock=paced_clock, name="api")
    waited = []
    for _ in range(8):
        paced.call(lambda: None)
        waited.append(f"allowed at t={paced_clock.monotonic():.2f}s")
    for index, (left, right) in enumerate(zip(rejected, waited, strict=True), 1):
        table.add(index, left, right)
    return table.render()


def run_demo(
    print_: Callable[[str], object] = print, *, tour: bool = True, redis_url: str | None = None
) -> int:
    """Run every demo section and print the tables; returns the exit code."""
    log = logging.getLogger("resilient")
    level = log.level
    log.setLevel(logging.ERROR)  # the tables show what the default logging would report
    try:
        return _run(print_, tour, redis_url)
    finally:
        log.setLevel(level)


def _run(print_: Callable[[str], object], tour: bool, redis_url: str | None) -> int:
    print_("resilient demo: policies in front of a flaky in-process service (in memory).")
    print_(
        "Pipeline: Fallback -> Timeout(1s) -> Retry(4 attempts, exponential backoff, full jitter)"
    )
    print_(_retry_section("Retry, sync (policy.call)", _sync_runner, seed=7))
    print_(_retry_section("Retry, async (await policy.acall)", _async_runner, seed=11))
    print_(_breaker_section())
    print_(_limiter_section())
    if not tour:
        return 0
    from ._tour import missing_extras, run_tour

    missing = missing_extras()
    if missing:
        print_(
            f"\n(The end-to-end HTTP tour needs {', '.join(missing)}: "
            "pip install 'resilient-middleware[demo]')"
        )
        return 0 if redis_url is None else 1
    return run_tour(print_, redis_url=redis_url)
