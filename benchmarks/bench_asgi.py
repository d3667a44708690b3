"""ASGI middleware: requests per second of a hello-world app under uvicorn with and
without the middleware, and slowapi measured the same way, in one run.

Two hello worlds: a bare Starlette app (the least work per request, so the
middleware's share is largest) and a FastAPI app (what most users serve). Each
variant runs in its own uvicorn process (one worker, on a free loopback port);
this process drives them with a small keep-alive HTTP/1.1 load generator (several
concurrent connections, a bounded number of requests and a bounded time per
round). Rounds alternate between the variants and each ratio is taken within a
round against the same app without middleware, then the median over rounds, so
drift on a shared machine cancels out. The limiters are in memory and never
refuse (the allowed path), with their response headers on unless said otherwise.

A second table gives the cost per request in process, best of interleaved
batches (steadier on a shared machine): a raw ASGI call of the app, and the same
request fed to uvicorn's own HTTP/1.1 protocol object over a fake transport (the
server's work included, no sockets).

The app factory ``make_app`` is what the server processes import
(``BENCH_ASGI_VARIANT`` names the variant: ``<app>:<middleware>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from ._harness import Table, ns
from ._servers import serving_process

NAME = "asgi"

VARIANTS = (
    "starlette:bare",
    "starlette:resilient",
    "starlette:resilient-no-headers",
    "starlette:resilient-all",
    "starlette:slowapi",
    "starlette:slowapi-no-headers",
    "fastapi:bare",
    "fastapi:resilient",
    "fastapi:slowapi",
)
LABELS = {
    "bare": "no middleware",
    "resilient": "resilient: TokenBucket per client (in memory, RateLimit headers)",
    "resilient-no-headers": "resilient: the same without headers",
    "resilient-all": "resilient: TokenBucket + Bulkhead + CircuitBreaker + Timeout",
    "slowapi": "slowapi: SlowAPIASGIMiddleware, default limit (in memory, headers)",
    "slowapi-no-headers": "slowapi: the same without headers",
}
RATE = "1000000/second"  # never reached: the allowed path
CONNECTIONS = 16
PROCESSES = 2  # server processes per variant, taking rounds in turn


def _label(variant: str) -> str:
    app, _, middleware = variant.partition(":")
    return f"{'Starlette' if app == 'starlette' else 'FastAPI'}, {LABELS[middleware]}"


def _bare(variant: str) -> str:
    return variant.partition(":")[0] + ":bare"


def make_app(variant: str | None = None) -> Any:
    """The hello-world app, wrapped as *variant* (``"<app>:<middleware>"``) says."""
    variant = variant or os.environ.get("BENCH_ASGI_VARIANT", "starlette:bare")
    kind, _, middleware = variant.partition(":")
    app: Any
    if kind == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/")
        async def hello_fastapi() -> dict[str, str]:
            return {"message": "Hello, world!"}

    elif kind == "starlette":
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def hello(request: Request) -> PlainTextResponse:
            return PlainTextResponse("Hello, world!")

        app = Starlette(routes=[Route("/", hello)])
    else:
        raise ValueError(variant)
    if middleware.startswith("resilient"):
        import resilient as rs
        from resilient.adapters.asgi import ResilienceMiddleware

        policies: list[Any] = [rs.TokenBucket(RATE)]
        if middleware == "resilient-all":
            policies += [rs.Bulkhead(10_000), rs.CircuitBreaker(), rs.Timeout(30)]
        headers = middleware != "resilient-no-headers"
        app.add_middleware(ResilienceMiddleware, *policies, rate_limit_headers=headers)
    elif middleware.startswith("slowapi"):
        from slowapi import Limiter
        from slowapi.middleware import SlowAPIASGIMiddleware
        from slowapi.util import get_remote_address

        app.state.limiter = Limiter(
            key_func=get_remote_address,
            default_limits=[RATE],
            headers_enabled=middleware == "slowapi",
        )
        app.add_middleware(SlowAPIASGIMiddleware)
    elif middleware != "bare":
        raise ValueError(variant)
    return app


# -- servers -----------------------------------------------------------------------------------


# uvicorn's --fd builds the listening socket as AF_UNIX, so asyncio never sets
# TCP_NODELAY on its connections; build it from the descriptor ourselves.
_SERVE = """
import socket, sys, uvicorn
sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(
    "benchmarks.bench_asgi:make_app", factory=True, access_log=False,
    log_level="warning", proxy_headers=False,
)
uvicorn.Server(config).run(sockets=[sock])
"""


@contextlib.contextmanager
def _server(variant: str) -> Iterator[tuple[int, int]]:
    """A uvicorn process serving *variant*; yields its port and pid."""
    with serving_process(_SERVE, {"BENCH_ASGI_VARIANT": variant}) as served:
        yield served


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by process *pid* (Linux), else ``None``."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# -- the load generator -----------------------------------------------------------------------

_REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"


async def _load(port: int, seconds: float, limit: int) -> tuple[int, float]:
    """Requests answered 200 on *CONNECTIONS* keep-alive connections within *seconds*
    (and at most *limit*), and the time taken."""
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
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    start = loop.time()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return done, loop.time() - start


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


def _throughput(quick: bool) -> Table:
    rounds, seconds, limit = (3, 1.0, 50_000) if quick else (12, 2.0, 200_000)
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [0.0, 0.0] for v in VARIANTS}  # seconds, requests
    with contextlib.ExitStack() as stack:
        servers = {v: [stack.enter_context(_server(v)) for _ in range(PROCESSES)] for v in VARIANTS}

        async def main() -> None:
            for port, _ in (served for group in servers.values() for served in group):
                await _ready(port)
                await _load(port, 0.5, limit)  # warm up
            for index in range(rounds):
                for variant in VARIANTS:
                    port, pid = servers[variant][index % PROCESSES]
                    before = _cpu_seconds(pid)
                    count, elapsed = await _load(port, seconds, limit)
                    after = _cpu_seconds(pid)
                    rates[variant].append(count / elapsed)
                    if before is not None and after is not None:
                        cpu[variant][0] += after - before
                        cpu[variant][1] += count

        asyncio.run(main())
    table = Table(
        "Hello-world apps under uvicorn (1 worker, h11), requests/s on loopback",
        [
            "variant",
            "requests/s (median)",
            "ratio to no middleware",
            "server CPU µs/request",
            "CPU ratio",
        ],
    )
    ratios: dict[str, float] = {}
    per_request = {v: (c / n * 1e6 if n else 0.0) for v, (c, n) in cpu.items()}
    for variant in VARIANTS:
        bare = _bare(variant)
        per_round = [r / b for r, b in zip(rates[variant], rates[bare], strict=True)]
        ratios[variant] = statistics.median(per_round)
        used = per_request[variant]
        table.add(
            _label(variant),
            f"{statistics.median(rates[variant]):,.0f}",
            f"{ratios[variant]:.3f}x",
            f"{used:,.1f}" if used else "n/a",
            f"{per_request[bare] / used:.3f}x" if used else "n/a",
        )

    def cpu_ratio(variant: str) -> str:
        used = per_request[variant]
        return f"{per_request[_bare(variant)] / used:.3f}x" if used else "n/a"

    for kind in ("starlette", "fastapi"):
        ours = ratios[f"{kind}:resilient"]
        ok = "met" if ours >= 0.9 else "NOT met"
        name = "Starlette" if kind == "starlette" else "FastAPI"
        table.notes.append(
            f"target ({name}): resilient with an in-memory limiter >= 0.9x the requests/s "
            f"without middleware: {ours:.3f}x ({ok}; CPU ratio "
            f"{cpu_ratio(f'{kind}:resilient')}); slowapi measured the same way: "
            f"{ratios[f'{kind}:slowapi']:.3f}x (CPU ratio {cpu_ratio(f'{kind}:slowapi')})"
        )
    table.notes.append(
        f"{CONNECTIONS} keep-alive connections from one asyncio client process; {rounds} "
        f"rounds of {seconds:g} s (at most {limit:,} requests each), variants interleaved; "
        "each ratio is the median of per-round ratios. Each variant is served by "
        f"{PROCESSES} uvicorn processes taking the rounds in turn: one process can run a "
        "few per cent faster or slower than another of the same code (memory layout), and "
        "a single process per variant let that decide a ratio. The server CPU per request "
        "(user + system, all rounds) is the cost that bounds throughput when the server "
        "has a core to itself; the CPU ratio is bare / variant (1.0x: free)"
    )
    return table


# -- in process ---------------------------------------------------------------------------------


def _raw_call(app: Any) -> Callable[[], Any]:
    scope_template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def one() -> None:
        await app(dict(scope_template), receive, send)

    return one


class _Transport:
    """Enough of an asyncio transport for uvicorn's protocol: collects what it writes."""

    def __init__(self) -> None:
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_protocol(self, protocol: Any) -> None: ...


