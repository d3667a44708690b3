"""CircuitBreaker: every transition and threshold, same bodies through call and acall
(the `run` fixture), on a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient as rs
from resilient import CircuitState
from resilient.observability import CallFailed, CallRejected, CallSucceeded, CircuitStateChanged
from resilient.testing import FakeClock, RecordingListener

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Abort(BaseException):
    """Stands for cancellation / KeyboardInterrupt: never an outcome."""


class ServerBusyError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"busy, retry after {retry_after}")
        self.retry_after = retry_after


def ok() -> str:
    return "ok"


def boom() -> str:
    raise OSError("down")


def raises(exc: BaseException) -> Any:
    def fn() -> Any:
        raise exc

    return fn


def breaker(clock: FakeClock, **kw: Any) -> rs.CircuitBreaker:
    kw.setdefault("name", "db")
    kw.setdefault("window", rs.CountWindow(10))
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("open_for", 10.0)
    kw.setdefault("half_open_calls", 2)
    return rs.CircuitBreaker(clock=clock, **kw)


def fail(
    run: Any, cb: rs.CircuitBreaker, times: int = 1, exc: type[BaseException] = OSError
) -> None:
    for _ in range(times):
        with pytest.raises(exc):
            run(cb, raises(exc("x")))


def succeed(run: Any, cb: rs.CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert run(cb, ok) == "ok"


def rejected(run: Any, cb: rs.CircuitBreaker) -> rs.CircuitOpenError:
    called = []
    with pytest.raises(rs.CircuitOpenError) as info:
        run(cb, lambda: called.append(1))
    assert called == []
    return info.value


def trip(run: Any, cb: rs.CircuitBreaker) -> None:
    fail(run, cb, cb.config.effective_minimum_calls)
    assert cb.state is OPEN


# -- CLOSED ----------------------------------------------------------------------------------


def test_closed_passes_results_arguments_and_exceptions(run, clock):
    """A closed breaker returns the result, passes arguments and re-raises the same error."""
    cb = breaker(clock)
    assert run(cb, lambda a, b=0: a + b, 1, b=2) == 3
    err = OSError("boom")
    with pytest.raises(OSError) as info:
        run(cb, raises(err))
    assert info.value is err
    assert cb.state is CLOSED


def test_opens_exactly_when_failure_rate_reaches_threshold(run, clock):
    """With minimum_calls=4 and failure_rate=0.5, 2 failures of 4 open it (inclusive)."""
    cb = breaker(clock, failure_rate=0.5)
    succeed(run, cb, 2)
    fail(run, cb)
    assert cb.state is CLOSED  # 3 calls < minimum_calls
    fail(run, cb)
    assert cb.state is OPEN
    stats = cb.stats()
    assert (stats.calls, stats.failed_calls, stats.failure_rate) == (4, 2, 0.5)


def test_stays_closed_below_threshold(run, clock):
    """1 failure of 4 (25%) stays below 50%."""
    cb = breaker(clock)
    succeed(run, cb, 3)
    fail(run, cb)
    assert cb.state is CLOSED
    assert cb.stats().failure_rate == 0.25


def test_the_success_that_completes_minimum_calls_can_open(run, clock):
    """Three failures then a success: the fourth call reaches minimum_calls at 75%."""
    cb = breaker(clock)
    fail(run, cb, 3)
    assert cb.state is CLOSED
    succeed(run, cb)
    assert cb.state is OPEN


def test_a_success_after_a_broken_streak_can_complete_minimum_calls(run, clock):
    """F F S S: the fourth call (a success, no streak running) reaches 50% and opens."""
    cb = breaker(clock)
    fail(run, cb, 2)
    succeed(run, cb, 2)
    assert cb.state is OPEN


def test_minimum_calls_is_capped_by_count_window_size(clock):
    """A CountWindow(3) cannot hold minimum_calls=20: it judges after 3 calls."""
    cb = breaker(clock, window=rs.CountWindow(3), minimum_calls=20)
    assert cb.config.effective_minimum_calls == 3
    for _ in range(3):
        with pytest.raises(OSError):
            cb.call(boom)
    assert cb.state is OPEN


def test_count_window_forgets_the_oldest_outcome(run, clock):
    """CountWindow(4): each new outcome evicts the oldest one."""
    cb = breaker(clock, window=rs.CountWindow(4), failure_rate=0.75)
    fail(run, cb, 2)
    succeed(run, cb, 2)  # [F F S S] 50%
    succeed(run, cb)  # [F S S S] 25%
    assert (cb.stats().calls, cb.stats().failed_calls) == (4, 1)
    fail(run, cb, 2)  # [S S F F] 50%
    assert cb.state is CLOSED
    fail(run, cb)  # [S F F F] 75%
    assert cb.state is OPEN


def test_time_window_forgets_old_buckets(run, clock):
    """TimeWindow(10s, 10 buckets): outcomes older than the window stop counting."""
    cb = breaker(clock, window=rs.TimeWindow(10.0, buckets=10), minimum_calls=3)
    fail(run, cb, 2)
    clock.advance(10.0)
    succeed(run, cb)
    stats = cb.stats()
    assert (stats.calls, stats.failed_calls) == (1, 0)
    fail(run, cb)
    clock.advance(9.0)  # the failure is still 9 s old: inside the window
    fail(run, cb)
    assert cb.state is OPEN  # [S F F] = 67%


def test_time_window_accepts_durations():
    """TimeWindow takes seconds, a timedelta or a string."""
    assert rs.TimeWindow("30s").seconds == 30.0
    assert rs.TimeWindow(timedelta(minutes=1)).seconds == 60.0
    assert rs.TimeWindow(10.0, buckets=4).width == 2.5


def test_slow_call_rate_opens_the_breaker(run, clock):
    """Calls slower than slow_call_duration count toward slow_call_rate, successes too."""
    cb = breaker(clock, slow_call_duration=1.0, slow_call_rate=0.5)

    def slow() -> str:
        clock.advance(1.5)
        return "late"

    def just_in_time() -> str:
        clock.advance(1.0)  # exactly the threshold: not slow
        return "ok"

    succeed(run, cb)
    assert run(cb, just_in_time) == "ok"
    assert run(cb, slow) == "late"
    assert cb.stats().slow_calls == 1
    assert cb.state is CLOSED
    assert run(cb, slow) == "late"
    assert cb.state is OPEN
    assert cb.stats().slow_call_rate == 0.5


def test_consecutive_failures_open_before_minimum_calls(run, clock):
    """consecutive_failures=3 trips on a streak; a success breaks the streak."""
    cb = breaker(clock, consecutive_failures=3, minimum_calls=100, window=rs.CountWindow(100))
    fail(run, cb, 2)
    succeed(run, cb)
    fail(run, cb, 2)
    assert cb.state is CLOSED
    assert cb.stats().consecutive_failures == 2
    fail(run, cb)
    assert cb.state is OPEN


# -- classification ----------------------------------------------------------------------------


def test_record_ignore_and_other_exceptions(run, clock):
    """record= failures count, ignore= is never counted, other exceptions count as successes."""
    cb = breaker(clock, record=OSError, ignore=ConnectionRefusedError)
    fail(run, cb, 1, ValueError)  # not recorded: a success
    fail(run, cb, 3, ConnectionRefusedError)  # ignored: not counted at all
    stats = cb.stats()
    assert (stats.calls, stats.failed_calls) == (1, 0)
    fail(run, cb, 3, TimeoutError)  # an OSError
    assert cb.state is OPEN
    assert cb.stats().failed_calls == 3


def test_record_and_ignore_accept_predicates(run, clock):
    """Predicates decide per exception; ignore wins over record."""
    cb = breaker(
        clock,
        record=lambda e: "bad" in str(e),
        ignore=lambda e: "noise" in str(e),
    )
    for message in ("bad", "bad noise", "fine"):
        with pytest.raises(RuntimeError):
            run(cb, raises(RuntimeError(message)))
    stats = cb.stats()
    assert (stats.calls, stats.failed_calls) == (2, 1)


def test_record_result_counts_results_as_failures(run, clock):
    """record_result turns a returned value (a 503) into a failure; the value is returned."""
    listener = RecordingListener()
    cb = breaker(clock, record_result=lambda r: r >= 500, listeners=[listener])
    assert run(cb, lambda: 200) == 200
    for _ in range(3):
        assert run(cb, lambda: 503) == 503
    assert cb.state is OPEN
    failed = listener.of(CallFailed)
    assert len(failed) == 3
    assert failed[0].exception is None
    assert len(listener.of(CallSucceeded)) == 1


def test_base_exceptions_are_never_outcomes(run, clock):
    """Cancellation-like BaseExceptions propagate and count neither way."""
    cb = breaker(clock, consecutive_failures=2)
    fail(run, cb)
    for _ in range(5):
        with pytest.raises(Abort):
            run(cb, raises(Abort()))
    stats = cb.stats()
    assert (stats.calls, stats.consecutive_failures) == (1, 1)
    assert cb.state is CLOSED


def test_a_raising_record_result_releases_the_probe(run, clock):
    """A buggy record_result propagates its error and gives the probe permit back."""
    cb = breaker(clock, half_open_calls=1, record_result=lambda r: 1 / 0)
    trip(run, cb)
    clock.advance(10.0)
    for _ in range(2):  # each time the permit is free again
        with pytest.raises(ZeroDivisionError):
            run(cb, ok)
    assert cb.state is HALF_OPEN
    assert cb.stats().probes_in_flight == 0


# -- OPEN --------------------------------------------------------------------------------------


def test_open_rejects_with_retry_after_and_waiting_exactly_that_long_is_enough(run, clock):
    """OPEN rejects without calling; retry_after counts down; at exactly 0 a probe goes."""
    cb = breaker(clock)
    trip(run, cb)
    err = rejected(run, cb)
    assert (err.policy, err.reason, err.retry_after) == ("db", "circuit_open", 10.0)
    clock.advance(7.5)
    err = rejected(run, cb)
    assert err.retry_after == 2.5
    assert cb.stats().retry_after == 2.5
    clock.advance(err.retry_after)
    assert cb.state is HALF_OPEN
    succeed(run, cb)


@given(
    start=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    open_for=st.floats(min_value=1e-3, max_value=1e6, allow_nan=False),
    waited=st.floats(min_value=0, max_value=1, allow_nan=False),
)
def test_retry_after_is_never_an_underestimate(start, open_for, waited):
    """For awkward float times, advancing by exactly retry_after always admits the call."""
    clock = FakeClock(start)
    cb = rs.CircuitBreaker(clock=clock, consecutive_failures=1, open_for=open_for)
    with pytest.raises(OSError):
        cb.call(boom)
    clock.advance(open_for * waited * 0.999)
    with pytest.raises(rs.CircuitOpenError) as info:
        cb.call(ok)
    retry_after = info.value.retry_after
    assert retry_after is not None
    assert retry_after > 0
    clock.advance(retry_after)
    assert cb.call(ok) == "ok"


def test_open_for_grows_on_reopens_and_resets_on_close(run, clock):
    """open_for_multiplier grows each re-open in a row, up to max_open_for; a close resets."""
    cb = breaker(clock, half_open_calls=1, open_for_multiplier=2.0, max_open_for=30.0)
    trip(run, cb)
    for expected in (10.0, 20.0, 30.0, 30.0):
        assert rejected(run, cb).retry_after == expected
        clock.advance(expected)
        fail(run, cb)  # the probe fails: re-open, longer
    assert rejected(run, cb).retry_after == 30.0
    clock.advance(30.0)
    succeed(run, cb)
    assert cb.state is CLOSED
    trip(run, cb)
    assert rejected(run, cb).retry_after == 10.0


def test_open_duration_is_a_pure_rule():
    """open_duration(n): open_for * multiplier**(n-1), capped; huge n does not overflow."""
    cfg = rs.CircuitBreaker(open_for=1.0, open_for_multiplier=3.0).config
    assert [cfg.open_duration(n) for n in (1, 2, 3)] == [1.0, 3.0, 9.0]
    assert cfg.open_duration(10_000) == math.inf
    capped = dataclasses.replace(cfg, max_open_for=5.0)
    assert capped.open_duration(10_000) == 5.0


def test_an_outcome_with_retry_after_opens_until_then(run, clock):
    """open_on_retry_after: a failure carrying retry_after opens the breaker for that long."""
    cb = breaker(clock, open_on_retry_after=True, max_retry_after=60.0)
    with pytest.raises(ServerBusyError):
        run(cb, raises(ServerBusyError(7.0)))
    assert cb.state is OPEN
    assert rejected(run, cb).retry_after == 7.0
    clock.advance(7.0)
    with pytest.raises(ServerBusyError):  # a probe asks again: capped at max_retry_after
        run(cb, raises(ServerBusyError(3600.0)))
    assert rejected(run, cb).retry_after == 60.0


def test_retry_after_hint_is_off_by_default_and_can_be_read_by_a_callable(run, clock):
    """Without open_on_retry_after the hint is just a failure; a callable reads results."""
    cb = breaker(clock)
    with pytest.raises(ServerBusyError):
        run(cb, raises(ServerBusyError(7.0)))
    assert cb.state is CLOSED
    reader = breaker(
        clock,
        record_result=lambda r: r["status"] == 429,
        open_on_retry_after=lambda outcome: getattr(outcome, "get", lambda _k: None)("wait"),
    )
    assert run(reader, lambda: {"status": 429, "wait": 4}) == {"status": 429, "wait": 4}
    assert rejected(run, reader).retry_after == 4.0


def test_hints_that_are_not_positive_numbers_are_ignored(run, clock):
    """A retry_after that is not a number, or not positive, opens nothing by itself."""
    cb = breaker(clock, open_on_retry_after=True, minimum_calls=5)
    for hint in ("soon", None, 0, -3, float("nan")):
        err = OSError("x")
        err.retry_after = hint  # type: ignore[attr-defined]
        assert cb.state is CLOSED
        with pytest.raises(OSError):
            run(cb, raises(err))
    assert cb.state is OPEN  # by the failure rate of 5 failures, not by a hint
    assert rejected(run, cb).retry_after == 10.0


# -- HALF_OPEN ---------------------------------------------------------------------------------


def test_half_open_closes_after_good_probes_with_a_fresh_window(run, clock):
    """Enough successful probes close the breaker and empty the window."""
    listener = RecordingListener()
    cb = breaker(clock, listeners=[listener])
    trip(run, cb)
    clock.advance(10.0)
    succeed(run, cb)
    assert cb.state is HALF_OPEN
    succeed(run, cb)
    assert cb.state is CLOSED
    assert cb.stats().calls == 0
    changes = [(e.old, e.new) for e in listener.of(CircuitStateChanged)]
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


def test_half_open_reopens_as_soon_as_the_verdict_is_certain(run, clock):
    """With 4 probes at 50%, the second failure re-opens without waiting for the rest."""
    cb = breaker(clock, half_open_calls=4)
    trip(run, cb)
    clock.advance(10.0)
    fail(run, cb)
    assert cb.state is HALF_OPEN
    fail(run, cb)
    assert cb.state is OPEN


def test_half_open_closes_as_soon_as_the_verdict_is_certain(run, clock):
    """With 4 probes at 50%, three successes close it (one failure can't reach 50%)."""
    cb = breaker(clock, half_open_calls=4)
    trip(run, cb)
    clock.advance(10.0)
    succeed(run, cb, 2)
    assert cb.state is HALF_OPEN
    succeed(run, cb)
    assert cb.state is CLOSED


def test_half_open_rejects_beyond_its_probes(run, clock):
    """While its probes are out, HALF_OPEN rejects others (reason half_open_full)."""
    cb = breaker(clock, half_open_calls=1)
    trip(run, cb)
    clock.advance(10.0)
    seen: list[rs.CircuitOpenError] = []

    def probe() -> str:
        with pytest.raises(rs.CircuitOpenError) as info:
            cb.call(ok)  # a second caller arrives while the probe runs
        seen.append(info.value)
        return "probed"

    assert run(cb, probe) == "probed"
    assert (seen[0].reason, seen[0].retry_after) == ("half_open_full", None)
    assert cb.state is CLOSED


def test_slow_probes_reopen_the_breaker(run, clock):
    """Probes slower than slow_call_duration count toward slow_call_rate in HALF_OPEN."""
    cb = breaker(clock, slow_call_duration=1.0, slow_call_rate=0.5)
    trip(run, cb)
    clock.advance(10.0)

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    assert run(cb, slow) == "late"
    assert cb.state is OPEN


def test_a_raising_record_predicate_releases_the_probe(run, clock):
    """A buggy record= predicate propagates its error and gives the probe permit back."""
    calls = []

    def record(exc: BaseException) -> bool:
        calls.append(exc)
        if len(calls) > 4:
            raise ZeroDivisionError
        return True

    cb = breaker(clock, half_open_calls=1, record=record)
    trip(run, cb)
    clock.advance(10.0)
    with pytest.raises(ZeroDivisionError):
        run(cb, boom)
    assert cb.stats().probes_in_flight == 0
    assert cb.state is HALF_OPEN


def test_an_interrupted_probe_gives_its_permit_back(run, clock):
    """A probe ended by a BaseException frees its permit and is not a verdict."""
    cb = breaker(clock, half_open_calls=1)
    trip(run, cb)
    clock.advance(10.0)
    with pytest.raises(Abort):
        run(cb, raises(Abort()))
    assert cb.stats().probes_in_flight == 0
    succeed(run, cb)
    assert cb.state is CLOSED


def test_an_ignored_probe_gives_its_permit_back(run, clock):
    """A probe whose exception is ignored is no verdict: another probe may go."""
    cb = breaker(clock, half_open_calls=1, ignore=KeyError)
    trip(run, cb)
    clock.advance(10.0)
    fail(run, cb, 1, KeyError)
    assert cb.state is HALF_OPEN
    fail(run, cb)
    assert cb.state is OPEN


def test_wedge_guard_a_silent_probe_expires_and_its_late_verdict_is_ignored(run, clock):
    """A probe silent for half_open_max_wait counts as failed; its late success is ignored."""
    cb = breaker(clock, half_open_calls=1, half_open_max_wait=5.0)
    trip(run, cb)
    clock.advance(10.0)

    def hangs() -> str:
        clock.advance(5.0)  # the probe's lease ends while it still runs
        assert cb.state is OPEN
        return "late"

    assert run(cb, hangs) == "late"
    assert cb.state is OPEN  # the late success did not close it
    assert rejected(run, cb).retry_after == 10.0


def test_wedge_guard_frees_the_place_for_another_probe(run, clock):
    """With 2 probes at 60%, one expired probe (50%) leaves room for a fresh probe."""
    cb = breaker(clock, half_open_calls=2, half_open_max_wait=5.0, failure_rate=0.6)
    trip(run, cb)
    clock.advance(10.0)
    nested: list[str] = []

    def first() -> str:
        clock.advance(6.0)
        nested.append(cb.call(ok))  # admitted: the expired lease freed a place
        return "late"

    assert run(cb, first) == "late"
    assert nested == ["ok"]
    assert cb.state is CLOSED  # 1 expired (failed) + 1 success of 2: 50% < 60%


def test_generation_guard_ignores_outcomes_of_an_earlier_state(run, clock):
    """A call admitted before a transition reports into nothing."""
    cb = breaker(clock)

    def reset_then_fail() -> str:
        cb.reset()  # a new CLOSED generation with an empty window
        raise OSError("late")

    with pytest.raises(OSError):
        run(cb, reset_then_fail)
    assert cb.stats().calls == 0

    def trip_and_half_open_then_fail() -> str:
        for _ in range(4):
            with pytest.raises(OSError):
                cb.call(boom)
        clock.advance(10.0)
        assert cb.state is HALF_OPEN
        raise OSError("late")  # admitted while CLOSED: must not count as a failed probe

    with pytest.raises(OSError):
        run(cb, trip_and_half_open_then_fail)
    assert cb.state is HALF_OPEN
    succeed(run, cb, 2)
    assert cb.state is CLOSED


# -- manual states and observe-only -------------------------------------------------------------


def test_force_open_rejects_until_reset(run, clock):
    """FORCED_OPEN rejects everything (no retry_after) whatever the time."""
    listener = RecordingListener()
    cb = breaker(clock, listeners=[listener])
    cb.force_open()
    assert cb.state is CircuitState.FORCED_OPEN
    clock.advance(1e6)
    err = rejected(run, cb)
    assert (err.reason, err.retry_after) == ("forced_open", None)
    cb.reset()
    succeed(run, cb)
    whys = [e.why for e in listener.of(CircuitStateChanged)]
    assert whys == ["force_open()", "reset()"]


def test_disable_lets_everything_through_unrecorded(run, clock):
    """DISABLED passes every call and records nothing; reset() brings back CLOSED."""
    cb = breaker(clock)
    cb.disable()
    fail(run, cb, 20)
    assert cb.state is CircuitState.DISABLED
    assert cb.stats().calls == 0
    cb.reset()
    assert cb.state is CLOSED
    trip(run, cb)


def test_reset_closes_an_open_breaker_and_clears_everything(run, clock):
    """reset() from OPEN: CLOSED, empty window, re-open streak forgotten."""
    cb = breaker(clock, open_for_multiplier=2.0)
    trip(run, cb)
    clock.advance(10.0)
    fail(run, cb)
    assert rejected(run, cb).retry_after == 20.0
    cb.reset()
    assert cb.stats().calls == 0
    trip(run, cb)
    assert rejected(run, cb).retry_after == 10.0


def test_observe_only_runs_the_state_machine_but_never_rejects(run, clock):
    """observe_only: opens and emits CallRejected, but every call runs."""
    listener = RecordingListener()
    cb = breaker(clock, observe_only=True, listeners=[listener])
    trip(run, cb)
    fail(run, cb, 5)  # would have been rejected: runs, and is not recorded
    succeed(run, cb)
    assert cb.state is OPEN
    stats = cb.stats()
    assert (stats.rejected, stats.calls, stats.failed_calls) == (6, 4, 4)
    events = listener.of(CallRejected)
    assert len(events) == 6
    assert events[0].attributes == {"observe_only": True}
    assert events[0].reason == "circuit_open"
    clock.advance(10.0)
    succeed(run, cb, 2)
    assert cb.state is CLOSED


# -- observability, stats, config ---------------------------------------------------------------


def test_events_are_emitted_with_the_lock_released(run, clock):
    """Every event reaches listeners after the core's lock is released."""
    seen: list[bool] = []
    cb: rs.CircuitBreaker

    def listener(event: object) -> None:
        seen.append(cb._core.lock.locked())
        cb.stats()  # would deadlock if the lock were held

    cb = breaker(clock, listeners=[listener])
    trip(run, cb)
    rejected(run, cb)
    clock.advance(10.0)
    succeed(run, cb, 2)
    assert len(seen) >= 6
    assert not any(seen)


def test_rejections_emit_call_rejected(run, clock):
    """An OPEN rejection emits CallRejected with its reason and retry_after."""
    listener = RecordingListener()
    cb = breaker(clock, listeners=[listener])
    trip(run, cb)
    rejected(run, cb)
    (event,) = listener.of(CallRejected)
    assert (event.policy, event.kind, event.reason, event.retry_after) == (
        "db",
        "circuit_breaker",
        "circuit_open",
        10.0,
    )


def test_reading_the_state_or_stats_performs_due_transitions(clock):
    """Once open_for has passed, state and stats() show HALF_OPEN and emit the change."""
    for read in (lambda cb: cb.state, lambda cb: cb.stats().state):
        listener = RecordingListener()
        cb = breaker(clock, consecutive_failures=1, listeners=[listener])
        with pytest.raises(OSError):
            cb.call(boom)
        clock.advance(10.0)
        assert read(cb) is HALF_OPEN
        assert [e.new for e in listener.of(CircuitStateChanged)] == [OPEN, HALF_OPEN]


def test_a_stale_admission_check_still_admits_when_closed(clock):
    """A caller that saw "not closed" before a concurrent close takes the locked path and
    is admitted with the current generation."""
    cb = breaker(clock)
    ticket, retry_after, reason, changes = cb._core.admit()
    assert (ticket, retry_after, reason, changes) == (cb.stats().generation, None, "", [])


def test_stats_is_a_frozen_snapshot(run, clock):
    """stats() does not change afterwards and cannot be modified."""
    cb = breaker(clock)
    fail(run, cb)
    stats = cb.stats()
    fail(run, cb)
    assert stats.failed_calls == 1
    assert stats.state == "closed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.calls = 3  # type: ignore[misc]


def test_state_values_are_strings():
    """CircuitState members are str with lowercase values."""
    assert [s.value for s in CircuitState] == [
        "closed",
        "open",
        "half_open",
        "forced_open",
        "disabled",
    ]
    assert CircuitState.HALF_OPEN == "half_open"


def test_as_decorator_for_sync_and_async_functions(clock):
    """@breaker wraps def with call and async def with acall."""
    cb = breaker(clock, consecutive_failures=1)

    @cb
    def add(a: int, b: int) -> int:
        return a + b

    @cb
    async def aboom() -> None:
        raise OSError("x")

    assert add(1, 2) == 3
    with pytest.raises(OSError):
        asyncio.run(aboom())
    with pytest.raises(rs.CircuitOpenError):
        add(1, 2)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_decorated_functions_follow_the_same_state_machine(clock, flavour):
    """The specialised decorators record, reject, release and judge results like call()."""
    listener = RecordingListener()
    cb = breaker(clock, half_open_calls=1, record_result=lambda r: r == "bad")
    plain = breaker(clock, consecutive_failures=1, listeners=[listener])

    def behave(action: str) -> str:
        if action == "fail":
            raise OSError("x")
        if action == "abort":
            raise Abort
        return action

    quiet = breaker(clock, half_open_calls=1)
    if flavour == "sync":
        call, watch, hush = cb(behave), plain(behave), quiet(behave)
    else:

        async def abehave(action: str) -> str:
            return behave(action)

        aguarded, aobserved, aquiet = cb(abehave), plain(abehave), quiet(abehave)

        def call(action: str) -> str:
            return asyncio.run(aguarded(action))

        def watch(action: str) -> str:
            return asyncio.run(aobserved(action))

        def hush(action: str) -> str:
            return asyncio.run(aquiet(action))

    for _ in range(2):
        with pytest.raises(OSError):
            call("fail")
    assert call("bad") == "bad"
    assert call("bad") == "bad"
    assert cb.state is OPEN
    with pytest.raises(rs.CircuitOpenError):
        call("ok")
    clock.advance(10.0)
    with pytest.raises(Abort):
        call("abort")  # the probe's permit comes back
    assert call("ok") == "ok"
    assert cb.state is CLOSED
    assert watch("ok") == "ok"
    with pytest.raises(OSError):
        watch("fail")
    assert [type(e).__name__ for e in listener.events] == [
        "CallSucceeded",
        "CircuitStateChanged",
        "CallFailed",
    ]
    for _ in range(4):
        with pytest.raises(OSError):
            hush("fail")
    clock.advance(10.0)
    assert hush("ok") == "ok"
    assert quiet.state is CLOSED


def test_repr_and_defaults():
    """Defaults follow the documented Resilience4j-like values."""
    cb = rs.CircuitBreaker()
    cfg = cb.config
    assert (cfg.failure_rate, cfg.slow_call_rate, cfg.slow_call_duration) == (0.5, 1.0, 60.0)
    assert (cfg.window, cfg.minimum_calls, cfg.half_open_calls) == (rs.CountWindow(100), 20, 5)
    assert (cfg.open_for, cfg.half_open_max_wait, cfg.observe_only) == (30.0, 60.0, False)
    assert repr(cb) == "CircuitBreaker(name='circuit_breaker', state='closed')"
    assert (
        rs.CircuitBreaker(open_for="250ms", slow_call_duration=timedelta(seconds=2)).config.open_for
        == 0.25
    )


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        pytest.param({"failure_rate": 1.5}, "failure_rate", id="rate-above-1"),
        pytest.param({"failure_rate": 0}, "failure_rate", id="rate-zero"),
        pytest.param({"failure_rate": True}, "failure_rate", id="rate-bool"),
        pytest.param({"slow_call_rate": -0.1}, "slow_call_rate", id="slow-rate"),
        pytest.param({"slow_call_duration": 0}, "slow_call_duration", id="slow-duration"),
        pytest.param({"half_open_calls": 0}, "half_open_calls", id="half-open-calls"),
        pytest.param({"minimum_calls": 0}, "minimum_calls", id="minimum-calls"),
        pytest.param({"window": 100}, "window", id="window-int"),
        pytest.param({"open_for": -1}, "open_for", id="open-for"),
        pytest.param({"open_for": "soon"}, "open_for", id="open-for-text"),
        pytest.param({"record": "OSError"}, "record", id="record"),
        pytest.param({"record": int}, "record", id="record-not-exception"),
        pytest.param({"ignore": (OSError, 3)}, "ignore", id="ignore"),
        pytest.param({"record_result": 5}, "record_result", id="record-result"),
        pytest.param({"consecutive_failures": 0}, "consecutive_failures", id="consecutive"),
        pytest.param({"half_open_max_wait": 0}, "half_open_max_wait", id="max-wait"),
        pytest.param({"open_for_multiplier": 0.5}, "open_for_multiplier", id="multiplier"),
        pytest.param({"max_open_for": 1.0}, "max_open_for", id="cap-below-open-for"),
        pytest.param({"open_on_retry_after": "yes"}, "open_on_retry_after", id="hint"),
        pytest.param({"max_retry_after": 0}, "max_retry_after", id="hint-cap"),
        pytest.param({"observe_only": 1}, "observe_only", id="observe-only"),
        pytest.param({"store": 42}, "store", id="store"),
        pytest.param({"name": ""}, "name", id="name"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, path):
    """Each bad argument is named in a ConfigError with the value and what is allowed."""
    with pytest.raises(rs.ConfigError) as info:
        rs.CircuitBreaker(**kwargs)
    assert info.value.path == path
    assert info.value.expected


@pytest.mark.parametrize(
    ("make", "path"),
    [
        pytest.param(lambda: rs.CountWindow(0), "window.size", id="count-empty"),
        pytest.param(lambda: rs.CountWindow(2.5), "window.size", id="count-float"),
        pytest.param(lambda: rs.TimeWindow(0), "window.seconds", id="time-empty"),
        pytest.param(lambda: rs.TimeWindow(-1), "window.seconds", id="time-negative"),
        pytest.param(lambda: rs.TimeWindow(10, buckets=0), "window.buckets", id="no-buckets"),
        pytest.param(lambda: rs.TimeWindow(10, buckets=10**6), "window.buckets", id="buckets"),
    ],
)
def test_empty_or_bad_windows_raise_config_error(make, path):
    """An empty window is refused with the field's path."""
    with pytest.raises(rs.ConfigError) as info:
        make()
    assert info.value.path == path


def test_window_size_is_bounded_so_a_typo_cannot_exhaust_memory():
    from resilient import ConfigError, CountWindow

    assert CountWindow(1_000_000).size == 1_000_000
    with pytest.raises(ConfigError, match="between 1 and 1000000"):
        CountWindow(10**12)


# -- the decorators' inlined OPEN refusal --------------------------------------------------------


FLAVOURS = ["decorated", "decorated-async", "call", "acall"]


def _decorated(flavour: str, cb: rs.CircuitBreaker) -> Any:
    """A zero-argument caller of a function through *cb* (decorated sync or async, or
    through ``call`` / ``acall``; async ones on a fresh loop), recording whether it ran."""
    ran: list[int] = []

    def fn() -> None:
        ran.append(1)

    async def afn() -> None:
        ran.append(1)

    if flavour == "decorated":
        return cb(fn), ran
    if flavour == "call":
        return (lambda: cb.call(fn)), ran
    if flavour == "acall":
        return (lambda: asyncio.run(cb.acall(afn))), ran
    decorated = cb(afn)
    return (lambda: asyncio.run(decorated())), ran


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_open_refusal_counts_emits_and_logs(flavour, clock, caplog):
    """An OPEN call is refused without the lock (inlined in the decorators, in ``_admit``
    for call/acall), with its error, count, event and log line; a log level raised
    between two refusals is seen (logging's level cache is cleared)."""
    listener = RecordingListener()
    cb = breaker(clock, consecutive_failures=1, open_for=10.0)
    with pytest.raises(OSError):
        cb.call(boom)
    call, ran = _decorated(flavour, cb)
    clock.advance(4.0)
    caplog.set_level(logging.WARNING, logger="resilient")
    with pytest.raises(rs.CircuitOpenError) as info:
        call()
    err = info.value
    assert (err.policy, err.reason, err.retry_after, err.key) == ("db", "circuit_open", 6.0, None)
    assert str(err) == "'db' rejected the call (circuit_open), retry after 6.000s"
    assert not [r for r in caplog.records if "rejected" in r.getMessage()]
    caplog.set_level(logging.INFO, logger="resilient")  # clears logging's level cache
    with pytest.raises(rs.CircuitOpenError):
        call()
    assert [r.levelno for r in caplog.records if "circuit_open" in r.getMessage()] == [logging.INFO]
    cb._emitter.add_local([listener])
    with pytest.raises(rs.CircuitOpenError):
        call()
    (event,) = listener.of(CallRejected)
    assert (event.reason, event.retry_after, event.at) == ("circuit_open", 6.0, clock.monotonic())
    assert ran == []
    assert cb.stats().rejected == 3
    clock.advance(6.0)  # open_for has passed: the decorator admits a probe
    call()
    assert ran == [1]


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_observe_only_refuses_nothing_on_any_path(flavour, clock):
    """observe_only turns the lock-free refusal off: the call runs, counted as a
    would-be rejection."""
    listener = RecordingListener()
    cb = breaker(clock, consecutive_failures=1, observe_only=True, listeners=[listener])
    with pytest.raises(OSError):
        cb.call(boom)
    assert cb.state is OPEN
    call, ran = _decorated(flavour, cb)
    call()
    assert ran == [1]
    assert cb.stats().rejected == 1
    assert listener.of(CallRejected)[0].attributes == {"observe_only": True}
