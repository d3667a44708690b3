"""Retry: attempts, backoff, what is retried, and what you get when it gives up."""

from __future__ import annotations

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()  # every policy takes clock=; a FakeClock records sleeps instead
calls: list[int] = []


def flaky() -> str:
    calls.append(1)
    if len(calls) < 3:
        raise TimeoutError("read timed out")  # an OSError: retried by default
    return "done"


# --8<-- [start:basics]
retry = rs.Retry(
    attempts=5,  # total tries, the first included
    backoff=rs.Backoff.exponential(initial=0.5, maximum=8.0, multiplier=2.0, jitter="none"),
    retry_on=(ConnectionError, TimeoutError),
    clock=clock,
)
assert retry.call(flaky) == "done"
assert clock.sleeps == [0.5, 1.0]  # 0.5 * 2 ** (n - 1), capped at 8.0
# --8<-- [end:basics]


# --8<-- [start:give-up]
def always_down() -> str:
    raise ConnectionError("refused")


try:
    rs.Retry(attempts=3, backoff=rs.Backoff.constant(0.1), clock=clock).call(always_down)
except ConnectionError as exc:  # the last exception itself, not a wrapper
    print(exc.__notes__)  # ["resilient: retry 'retry' gave up after 3 attempts"]
# --8<-- [end:give-up]


# --8<-- [start:predicate]
def transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in {104, 111}  # reset, refused


retry_resets = rs.Retry(attempts=3, retry_on=transient)
# --8<-- [end:predicate]


# --8<-- [start:jitter]
def middle() -> float:  # a "random" source that always draws the middle of the range
    return 0.5


for jitter in ("full", "equal", "none"):
    backoff = rs.Backoff.exponential(initial=0.1, maximum=10.0, jitter=jitter)
    print(jitter, [round(backoff.delay(n, rng=middle), 3) for n in (1, 2, 3)])
# full [0.05, 0.1, 0.2]    uniform in [0, base]
# equal [0.075, 0.15, 0.3] uniform in [base / 2, base]
# none [0.1, 0.2, 0.4]     base = initial * multiplier ** (n - 1), capped by maximum
# --8<-- [end:jitter]

if __name__ == "__main__":
    assert retry_resets.config.should_retry_exception(OSError(111, "refused"))
    assert not retry_resets.config.should_retry_exception(OSError(2, "no such file"))
    assert rs.Backoff.linear(initial=1, increment=2).base(3) == 5.0
