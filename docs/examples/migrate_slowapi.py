"""slowapi -> resilient: per-client limits on a FastAPI route, as ASGI middleware."""

from __future__ import annotations

import asyncio

# --8<-- [start:before]
from fastapi import FastAPI, Request
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)
app_before = FastAPI()
app_before.state.limiter = limiter
app_before.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]


@app_before.get("/search")
@limiter.limit("5/minute")
async def search_before(request: Request) -> dict[str, list[str]]:
    return {"results": []}


# --8<-- [end:before]


# --8<-- [start:after]
import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware, Route

app_after = FastAPI()
app_after.add_middleware(
    ResilienceMiddleware,  # pure ASGI: 429 with Retry-After and RateLimit headers
    routes=[Route(rs.FixedWindow("5/minute"), path="/search")],  # per client address
)


@app_after.get("/search")
async def search_after() -> dict[str, list[str]]:
    return {"results": []}


# --8<-- [end:after]


async def statuses(app: FastAPI, n: int) -> list[int]:
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return [(await client.get("/search")).status_code for _ in range(n)]


if __name__ == "__main__":
    expected = [200] * 5 + [429]
    assert asyncio.run(statuses(app_before, 6)) == expected
    assert asyncio.run(statuses(app_after, 6)) == expected
