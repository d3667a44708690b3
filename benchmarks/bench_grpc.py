"""gRPC adapter: unary calls per second on loopback, with and without the interceptors.

A generic echo handler (bytes in, bytes out) served on 127.0.0.1 by a
``grpc.server`` (sync) and a ``grpc.aio.server``, called from the same process:
bare (no policy), client interceptor only, server interceptor only, and both,
each with a pipeline whose every policy admits the call (the allowed path).
Every row uses the same server and connection, so server-to-server differences
do not count: the server interceptor guards two method names by route and lets
the third pass through.

The policies are the usual pair on each end: a retry and a circuit breaker on
the client; a token bucket per client address and a bulkhead on the server.
Every call, bare or not, has the same 10 s timeout (which the client
interceptor turns into each attempt's deadline and the server interceptor
publishes to the handler). A last row runs fuller pipelines (a token bucket
and a timeout on the client too; a breaker and a timeout on the server too).

Short batches of each variant are taken in turn for a fixed time and each row is
its median batch, so a busy machine slows every variant alike. Then the
interceptors' own cost per call without the network (a continuation that
answers at once), to read the loopback ratios against.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

import resilient as rs
from resilient.adapters.grpc import (
    AsyncClientInterceptor,
    AsyncServerInterceptor,
    ClientInterceptor,
    ServerInterceptor,
)

from ._harness import Table, ameasure, measure, ns

NAME = "grpc"
METHOD = "/bench.Echo/Unary"
TARGET = 0.9
PAYLOAD = b"x" * 32
DEADLINE = 10.0  # every call's own timeout, with or without interceptors
BOTH = "client + server"


def _client_policies(full: bool = False) -> tuple[list[Any], str]:
    policies: list[Any] = [rs.Retry(3), rs.CircuitBreaker(name="bench-client")]
    if full:
        policies = [rs.TokenBucket("1000000/s", burst=1_000_000), *policies, rs.Timeout(DEADLINE)]
    return policies, "Retry + CircuitBreaker"


def _server_policies(full: bool = False) -> tuple[list[Any], str]:
    policies: list[Any] = [
        rs.TokenBucket("1000000/s", burst=1_000_000),
        rs.Bulkhead(max_concurrent=64),
    ]
    if full:
        policies += [rs.CircuitBreaker(name="bench-server"), rs.Timeout(DEADLINE)]
    return policies, "TokenBucket per client + Bulkhead"


FULL = (
    "client + server, full pipelines (client: TokenBucket + Retry + CircuitBreaker + Timeout; "
    "server: TokenBucket per client + Bulkhead + CircuitBreaker + Timeout)"
)


def _echo(request: bytes, context: Any) -> bytes:
    return request


async def _aecho(request: bytes, context: Any) -> bytes:
    return request


def _handlers(fn: Callable[..., Any]) -> Any:
    """The same echo under three names: one unguarded, two guarded (see :func:`_routes`)."""
    handler = grpc.unary_unary_rpc_method_handler(fn)
    return grpc.method_handlers_generic_handler(
        "bench.Echo", {"Unary": handler, "Guarded": handler, "Full": handler}
    )


def _routes() -> dict[str, Any]:
    """The server's routes: ``Unary`` has no policy (it passes through)."""
    return {
        "bench.Echo/Guarded": _server_policies()[0],
        "bench.Echo/Full": _server_policies(full=True)[0],
    }


GUARDED = "/bench.Echo/Guarded"
FULL_METHOD = "/bench.Echo/Full"


Timings = dict[str, tuple[float, float]]
"""Per variant: the median wall-clock µs/call of its batches, and its process CPU µs/call."""


