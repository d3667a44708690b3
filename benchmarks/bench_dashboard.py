"""Dashboard: does a live audience slow the protected app down?

One uvicorn process (one worker, a free loopback port) serves a small ASGI app
behind ``ResilienceMiddleware`` (a token bucket that never refuses, a bulkhead and
a circuit breaker) with ``dashboard="/_resilient"``. This process drives it with a
keep-alive HTTP/1.1 load generator (16 connections, a bounded number of requests
and a bounded time per measurement) twice per round: with no dashboard viewer, and
with 50 viewers connected to the live stream (Server-Sent Events, one frame a
second each, read as they come). The order alternates between rounds, each ratio is
taken within its round, and the table gives the medians over the rounds. A second
process serving the same app without the dashboard is measured in the same rounds,
for reference: the dashboard's listener hears every call.

``make_app`` is what the server processes import (``BENCH_DASHBOARD`` says whether
the dashboard is on).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

from ._harness import Table
from ._servers import serving_process

NAME = "dashboard"

RATE = "1000000/second"  # never reached: the allowed path
CONNECTIONS = 16
VIEWERS = 50
PREFIX = "/_resilient"


def make_app() -> Any:
    import resilient as rs
    from resilient.adapters.asgi import ResilienceMiddleware

    async def hello(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
            }
        )
        await send({"type": "http.response.body", "body": b"Hello, world!"})

    on = os.environ.get("BENCH_DASHBOARD") == "on"
    return ResilienceMiddleware(
        hello,
        rs.TokenBucket(RATE, name="per-client"),
        rs.Bulkhead(10_000, name="pool"),
        rs.CircuitBreaker(name="app"),
        dashboard=PREFIX if on else None,
    )


_SERVE = """
import socket, sys, uvicorn
sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(
    "benchmarks.bench_dashboard:make_app", factory=True, access_log=False,
    log_level="warning", proxy_headers=False, lifespan="off",
)
uvicorn.Server(config).run(sockets=[sock])
"""


@contextlib.contextmanager
def _server(dashboard: bool) -> Iterator[tuple[int, int]]:
    with serving_process(_SERVE, {"BENCH_DASHBOARD": "on" if dashboard else "off"}) as served:
        yield served


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process *pid* (Linux; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"


async def _load(port: int, seconds: float, limit: int) -> tuple[int, float]:
    """Requests answered 200 within *seconds* (at most *limit*), and the time taken."""
    loop = asyncio.get_running_loop()
    done = 0
    stop_at = loop.time() + seconds

    async def connection() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while done < limit and loop.time() < stop_at:
                writer.write(_REQUEST)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head.decode(errors="replace"))
                await reader.readexactly(13)
                done += 1
        finally:
            writer.close()

    start = loop.time()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return done, loop.time() - start


class _Viewers:
    """*count* live-stream connections that read every frame as it comes."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.tasks: list[asyncio.Task[None]] = []
        self.frames = 0
        self.started = 0

    async def __aenter__(self) -> _Viewers:
        ready = asyncio.Event()

        async def viewer() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                request = f"GET {PREFIX}/events HTTP/1.1\r\nHost: bench\r\n\r\n"
                writer.write(request.encode())
                first = True
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return
                    self.frames += chunk.count(b"\n\n")
                    if first and b"event: snapshot" in chunk:
                        first = False
                        self.started += 1
                        if self.started == self.count:
                            ready.set()
            finally:
                writer.close()

        self.tasks = [asyncio.create_task(viewer()) for _ in range(self.count)]
        await asyncio.wait_for(ready.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await _load(port, 0.2, 50)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def run(quick: bool) -> list[Table]:
    rounds, seconds, limit = (3, 0.5, 20_000) if quick else (25, 1.0, 100_000)
    order = ["fifty", "none", "off"]
    rates: dict[str, list[float]] = {key: [] for key in order}
    cpu: dict[str, list[float]] = {key: [0.0, 0] for key in order}  # seconds, requests
    ratios: list[float] = []
    frames = 0

    async def measure(port: int, pid: int, key: str) -> float:
        before = _cpu_seconds(pid)
        done, took = await _load(port, seconds, limit)
        cpu[key][0] += _cpu_seconds(pid) - before
        cpu[key][1] += done
        rate = done / took
        rates[key].append(rate)
        return rate

    async def main(servers: dict[str, tuple[int, int]]) -> None:
        nonlocal frames
        for port, _ in servers.values():
            await _ready(port)
        # Two identical servers with the dashboard on: one has 50 viewers for the whole
        # run, the other none; each round measures both (and the reference) in turn.
        async with _Viewers(servers["fifty"][0], VIEWERS) as viewers:
            for index in range(rounds):
                got: dict[str, float] = {}
                for key in order[index % 3 :] + order[: index % 3]:
                    got[key] = await measure(*servers[key], key)
                ratios.append(got["fifty"] / got["none"])
            frames = viewers.frames

    with _server(True) as fifty, _server(True) as none, _server(False) as off:
        asyncio.run(main({"fifty": fifty, "none": none, "off": off}))

    slower = (1 - statistics.median(ratios)) * 100
    verdict = "met" if slower <= 5 else "NOT met"
    table = Table(
        f"Protected app under uvicorn with {VIEWERS} dashboard viewers vs none "
        "(requests/s on loopback)",
        ["dashboard", "requests/s", "vs no viewer", "server CPU per request"],
    )

    def cpu_us(key: str) -> str:
        seconds_used, count = cpu[key]
        return f"{seconds_used / count * 1e6:,.0f} µs" if count and seconds_used else "n/a"

    table.add("off (no dashboard)", f"{statistics.median(rates['off']):,.0f}", "", cpu_us("off"))
    table.add("on, no viewer", f"{statistics.median(rates['none']):,.0f}", "1.000x", cpu_us("none"))
    table.add(
        f"on, {VIEWERS} viewers on the live stream",
        f"{statistics.median(rates['fifty']):,.0f}",
        f"{statistics.median(ratios):.3f}x",
        cpu_us("fifty"),
    )
    table.notes.append(
        f"With {VIEWERS} viewers the app's request rate changes by {-slower:+.1f}% (median of "
        f"{rounds} rounds, the ratio taken within each round; target: at most 5% slower, "
        f"{verdict}). Run to run, on a shared 2-core machine, this moves by several percent "
        "either way."
    )
    cpu_none, cpu_fifty = cpu["none"], cpu["fifty"]
    if cpu_none[0] and cpu_fifty[0] and cpu_none[1] and cpu_fifty[1]:
        per = (cpu_fifty[0] / cpu_fifty[1]) / (cpu_none[0] / cpu_none[1])
        table.notes.append(
            f"Server CPU per request with {VIEWERS} viewers: {per:.3f}x that without (less "
            "sensitive to other load on the machine than the request rate)."
        )
    table.notes.append(
        "Two identical server processes with the dashboard on, one with the viewers "
        "connected for the whole run, one without; measured in turn, order rotating."
    )
    table.notes.append(
        f"The viewers received {frames:,} frames (one per second each, built once and "
        "shared); the load generator and the viewers share this process, on 2 cores."
    )
    table.notes.append(
        "'off' is the same app without the dashboard: the difference to 'on, no viewer' "
        "is the live listener hearing every call (calls, rejections and retries per second)."
    )
    return [table]
