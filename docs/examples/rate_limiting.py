"""Rate limiting: token bucket, sliding window, keys, costs, waiting."""

from __future__ import annotations

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()

# --8<-- [start:token-bucket]
bucket = rs.TokenBucket("10/s", burst=20, clock=clock)  # 10 tokens a second, 20 at once

decisions = [bucket.try_acquire() for _ in range(21)]
assert all(decisions[:20])  # the burst
refused = decisions[20]
assert not refused.allowed
print(round(refused.retry_after, 6))  # 0.1: one token refills in 1/10 s
clock.advance(refused.retry_after)  # never an underestimate: waiting this long is enough
assert bucket.try_acquire().allowed
# --8<-- [end:token-bucket]

# --8<-- [start:call]
api = rs.TokenBucket("2/s", clock=clock, name="partner-api")


def send(order: int) -> int:
    return order


api.call(send, 1)
api.call(send, 2)
try:
    api.call(send, 3)  # refused, never called
except rs.RateLimitedError as exc:
    print(round(exc.retry_after, 3))  # 0.5
# --8<-- [end:call]

# --8<-- [start:keys]
per_user = rs.SlidingWindow(
    "3/minute",  # at most 3 in any 60 s
    key=lambda user, **_: user,  # the key is computed from the call's arguments
    clock=clock,
)


def export(user: str, *, fmt: str = "csv") -> str:
    return f"{user}.{fmt}"


for _ in range(3):
    per_user.call(export, "alice")
per_user.call(export, "bob", fmt="json")  # bob has his own window
assert not per_user.try_acquire("alice").allowed
# --8<-- [end:keys]

# --8<-- [start:several]
tiered = rs.SlidingWindow("5/s;100/min", precise=False, clock=clock)  # both must have room
heavy = rs.TokenBucket("100/s", cost=lambda rows: max(1, len(rows) // 1000), clock=clock)
# --8<-- [end:several]

# --8<-- [start:wait]
paced = rs.TokenBucket("1/s", burst=1, max_wait="3s", clock=clock)
for n in range(3):
    paced.call(send, n)  # waits its turn (first in, first out) instead of failing
print([round(s, 3) for s in clock.sleeps])  # [1.0, 1.0]
# --8<-- [end:wait]

if __name__ == "__main__":
    assert [round(s, 6) for s in clock.sleeps] == [1.0, 1.0]
    assert per_user.try_acquire("bob").remaining == 1
    assert heavy.call(len, ["row"] * 5000) == 5000  # 5 tokens
    assert heavy.try_acquire().remaining == 100 - 5 - 1
    assert tiered.try_acquire().allowed