def _interleave(calls: dict[str, Callable[[], Any]], batch: int, seconds: float) -> Timings:
    """Each variant's timings, measured in short batches taken in turn until *seconds*
    pass: a busy machine slows every variant alike instead of one round."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(samples[next(iter(calls))]) < 5:
        for name, call in calls.items():
            start, used = time.perf_counter_ns(), time.process_time_ns()
            for _ in range(batch):
                call()
            cpu[name] += time.process_time_ns() - used
            samples[name].append((time.perf_counter_ns() - start) / batch / 1000)
    return {
        name: (statistics.median(values), cpu[name] / len(values) / batch / 1000)
        for name, values in samples.items()
    }


async def _ainterleave(
    calls: dict[str, Callable[[], Awaitable[Any]]], batch: int, seconds: float
) -> Timings:
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(samples[next(iter(calls))]) < 5:
        for name, call in calls.items():
            start, used = time.perf_counter_ns(), time.process_time_ns()
            for _ in range(batch):
                await call()
            cpu[name] += time.process_time_ns() - used
            samples[name].append((time.perf_counter_ns() - start) / batch / 1000)
    return {
        name: (statistics.median(values), cpu[name] / len(values) / batch / 1000)
        for name, values in samples.items()
    }


def _table(title: str, timings: Timings, batch: int, seconds: float) -> Table:
    table = Table(
        title, ["interceptors", "calls/s", "µs/call", "vs bare", "CPU µs/call", "CPU vs bare"]
    )
    names = list(timings)
    bare, bare_cpu = timings[names[0]]
    for name in names:
        wall, cpu = timings[name]
        first = name == names[0]
        table.add(
            name,
            f"{1e6 / wall:,.0f}",
            f"{wall:,.1f}",
            "" if first else f"{bare / wall:.3f}x",
            f"{cpu:,.1f}",
            "" if first else f"{bare_cpu / cpu:.3f}x",
        )
    both = bare / timings[BOTH][0]
    ok = "met" if both >= TARGET else "NOT met"
    table.notes.append(
        f"target: client + server interceptors at {both:.3f}x the bare calls/s "
        f"(target >= {TARGET}x: {ok}). Every call has a {DEADLINE:.0f} s timeout. Batches "
        f"of {batch} calls, each variant in turn, for {seconds:.0f} s; each row is its "
        "median batch."
    )
    table.notes.append(
        "One server and one connection for every row: the server interceptor guards the "
        "methods it has routes for, and an unrouted method (the bare and client-only rows) "
        "passes through it at the cost of one routing lookup."
    )
    table.notes.append(
        "Client and server share one process (and its GIL): CPU µs/call is the process "
        "time each call costs both ends together, less disturbed by other processes than "
        "the wall clock."
    )
    return table


# -- sync ---------------------------------------------------------------------------------------


def _sync_table(quick: bool) -> Table:
    batch, seconds = (20, 4.0) if quick else (20, 45.0)
    client_policies, client_label = _client_policies()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[ServerInterceptor(routes=_routes())],
    )
    server.add_generic_rpc_handlers((_handlers(_echo),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    raw = grpc.insecure_channel(f"127.0.0.1:{port}")
    client = grpc.intercept_channel(raw, ClientInterceptor(*client_policies))
    full = grpc.intercept_channel(raw, ClientInterceptor(*_client_policies(full=True)[0]))
    methods = [
        raw.unary_unary(METHOD),
        grpc.intercept_channel(raw, _Noop()).unary_unary(METHOD),
        client.unary_unary(METHOD),
        raw.unary_unary(GUARDED),
        client.unary_unary(GUARDED),
        full.unary_unary(FULL_METHOD),
    ]
    names = _names(client_label, _server_policies()[1])
    calls: dict[str, Callable[[], Any]] = {
        name: functools.partial(method, PAYLOAD, timeout=DEADLINE)
        for name, method in zip(names, methods, strict=True)
    }
    try:
        for call in calls.values():
            for _ in range(100):
                call()
        timings = _interleave(calls, batch, seconds)
    finally:
        raw.close()
        server.stop(None)
    return _table(
        "gRPC unary calls on loopback, sync (grpc.server + grpc channel)", timings, batch, seconds
    )


class _Noop(grpc.UnaryUnaryClientInterceptor):
    """A client interceptor that does nothing: what grpc's interceptor machinery costs."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


