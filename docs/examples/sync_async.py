"""One policy object serves def and async def, threads and tasks."""

from __future__ import annotations

import asyncio
import threading

import resilient as rs

# --8<-- [start:example]
breaker = rs.CircuitBreaker(name="search", consecutive_failures=3)
limiter = rs.Bulkhead(max_concurrent=4)
policy = rs.Pipeline(limiter, breaker)


@policy
def search(query: str) -> list[str]:  # sync: call()
    return [query.upper()]


@policy
async def asearch(query: str) -> list[str]:  # async: acall()
    await asyncio.sleep(0)
    return [query.upper()]


assert search("tea") == ["TEA"]
assert asyncio.run(asearch("tea")) == ["TEA"]
assert policy.call(str.upper, "tea") == "TEA"  # or without decorating
# --8<-- [end:example]

if __name__ == "__main__":
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(search("x"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [["X"]] * 8
    assert breaker.stats().state is rs.CircuitState.CLOSED
    assert limiter.stats().admitted == 8 + 3
