"""Fallback: a substitute answer when the call fails or is rejected."""

from __future__ import annotations

import resilient as rs
from resilient.testing import FakeClock

clock = FakeClock()
cache = {"ACME": 99.0}


def live_price(symbol: str) -> float:
    raise ConnectionError("pricing service down")


# --8<-- [start:example]
breaker = rs.CircuitBreaker(consecutive_failures=2, clock=clock)

price = rs.Pipeline(
    # handler gets the exception (or the rejected result): serve the cached price
    rs.Fallback(handler=lambda exc: cache["ACME"], on=(ConnectionError, rs.CircuitOpenError)),
    breaker,
)

assert price.call(live_price, "ACME") == 99.0  # the call failed
assert price.call(live_price, "ACME") == 99.0  # failed again: the breaker opens
assert price.call(live_price, "ACME") == 99.0  # rejected by the open breaker
# --8<-- [end:example]

# --8<-- [start:value]
empty = rs.Fallback([], on_result=lambda rows: rows is None)  # a constant, also for None results
assert empty.call(lambda: None) == []
# --8<-- [end:value]

if __name__ == "__main__":
    assert breaker.state is rs.CircuitState.OPEN
    assert breaker.stats().rejected == 1
    try:
        rs.Fallback(0, on=ConnectionError).call(lambda: 1 / 0)
    except ZeroDivisionError:
        pass  # other exceptions pass through
    else:
        raise AssertionError("a non-matching exception must propagate")
