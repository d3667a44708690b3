"""limits -> resilient: the same windows, one decision object, and a token bucket."""

from __future__ import annotations

# --8<-- [start:before]
from limits import parse, storage, strategies

memory = storage.MemoryStorage()
moving = strategies.MovingWindowRateLimiter(memory)
fixed = strategies.FixedWindowRateLimiter(memory)
search_limit = parse("10/second")
export_limit = parse("100/hour")


def allow_search_before(user: str) -> bool:
    return moving.hit(search_limit, "search", user)


def allow_export_before(user: str) -> tuple[bool, int]:
    allowed = fixed.hit(export_limit, "export", user)
    stats = fixed.get_window_stats(export_limit, "export", user)  # a second lookup
    return allowed, stats.remaining


# --8<-- [end:before]


# --8<-- [start:after]
import resilient as rs

search = rs.SlidingWindow("10/second", name="search")  # exact log, like the moving window
export = rs.FixedWindow("100/hour", name="export")


def allow_search_after(user: str) -> bool:
    return search.try_acquire(user).allowed


def allow_export_after(user: str) -> tuple[bool, int]:
    decision = export.try_acquire(user)  # allowed, remaining, retry_after, reset_after
    return decision.allowed, decision.remaining


# --8<-- [end:after]


# --8<-- [start:more]
smooth = rs.SlidingWindow("10/second", precise=False)  # limits' sliding-window counter
paced = rs.TokenBucket("10/s", burst=20)  # not in limits: a steady rate with bursts
shared = rs.SlidingWindow("10/second", store="memory://")  # or "redis://host:6379/0"
# --8<-- [end:more]

if __name__ == "__main__":
    before = [allow_search_before("alice") for _ in range(11)]
    after = [allow_search_after("alice") for _ in range(11)]
    assert before == after == [True] * 10 + [False]
    assert [allow_export_before("bob") for _ in range(2)] == [(True, 99), (True, 98)]
    assert [allow_export_after("bob") for _ in range(2)] == [(True, 99), (True, 98)]
