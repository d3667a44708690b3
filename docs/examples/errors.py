"""The exception tree: catch rejections by their base class, read retry_after."""

from __future__ import annotations

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()
breaker = rs.CircuitBreaker(consecutive_failures=1, open_for="5s", clock=clock)
breaker.force_open()


def handler() -> str:
    return "ok"


# --8<-- [start:example]
def respond() -> tuple[int, dict[str, str]]:
    try:
        breaker.call(handler)
    except rs.RejectedError as exc:  # CircuitOpenError, RateLimitedError, BulkheadFullError
        headers = {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        status = 429 if isinstance(exc, rs.RateLimitedError) else 503
        return status, headers
    except rs.TimeoutExceededError:  # also a TimeoutError
        return 504, {}
    return 200, {}


# --8<-- [end:example]


# --8<-- [start:config]
try:
    rs.Retry(attempts=0)
except rs.ConfigError as exc:  # also a ValueError
    print(exc.path, exc.value, exc.expected)  # attempts 0 an int >= 1 (...)
# --8<-- [end:config]

if __name__ == "__main__":
    assert respond() == (503, {})  # forced open: no retry_after
    assert issubclass(rs.CircuitOpenError, rs.RejectedError)
    assert issubclass(rs.RejectedError, rs.ResilienceError)
    assert issubclass(rs.ConfigError, ValueError)
    assert issubclass(rs.TimeoutExceededError, TimeoutError)
    breaker.reset()
    assert respond() == (200, {})
