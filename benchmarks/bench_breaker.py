"""Circuit breaker and bulkhead costs against pybreaker, circuitbreaker, aiobreaker and
purgatory (and the stdlib semaphores), in one run.

* Closed-state success: overhead = ns per decorated call minus ns per bare call.
* Open-state rejection: ns per rejected call, raising and catching the library's error
  included (nothing runs, so nothing is subtracted).
* Bulkhead, uncontended: overhead over a bare call, against holding a
  ``threading.BoundedSemaphore`` / ``asyncio.Semaphore`` around the same call.

Each figure is the lowest of three rounds (each a median of batches), the candidates
interleaved round by round.

Every breaker uses its decorator. resilient runs with its defaults: no listener, and the
``"resilient"`` logger at its default level, so a rejection builds no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import circuitbreaker
import purgatory
import pybreaker

import resilient as rs

from ._harness import Table, ameasure, measure, ns, ratio, verdict

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import aiobreaker

NAME = "breaker"
FOREVER = 10**9  # seconds: an open breaker stays open for the whole run


def _rounds(quick: bool) -> int:
    return 1 if quick else 3


def best_of(
    candidates: dict[str, Callable[[], Any]], quick: bool, *, asynchronous: bool = False
) -> dict[str, float]:
    """ns/call of each candidate: the lowest of several rounds, candidates interleaved, so
    load from other processes on a shared machine skews every candidate alike."""
    timer = ameasure if asynchronous else measure
    best: dict[str, float] = {}
    for _ in range(_rounds(quick)):
        for name, fn in candidates.items():
            best[name] = min(best.get(name, float("inf")), timer(fn, quick=quick))
    return best


def target(x: int) -> int:
    return x + 1


async def atarget(x: int) -> int:
    return x + 1


def _boom(x: int) -> int:
    raise OSError("down")


async def _aboom(x: int) -> int:
    raise OSError("down")


# -- closed state ---------------------------------------------------------------------------


def _closed_sync(quick: bool) -> Table:
    purgatory_factory = purgatory.SyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
    candidates: dict[str, Callable[[int], int]] = {
        "resilient CircuitBreaker": rs.CircuitBreaker()(target),
        "circuitbreaker.circuit": circuitbreaker.circuit(failure_threshold=5)(target),
        "pybreaker.CircuitBreaker": pybreaker.CircuitBreaker(fail_max=5)(target),
        "purgatory (sync)": purgatory_factory(circuit="bench")(target),
    }
    raw = best_of(
        {"bare": lambda: target(1), **{n: (lambda f=f: f(1)) for n, f in candidates.items()}},
        quick,
    )
    bare = raw.pop("bare")
    times = {name: value - bare for name, value in raw.items()}
    table = Table(
        f"Circuit breaker, closed-state success, sync (overhead over a bare call of {ns(bare)} ns)",
        ["breaker", "overhead ns/call", "vs circuitbreaker", "vs pybreaker"],
    )
    for name, overhead in times.items():
        table.add(
            name,
            ns(overhead),
            ratio(overhead, times["circuitbreaker.circuit"]),
            ratio(overhead, times["pybreaker.CircuitBreaker"]),
        )
    ours = times["resilient CircuitBreaker"]
    table.notes.append(
        "target: resilient vs circuitbreaker "
        + verdict(ours, times["circuitbreaker.circuit"], 1.0)
        + "; vs pybreaker "
        + verdict(ours, times["pybreaker.CircuitBreaker"], 0.4)
    )
    return table


def _closed_async(quick: bool) -> Table:
    purgatory_factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
    candidates: dict[str, Callable[[int], Awaitable[int]]] = {
        "resilient CircuitBreaker": rs.CircuitBreaker()(atarget),
        "aiobreaker.CircuitBreaker": aiobreaker.CircuitBreaker(fail_max=5)(atarget),
        "circuitbreaker.circuit": circuitbreaker.circuit(failure_threshold=5)(atarget),
        "purgatory (async)": purgatory_factory(circuit="bench")(atarget),
    }
    raw = best_of(
        {"bare": lambda: atarget(1), **{n: (lambda f=f: f(1)) for n, f in candidates.items()}},
        quick,
        asynchronous=True,
    )
    bare = raw.pop("bare")
    times = {name: value - bare for name, value in raw.items()}
    table = Table(
        f"Circuit breaker, closed-state success, async (overhead over a bare await of "
        f"{ns(bare)} ns)",
        ["breaker", "overhead ns/call", "vs aiobreaker", "vs circuitbreaker"],
    )
    for name, overhead in times.items():
        table.add(
            name,
            ns(overhead),
            ratio(overhead, times["aiobreaker.CircuitBreaker"]),
            ratio(overhead, times["circuitbreaker.circuit"]),
        )
    table.notes.append(
        "target: resilient vs aiobreaker "
        + verdict(times["resilient CircuitBreaker"], times["aiobreaker.CircuitBreaker"], 0.5)
    )
    return table


# -- open state -----------------------------------------------------------------------------


def _opened(decorate: Callable[[Callable[[int], int]], Callable[[int], int]]) -> Callable[[], Any]:
    """A zero-argument callable making one rejected call through a breaker opened by
    *decorate*'s first (failing) call."""
    failing = decorate(_boom)
    with contextlib.suppress(Exception):  # the trip (pybreaker raises its own error here)
        failing(1)
    rejected = decorate(target)

    def attempt() -> None:
        try:
            rejected(1)
        except Exception:
            return
        raise AssertionError("the breaker let a call through")

    return attempt


