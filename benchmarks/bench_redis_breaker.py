"""The shared circuit breaker's CLOSED path against the in-memory breaker.

A breaker shared through Redis counts its calls' outcomes locally and talks to
Redis once per ``flush_interval`` (default 1 s), so a call in CLOSED state should
cost about what the in-memory breaker's costs. Measured here, sync and async:

* Closed-state success: overhead = ns per decorated call minus ns per bare call,
  for the in-memory breaker, the shared breaker with its default ``flush_interval``,
  and the shared breaker asking Redis for every call (``flush_interval=0``: one
  ``EVALSHA`` to admit, one to send the outcome), beside the floor of one bare
  ``EVALSHA`` of a trivial script.
* Round trips: ``EVALSHA`` commands the server ran per call (``INFO
  commandstats``), calling flat out for at least one ``flush_interval``; and the
  server's time per step of the breaker's script, against a trivial script.
* Open-state rejection: ns per rejected call; the shared breaker rejects from
  its view until the open period ends (one round trip per ``flush_interval``).

This module starts its own ``redis-server`` on a free loopback port (persistence
off) and stops it at the end. Each figure is the lowest of three rounds (each a
median of batches), the candidates interleaved round by round.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis

import resilient as rs
from resilient.backends.redis import RedisStore, SharedCircuitBreaker

from ._harness import Table, ameasure, measure, ns, ratio

NAME = "redis_breaker"
FOREVER = 10**6  # seconds: an open breaker stays open for the whole run
TIMEOUT = 5.0  # a loaded machine must not turn a slow reply into a fallback


from ._servers import redis_server  # noqa: E402


def _rounds(quick: bool) -> int:
    return 1 if quick else 3


def best_of(
    candidates: dict[str, tuple[Callable[[], Any], int | None]],
    quick: bool,
    *,
    asynchronous: bool = False,
) -> dict[str, float]:
    """ns/call of each candidate (with its batch size): the lowest of several rounds."""
    timer = ameasure if asynchronous else measure
    best: dict[str, float] = {}
    for _ in range(_rounds(quick)):
        for name, (fn, number) in candidates.items():
            if number is not None and quick:
                number = max(number // 4, 50)
            best[name] = min(best.get(name, float("inf")), timer(fn, quick=quick, number=number))
    return best


def target(x: int) -> int:
    return x


async def atarget(x: int) -> int:
    return x


def evalsha_calls(client: Any) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def fail() -> None:
    raise OSError("down")


def run(quick: bool) -> list[Table]:
    with redis_server() as url:
        return _run(url, quick)


def _breakers(url: str, prefix: str) -> dict[str, Any]:
    store = RedisStore(url, prefix=prefix, timeout=TIMEOUT)
    return {
        "memory": rs.CircuitBreaker(name="bench"),
        "shared": SharedCircuitBreaker(name="bench", store=store),
        "every-call": SharedCircuitBreaker(name="bench-strict", store=store, flush_interval=0),
    }


LABELS = {
    "memory": "in-memory CircuitBreaker",
    "shared": "shared breaker, flush_interval=1s (default)",
    "every-call": "shared breaker, flush_interval=0 (Redis on every call)",
    "floor": "(floor: one bare EVALSHA of a trivial script)",
}
SLOW = 400  # calls per batch for candidates that make round trips on every call


def _run(url: str, quick: bool) -> list[Table]:
    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT)
    trivial = client.register_script("return 1")
    trivial()
    sync = _breakers(url, "sync")
    decorated = {name: breaker(target) for name, breaker in sync.items()}
    bare = best_of({"bare": (lambda: target(1), None)}, quick)["bare"]
    timings = best_of(
        {
            "memory": (lambda: decorated["memory"](1), None),
            "shared": (lambda: decorated["shared"](1), None),
            "every-call": (lambda: decorated["every-call"](1), SLOW),
            "floor": (lambda: trivial(), SLOW),
        },
        quick,
    )

    # Round trips per call, calling flat out for at least one flush interval (two).
    trips: dict[str, str] = {"memory": "0", "floor": "1"}
    calls, before, start = 0, evalsha_calls(client), time.monotonic()
    while time.monotonic() - start < 2.05:
        for _ in range(1000):
            decorated["shared"](1)
        calls += 1000
    sent = evalsha_calls(client) - before
    trips["shared"] = f"{sent} in {calls:,} calls" if sent else f"0 in {calls:,} calls"
    client.config_resetstat()
    for _ in range(200):
        decorated["every-call"](1)
    step = client.info("commandstats")["cmdstat_evalsha"]
    trips["every-call"] = f"{step['calls'] / 200:g}"
    client.config_resetstat()
    for _ in range(200):
        trivial()
    floor_server = client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]

    # Async: the same kind of breakers' acall (each measurement runs its own event loop;
    # an asyncio client belongs to one loop, so the floor's client is made per loop).
    asynchronous = _breakers(url, "async")
    adecorated = {name: breaker(atarget) for name, breaker in asynchronous.items()}
    scripts: dict[asyncio.AbstractEventLoop, Any] = {}

    async def afloor() -> Any:
        loop = asyncio.get_running_loop()
        script = scripts.get(loop)
        if script is None:
            aclient = redis.asyncio.Redis.from_url(url, socket_timeout=TIMEOUT)
            script = scripts[loop] = aclient.register_script("return 1")
        return await script()

    abare = best_of({"bare": (lambda: atarget(1), None)}, quick, asynchronous=True)["bare"]
    atimings = best_of(
        {
            "memory": (lambda: adecorated["memory"](1), None),
            "shared": (lambda: adecorated["shared"](1), None),
            "every-call": (lambda: adecorated["every-call"](1), SLOW),
            "floor": (afloor, SLOW),
        },
        quick,
        asynchronous=True,
    )

    closed = Table(
        f"Closed-state success: overhead ns/call over a bare call "
        f"(sync {ns(bare)} ns, async {ns(abare)} ns)",
        ["breaker", "sync", "vs in-memory", "async", "vs in-memory", "EVALSHA per call"],
    )
    for name in ("memory", "shared", "every-call", "floor"):
        sync_cost = timings[name] - (0 if name == "floor" else bare)
        async_cost = atimings[name] - (0 if name == "floor" else abare)
        closed.add(
            LABELS[name],
            ns(sync_cost),
            ratio(sync_cost, timings["memory"] - bare),
            ns(async_cost),
            ratio(async_cost, atimings["memory"] - abare),
            trips[name],
        )
    closed.notes.append(
        "the shared breaker counts outcomes locally and sends them with one EVALSHA per "
        "flush_interval, which also brings back the fleet's state; its rows include that "
        "round trip, spread over the calls of the interval"
    )
    closed.notes.append(
        "flush_interval=0 makes two round trips per call (admission, then the outcome): "
        "the in-memory breaker's decisions exactly, fleet-wide, at the price of Redis latency"
    )
    closed.notes.append(
        f"server time per step of the breaker's script: {step['usec_per_call']:.1f} µs "
        f"(a trivial script: {floor_server:.1f} µs); a step runs once per flush_interval "
        "per replica, and for each probe in HALF_OPEN"
    )

    # Open-state rejection: the view rejects until the open period ends.
    open_memory = rs.CircuitBreaker(name="open", minimum_calls=1, open_for=FOREVER)
    open_shared = SharedCircuitBreaker(
        name="open",
        store=RedisStore(url, prefix="open", timeout=TIMEOUT),
        minimum_calls=1,
        open_for=FOREVER,
    )
    for breaker in (open_memory, open_shared):
        with contextlib.suppress(OSError):
            breaker.call(fail)
        assert breaker.state is rs.CircuitState.OPEN

    def rejected(breaker: Any) -> Callable[[], None]:
        wrapped = breaker(target)

        def attempt() -> None:
            with contextlib.suppress(rs.CircuitOpenError):
                wrapped(1)

        return attempt

    def arejected(breaker: Any) -> Callable[[], Awaitable[None]]:
        wrapped = breaker(atarget)

        async def attempt() -> None:
            with contextlib.suppress(rs.CircuitOpenError):
                await wrapped(1)

        return attempt

    rejections = best_of(
        {"memory": (rejected(open_memory), None), "shared": (rejected(open_shared), None)}, quick
    )
    arejections = best_of(
        {"memory": (arejected(open_memory), None), "shared": (arejected(open_shared), None)},
        quick,
        asynchronous=True,
    )
    rejection = Table(
        "Open-state rejection (ns per rejected call, raise and catch included)",
        ["breaker", "sync", "vs in-memory", "async", "vs in-memory"],
    )
    for name, label in (("memory", LABELS["memory"]), ("shared", "shared breaker")):
        rejection.add(
            label,
            ns(rejections[name]),
            ratio(rejections[name], rejections["memory"]),
            ns(arejections[name]),
            ratio(arejections[name], arejections["memory"]),
        )

    for breaker in (*sync.values(), *asynchronous.values(), open_shared):
        if isinstance(breaker, SharedCircuitBreaker):
            breaker.store.close()
    client.close()
    return [closed, rejection]