def _through_protocol(app: Any) -> Callable[[], Any] | None:
    """One request fed to uvicorn's own HTTP/1.1 protocol object (h11) over a fake
    transport: the server's work without sockets or a second process."""
    try:
        from uvicorn.config import Config
        from uvicorn.protocols.http.h11_impl import H11Protocol
        from uvicorn.server import ServerState

        config = Config(
            app, lifespan="off", access_log=False, proxy_headers=False, timeout_keep_alive=3600
        )
        config.load()
        loop = asyncio.get_running_loop()
        state = ServerState()
        protocol = H11Protocol(config, state, app_state={}, _loop=loop)
    except Exception:  # another uvicorn: skip this column
        return None
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]

    async def one() -> None:
        done = state.total_requests + 1
        protocol.data_received(_REQUEST)
        while state.total_requests < done:  # noqa: ASYNC110 - polling the protocol's count
            await asyncio.sleep(0)

    return one


def _in_process(quick: bool) -> Table:
    """Best-of interleaved batches: on a shared machine the minimum is the stable figure."""
    batch, repeats = (500, 10) if quick else (2_000, 30)

    async def main() -> tuple[dict[str, float], dict[str, float]]:
        apps = {v: make_app(v) for v in VARIANTS}
        plain = {v: _raw_call(app) for v, app in apps.items()}
        served = {v: _through_protocol(app) for v, app in apps.items()}
        best = {v: float("inf") for v in VARIANTS}
        best_served = {v: float("inf") for v in VARIANTS}
        for _ in range(repeats):
            for variant in VARIANTS:
                for fn, into in ((plain[variant], best), (served[variant], best_served)):
                    if fn is None:
                        continue
                    start = time.perf_counter_ns()
                    for _ in range(batch):
                        await fn()
                    into[variant] = min(into[variant], (time.perf_counter_ns() - start) / batch)
        return best, best_served

    times, served = asyncio.run(main())
    table = Table(
        "In process: one request, without a server and through uvicorn's HTTP/1.1 protocol "
        "(no sockets)",
        [
            "variant",
            "app ns/request",
            "middleware overhead ns",
            "with uvicorn's protocol ns/request",
            "overhead ns",
            "ratio",
        ],
    )
    for variant in VARIANTS:
        bare = _bare(variant)
        with_server = served[variant]
        known = with_server != float("inf")
        table.add(
            _label(variant),
            ns(times[variant]),
            ns(times[variant] - times[bare]),
            ns(with_server) if known else "n/a",
            ns(with_server - served[bare]) if known else "n/a",
            f"{served[bare] / with_server:.3f}x" if known else "n/a",
        )
    table.notes.append(
        f"best of {repeats} interleaved batches of {batch:,} requests, garbage collection on; "
        "the protocol column includes the server's own work for the extra header fields "
        "(h11 validates and writes each one); ratio: bare / variant"
    )
    return table


def run(quick: bool) -> list[Table]:
    return [_throughput(quick), _in_process(quick)]
