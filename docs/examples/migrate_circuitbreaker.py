"""circuitbreaker (the @circuit decorator) -> resilient."""

from __future__ import annotations


class Pricing:
    def __init__(self) -> None:
        self.up = True

    def quote(self, sku: str) -> float:
        if not self.up:
            raise ConnectionError("pricing down")
        return 9.5


pricing = Pricing()

# --8<-- [start:before]
from circuitbreaker import circuit


def cached_quote(sku: str) -> float:
    return 9.0


@circuit(
    failure_threshold=3,
    recovery_timeout=30,
    expected_exception=ConnectionError,
    fallback_function=cached_quote,
)
def quote_before(sku: str) -> float:
    return pricing.quote(sku)


# --8<-- [end:before]


# --8<-- [start:after]
import resilient as rs

quote_circuit = rs.CircuitBreaker(
    consecutive_failures=3,  # failure_threshold
    open_for="30s",  # recovery_timeout
    record=ConnectionError,  # expected_exception: other exceptions count as successes
    failure_rate=1.0,  # only the streak trips it, as in circuitbreaker
    window=rs.CountWindow(3),
    minimum_calls=3,
    half_open_calls=1,  # circuitbreaker lets every caller through when half-open
)


@rs.Pipeline(rs.Fallback(handler=lambda exc: 9.0, on=rs.CircuitOpenError), quote_circuit)
def quote_after(sku: str) -> float:
    return pricing.quote(sku)


# --8<-- [end:after]

if __name__ == "__main__":
    assert quote_before("tea") == quote_after("tea") == 9.5
    pricing.up = False
    for fn in (quote_before, quote_after):
        for _ in range(3):
            try:
                fn("tea")
            except ConnectionError:
                pass
        assert fn("tea") == 9.0  # open: the fallback answers
