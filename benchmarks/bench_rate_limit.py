"""Rate limiters, in memory, against limits (fixed, moving and sliding-counter
windows, sync and ``limits.aio``), pyrate-limiter and aiolimiter, in one run.

* Allowed path: limits high enough that nothing is refused. For our policies the
  overhead is ``limiter.call(f)`` minus ``f()`` (and ``acall``); for the peers it
  is the admission call itself (``hit``, ``try_acquire``, ``async with``).
* Rejected path: an exhausted limit (``"1/hour"`` after one call); ours answer with
  a full ``Decision`` from ``try_acquire``.

Timing: each candidate runs many short batches, in several rounds interleaved
with the others, and its fastest batch is kept (``timeit``'s advice): on a shared
machine the fastest batch is the one nothing else interrupted, for every
candidate alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiolimiter
import limits
import limits.aio.storage
import limits.aio.strategies
import limits.storage
import limits.strategies
import pyrate_limiter

import resilient as rs

from ._harness import Table, ns, ratio, verdict

NAME = "rate_limit"

HUGE = "1000000000/second"  # never refuses within a run
ROUNDS = 5


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def _batches(quick: bool) -> tuple[int, int]:
    return (500, 5) if quick else (2_000, 15)


def measure(fn: Callable[[], Any], *, quick: bool = False) -> float:
    """Nanoseconds per call of ``fn()``: the fastest of several short batches."""
    number, repeats = _batches(quick)
    for _ in range(200):
        fn()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter_ns() - start) / number)
    finally:
        if gc_was:
            gc.enable()
    return best


def ameasure(fn: Callable[[], Awaitable[Any]], *, quick: bool = False) -> float:
    """Nanoseconds per awaited ``fn()`` in one event loop: the fastest short batch."""
    number, repeats = _batches(quick)

    async def main() -> float:
        for _ in range(200):
            await fn()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter_ns()
            for _ in range(number):
                await fn()
            best = min(best, (time.perf_counter_ns() - start) / number)
        return best

    gc_was = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(main())
    finally:
        if gc_was:
            gc.enable()


def _best(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    best = {name: float("inf") for name in candidates}
    for _ in range(rounds):
        for name, timer in candidates.items():
            best[name] = min(best[name], timer())
    return best


def _ours(rate: str) -> dict[str, Any]:
    return {
        "resilient TokenBucket": rs.TokenBucket(rate),
        "resilient SlidingWindow (log)": rs.SlidingWindow(rate),
        "resilient SlidingWindow (counter)": rs.SlidingWindow(rate, precise=False),
        "resilient FixedWindow": rs.FixedWindow(rate),
    }


def _limits_sync(rate: str) -> dict[str, Callable[[], bool]]:
    storage = limits.storage.MemoryStorage()
    item = limits.parse(rate)
    out: dict[str, Callable[[], bool]] = {}
    for name, cls in (
        ("limits FixedWindow", limits.strategies.FixedWindowRateLimiter),
        ("limits MovingWindow", limits.strategies.MovingWindowRateLimiter),
        ("limits SlidingWindowCounter", limits.strategies.SlidingWindowCounterRateLimiter),
    ):
        strategy = cls(storage)
        out[name] = lambda s=strategy, key=name: s.hit(item, key)
    return out


def _limits_async(rate: str) -> dict[str, Callable[[], Awaitable[bool]]]:
    storage = limits.aio.storage.MemoryStorage()
    item = limits.parse(rate)
    out: dict[str, Callable[[], Awaitable[bool]]] = {}
    for name, cls in (
        ("limits.aio FixedWindow", limits.aio.strategies.FixedWindowRateLimiter),
        ("limits.aio MovingWindow", limits.aio.strategies.MovingWindowRateLimiter),
        ("limits.aio SlidingWindowCounter", limits.aio.strategies.SlidingWindowCounterRateLimiter),
    ):
        strategy = cls(storage)
        out[name] = lambda s=strategy, key=name: s.hit(item, key)
    return out


def _pyrate(amount: int, period_ms: int) -> Any:
    return pyrate_limiter.Limiter(
        pyrate_limiter.InMemoryBucket([pyrate_limiter.Rate(amount, period_ms)])
    )


def _allowed_sync(quick: bool, rounds: int) -> Table:
    ours = _ours(HUGE)
    peers = _limits_sync(HUGE)
    pyrate = _pyrate(1_000_000_000, 1000)
    timers: dict[str, Callable[[], float]] = {"bare f()": lambda: measure(noop, quick=quick)}
    for name, limiter in ours.items():
        timers[f"{name}.call(f)"] = lambda c=limiter.call: measure(lambda: c(noop), quick=quick)
        timers[f"{name}.try_acquire()"] = lambda t=limiter.try_acquire: measure(t, quick=quick)
    for name, hit in peers.items():
        timers[f"{name} hit()"] = lambda h=hit: measure(h, quick=quick)
    timers["pyrate-limiter try_acquire()"] = lambda: measure(
        lambda: pyrate.try_acquire("k", blocking=False), quick=quick
    )
    best = _best(timers, rounds)
    pyrate.close()
    bare = best.pop("bare f()")
    for name in list(best):
        if name.endswith(".call(f)"):
            best[name] -= bare
    baseline = best["limits FixedWindow hit()"]
    table = Table(
        f"Rate limiter allowed path, sync (bare call {ns(bare)} ns)",
        ["candidate", "ns/call (overhead)", "vs limits FixedWindow"],
    )
    for name, value in best.items():
        table.add(name, ns(value), ratio(value, baseline))
    table.notes.append(
        "target: resilient TokenBucket.call(f) overhead vs limits FixedWindow hit() "
        + verdict(best["resilient TokenBucket.call(f)"], baseline, 0.25)
    )
    for kind in ("FixedWindow", "SlidingWindow (log)", "SlidingWindow (counter)"):
        table.notes.append(
            f"resilient {kind}.call(f) overhead vs limits FixedWindow hit() "
            + verdict(best[f"resilient {kind}.call(f)"], baseline, 0.25)
        )
    table.notes.append(
        "resilient TokenBucket.try_acquire() (a full Decision) vs limits FixedWindow hit() "
        + verdict(best["resilient TokenBucket.try_acquire()"], baseline, 0.25)
    )
    table.notes.append(
        "limits' moving window inserts every hit at the front of a Python list (O(entries)); "
        "with a limit this high its cost grows with the run."
    )
    return table


def _allowed_async(quick: bool, rounds: int) -> Table:
    ours = _ours(HUGE)
    peers = _limits_async(HUGE)
    pyrate = _pyrate(1_000_000_000, 1000)

    def aiolimiter_timer() -> float:
        leaky = aiolimiter.AsyncLimiter(1e12, 1)  # one per event loop: it is bound to one

        async def with_aiolimiter() -> None:
            async with leaky:
                await anoop()

        return ameasure(with_aiolimiter, quick=quick)

    timers: dict[str, Callable[[], float]] = {
        "bare await f()": lambda: ameasure(anoop, quick=quick)
    }
    for name, limiter in ours.items():
        timers[f"{name}.acall(f)"] = lambda c=limiter.acall: ameasure(lambda: c(anoop), quick=quick)
        timers[f"{name}.atry_acquire()"] = lambda t=limiter.atry_acquire: ameasure(t, quick=quick)
    for name, hit in peers.items():
        timers[f"{name} hit()"] = lambda h=hit: ameasure(h, quick=quick)
    timers["aiolimiter async with"] = aiolimiter_timer
    timers["pyrate-limiter try_acquire_async()"] = lambda: ameasure(
        lambda: pyrate.try_acquire_async("k", blocking=False), quick=quick
    )
    best = _best(timers, rounds)
    pyrate.close()
    bare = best.pop("bare await f()")
    for name in list(best):
        if name.endswith(".acall(f)") or name == "aiolimiter async with":
            best[name] -= bare
    baseline = best["aiolimiter async with"]
    table = Table(
        f"Rate limiter allowed path, async (bare await {ns(bare)} ns)",
        ["candidate", "ns/call (overhead)", "vs aiolimiter"],
    )
    for name, value in best.items():
        table.add(name, ns(value), ratio(value, baseline))
    table.notes.append(
        "target: resilient TokenBucket.acall(f) overhead vs aiolimiter "
        + verdict(best["resilient TokenBucket.acall(f)"], baseline, 0.6)
    )
    for kind in ("FixedWindow", "SlidingWindow (log)", "SlidingWindow (counter)"):
        table.notes.append(
            f"resilient {kind}.acall(f) overhead vs aiolimiter "
            + verdict(best[f"resilient {kind}.acall(f)"], baseline, 0.6)
        )
    return table


def _rejected(quick: bool, rounds: int) -> Table:
    ours = _ours("1/hour")
    peers = _limits_sync("1/hour")
    apeers = _limits_async("1/hour")
    pyrate = _pyrate(1, 3_600_000)
    for limiter in ours.values():
        limiter.try_acquire()
    for hit in peers.values():
        hit()
    pyrate.try_acquire("k", blocking=False)

    async def exhaust() -> None:
        for ahit in apeers.values():
            await ahit()

    asyncio.run(exhaust())

    def refused_call(call: Callable[..., Any]) -> None:
        with contextlib.suppress(rs.RateLimitedError):
            call(noop)

    timers: dict[str, Callable[[], float]] = {}
    for name, limiter in ours.items():
        timers[f"{name}.try_acquire()"] = lambda t=limiter.try_acquire: measure(t, quick=quick)
    timers["resilient FixedWindow.call(f) (raises RateLimitedError)"] = lambda: measure(
        lambda: refused_call(ours["resilient FixedWindow"].call), quick=quick
    )
    for name, hit in peers.items():
        timers[f"{name} hit()"] = lambda h=hit: measure(h, quick=quick)
    timers["pyrate-limiter try_acquire()"] = lambda: measure(
        lambda: pyrate.try_acquire("k", blocking=False), quick=quick
    )
    for name, limiter in ours.items():
        timers[f"{name}.atry_acquire() (async)"] = lambda t=limiter.atry_acquire: ameasure(
            t, quick=quick
        )
    for name, ahit in apeers.items():
        timers[f"{name} hit() (async)"] = lambda h=ahit: ameasure(h, quick=quick)
    best = _best(timers, rounds)
    pyrate.close()
    baseline = best["limits FixedWindow hit()"]
    table = Table(
        "Rate limiter rejected path (an exhausted '1/hour')",
        ["candidate", "ns/call", "vs limits FixedWindow"],
    )
    for name, value in best.items():
        table.add(name, ns(value), ratio(value, baseline))
    pairs = (
        ("resilient FixedWindow.try_acquire()", "limits FixedWindow hit()"),
        ("resilient TokenBucket.try_acquire()", "limits FixedWindow hit()"),
        ("resilient SlidingWindow (log).try_acquire()", "limits MovingWindow hit()"),
        ("resilient SlidingWindow (counter).try_acquire()", "limits SlidingWindowCounter hit()"),
        (
            "resilient FixedWindow.atry_acquire() (async)",
            "limits.aio FixedWindow hit() (async)",
        ),
    )
    for ours_name, theirs in pairs:
        label = "target: " if ours_name == pairs[0][0] else ""
        table.notes.append(
            f"{label}{ours_name} vs {theirs} " + verdict(best[ours_name], best[theirs], 0.3)
        )
    return table


def run(quick: bool) -> list[Table]:
    rounds = 1 if quick else ROUNDS
    return [_allowed_sync(quick, rounds), _allowed_async(quick, rounds), _rejected(quick, rounds)]
