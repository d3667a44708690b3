"""Circuit breaker: CLOSED -> OPEN -> HALF_OPEN -> CLOSED on a fake clock."""

from __future__ import annotations

import resilient as rs
from resilient.observability import CircuitStateChanged
from resilient.testing import FakeClock, RecordingListener

clock = FakeClock()
events = RecordingListener()


def healthy() -> str:
    return "ok"


def broken() -> str:
    raise ConnectionError("database unreachable")


# --8<-- [start:example]
breaker = rs.CircuitBreaker(
    name="orders-db",
    failure_rate=0.5,  # open when half the calls in the window failed...
    window=rs.CountWindow(10),  # ...among the last 10 calls...
    minimum_calls=4,  # ...once there are at least 4 of them
    open_for="30s",
    half_open_calls=2,  # probes admitted, and needed to decide
    ignore=(KeyError,),  # "not found" says nothing about the database's health
    clock=clock,
    listeners=[events],
)

for fn in (healthy, broken, healthy, broken):
    try:
        breaker.call(fn)
    except ConnectionError:
        pass
assert breaker.state is rs.CircuitState.OPEN  # 2 failures of 4 calls: 50%

try:
    breaker.call(healthy)
except rs.CircuitOpenError as exc:  # rejected without calling healthy()
    assert exc.retry_after == 30.0  # waiting exactly this long is enough

clock.advance(30)
assert breaker.state is rs.CircuitState.HALF_OPEN
breaker.call(healthy)  # probe 1 of 2
breaker.call(healthy)  # probe 2 of 2: both fine, close
assert breaker.state is rs.CircuitState.CLOSED
# --8<-- [end:example]

# --8<-- [start:stats]
stats = breaker.stats()
print(stats.state, stats.calls, stats.failure_rate, stats.rejected)  # closed 0 0.0 1
# --8<-- [end:stats]

# --8<-- [start:manual]
breaker.force_open()  # reject everything (maintenance), until reset()
breaker.disable()  # let everything through, record nothing
breaker.reset()  # back to a fresh CLOSED
# --8<-- [end:manual]

if __name__ == "__main__":
    transitions = [(e.old.value, e.new.value) for e in events.of(CircuitStateChanged)]
    assert transitions[:3] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert (stats.calls, stats.rejected) == (0, 1)
    assert breaker.state is rs.CircuitState.CLOSED
