"""A reload that changes a breaker's settings keeps its state and, where the window
has the same shape, its counts."""

from __future__ import annotations

import pytest

import resilient as rs
from resilient import CircuitState
from resilient.testing import FakeClock


def doc(failure_rate: float, size: int = 10, open_for: str = "30s") -> str:
    return (
        "policies:\n"
        "  db:\n"
        "    circuit_breaker:\n"
        f"      failure_rate: {failure_rate}\n"
        f"      window: {size}\n"
        "      minimum_calls: 4\n"
        f"      open_for: {open_for}\n"
    )


def breaker_of(registry: rs.Registry) -> rs.CircuitBreaker:
    (breaker,) = registry["db"].policies
    assert isinstance(breaker, rs.CircuitBreaker)
    return breaker


def fail() -> None:
    raise OSError("down")


def record(breaker: rs.CircuitBreaker, failures: int, successes: int) -> None:
    for _ in range(failures):
        with pytest.raises(OSError):
            breaker.call(fail)
    for _ in range(successes):
        breaker.call(lambda: None)


def test_counts_survive_a_threshold_change():
    clock = FakeClock()
    registry = rs.load_config(doc(0.9), "yaml", clock=clock)
    old = breaker_of(registry)
    record(old, failures=2, successes=2)  # 50%: below 90%, still closed
    registry.reload(doc(0.5), "yaml")
    new = breaker_of(registry)
    assert new is not old
    assert new.config.failure_rate == 0.5
    stats = new.stats()
    assert (stats.calls, stats.failed_calls) == (4, 2)  # carried over
    record(new, failures=1, successes=0)  # 3 of 5 failed: 60% >= 50% opens it now
    assert new.state is CircuitState.OPEN


def test_an_open_breaker_stays_open_until_the_same_time():
    clock = FakeClock()
    registry = rs.load_config(doc(0.5), "yaml", clock=clock)
    record(breaker_of(registry), failures=4, successes=0)
    assert breaker_of(registry).state is CircuitState.OPEN
    clock.advance(10)
    registry.reload(doc(0.5, open_for="5s"), "yaml")
    new = breaker_of(registry)
    assert new.state is CircuitState.OPEN
    with pytest.raises(rs.CircuitOpenError) as info:
        new.call(lambda: None)
    assert info.value.retry_after == pytest.approx(20.0)  # opened at 0 for 30 s
    clock.advance(20)
    new.call(lambda: None)  # the probe goes through the new breaker
    assert new.state in (CircuitState.HALF_OPEN, CircuitState.CLOSED)


def test_a_different_window_starts_counting_afresh_but_keeps_manual_states():
    clock = FakeClock()
    registry = rs.load_config(doc(0.5), "yaml", clock=clock)
    record(breaker_of(registry), failures=2, successes=1)
    registry.reload(doc(0.5, size=20), "yaml")
    assert breaker_of(registry).stats().calls == 0  # other window shape: fresh counts
    breaker_of(registry).force_open()
    registry.reload(doc(0.6, size=20), "yaml")
    assert breaker_of(registry).state is CircuitState.FORCED_OPEN


def test_half_open_probes_stay_with_the_old_breaker():
    clock = FakeClock()
    registry = rs.load_config(doc(0.5, open_for="1s"), "yaml", clock=clock)
    old = breaker_of(registry)
    record(old, failures=4, successes=0)
    clock.advance(1)
    assert old.state is CircuitState.HALF_OPEN
    registry.reload(doc(0.4, open_for="1s"), "yaml")
    new = breaker_of(registry)
    # Due to probe at once, with probes of its own.
    new.call(lambda: None)
    assert new.state in (CircuitState.HALF_OPEN, CircuitState.CLOSED)
