"""ResilienceMiddleware behind a real uvicorn server on 127.0.0.1 (a free port):
headers, spoofing over real connections, streaming, a failure mid-stream, timeouts,
lifespan; and several uvicorn worker processes sharing one limit through Redis.

Time is a FakeClock shared with the server thread; nothing sleeps to make time pass.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _asgi_support import serve, serve_workers, worker_pids
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware
from resilient.testing import FakeClock

QUOTA = "https://iana.org/assignments/http-problem-types#quota-exceeded"


def fastapi_app() -> tuple[FastAPI, collections.Counter[str]]:
    app = FastAPI()
    calls: collections.Counter[str] = collections.Counter()

    @app.get("/items/{item}")
    async def item(item: int) -> dict[str, int]:
        calls["item"] += 1
        return {"item": item}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        calls["upload"] += 1
        return {"size": len(await request.body())}

    return app, calls


async def test_fields_and_refusals_over_a_real_connection():
    clock = FakeClock()
    app, calls = fastapi_app()
    app.add_middleware(ResilienceMiddleware, rs.FixedWindow("2/min", name="api", clock=clock))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            answers = [await client.get(f"/items/{n}") for n in range(2)]
            refused = await client.post("/upload", content=b"x" * 100_000)
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].headers["ratelimit-policy"] == '"api";q=2;w=60'
    assert answers[1].headers["ratelimit"] == '"api";r=0;t=60'
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == QUOTA
    assert calls == {"item": 2}  # the upload never reached the app


async def test_forwarded_for_is_believed_only_from_trusted_proxies():
    """The test client connects from 127.0.0.1: untrusted, its X-Forwarded-For is a
    spoofing attempt; trusted, it is a proxy and each forwarded client has a limit."""
    clock = FakeClock()
    for trusted, expected in (((), [200, 429, 429]), (["127.0.0.1"], [200, 200, 429])):
        app, _ = fastapi_app()
        app.add_middleware(
            ResilienceMiddleware, rs.TokenBucket("1/min", clock=clock), trusted_proxies=trusted
        )
        with serve(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                statuses = [
                    (await client.get("/items/1", headers={"x-forwarded-for": ip})).status_code
                    for ip in ("203.0.113.1", "203.0.113.2", "6.6.6.6, 203.0.113.2")
                ]
        assert statuses == expected, trusted


async def test_a_streamed_response_is_not_buffered():
    """The client reads the first chunk while the app still holds the second."""
    go_on = threading.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first;"
        await asyncio.to_thread(go_on.wait, 10)
        yield b"second"

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    clock = FakeClock()
    app = Starlette(routes=[StarletteRoute("/", endpoint)])
    breaker = rs.CircuitBreaker(clock=clock)
    app.add_middleware(
        ResilienceMiddleware, rs.TokenBucket("5/s", clock=clock), rs.Bulkhead(2), breaker
    )
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client, client.stream("GET", "/") as response:
            assert response.headers["ratelimit"] == '"token_bucket";r=4;t=1'
            stream = response.aiter_raw()
            assert await anext(stream) == b"first;"
            go_on.set()
            assert b"".join([chunk async for chunk in stream]) == b"second"
    assert breaker.stats().calls == 1


async def test_a_failure_mid_stream_truncates_the_response_it_does_not_rewrite_it():
    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise OSError("disk gone")

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    clock = FakeClock()
    breaker = rs.CircuitBreaker(minimum_calls=1, window=rs.CountWindow(1), clock=clock)
    app = Starlette(routes=[StarletteRoute("/", endpoint)])
    app.add_middleware(ResilienceMiddleware, breaker)
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            async with client.stream("GET", "/") as response:
                assert response.status_code == 200
                with pytest.raises(httpx.RemoteProtocolError):
                    await response.aread()
            shed = await client.get("/")
    assert breaker.state is rs.CircuitState.OPEN
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "30"


async def test_timeouts_answer_504_over_a_real_connection():
    clock = FakeClock()

    async def slow(request: Request) -> Response:
        await clock.asleep(float(request.query_params["s"]))
        return PlainTextResponse("late")

    app = Starlette(routes=[StarletteRoute("/", slow)])
    app.add_middleware(ResilienceMiddleware, rs.Timeout(2, clock=clock))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            late = await client.get("/", params={"s": 5})
            quick = await client.get("/", params={"s": 1})
    assert late.status_code == 504
    assert late.json()["detail"] == "The request took longer than 2 s."
    assert (quick.status_code, quick.text) == (200, "late")


async def test_lifespan_passes_through_under_uvicorn():
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    async def hello(request: Request) -> Response:
        return PlainTextResponse("hi")

    app = Starlette(routes=[StarletteRoute("/", hello)], lifespan=lifespan)
    app.add_middleware(
        ResilienceMiddleware, rs.TokenBucket("1/min"), rs.Bulkhead(1), websocket=True
    )
    with serve(app, lifespan="on") as url:
        assert events == ["startup"]
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).status_code == 200
    assert events == ["startup", "shutdown"]


async def test_a_full_bulkhead_sheds_over_a_real_connection():
    inside = threading.Semaphore(0)
    release = threading.Event()

    async def hold(request: Request) -> Response:
        inside.release()
        await asyncio.to_thread(release.wait, 10)
        return PlainTextResponse("done")

    app = Starlette(routes=[StarletteRoute("/", hold)])
    app.add_middleware(ResilienceMiddleware, rs.Bulkhead(1))
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            held = asyncio.create_task(client.get("/"))
            await asyncio.to_thread(inside.acquire, True, 10)
            shed = await client.get("/")
            release.set()
            assert (await held).status_code == 200
    assert shed.status_code == 503
    assert shed.json()["detail"] == "The service is at capacity; retry in 1 s."


# -- several worker processes --------------------------------------------------------------------


async def burst(url: str, n: int) -> list[httpx.Response]:
    """*n* concurrent requests, each on a new connection (so every worker gets some)."""
    limits = httpx.Limits(max_keepalive_connections=0, max_connections=16)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.get("/") for _ in range(n)))


def tally(answers: list[httpx.Response]) -> tuple[int, set[str]]:
    admitted = sum(a.status_code == 200 for a in answers)
    assert admitted + sum(a.status_code == 429 for a in answers) == len(answers)
    return admitted, {a.headers["x-pid"] for a in answers}


async def spread(url: str, n: int) -> tuple[int, set[str]]:
    """Bursts of *n* requests until at least two workers have answered (at most five
    bursts: the kernel picks which worker accepts); the admitted count and the pids."""
    admitted, pids = 0, set[str]()
    for _ in range(5):
        more, seen = tally(await burst(url, n))
        admitted += more
        pids |= seen
        if len(pids) >= 2:
            break
    return admitted, pids


@pytest.mark.slow
async def test_workers_with_their_own_memory_do_not_share_a_limit():
    """The control: each worker process counts alone, so the fleet admits more."""
    env = {"ASGI_TEST_STORE": "memory://", "ASGI_TEST_RATE": "30/hour"}
    with serve_workers("_asgi_support:worker_app", 3, env) as url:
        await worker_pids(url, 2)
        admitted, pids = await spread(url, 60)
    assert len(pids) >= 2
    assert admitted > 30


def redis_store(url: str) -> Any:
    from resilient.backends import store_from_url

    try:
        return store_from_url(url)
    except rs.ConfigError:
        pytest.skip("the Redis store is not available in this build")


@pytest.mark.slow
@pytest.mark.redis
async def test_workers_share_one_limit_through_redis(redis_url):
    redis_store(redis_url)
    env = {"ASGI_TEST_STORE": redis_url, "ASGI_TEST_RATE": "30/hour"}
    with serve_workers("_asgi_support:worker_app", 3, env) as url:
        await worker_pids(url, 2)
        admitted, pids = await spread(url, 60)
        again, _ = tally(await burst(url, 10))
    assert len(pids) >= 2  # the limit was asked from several processes
    assert admitted == 30  # and held fleet-wide
    assert again == 0


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["raise", "allow", "deny", "local"])
async def test_redis_down_in_each_backend_error_mode(own_redis, mode):
    """The Redis server stops; the middleware answers as the store's mode says."""
    from resilient.backends import store_from_url

    url = own_redis.url
    redis_store(url)
    store = store_from_url(url, on_backend_error=mode)
    limiter = rs.SlidingWindow("2/hour", store=store, name=f"down-{mode}")
    app, calls = fastapi_app()
    app.add_middleware(ResilienceMiddleware, limiter)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/items/1")).status_code == 200
        own_redis.stop()
        answers = [await client.get("/items/1") for _ in range(3)]
    statuses = [a.status_code for a in answers]
    expected = {
        "raise": [503, 503, 503],  # the limit could not be checked: fail closed, app not called
        "allow": [200, 200, 200],  # fail open
        "deny": [429, 429, 429],
        "local": [200, 200, 429],  # an in-memory twin: 2 per hour, counted from now
    }[mode]
    assert statuses == expected
    assert calls["item"] == 1 + statuses.count(200)
