"""Quickstart, async: the same policies around a coroutine, with a last-resort fallback."""

from __future__ import annotations

import asyncio

from resilient.testing import set_testing

set_testing(True, attempts=None)  # this file is run by the test suite: no real sleeps
attempts: list[str] = []


async def fetch_price_from_upstream(symbol: str) -> dict[str, object]:
    attempts.append(symbol)
    if len(attempts) == 1:
        raise ConnectionError("upstream restarting")
    await asyncio.sleep(0)
    return {"symbol": symbol, "price": 101.5}


# --8<-- [start:example]
import resilient as rs

prices = rs.Pipeline(
    rs.Fallback(handler=lambda exc: {"symbol": None, "stale": True}),  # last resort
    rs.Timeout(2.0),  # the whole call, retries included
    rs.Retry(attempts=4, retry_on=(ConnectionError, rs.TimeoutExceededError)),
    rs.Timeout("500ms"),  # each attempt
)


async def fetch_price(symbol: str) -> dict[str, object]:
    return await prices.acall(fetch_price_from_upstream, symbol)


async def main() -> None:
    print(await fetch_price("ACME"))  # {'symbol': 'ACME', 'price': 101.5}


asyncio.run(main())
# --8<-- [end:example]

if __name__ == "__main__":
    assert attempts == ["ACME", "ACME"]
