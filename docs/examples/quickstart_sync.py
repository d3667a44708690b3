"""Quickstart, sync: a retried, time-boxed call behind a circuit breaker."""

from __future__ import annotations

import itertools

from resilient.testing import set_testing


class Inventory:
    """Stands in for a remote service: fails twice, then answers."""

    def __init__(self) -> None:
        self.calls = itertools.count(1)

    def stock(self, sku: str) -> int:
        if next(self.calls) <= 2:
            raise ConnectionError("connection reset by peer")
        return 7


inventory = Inventory()
set_testing(True, attempts=None)  # this file is run by the test suite: no real sleeps

# --8<-- [start:example]
import resilient as rs

policy = rs.Pipeline(
    rs.Timeout("10s"),  # the whole call, retries included
    rs.Retry(
        attempts=4,  # one call and up to three retries
        backoff=rs.Backoff.exponential(initial=0.2, maximum=5.0),  # full jitter
        retry_on=ConnectionError,
    ),
    rs.CircuitBreaker(name="inventory", failure_rate=0.5, minimum_calls=10, open_for="30s"),
)


@policy
def stock(sku: str) -> int:
    return inventory.stock(sku)


print(stock("tea-42"))  # 7, after two quick retries
# --8<-- [end:example]

if __name__ == "__main__":
    assert next(inventory.calls) == 4  # three tries were made
    assert stock("tea-42") == 7