class _AsyncNoop(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


NOOP = "reference: a do-nothing client interceptor (grpc's own interceptor machinery)"


def _names(client_label: str, server_label: str) -> list[str]:
    return [
        "none (bare)",
        NOOP,
        f"client ({client_label})",
        f"server ({server_label})",
        BOTH,
        FULL,
    ]


# -- asyncio ------------------------------------------------------------------------------------


async def _aio_timings(batch: int, seconds: float) -> Timings:
    client_policies, client_label = _client_policies()
    server = grpc.aio.server(interceptors=[AsyncServerInterceptor(routes=_routes())])
    server.add_generic_rpc_handlers((_handlers(_aecho),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{port}"
    # grpc.aio has no intercept_channel: three channels to the same server.
    channels = [
        grpc.aio.insecure_channel(target),
        grpc.aio.insecure_channel(target, interceptors=[_AsyncNoop()]),
        grpc.aio.insecure_channel(target, interceptors=AsyncClientInterceptor(*client_policies)),
        grpc.aio.insecure_channel(
            target, interceptors=AsyncClientInterceptor(*_client_policies(full=True)[0])
        ),
    ]
    raw, noop, client, full = channels
    methods = [
        raw.unary_unary(METHOD),
        noop.unary_unary(METHOD),
        client.unary_unary(METHOD),
        raw.unary_unary(GUARDED),
        client.unary_unary(GUARDED),
        full.unary_unary(FULL_METHOD),
    ]
    names = _names(client_label, _server_policies()[1])
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        name: functools.partial(method, PAYLOAD, timeout=DEADLINE)
        for name, method in zip(names, methods, strict=True)
    }
    try:
        for call in calls.values():
            for _ in range(100):
                await call()
        return await _ainterleave(calls, batch, seconds)
    finally:
        for channel in channels:
            await channel.close()
        await server.stop(None)


def _aio_table(quick: bool) -> Table:
    batch, seconds = (20, 4.0) if quick else (20, 45.0)
    timings = asyncio.run(_aio_timings(batch, seconds))
    return _table(
        "gRPC unary calls on loopback, asyncio (grpc.aio.server + grpc.aio channel)",
        timings,
        batch,
        seconds,
    )


# -- the interceptors alone -----------------------------------------------------------------------


class _Details:
    method = METHOD
    timeout = DEADLINE
    metadata = None
    credentials = None
    wait_for_ready = None
    compression = None


class _Outcome:
    """A finished unary call, as a sync continuation returns it."""

    def code(self) -> Any:
        return grpc.StatusCode.OK

    def result(self, timeout: Any = None) -> bytes:
        return PAYLOAD


class _Context:
    """Enough of a servicer context for the server interceptor."""

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def time_remaining(self) -> float | None:
        return DEADLINE

    def code(self) -> Any:
        return None

    def is_active(self) -> bool:
        return True

    def invocation_metadata(self) -> tuple[()]:
        return ()


class _HandlerDetails:
    method = METHOD
    invocation_metadata = ()


class _AioCall:
    def __await__(self) -> Any:
        if False:
            yield
        return PAYLOAD


def _own_cost_table(quick: bool) -> Table:
    client_policies, _ = _client_policies()
    server_policies, _ = _server_policies()
    outcome = _Outcome()
    details = _Details()
    context = _Context()
    sync_client = ClientInterceptor(*client_policies)
    aio_client = AsyncClientInterceptor(*client_policies)
    sync_server = ServerInterceptor(*server_policies)
    aio_server = AsyncServerInterceptor(*server_policies)
    sync_handler = _handlers(_echo).service(_HandlerDetails())
    aio_handler = _handlers(_aecho).service(_HandlerDetails())
    sync_wrapped = sync_server.intercept_service(lambda d: sync_handler, _HandlerDetails())

    def continuation(d: Any, request: Any) -> _Outcome:
        return outcome

    async def acontinuation(d: Any, request: Any) -> _AioCall:
        return _AioCall()

    async def aio_handler_of(d: Any) -> Any:
        return aio_handler

    aio_wrapped = asyncio.run(aio_server.intercept_service(aio_handler_of, _HandlerDetails()))
    table = Table(
        "gRPC interceptors' own cost per unary call (no network: an answering continuation)",
        ["interceptor (same policies as above)", "ns/call"],
    )
    table.add(
        "ClientInterceptor.intercept_unary_unary",
        ns(
            measure(
                lambda: sync_client.intercept_unary_unary(continuation, details, PAYLOAD),
                quick=quick,
            )
        ),
    )
    table.add(
        "AsyncClientInterceptor.intercept_unary_unary",
        ns(
            ameasure(
                lambda: aio_client.intercept_unary_unary(acontinuation, details, PAYLOAD),
                quick=quick,
            )
        ),
    )
    table.add(
        "ServerInterceptor handler (wrapped behaviour)",
        ns(measure(lambda: sync_wrapped.unary_unary(PAYLOAD, context), quick=quick)),
    )
    table.add(
        "AsyncServerInterceptor handler (wrapped behaviour)",
        ns(ameasure(lambda: aio_wrapped.unary_unary(PAYLOAD, context), quick=quick)),
    )
    table.notes.append(
        "The bare loopback call costs the µs/call of the tables above; the interceptors "
        "add these nanoseconds on top (the rest of the difference is noise and the "
        "shared GIL of a server and a client in one process)."
    )
    return table


def run(quick: bool) -> list[Table]:
    return [_sync_table(quick), _aio_table(quick), _own_cost_table(quick)]
