"""A FastAPI app protected by ResilienceMiddleware.

Serve it (the limits are per client address; behind a proxy, list the proxy in
``TRUSTED_PROXIES``, e.g. ``TRUSTED_PROXIES=10.0.0.0/8``)::

    uvicorn examples.asgi_app:app

    curl -i localhost:8000/quotes/ACME        # 200, RateLimit-Policy and RateLimit fields
    curl -i localhost:8000/health             # never limited

Or run the tour, offline, in about a second (the app is called in process)::

    python examples/asgi_app.py

With ``REDIS_URL=redis://localhost:6379/0`` the limits are shared by every worker
and replica (``uvicorn --workers 4``) instead of counted in each process.
"""

from __future__ import annotations

import asyncio
import os

import httpx
from fastapi import FastAPI, HTTPException

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware, Route

STORE = os.environ.get("REDIS_URL")  # None: in this process's memory

app = FastAPI(title="quotes")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/quotes/{symbol}")
async def quote(symbol: str) -> dict[str, object]:
    return {"symbol": symbol, "price": 101.5}


@app.get("/search")
async def search(q: str) -> dict[str, object]:
    return {"q": q, "results": []}


@app.get("/flaky")
async def flaky() -> dict[str, str]:
    raise HTTPException(status_code=500, detail="the database is down")


# Per client address: 20 requests a second, bursts of 40 (429 beyond it).
per_client = rs.TokenBucket("20/s", burst=40, store=STORE, name="per-client")
# Search is expensive: 5 a second per API key (per address for anonymous callers),
# within a global ceiling for all callers together (a limiter with its own fixed key).
search_per_key = rs.SlidingWindow("5/s", store=STORE, name="search")
search_total = rs.SlidingWindow("100/s", key="all", store=STORE, name="search-all")

shared = (
    rs.Bulkhead(max_concurrent=100, max_queued=50, max_wait="100ms"),  # 503 beyond it
    rs.CircuitBreaker(  # 503 while the app keeps failing
        name="quotes-app", failure_rate=0.5, window=rs.CountWindow(20), open_for="5s"
    ),
    rs.Timeout("5s"),  # 504 if the app has not started answering by then
)

app.add_middleware(
    ResilienceMiddleware,
    per_client,
    *shared,
    routes=[
        Route(None, path="/health"),  # never limited, never shed
        Route([search_total, search_per_key, *shared], path="/search", key="header:X-API-Key"),
    ],
    trusted_proxies=[p for p in os.environ.get("TRUSTED_PROXIES", "").split(",") if p],
    legacy_headers=True,  # X-RateLimit-* too, for older clients
)


def client(address: str) -> httpx.AsyncClient:
    """A client calling the app in process, from *address*."""
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://quotes")


async def tour() -> None:
    async with client("203.0.113.7") as alice:
        ok = await alice.get("/quotes/ACME")
        print("GET /quotes/ACME ->", ok.status_code, ok.json())
        print("  RateLimit-Policy:", ok.headers["RateLimit-Policy"])
        print("  RateLimit:       ", ok.headers["RateLimit"])

        statuses = [(await alice.get("/quotes/ACME")).status_code for _ in range(45)]
        print(f"45 more at once -> {statuses.count(200)} x 200, {statuses.count(429)} x 429")
        refused = await alice.get("/quotes/ACME")
        print("  Retry-After:", refused.headers["Retry-After"], "s;", refused.json()["title"])
        print("GET /health ->", (await alice.get("/health")).status_code, "(never limited)")

    async with client("203.0.113.8") as bob:
        print("bob is counted on his own ->", (await bob.get("/quotes/ACME")).status_code)
        keyed = [
            (await bob.get("/search", params={"q": "x"}, headers={"X-API-Key": key})).status_code
            for key in ["key-1"] * 6 + ["key-2"]
        ]
        print("search with key-1 six times, then key-2 ->", keyed)

    async with client("203.0.113.9") as carol:
        failures = [(await carol.get("/flaky")).status_code for _ in range(12)]
        print("a failing endpoint ->", failures)
        shed = await carol.get("/quotes/ACME")
        print(
            "  the breaker is open: every route sheds ->", shed.status_code, shed.json()["detail"]
        )


if __name__ == "__main__":
    asyncio.run(tour())
