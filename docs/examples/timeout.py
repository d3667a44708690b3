"""Timeout: async calls are cancelled; sync calls get a published deadline."""

from __future__ import annotations

import asyncio

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()


# --8<-- [start:async]
async def slow_report() -> str:
    await clock.asleep(5)  # stands for a slow upstream (fake time: instant)
    return "report"


async def main() -> None:
    try:
        await rs.Timeout(2.0, clock=clock).acall(slow_report)
    except rs.TimeoutExceededError as exc:  # also a TimeoutError
        print(exc)  # 'timeout' exceeded its budget of 2.000s


asyncio.run(main())
# --8<-- [end:async]


# --8<-- [start:sync]
def fetch() -> float | None:
    budget = rs.remaining()  # seconds left before the innermost deadline
    # e.g. httpx.get(url, timeout=budget); the httpx and gRPC adapters do this for you
    return budget


assert rs.remaining() is None  # no deadline outside a Timeout
assert rs.Timeout("1.5s", clock=clock).call(fetch) == 1.5
# --8<-- [end:sync]

if __name__ == "__main__":
    assert clock.monotonic() == 5.0
    nested = rs.Pipeline(rs.Timeout(3.0, clock=clock), rs.Timeout(10.0, clock=clock))
    assert nested.call(fetch) == 3.0  # nested deadlines: the tightest wins
