"""Retry budget: retries capped at a share of recent calls, shared by several policies."""

from __future__ import annotations

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()


def down() -> None:
    raise ConnectionError("down")


# --8<-- [start:example]
budget = rs.RetryBudget(ratio=0.2, min_per_second=1.0, ttl="10s", clock=clock)
users = rs.Retry(attempts=3, budget=budget, backoff=rs.Backoff.constant(0), clock=clock)
orders = rs.Retry(attempts=3, budget=budget, backoff=rs.Backoff.constant(0), clock=clock)

tries = 0


def counted() -> None:
    global tries
    tries += 1
    down()


for policy in (users, orders) * 50:  # 100 calls while the dependency is down
    try:
        policy.call(counted)
    except ConnectionError:
        pass

# Without a budget: 300 tries. With it: 100 calls + at most 10 (min_per_second * ttl)
# + 20% of 100 calls = 130.
print(tries, budget.stats())
assert tries <= 130
# --8<-- [end:example]

if __name__ == "__main__":
    assert budget.stats().denied > 0
    assert tries == 100 + 30