def _aopened(
    decorate: Callable[[Callable[[int], Awaitable[int]]], Callable[[int], Awaitable[int]]],
) -> Callable[[], Awaitable[None]]:
    failing = decorate(_aboom)

    async def trip() -> None:
        with contextlib.suppress(Exception):
            await failing(1)

    asyncio.run(trip())
    rejected = decorate(atarget)

    async def attempt() -> None:
        try:
            await rejected(1)
        except Exception:
            return
        raise AssertionError("the breaker let a call through")

    return attempt


class _BareRejection(Exception):
    pass


def _bare_gate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The floor: a decorator that only compares a flag and raises a bare exception."""
    opened = [True]

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if opened[0]:
            raise _BareRejection
        return fn(*args, **kwargs)

    return guarded


def _abare_gate(fn: Callable[..., Any]) -> Callable[..., Any]:
    opened = [True]

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        if opened[0]:
            raise _BareRejection
        return await fn(*args, **kwargs)

    return guarded


def _open_state(quick: bool) -> Table:
    ours = rs.CircuitBreaker(consecutive_failures=1, open_for=FOREVER)
    cb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=FOREVER)
    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=FOREVER)
    purgatory_factory = purgatory.SyncCircuitBreakerFactory(
        default_threshold=1, default_ttl=FOREVER
    )
    sync = {
        "resilient CircuitBreaker": _opened(ours),
        "circuitbreaker.circuit": _opened(cb),
        "pybreaker.CircuitBreaker": _opened(pb),
        "purgatory (sync)": _opened(purgatory_factory(circuit="open")),
        "floor": _opened(_bare_gate),
    }
    sync_times = best_of(sync, quick)

    aours = rs.CircuitBreaker(consecutive_failures=1, open_for=FOREVER)
    ab = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=dt.timedelta(seconds=FOREVER))
    acb = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=FOREVER)
    async_times = best_of(
        {
            "resilient CircuitBreaker": _aopened(aours),
            "aiobreaker.CircuitBreaker": _aopened(ab),
            "circuitbreaker.circuit": _aopened(acb),
            "floor": _aopened(_abare_gate),
        },
        quick,
        asynchronous=True,
    )

    table = Table(
        "Circuit breaker, open-state rejection (ns per rejected call, raise and catch included)",
        ["breaker", "sync ns/call", "vs circuitbreaker", "async ns/call", "vs aiobreaker"],
    )
    for name in ("resilient CircuitBreaker", "circuitbreaker.circuit", "pybreaker.CircuitBreaker"):
        a = async_times.get(name)
        table.add(
            name,
            ns(sync_times[name]),
            ratio(sync_times[name], sync_times["circuitbreaker.circuit"]),
            ns(a) if a is not None else "-",
            ratio(a, async_times["aiobreaker.CircuitBreaker"]) if a is not None else "-",
        )
    table.add(
        "aiobreaker.CircuitBreaker",
        "-",
        "-",
        ns(async_times["aiobreaker.CircuitBreaker"]),
        "1.000x",
    )
    table.add(
        "purgatory (sync)",
        ns(sync_times["purgatory (sync)"]),
        ratio(sync_times["purgatory (sync)"], sync_times["circuitbreaker.circuit"]),
        "-",
        "-",
    )
    table.add(
        "(floor: a decorator raising a bare exception)",
        ns(sync_times["floor"]),
        ratio(sync_times["floor"], sync_times["circuitbreaker.circuit"]),
        ns(async_times["floor"]),
        ratio(async_times["floor"], async_times["aiobreaker.CircuitBreaker"]),
    )
    table.notes.append(
        "resilient's rejection raises a structured CircuitOpenError (policy, reason, "
        "retry_after; its message is built only when printed); the floor row is what any "
        "breaker pays to raise and catch through one decorator"
    )
    table.notes.append(
        "target: resilient sync vs circuitbreaker "
        + verdict(sync_times["resilient CircuitBreaker"], sync_times["circuitbreaker.circuit"], 0.6)
        + "; async vs aiobreaker "
        + verdict(
            async_times["resilient CircuitBreaker"], async_times["aiobreaker.CircuitBreaker"], 0.3
        )
    )
    return table


# -- bulkhead ---------------------------------------------------------------------------------


def _bulkhead(quick: bool) -> Table:
    bulkhead = rs.Bulkhead(10)
    guarded = bulkhead(target)
    semaphore = threading.BoundedSemaphore(10)

    def with_semaphore(x: int) -> int:
        with semaphore:
            return target(x)

    raw = best_of(
        {
            "bare": lambda: target(1),
            "resilient Bulkhead": lambda: guarded(1),
            "threading.BoundedSemaphore": lambda: with_semaphore(1),
        },
        quick,
    )
    bare = raw.pop("bare")
    sync = {name: value - bare for name, value in raw.items()}

    abulkhead = rs.Bulkhead(10)
    aguarded = abulkhead(atarget)
    holder: dict[str, asyncio.Semaphore] = {}

    async def with_asemaphore(x: int) -> int:
        sem = holder.get("sem")
        if sem is None:
            sem = holder["sem"] = asyncio.Semaphore(10)
        async with sem:
            return await atarget(x)

    raw = best_of(
        {
            "bare": lambda: atarget(1),
            "resilient Bulkhead": lambda: aguarded(1),
            "asyncio.Semaphore": lambda: with_asemaphore(1),
        },
        quick,
        asynchronous=True,
    )
    abare = raw.pop("bare")
    asynchronous = {name: value - abare for name, value in raw.items()}
    table = Table(
        "Bulkhead, uncontended (overhead ns/call over a bare call)",
        ["guard", "sync overhead", "vs BoundedSemaphore", "async overhead", "vs asyncio.Semaphore"],
    )
    table.add(
        "resilient Bulkhead(10)",
        ns(sync["resilient Bulkhead"]),
        ratio(sync["resilient Bulkhead"], sync["threading.BoundedSemaphore"]),
        ns(asynchronous["resilient Bulkhead"]),
        ratio(asynchronous["resilient Bulkhead"], asynchronous["asyncio.Semaphore"]),
    )
    table.add(
        "threading.BoundedSemaphore(10) / asyncio.Semaphore(10)",
        ns(sync["threading.BoundedSemaphore"]),
        "1.000x",
        ns(asynchronous["asyncio.Semaphore"]),
        "1.000x",
    )
    table.notes.append(
        "reported, no target: the bulkhead also counts, queues FIFO across threads and tasks, "
        "and frees its slot on cancellation"
    )
    return table


def run(quick: bool) -> list[Table]:
    return [_closed_sync(quick), _closed_async(quick), _open_state(quick), _bulkhead(quick)]
