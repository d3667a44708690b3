"""Quickstart, web: a protected FastAPI app and a resilient httpx client calling it."""

from __future__ import annotations

import asyncio

# --8<-- [start:server]
from fastapi import FastAPI

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware


def create_app(clock: rs.Clock | None = None) -> FastAPI:  # clock: a FakeClock in tests
    app = FastAPI()
    app.add_middleware(
        ResilienceMiddleware,
        rs.TokenBucket("20/s", burst=40, clock=clock),  # per client address: 429 beyond it
        rs.Bulkhead(max_concurrent=100),  # 503 when 100 requests are already in flight
        rs.Timeout("5s", clock=clock),  # 504 if the app has not started answering by then
    )

    @app.get("/quotes/{symbol}")
    async def quote(symbol: str) -> dict[str, object]:
        return {"symbol": symbol, "price": 101.5}

    return app


app = create_app()


# --8<-- [end:server]


# --8<-- [start:client]
import httpx

from resilient.adapters.httpx import AsyncResilientTransport


def quotes_client(inner: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    transport = AsyncResilientTransport(
        rs.Retry(attempts=3, deadline="10s"),  # idempotent requests; honours Retry-After
        rs.CircuitBreaker(name="quotes"),  # counts 5xx and transport errors
        rs.Timeout("2s"),  # each attempt; clamps httpx's own timeouts
        transport=inner,  # None: a real connection (httpx.AsyncHTTPTransport)
    )
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000")


async def main() -> None:
    async with quotes_client() as client:
        response = await client.get("/quotes/ACME")
        print(response.json())


# --8<-- [end:client]


async def check() -> None:
    from resilient.testing import FakeClock

    # In tests, the client talks to the app in-process: no network, no server.
    async with quotes_client(httpx.ASGITransport(app=app)) as client:
        response = await client.get("/quotes/ACME")
        assert response.json() == {"symbol": "ACME", "price": 101.5}
    # On a fake clock no token comes back while the test runs: the 41st request is refused.
    limited = create_app(FakeClock())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=limited), base_url="http://127.0.0.1:8000"
    ) as plain:
        statuses = [(await plain.get("/quotes/ACME")).status_code for _ in range(40)]
        refused = await plain.get("/quotes/ACME")
    assert statuses == [200] * 40
    assert refused.status_code == 429
    assert float(refused.headers["Retry-After"]) >= 1
    assert "RateLimit" in refused.headers


if __name__ == "__main__":
    asyncio.run(check())
