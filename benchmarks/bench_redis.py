"""Rate limits on Redis: resilient's stores against limits (sync, and limits.aio on
redis-py) and pyrate-limiter's Redis bucket, with the floor measured alongside.

The floor is what no Redis limiter can beat with redis-py: one ``EVALSHA`` of a
trivial script (``return 1``) through a client configured like resilient's (the
same socket timeouts), so the ratios say what each library adds on top of its
one round trip.

* Sequential latency: one caller, one decision after another (µs per decision).
* Throughput: 64 asyncio tasks deciding concurrently on one event loop
  (decisions per second).

This module starts its own ``redis-server`` on a free loopback port (with
persistence off) and stops it at the end. Every limiter gets a limit of
10,000 per second on one key, and candidates are measured in interleaved rounds
(one batch each per round), each keeping its fastest batch: on a shared machine
the other load only ever slows a batch down, and it hits every candidate alike.
(limits keeps its fixed and moving windows under the same key name, so each of
its strategies gets a key of its own.)
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis
from limits import RateLimitItemPerSecond, aio, storage, strategies
from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

import resilient as rs
from resilient.backends import Limit
from resilient.backends.redis import AsyncRedisStore, RedisStore
from resilient.backends.redis._scripts import Script

from ._harness import Table

NAME = "redis"
RATE = 10_000
TASKS = 64
TRIVIAL = "return 1"
TRIVIAL_SCRIPT = Script("trivial", TRIVIAL, hashlib.sha1(TRIVIAL.encode()).hexdigest())
LANE_FLOOR = "reference: EVALSHA of `return 1` on resilient's own connections"
TIMEOUT = 5.0
"""Seconds resilient waits for a reply here (the peers have no timeout): on a loaded
machine 64 tasks can keep a reply waiting for the event loop longer than the 0.25 s
default, and a timeout would make a decision fall back instead of being measured."""


# -- the server --------------------------------------------------------------------------------


from ._servers import redis_server  # noqa: E402

# -- timing ------------------------------------------------------------------------------------


def _rounds(quick: bool) -> tuple[int, int]:
    """(calls per batch, rounds)."""
    return (300, 5) if quick else (2_000, 9)


def interleaved(candidates: dict[str, Callable[[], Any]], quick: bool) -> dict[str, float]:
    """ns per call of each candidate: its fastest of several interleaved batches."""
    n, rounds = _rounds(quick)
    for fn in candidates.values():
        for _ in range(200):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    gc.disable()
    try:
        for _ in range(rounds):
            for name, fn in candidates.items():
                start = time.perf_counter_ns()
                for _ in range(n):
                    fn()
                samples[name].append((time.perf_counter_ns() - start) / n)
    finally:
        gc.enable()
    return {name: min(values) for name, values in samples.items()}


def throughput(
    candidates: dict[str, Callable[[], Awaitable[Any]]],
    quick: bool,
    cleanup: Callable[[], Awaitable[Any]],
) -> dict[str, float]:
    """Decisions per second of each candidate with TASKS concurrent tasks: its best of
    several interleaved batches (then *cleanup* closes the clients, on the same loop)."""
    n, rounds = _rounds(quick)
    per_task = max(n * 4 // TASKS, 10)

    async def batch(fn: Callable[[], Awaitable[Any]]) -> float:
        async def worker() -> None:
            for _ in range(per_task):
                await fn()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(TASKS)))
        return TASKS * per_task / (time.perf_counter() - start)

    async def main() -> dict[str, float]:
        for fn in candidates.values():
            await batch(fn)  # connections for every task, scripts loaded
        samples: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(rounds):
            for name, fn in candidates.items():
                samples[name].append(await batch(fn))
        await cleanup()
        return {name: max(values) for name, values in samples.items()}

    gc.disable()
    try:
        return asyncio.run(main())
    finally:
        gc.enable()


def _us(nanoseconds: float) -> str:
    return f"{nanoseconds / 1000:,.1f}"


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# -- candidates --------------------------------------------------------------------------------


def _sequential(url: str, quick: bool) -> Table:
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    floor_script = client.register_script(TRIVIAL)
    ours = RedisStore(url, prefix="bench-seq", timeout=TIMEOUT)
    one = {
        algorithm: (Limit(algorithm=algorithm, amount=RATE, period=1.0),)  # type: ignore[arg-type]
        for algorithm in ("token_bucket", "sliding_log", "sliding_counter", "fixed_window")
    }
    bucket = rs.TokenBucket(f"{RATE}/s", store=ours, name="bench-policy")
    limits_storage = storage.RedisStorage(url)
    item = RateLimitItemPerSecond(RATE)
    moving = strategies.MovingWindowRateLimiter(limits_storage)
    fixed_window = strategies.FixedWindowRateLimiter(limits_storage)
    counter = strategies.SlidingWindowCounterRateLimiter(limits_storage)
    pyrate = Limiter(RedisBucket.init([Rate(RATE, Duration.SECOND)], client, "bench-pyrate"))

    lane = ours._clients.runner()
    candidates: dict[str, Callable[[], Any]] = {
        "floor: EVALSHA of `return 1` (redis-py)": lambda: floor_script(keys=["bench-floor"]),
        LANE_FLOOR: lambda: lane.run(TRIVIAL_SCRIPT, ["bench-lane-floor"], []),
        "resilient TokenBucket.try_acquire": bucket.try_acquire,
        "resilient RedisStore, token bucket": lambda: ours.try_acquire("k", one["token_bucket"]),
        "resilient RedisStore, sliding log": lambda: ours.try_acquire("k", one["sliding_log"]),
        "resilient RedisStore, sliding counter": lambda: ours.try_acquire(
            "k", one["sliding_counter"]
        ),
        "resilient RedisStore, fixed window": lambda: ours.try_acquire("k", one["fixed_window"]),
        "limits moving window": lambda: moving.hit(item, "moving"),
        "limits sliding window counter": lambda: counter.hit(item, "counter"),
        "limits fixed window": lambda: fixed_window.hit(item, "fixed"),
        "pyrate-limiter RedisBucket": lambda: pyrate.try_acquire("k", blocking=False),
    }
    times = interleaved(candidates, quick)
    floor = times.pop("floor: EVALSHA of `return 1` (redis-py)")
    table = Table(
        f"Redis, sequential latency (one caller; floor: one EVALSHA = {_us(floor)} µs)",
        ["limiter", "µs/decision", "vs floor"],
    )
    table.add("floor: EVALSHA of `return 1` (redis-py)", _us(floor), "1.00x")
    for name, value in times.items():
        table.add(name, _us(value), _x(value / floor))
    worst = max(v for k, v in times.items() if k.startswith("resilient RedisStore"))
    table.notes.append(
        f"target: every resilient store decision <= 1.15x the floor: slowest "
        f"{_x(worst / floor)} ({_met(worst / floor <= 1.15)})"
    )
    table.notes.append(
        "limits and pyrate-limiter use their defaults with redis-py; pyrate-limiter's "
        "Limiter holds a process-wide lock around each Redis call."
    )
    table.notes.append(LANE_NOTE)
    ours.close()
    client.close()
    return table


def _concurrent(url: str, quick: bool) -> Table:
    client = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    floor_script = client.register_script(TRIVIAL)
    ours = AsyncRedisStore(url, prefix="bench-async", timeout=TIMEOUT)
    tb = (Limit(algorithm="token_bucket", amount=RATE, period=1.0),)
    log = (Limit(algorithm="sliding_log", amount=RATE, period=1.0),)
    fw = (Limit(algorithm="fixed_window", amount=RATE, period=1.0),)
    bucket = rs.TokenBucket(f"{RATE}/s", store=ours, name="bench-apolicy")
    limits_storage = aio.storage.RedisStorage(f"async+{url}", implementation="redispy")
    item = RateLimitItemPerSecond(RATE)
    moving = aio.strategies.MovingWindowRateLimiter(limits_storage)
    fixed_window = aio.strategies.FixedWindowRateLimiter(limits_storage)

    floor_name = "floor: EVALSHA of `return 1` (redis.asyncio)"

    def alane_floor() -> Awaitable[Any]:
        return ours._clients.runner().run(TRIVIAL_SCRIPT, ["bench-alane-floor"], [])

    candidates: dict[str, Callable[[], Awaitable[Any]]] = {
        floor_name: lambda: floor_script(keys=["bench-afloor"]),
        LANE_FLOOR: alane_floor,
        "resilient TokenBucket.atry_acquire": bucket.atry_acquire,
        "resilient AsyncRedisStore, token bucket": lambda: ours.atry_acquire("k", tb),
        "resilient AsyncRedisStore, sliding log": lambda: ours.atry_acquire("k", log),
        "resilient AsyncRedisStore, fixed window": lambda: ours.atry_acquire("k", fw),
        "limits.aio moving window (redis-py)": lambda: moving.hit(item, "amoving"),
        "limits.aio fixed window (redis-py)": lambda: fixed_window.hit(item, "afixed"),
    }

    async def close() -> None:
        await ours.aclose()
        await client.aclose()

    rates = throughput(candidates, quick, close)
    floor = rates.pop(floor_name)
    table = Table(
        f"Redis, throughput with {TASKS} concurrent asyncio tasks (floor: {floor:,.0f} EVALSHA/s)",
        ["limiter", "decisions/s", "vs floor", "vs limits.aio fixed window"],
    )
    peer = rates["limits.aio fixed window (redis-py)"]
    table.add(floor_name, f"{floor:,.0f}", "1.00x", _x(floor / peer))
    for name, value in rates.items():
        table.add(name, f"{value:,.0f}", _x(value / floor), _x(value / peer))
    ours_rates = {k: v for k, v in rates.items() if k.startswith("resilient AsyncRedisStore")}
    slowest = min(ours_rates.values())
    best_peer = max(v for k, v in rates.items() if k.startswith("limits.aio"))
    table.notes.append(
        f"target: resilient >= 0.85x the floor: slowest store {_x(slowest / floor)} "
        f"({_met(slowest / floor >= 0.85)}); >= 1.3x limits.aio: slowest store vs fastest "
        f"limits.aio {_x(slowest / best_peer)} ({_met(slowest / best_peer >= 1.3)})"
    )
    table.notes.append(MULTIPLEX_NOTE)
    return table


LANE_NOTE = (
    "resilient's sync store sends each decision on connections of its own (redis-py "
    "connects, authenticates and parses the replies; the command is packed once, without "
    "the client's per-command pool checkout and instrumentation), which is why a decision "
    "can cost less than the redis-py floor; the reference row is the same trivial script "
    "on that path, so a store's row minus it is the work of its Lua script, its arguments "
    "and its reply."
)
MULTIPLEX_NOTE = (
    "resilient's async store multiplexes the decisions of every task of a loop on one "
    "connection (each decision is still one EVALSHA, written as soon as it is asked; the "
    "commands of tasks asking in the same turn of the loop share a write and their "
    "replies a read); the floor and limits.aio use redis-py's pool, one connection per "
    "task in flight. The reference row is the trivial script on resilient's connection."
)


def run(quick: bool) -> list[Table]:
    with redis_server() as url:
        return [_sequential(url, quick), _concurrent(url, quick)]
