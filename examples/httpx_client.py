"""Resilient httpx clients, sync and async.

Runs offline in about a second: the upstream services are simulated with
``httpx.MockTransport``. In real code, leave out ``transport=`` and the
resilient transport wraps httpx's own connection pool.

    python examples/httpx_client.py
"""

from __future__ import annotations

import asyncio
import itertools

import httpx

import resilient as rs
from resilient.adapters.httpx import AsyncResilientTransport, ResilientTransport, Route
from resilient.observability import Event, RetryScheduled


def flaky_upstream() -> httpx.MockTransport:
    """A service that answers 503 to every other request (asking for a 50 ms pause)
    and is down for good on /broken."""
    counter = itertools.count(1)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/broken":
            return httpx.Response(500, text="broken")
        if next(counter) % 2:
            return httpx.Response(503, headers={"Retry-After": "0.05"}, text="busy")
        return httpx.Response(200, json={"path": request.url.path})

    return httpx.MockTransport(handle)


def show(event: Event) -> None:
    if isinstance(event, RetryScheduled):
        # Adapters add method, host and status, never the URL or its query.
        print(f"  retrying in {event.delay:.2f}s after attempt {event.attempt}: {event.attributes}")


def sync_client() -> None:
    print("sync client")
    breaker = rs.CircuitBreaker(name="catalog", minimum_calls=4, failure_rate=0.5)
    transport = ResilientTransport(
        rs.Retry(3, deadline=5.0, listeners=[show]),  # total budget for all attempts
        breaker,  # counts 5xx responses and transport errors
        rs.Timeout(2.0),  # per attempt: httpx's timeouts are clamped to it
        transport=flaky_upstream(),
    )
    with httpx.Client(transport=transport, base_url="http://catalog.internal") as client:
        response = client.get("/items/42", params={"token": "not-in-the-logs"})
        print(" ", response.status_code, response.json())

        # POST is not idempotent: a 503 comes back as it is, without a retry.
        print("  POST ->", client.post("/orders", json={"item": 42}).status_code)

        # A service that keeps failing opens the breaker; then calls fail fast.
        for _ in range(5):
            try:
                print("  /broken ->", client.get("/broken").status_code)
            except rs.CircuitOpenError as exc:
                print(f"  breaker {breaker.state}: fails fast, retry after {exc.retry_after:.0f}s")
                break


async def async_client() -> None:
    print("async client, routes and named policies")
    registry = {  # a Registry from rs.load_config("policies.yaml") works the same
        "payments": rs.Pipeline(rs.Retry(4, listeners=[show]), rs.Timeout(1.0)),
        "default": rs.Retry(2),
    }
    transport = AsyncResilientTransport(
        "default",
        registry=registry,
        routes=[Route("payments", host="pay.internal", path="/v2")],
        retry_methods={"GET", "POST"},  # the payments API honours Idempotency-Key
        idempotency_key=True,
        pace=True,  # after a 429/503 hint, hold later requests to that host
        transport=flaky_upstream(),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.post("http://pay.internal/v2/charges", json={"cents": 1250})
        print(" ", response.status_code, response.json())


if __name__ == "__main__":
    sync_client()
    asyncio.run(async_client())
