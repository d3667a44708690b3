"""The live dashboard: mounted in an app, its JSON snapshot, and a registry's snapshot."""

from __future__ import annotations

import asyncio
from typing import Any

# --8<-- [start:mount]
from fastapi import FastAPI

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware


def staff_only(scope: dict[str, Any]) -> bool:
    """The dashboard's gate: any check on the request's ASGI scope (headers, cookies,
    the client address, a user set by an authentication middleware...)."""
    headers = dict(scope["headers"])
    return headers.get(b"x-staff-token") == b"let-me-in"


app = FastAPI()
app.add_middleware(
    ResilienceMiddleware,
    rs.TokenBucket("20/s", burst=40, name="per-client"),
    rs.CircuitBreaker(name="app", failure_rate=0.5, open_for="10s"),
    dashboard="/_resilient",  # the page at /_resilient/, JSON at /_resilient/snapshot
    dashboard_auth=staff_only,  # a false answer: 403
)


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


# --8<-- [end:mount]


# --8<-- [start:read]
import httpx


async def read_snapshot() -> dict[str, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        await client.get("/hello")
        refused = await client.get("/_resilient/snapshot")
        assert refused.status_code == 403
        response = await client.get("/_resilient/snapshot", headers={"x-staff-token": "let-me-in"})
        return response.json()


snapshot = asyncio.run(read_snapshot())
assert snapshot["format"] == "resilient.snapshot"
assert snapshot["version"] == 1
breaker = next(p for p in snapshot["policies"] if p["name"] == "app")
print(breaker["state"], breaker["rates"]["calls"], "calls/s")
# --8<-- [end:read]
assert breaker["state"] == "closed"


# --8<-- [start:registry]
registry = rs.load_config(
    {
        "policies": {
            "payments": {
                "rate_limit": {"rate": "10/s"},
                "circuit_breaker": {"failure_rate": 0.5, "minimum_calls": 10},
            }
        }
    }
)
state = registry.snapshot()  # plain data, ready for json.dumps
payments = state["policies"][0]
print(payments["name"], payments["state"], [step["kind"] for step in payments["steps"]])
# --8<-- [end:registry]
assert payments["state"] == "closed"
assert [step["kind"] for step in payments["steps"]] == ["token_bucket", "circuit_breaker"]
