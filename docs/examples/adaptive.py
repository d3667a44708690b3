"""Adaptive overload protection: an adaptive concurrency limit, client-side throttling,
and a retry budget shared by a fleet."""

from __future__ import annotations

import asyncio
import random

import resilient as rs
from resilient.testing import FakeClock

# --8<-- [start:limit]
inventory = rs.AdaptiveConcurrency(
    "gradient2",  # or "aimd", "vegas", or rs.AIMD(latency_threshold="200ms")...
    min_limit=4,
    max_limit=200,
    initial_limit=20,
    name="inventory",
)
# A timeout *inside* the limit: a call that times out is an overload signal.
guarded = rs.Pipeline(inventory, rs.Timeout("2s"))


async def stock(sku: str) -> int:
    await asyncio.sleep(0.01)  # the call to the dependency
    return 3


async def main() -> None:
    try:
        print(await guarded.acall(stock, "A-1"))
    except rs.BulkheadFullError as exc:  # over the limit: shed at once
        print("busy, retry after", exc.retry_after)
    stats = inventory.stats()
    print(stats.limit, stats.in_flight, stats.latency)


asyncio.run(main())
# --8<-- [end:limit]

# --8<-- [start:permits]
clock = FakeClock()
limit = rs.AdaptiveConcurrency("aimd", initial_limit=2, clock=clock)
first, second = limit.try_acquire(), limit.try_acquire()
assert limit.try_acquire() is None  # the limit is reached: shed (counted as a rejection)
clock.advance(0.05)
assert first is not None and second is not None
first.success()  # a latency sample of 50 ms
second.drop()  # an overload signal: the limit shrinks
print(limit.stats().samples, limit.stats().dropped)  # 2 1
# --8<-- [end:permits]

# --8<-- [start:throttle]
search = rs.Throttle(k=2.0, window="2m", name="search")


def query(text: str) -> list[str]:
    raise rs.RejectedError("search-backend", reason="overloaded")  # e.g. an HTTP 503


for _ in range(20):
    try:
        search.call(query, "shoes")
    except rs.RateLimitedError:
        pass  # shed locally: the backend never saw it (reason "throttled")
    except rs.RejectedError:
        pass  # the backend refused it
print(f"{search.reject_probability:.2f}")  # (20 - 2 * 0) / 21 = 0.95
# --8<-- [end:throttle]

# --8<-- [start:budget]
fleet = rs.RetryBudget(ratio=0.1, min_per_second=1.0, ttl="10s")
payments = rs.Retry(attempts=3, budget=fleet, name="payments")
refunds = rs.Retry(attempts=5, budget=fleet, name="refunds")  # the same budget
# Through Redis, every process naming "fleet" shares it:
#   from resilient.backends.redis import RedisRetryBudget
#   fleet = RedisRetryBudget("redis://redis:6379/0", name="fleet", ratio=0.1)
# --8<-- [end:budget]

if __name__ == "__main__":
    rng = random.Random(1)
    throttle = rs.Throttle(rng=rng.random, clock=FakeClock())
    assert throttle.reject_probability == 0.0
    assert search.stats().requests == 20
    assert payments.config.budget is refunds.config.budget
