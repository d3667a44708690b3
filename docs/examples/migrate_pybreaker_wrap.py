"""Keep a pybreaker (its settings, storage and listeners) but call it correctly from async code."""

from __future__ import annotations

import asyncio

import pybreaker

legacy_breaker = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=30, name="search")


async def search_backend(query: str) -> list[str]:
    raise ConnectionError("search cluster down")


# --8<-- [start:example]
import resilient as rs
from resilient.compat.pybreaker import wrap

search_breaker = wrap(legacy_breaker)  # a resilient policy around the same pybreaker


async def search(query: str) -> list[str]:
    try:
        return await search_breaker.acall(search_backend, query)  # awaited failures count
    except rs.CircuitOpenError as exc:  # also a pybreaker.CircuitBreakerError
        print(f"search is off for {exc.retry_after:.0f}s")
        return []


# --8<-- [end:example]


async def main() -> None:
    for _ in range(3):
        try:
            await search("tea")
        except ConnectionError:
            pass
    assert legacy_breaker.current_state == "open"
    assert await search("tea") == []


if __name__ == "__main__":
    asyncio.run(main())
