"""pybreaker -> resilient: the equivalent breaker, by hand or with migrate()."""

from __future__ import annotations


class NotFoundError(Exception):
    """A business error: says nothing about the database's health."""


class Database:
    def __init__(self) -> None:
        self.up = True

    def get_user(self, user_id: int) -> dict[str, int]:
        if not self.up:
            raise ConnectionError("database unreachable")
        if user_id < 0:
            raise NotFoundError(user_id)
        return {"id": user_id}


db = Database()

# --8<-- [start:before]
import pybreaker

db_breaker = pybreaker.CircuitBreaker(
    fail_max=5, reset_timeout=60, exclude=[NotFoundError], name="db"
)


@db_breaker
def get_user_before(user_id: int) -> dict[str, int]:
    return db.get_user(user_id)


# --8<-- [end:before]


# --8<-- [start:after]
import resilient as rs

db_circuit = rs.CircuitBreaker(
    name="db",
    consecutive_failures=5,  # fail_max
    open_for="60s",  # reset_timeout
    half_open_calls=1,  # success_threshold
    # An excluded exception counts as a success in pybreaker: record everything else.
    record=lambda exc: not isinstance(exc, NotFoundError),
    # Only the streak may trip it, as in pybreaker (drop these three lines to also
    # trip on a 50% failure rate over the last 100 calls, Resilience4j-style):
    failure_rate=1.0,
    window=rs.CountWindow(5),
    minimum_calls=5,
)


@db_circuit
def get_user_after(user_id: int) -> dict[str, int]:
    return db.get_user(user_id)


# --8<-- [end:after]


# --8<-- [start:migrate]
from resilient.compat.pybreaker import migrate

migrated = migrate(db_breaker)  # the same settings, read from the pybreaker
migrated_strict = migrate(db_breaker, excluded="ignore")  # NotFoundError not counted at all
# --8<-- [end:migrate]

if __name__ == "__main__":
    assert get_user_before(1) == get_user_after(1) == {"id": 1}
    db.up = False
    for fn in (get_user_before, get_user_after):
        for _ in range(5):
            try:
                fn(1)
            except (ConnectionError, pybreaker.CircuitBreakerError):
                pass
    assert db_breaker.current_state == "open"
    assert db_circuit.state is rs.CircuitState.OPEN
    assert migrated.state is rs.CircuitState.CLOSED  # a new breaker: its own state
    try:
        get_user_after(1)
    except rs.CircuitOpenError as exc:
        assert exc.retry_after is not None
        assert exc.retry_after <= 60
    else:
        raise AssertionError("the breaker should be open")
