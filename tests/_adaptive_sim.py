"""Simulated dependencies on a fake clock, for the adaptive concurrency tests.

``simulate`` is an event-driven model of an overloaded service: ``servers``
workers shared by every request in flight (processor sharing, so each
request's latency grows with the concurrency past ``servers``), Poisson
arrivals at ``load`` times the capacity, and a limiter asked for a permit at
each arrival. Nothing sleeps: the fake clock jumps from event to event.

``VirtualLoop`` runs asyncio tasks on virtual time: ``await vt.sleep(s)`` parks
a task until the driver moves the fake clock to its wake-up time, which it does
only once every task is parked.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import statistics
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from resilient.testing import FakeClock


@dataclass
class Outcome:
    served: int = 0
    rejected: int = 0
    latencies: list[float] = field(default_factory=list)
    limits: list[tuple[float, int]] = field(default_factory=list)

    def limit_mean(self, start: float, end: float = math.inf) -> float:
        values = [limit for at, limit in self.limits if start <= at < end]
        return statistics.fmean(values)

    def p50(self) -> float:
        return statistics.median(self.latencies)


def simulate(
    limiter: Any,
    clock: FakeClock,
    *,
    servers: int = 20,
    service: float = 0.010,
    load: float = 1.5,
    duration: float = 30.0,
    sigma: float = 0.3,
    measure_from: float = 0.0,
    changes: tuple[tuple[float, int], ...] = (),
    seed: int = 7,
) -> Outcome:
    """Drive *limiter* (``try_acquire() -> permit | None``) with an overloaded dependency.

    ``changes`` are ``(time, servers)`` steps (a replica dies: capacity halves).
    Latencies are recorded for requests that finish after ``measure_from``.
    """
    rnd = random.Random(seed)
    rate = load * servers / service
    out = Outcome()
    now = clock.monotonic()
    origin = now
    work_done = 0.0  # work each request in service received so far (processor sharing)
    jobs: list[tuple[float, int, float, Any]] = []
    seq = 0
    pending = list(changes)
    next_arrival = now + rnd.expovariate(rate)
    end = origin + duration
    next_sample = origin

    def move(to: float, speed: float) -> None:
        nonlocal now, work_done
        work_done += (to - now) * speed
        now = to
        clock.advance(max(0.0, to - clock.monotonic()))

    while now < end:
        speed = min(1.0, servers / len(jobs)) if jobs else 0.0
        next_done = now + (jobs[0][0] - work_done) / speed if jobs else math.inf
        next_change = origin + pending[0][0] if pending else math.inf
        at = min(next_arrival, next_done, next_change)
        move(at, speed)
        if at == next_change:
            servers = pending.pop(0)[1]
        elif at == next_arrival:
            permit = limiter.try_acquire()
            if permit is None:
                out.rejected += 1
            else:
                seq += 1
                work = service * rnd.lognormvariate(-sigma * sigma / 2, sigma)
                heapq.heappush(jobs, (work_done + work, seq, now, permit))
            next_arrival = now + rnd.expovariate(rate)
        else:
            _, _, started, permit = heapq.heappop(jobs)
            permit.success()
            if now - origin >= measure_from:
                out.served += 1
                out.latencies.append(now - started)
        if now >= next_sample:
            out.limits.append((now - origin, limiter.limit))
            next_sample = now + 0.05
    return out


class VirtualLoop:
    """Asyncio tasks on virtual time (see the module docstring)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self.parked = 0

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.clock.monotonic() + seconds, self._seq, future))
        self._seq += 1
        self.parked += 1  # until the driver wakes it up
        await future

    async def run(self, coroutines: list[Callable[[], Coroutine[Any, Any, None]]]) -> None:
        tasks = [asyncio.create_task(make()) for make in coroutines]
        while True:
            for _ in range(10_000):  # let every task run until it parks or ends
                live = sum(not task.done() for task in tasks)
                if self.parked == live:
                    break
                await asyncio.sleep(0)
            else:  # pragma: no cover - a task blocked on something else
                raise RuntimeError("a task neither parked nor finished")
            if not live:
                break
            at, _, future = heapq.heappop(self._timers)
            self.clock.advance(max(0.0, at - self.clock.monotonic()))
            future.set_result(None)
            self.parked -= 1
        for task in tasks:
            task.result()
