"""A resilient gRPC service and its clients, sync and asyncio.

Runs offline in about a second: a small inventory service (generic handlers,
bytes payloads, no generated code) on 127.0.0.1, guarded by a server
interceptor, and called through client interceptors.

    python examples/grpc_service.py
"""

from __future__ import annotations

import asyncio
import itertools
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
    metadata_key,
)
from resilient.observability import Event, RetryScheduled

SERVICE = "inventory.v1.Stock"


def show(event: Event) -> None:
    if isinstance(event, RetryScheduled):
        # The client interceptors add the service, the method and the status code.
        print(f"  retrying in {event.delay:.2f}s after attempt {event.attempt}: {event.attributes}")


# -- the service --------------------------------------------------------------------------------

counter = itertools.count(1)


def check(context: Any) -> str | None:
    """Every third call finds the warehouse database restarting."""
    if next(counter) % 3 == 0:
        return "warehouse database restarting"
    return None


def get(request: bytes, context: grpc.ServicerContext) -> bytes:
    problem = check(context)
    if problem:
        context.set_trailing_metadata((("grpc-retry-pushback-ms", "50"),))
        context.abort(grpc.StatusCode.UNAVAILABLE, problem)
    return b"42 x " + request


def watch(request: bytes, context: grpc.ServicerContext) -> Any:
    for level in (3, 2, 1):
        yield f"{request.decode()}: {level} left".encode()


async def aget(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    problem = check(context)
    if problem:
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, problem, (("grpc-retry-pushback-ms", "50"),)
        )
    return b"42 x " + request


async def awatch(request: bytes, context: grpc.aio.ServicerContext) -> Any:
    for level in (3, 2, 1):
        yield f"{request.decode()}: {level} left".encode()


def handlers(unary: Any, stream: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Get": grpc.unary_unary_rpc_method_handler(unary),
            "Watch": grpc.unary_stream_rpc_method_handler(stream),
        },
    )


def guard() -> tuple[Any, ...]:
    """The server's policies: 5 calls per client key, 16 in flight at most."""
    return (rs.TokenBucket("5/minute", burst=5), rs.Bulkhead(max_concurrent=16))


# -- sync ---------------------------------------------------------------------------------------


def sync_demo() -> None:
    print("grpc (sync)")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[ServerInterceptor(*guard(), key=metadata_key("x-api-key"))],
    )
    server.add_generic_rpc_handlers((handlers(get, watch),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    interceptor = ClientInterceptor(
        rs.Retry(3, listeners=[show]),  # UNAVAILABLE is retried; the pushback sets the delay
        rs.CircuitBreaker(name="inventory", minimum_calls=5),
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
        channel = grpc.intercept_channel(raw, interceptor)
        get_stock = channel.unary_unary(f"/{SERVICE}/Get")
        watch_stock = channel.unary_stream(f"/{SERVICE}/Watch")
        key = (("x-api-key", "shop-frontend"),)
        for item in (b"apples", b"pears", b"plums"):
            print(" ", get_stock(item, metadata=key, timeout=2.0))
        for message in watch_stock(b"apples", metadata=key):
            print(" ", message)
        try:
            for _ in range(3):
                get_stock(b"figs", metadata=key)
        except grpc.RpcError as error:
            wait = dict(error.trailing_metadata() or ())["grpc-retry-pushback-ms"]
            print(f"  refused: {error.code().name}, come back in {wait} ms")
    server.stop(None)


# -- asyncio ------------------------------------------------------------------------------------


async def aio_demo() -> None:
    print("grpc.aio")
    server = grpc.aio.server(interceptors=[AsyncServerInterceptor(*guard())])
    server.add_generic_rpc_handlers((handlers(aget, awatch),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    # One interceptor per kind of call: pass the object itself as `interceptors`.
    interceptor = AsyncClientInterceptor(
        rs.Retry(3, listeners=[show]),
        rs.CircuitBreaker(name="inventory-aio", minimum_calls=5),
        routes={f"{SERVICE}/Watch": None},  # streams pass through untouched
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptor) as channel:
        get_stock = channel.unary_unary(f"/{SERVICE}/Get")
        for item in (b"apples", b"pears", b"plums"):
            print(" ", await get_stock(item, timeout=2.0))
        async for message in channel.unary_stream(f"/{SERVICE}/Watch")(b"pears"):
            print(" ", message)
    await server.stop(None)


if __name__ == "__main__":
    sync_demo()
    asyncio.run(aio_demo())
