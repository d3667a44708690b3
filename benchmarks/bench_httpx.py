"""httpx adapter: per-request overhead of the resilient transports.

Three ways to send the same request, measured side by side in one run:

* the bare inner transport (no resilience at all);
* ``ResilientTransport`` / ``AsyncResilientTransport`` around it, with a pipeline
  whose every policy admits the request (the allowed path: a 200 on the first try);
* httpx-retries' ``RetryTransport`` around it (retry only).

First over ``httpx.MockTransport`` (no network: the numbers are the adapters'
own cost, calling the transport directly); then through ``httpx.Client``
against a real uvicorn server on 127.0.0.1, where the network and the server
dominate. Counts are bounded so the whole section runs
in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

import resilient as rs
from resilient.adapters.httpx import AsyncResilientTransport, ResilientTransport

from ._harness import Table, ameasure, measure, ns, ratio

NAME = "httpx"
URL = "http://api.example.com/items/42"


def _pipeline() -> tuple[list[Any], str]:
    """The policies of the allowed path, and a label naming them."""
    policies: list[Any] = []
    names = []
    bucket = getattr(rs, "TokenBucket", None)
    if bucket is not None:
        policies.append(bucket(rate="1000000/s", burst=1_000_000))
        names.append("TokenBucket")
    policies.append(rs.Retry(3))
    names.append("Retry")
    breaker = getattr(rs, "CircuitBreaker", None)
    if breaker is not None:
        policies.append(breaker(name="bench"))
        names.append("CircuitBreaker")
    policies.append(rs.Timeout(10.0))
    names.append("Timeout")
    return policies, " + ".join(names)


def _peer(transport: Any) -> Any:
    from httpx_retries import Retry as PeerRetry
    from httpx_retries import RetryTransport

    return RetryTransport(transport=transport, retry=PeerRetry(total=3))


class _PipelineOnly(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The same policies run as a plain Pipeline around the inner transport: what
    the policies cost by themselves, without the adapter's HTTP logic."""

    def __init__(self, pipeline: rs.Pipeline, inner: httpx.MockTransport) -> None:
        self.pipeline, self.inner = pipeline, inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.pipeline.call(self.inner.handle_request, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.pipeline.acall(self.inner.handle_async_request, request)


def _best_overheads(
    variants: dict[str, Any], timer: Callable[[Any], float], rounds: int
) -> tuple[float, dict[str, float]]:
    """Measure every variant round-robin, several rounds, and keep each one's lowest
    time (the round least disturbed by other processes). Returns the bare
    transport's lowest ns/request and each other variant's lowest minus it."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, variant in variants.items():
            best[name] = min(best.get(name, float("inf")), timer(variant))
    names = list(variants)
    bare = best[names[0]]
    return bare, {name: best[name] - bare for name in names[1:]}


def _mock_tables(quick: bool) -> list[Table]:
    policies, label = _pipeline()
    # One prebuilt response for every request, so the timings are the transports'
    # own work (building a Response costs several µs).
    response = httpx.Response(200, content=b"ok")
    mock = httpx.MockTransport(lambda request: response)
    request = httpx.Request("GET", URL)
    pipeline = rs.Pipeline(*policies)
    rounds = 3 if quick else 9
    sync = {
        "bare MockTransport": mock,
        f"reference: Pipeline({label}).call, no adapter": _PipelineOnly(pipeline, mock),
        f"ResilientTransport ({label})": ResilientTransport(*policies, transport=mock),
        "ResilientTransport (Retry only)": ResilientTransport(rs.Retry(3), transport=mock),
        "httpx-retries RetryTransport": _peer(mock),
    }
    asyncs = {
        "bare MockTransport": mock,
        f"reference: Pipeline({label}).acall, no adapter": _PipelineOnly(pipeline, mock),
        f"AsyncResilientTransport ({label})": AsyncResilientTransport(*policies, transport=mock),
        "AsyncResilientTransport (Retry only)": AsyncResilientTransport(
            rs.Retry(3), transport=mock
        ),
        "httpx-retries RetryTransport": _peer(mock),
    }
    number = 2_000 if quick else 10_000

    def sync_timer(transport: Any) -> float:
        return measure(lambda: transport.handle_request(request), quick=quick, number=number)

    def async_timer(transport: Any) -> float:
        return ameasure(lambda: transport.handle_async_request(request), quick=quick, number=number)

    tables = []
    for title, variants, timer in (
        ("handle_request over MockTransport, sync", sync, sync_timer),
        ("handle_async_request over MockTransport, async", asyncs, async_timer),
    ):
        bare, overheads = _best_overheads(variants, timer, rounds)
        table = Table(
            f"httpx: {title} (bare: {ns(bare)} ns/request)",
            ["transport", "overhead ns/request", "vs httpx-retries"],
        )
        _fill(table, overheads)
        tables.append(table)
    tables[-1].notes.extend(
        [
            "Overhead = the transport's ns/request minus the bare transport's; each is the "
            f"lowest of {rounds} round-robin rounds (each round a median of batches).",
            "The reference row runs the same policies as a plain Pipeline around the inner "
            "transport: the adapter's own HTTP logic is the difference between it and the "
            "ResilientTransport row.",
            "The MockTransport answers every request with one prebuilt Response, so the "
            "tables time the transports alone (building a Response, and httpx.Client's "
            "own work, cost several µs more per request, for every row alike).",
        ]
    )
    return tables


def _fill(table: Table, overheads: dict[str, float]) -> None:
    names = list(overheads)
    peer = overheads[names[-1]]
    for name, overhead in overheads.items():
        versus = ""
        if name != names[-1] and not name.startswith("reference"):
            versus = ratio(overhead, peer)
        table.add(name, ns(overhead), versus)


# -- a real loopback server ------------------------------------------------------------------


async def _app(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@contextlib.contextmanager
def _server() -> Iterator[str]:
    import uvicorn

    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/items/42"
    finally:
        server.should_exit = True
        thread.join(10)


def _loopback_table(quick: bool) -> Table:
    policies, label = _pipeline()
    number = 200 if quick else 500
    rounds = 3 if quick else 9
    table = Table(
        "httpx: Client.get against uvicorn on 127.0.0.1 (keep-alive)",
        ["transport", "µs/request (best round)", "overhead µs"],
    )
    with _server() as url:
        makers: dict[str, Callable[[], Any]] = {
            "bare HTTPTransport": httpx.HTTPTransport,
            f"ResilientTransport ({label})": lambda: ResilientTransport(*policies),
            "httpx-retries RetryTransport": lambda: _peer(httpx.HTTPTransport()),
        }
        clients = {name: httpx.Client(transport=make()) for name, make in makers.items()}

        def one(name: str) -> float:
            client = clients[name]
            start = time.perf_counter_ns()
            for _ in range(number):
                client.get(url)
            return (time.perf_counter_ns() - start) / number / 1000

        for name in clients:
            for _ in range(50):
                clients[name].get(url)
        _report(table, [one], list(clients), rounds)
        for client in clients.values():
            client.close()
        asyncio.run(_async_loopback(table, url, policies, label, number, rounds))
    table.notes.append(
        f"{number} requests per round, {rounds} round-robin rounds, each row its best round. "
        "The server runs in the same process (its own event loop thread), so the network, "
        "the server and the GIL dominate and differences of tens of µs are noise on a busy "
        "machine: the MockTransport tables show the adapters' own cost."
    )
    return table


def _report(
    table: Table, timers: list[Callable[[str], float]], names: list[str], rounds: int
) -> None:
    """Round-robin rounds; per row its lowest µs/request, and that minus the bare
    transport's lowest."""
    (timer,) = timers
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name in names:
            best[name] = min(best.get(name, float("inf")), timer(name))
    for name in names:
        overhead = "" if name == names[0] else f"{best[name] - best[names[0]]:,.1f}"
        table.add(name, f"{best[name]:,.1f}", overhead)


async def _async_loopback(
    table: Table, url: str, policies: list[Any], label: str, number: int, rounds: int
) -> None:
    makers: dict[str, Callable[[], Any]] = {
        "bare AsyncHTTPTransport (async)": httpx.AsyncHTTPTransport,
        f"AsyncResilientTransport ({label}) (async)": lambda: AsyncResilientTransport(*policies),
        "httpx-retries RetryTransport (async)": lambda: _peer(httpx.AsyncHTTPTransport()),
    }
    clients = {name: httpx.AsyncClient(transport=make()) for name, make in makers.items()}
    for client in clients.values():
        for _ in range(50):
            await client.get(url)
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            start = time.perf_counter_ns()
            for _ in range(number):
                await client.get(url)
            samples[name].append((time.perf_counter_ns() - start) / number / 1000)
    for client in clients.values():
        await client.aclose()
    names = list(clients)
    bare = min(samples[names[0]])
    for name in names:
        overhead = "" if name == names[0] else f"{min(samples[name]) - bare:,.1f}"
        table.add(name, f"{min(samples[name]):,.1f}", overhead)


def run(quick: bool) -> list[Table]:
    tables = _mock_tables(quick)
    tables.append(_loopback_table(quick))
    return tables
