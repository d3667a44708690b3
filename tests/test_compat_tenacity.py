"""resilient.compat.tenacity: tenacity strategies drive a resilient Retry, and behave as
they do under tenacity itself (same attempts, same delays, same final outcome), on
fake time."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import tenacity
from tenacity import (
    TryAgain,
    retry_if_exception,
    retry_if_exception_cause_type,
    retry_if_exception_message,
    retry_if_exception_type,
    retry_if_not_exception_type,
    retry_if_not_result,
    retry_if_result,
    retry_unless_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_before_delay,
    wait_chain,
    wait_exception,
    wait_exponential,
    wait_exponential_jitter,
    wait_fixed,
    wait_incrementing,
    wait_none,
    wait_random,
    wait_random_exponential,
)

import resilient as rs
from resilient.compat.tenacity import (
    UNLIMITED_ATTEMPTS,
    RetryCallStateShim,
    StopLimits,
    TenacityRetry,
    backoff_from_tenacity,
    from_retrying,
    retry_from_tenacity,
    retry_predicates_from_tenacity,
    stop_from_tenacity,
)
from resilient.observability import RetryScheduled
from resilient.testing import FakeClock, RecordingListener, set_testing


class Abort(BaseException):
    """Stands for cancellation / KeyboardInterrupt."""


class BusyError(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


def script(*outcomes: object, clock: FakeClock | None = None, took: float = 0.0) -> Any:
    """A function that returns or raises each outcome in turn (the last one forever),
    each call taking *took* seconds of fake time."""
    calls: list[int] = []

    def fn() -> object:
        calls.append(1)
        if clock is not None and took:
            clock.advance(took)
        outcome = outcomes[min(len(calls), len(outcomes)) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, type) and issubclass(outcome, BaseException):
            raise outcome("scripted")
        return outcome

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def describe(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("returned", fn())
    except BaseException as exc:
        return ("raised", f"{type(exc).__name__}: {exc}")


def with_tenacity(
    monkeypatch: pytest.MonkeyPatch, outcomes: tuple[object, ...], took: float = 0.0, **kw: Any
) -> tuple[tuple[str, Any], list[float], int]:
    """Run *outcomes* under tenacity itself, on fake time: (outcome, sleeps, attempts)."""
    clock = FakeClock()
    monkeypatch.setattr(tenacity, "time", SimpleNamespace(monotonic=clock.monotonic))
    fn = script(*outcomes, clock=clock, took=took)
    retrying = tenacity.Retrying(sleep=clock.sleep, reraise=True, **kw)
    outcome = describe(lambda: retrying(fn))
    monkeypatch.undo()
    return outcome, clock.sleeps, len(fn.calls)


def with_resilient(
    outcomes: tuple[object, ...], took: float = 0.0, **kw: Any
) -> tuple[tuple[str, Any], list[float], int]:
    clock = FakeClock()
    fn = script(*outcomes, clock=clock, took=took)
    retry = retry_from_tenacity(clock=clock, **kw)
    return describe(lambda: retry.call(fn)), clock.sleeps, len(fn.calls)


# --------------------------------------------------------------------------- side by side

FAIL4 = (ConnectionError, ConnectionError, ConnectionError, ConnectionError, "ok")

SAME_AS_TENACITY: dict[str, tuple[tuple[object, ...], dict[str, Any]]] = {
    "exponential": (
        FAIL4,
        {"stop": stop_after_attempt(5), "wait": wait_exponential(multiplier=0.5, max=3)},
    ),
    "exponential gives up": (
        FAIL4,
        {"stop": stop_after_attempt(3), "wait": wait_exponential(multiplier=1, min=2, max=5)},
    ),
    "fixed": (FAIL4, {"stop": stop_after_attempt(9), "wait": wait_fixed(1.5)}),
    "none": (FAIL4, {"stop": stop_after_attempt(9), "wait": wait_none()}),
    "incrementing": (
        FAIL4,
        {"stop": stop_after_attempt(9), "wait": wait_incrementing(start=1, increment=2, max=4)},
    ),
    "chain": (
        FAIL4,
        {"stop": stop_after_attempt(9), "wait": wait_chain(wait_fixed(1), wait_fixed(5))},
    ),
    "combine": (FAIL4, {"stop": stop_after_attempt(9), "wait": wait_fixed(1) + wait_fixed(0.5)}),
    "random (seeded)": (FAIL4, {"stop": stop_after_attempt(9), "wait": wait_random(1, 3)}),
    "full jitter (seeded)": (
        FAIL4,
        {"stop": stop_after_attempt(9), "wait": wait_random_exponential(multiplier=1, max=10)},
    ),
    "exponential jitter (seeded)": (
        FAIL4,
        {"stop": stop_after_attempt(9), "wait": wait_exponential_jitter(initial=1, max=10)},
    ),
    "wait_exception": (
        (BusyError(2.0), ValueError, BusyError(0.5), "ok"),
        {
            "stop": stop_after_attempt(9),
            "wait": wait_exception(lambda e: 7.0 if isinstance(e, ValueError) else 1.0),
            "retry_after": lambda outcome: None,  # let the wait read the exception
        },
    ),
    "retry on type only": (
        (ConnectionError, KeyError, "ok"),
        {"stop": stop_after_attempt(9), "retry": retry_if_exception_type(ConnectionError)},
    ),
    "retry on several types": (
        (ConnectionError, TimeoutError, KeyError),
        {"stop": stop_after_attempt(9), "retry": retry_if_exception_type((OSError, KeyError))},
    ),
    "retry unless type": (
        (ConnectionError, ValueError, "ok"),
        {"stop": stop_after_attempt(9), "retry": retry_if_not_exception_type(ValueError)},
    ),
    "retry on message": (
        (ValueError("again"), ValueError("again"), ValueError("fatal")),
        {"stop": stop_after_attempt(9), "retry": retry_if_exception_message(message="again")},
    ),
    "retry on predicate": (
        (OSError(11, "busy"), OSError(2, "gone"), "ok"),
        {
            "stop": stop_after_attempt(9),
            "retry": retry_if_exception(lambda e: isinstance(e, OSError) and e.errno == 11),
        },
    ),
    "retry on result": (
        (None, None, 3, 4),
        {"stop": stop_after_attempt(9), "retry": retry_if_result(lambda r: r is None)},
    ),
    "retry if not result": (
        (1, 2, 10),
        {"stop": stop_after_attempt(9), "retry": retry_if_not_result(lambda r: r >= 10)},
    ),
    "retry any (|)": (
        (None, ConnectionError, KeyError),
        {
            "stop": stop_after_attempt(9),
            "retry": retry_if_result(lambda r: r is None)
            | retry_if_exception_type(ConnectionError),
        },
    ),
    "retry all (&)": (
        (ValueError("a1"), ValueError("a2"), ValueError("b"), "ok"),
        {
            "stop": stop_after_attempt(9),
            "retry": retry_if_exception_type(ValueError)
            & retry_if_exception(lambda e: str(e).startswith("a")),
        },
    ),
    "retry unless exception type": (
        (1, 2, KeyError),
        {"stop": stop_after_attempt(9), "retry": retry_unless_exception_type(KeyError)},
    ),
    "try again": (
        (TryAgain, TryAgain, "ok"),
        {"stop": stop_after_attempt(9), "retry": retry_if_exception_type(ConnectionError)},
    ),
    "custom retry reads the attempt number": (
        (ConnectionError,),
        {"stop": stop_after_attempt(9), "retry": lambda state: state.attempt_number < 4},
    ),
    "stop any": (
        FAIL4,
        {"stop": stop_after_attempt(3) | stop_after_delay(100), "wait": wait_fixed(1)},
    ),
    "stop before delay": (
        FAIL4,
        {"stop": stop_before_delay(5), "wait": wait_fixed(2)},
    ),
    "stop before delay, slow attempts": (
        FAIL4,
        {"stop": stop_before_delay(10), "wait": wait_fixed(1), "took": 2.0},
    ),
}


@pytest.mark.parametrize("case", list(SAME_AS_TENACITY))
def test_same_attempts_delays_and_outcome_as_tenacity(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes, kw = SAME_AS_TENACITY[case]
    kw = dict(kw)
    took = kw.pop("took", 0.0)
    theirs_kw = {k: v for k, v in kw.items() if k != "retry_after"}
    # Both sides get tenacity's defaults for what the case leaves out.
    if "retry" not in kw:
        kw["retry"] = theirs_kw["retry"] = retry_if_exception_type(Exception)
    if "wait" not in kw:
        kw["wait"] = theirs_kw["wait"] = wait_none()
    random.seed(7)
    theirs = with_tenacity(monkeypatch, outcomes, took=took, **theirs_kw)
    random.seed(7)
    ours = with_resilient(outcomes, took=took, **kw)
    assert ours == theirs
    assert ours[2] > 1, "the case must retry at least once to compare anything"


def test_cause_type_strategy_matches_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    def wrapped(cause: BaseException) -> RuntimeError:
        err = RuntimeError("wrapped")
        err.__cause__ = cause
        return err

    outcomes = (wrapped(ConnectionError()), wrapped(KeyError()), "ok")
    kw = {
        "stop": stop_after_attempt(9),
        "wait": wait_none(),
        "retry": retry_if_exception_cause_type(ConnectionError),
    }
    assert with_resilient(outcomes, **kw) == with_tenacity(monkeypatch, outcomes, **kw)
    assert with_resilient(outcomes, **kw)[2] == 2


def test_results_still_rejected_at_the_end_are_returned_not_a_retry_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kw = {"stop": stop_after_attempt(3), "retry": retry_if_result(lambda r: r is None)}
    theirs = with_tenacity(monkeypatch, (None,), wait=wait_none(), **kw)
    ours = with_resilient((None,), wait=wait_none(), **kw)
    assert theirs[0][1].startswith("RetryError")
    assert ours[0] == ("returned", None)
    assert ours[1:] == theirs[1:] == ([0.0, 0.0], 3)


def test_stop_after_delay_is_a_deadline_no_attempt_starts_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tenacity checks the delay only after an attempt: it sleeps past 5 s and tries again
    # at t=6; resilient never starts an attempt past its deadline.
    kw = {"stop": stop_after_delay(5), "wait": wait_fixed(2), "retry": retry_if_exception_type()}
    theirs = with_tenacity(monkeypatch, (ConnectionError,), **kw)
    ours = with_resilient((ConnectionError,), **kw)
    assert theirs[1:] == ([2.0, 2.0, 2.0], 4)
    assert ours[1:] == ([2.0, 2.0], 3)
    assert ours[0] == theirs[0] == ("raised", "ConnectionError: scripted")


def test_stop_before_delay_boundary_is_inclusive_in_resilient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An attempt that would start exactly at the deadline still starts in resilient
    # (time boundaries are inclusive); tenacity's stop_before_delay stops at >=.
    kw = {"stop": stop_before_delay(4), "wait": wait_fixed(2), "retry": retry_if_exception_type()}
    assert with_tenacity(monkeypatch, (ConnectionError,), **kw)[1:] == ([2.0], 2)
    assert with_resilient((ConnectionError,), **kw)[1:] == ([2.0, 2.0], 3)


# --------------------------------------------------------------------------- through call and acall


def test_strategies_through_call_and_acall(run: Any) -> None:
    clock = FakeClock()
    retry = retry_from_tenacity(
        stop=stop_after_attempt(4),
        wait=wait_exponential(multiplier=1, max=3),
        retry=retry_if_exception_type(ConnectionError),
        clock=clock,
    )
    fn = script(ConnectionError, ConnectionError, ConnectionError, "ok")
    assert run(retry, fn) == "ok"
    assert clock.sleeps == [1.0, 2.0, 3.0]


def test_last_exception_is_reraised_with_a_note_not_a_retry_error(run: Any) -> None:
    retry = retry_from_tenacity(stop=stop_after_attempt(2), wait=wait_none(), clock=FakeClock())
    with pytest.raises(ConnectionError) as info:
        run(retry, script(ConnectionError))
    assert any("2 attempts" in note for note in info.value.__notes__)


def test_result_retry_returns_the_last_result_when_attempts_run_out(run: Any) -> None:
    retry = retry_from_tenacity(
        stop=stop_after_attempt(3), retry=retry_if_result(lambda r: r < 0), clock=FakeClock()
    )
    fn = script(-1, -2, -3, 4)
    assert run(retry, fn) == -3
    assert len(fn.calls) == 3


def test_cancellation_is_never_retried_unlike_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    # tenacity's retry_if_not_exception_type retries anything else, BaseException included.
    kw = {"stop": stop_after_attempt(3), "retry": retry_if_not_exception_type(ValueError)}
    assert with_tenacity(monkeypatch, (Abort,), **kw)[2] == 3
    assert with_resilient((Abort,), **kw) == (("raised", "Abort: scripted"), [], 1)


def test_cancelled_error_in_acall_propagates_at_once() -> None:
    retry = retry_from_tenacity(
        stop=stop_after_attempt(5), retry=retry_if_not_exception_type(ValueError), clock=FakeClock()
    )
    calls = []

    async def fn() -> None:
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(retry.acall(fn))
    assert calls == [1]


def test_rejections_are_not_retried_unless_asked(run: Any) -> None:
    rejected = rs.CircuitOpenError("db", retry_after=1.0)
    kw = {"stop": stop_after_attempt(3), "retry": retry_if_exception_type(), "clock": FakeClock()}
    fn = script(rejected, "ok")
    with pytest.raises(rs.CircuitOpenError):
        run(retry_from_tenacity(**kw), fn)
    assert len(fn.calls) == 1
    fn = script(rejected, "ok")
    assert run(retry_from_tenacity(retry_rejected=True, **kw), fn) == "ok"


def test_a_server_hint_wins_over_the_wait(run: Any) -> None:
    clock = FakeClock()
    retry = retry_from_tenacity(
        stop=stop_after_attempt(3), wait=wait_fixed(9), retry=retry_if_exception_type(), clock=clock
    )
    assert run(retry, script(BusyError(0.25), "ok")) == "ok"
    assert clock.sleeps == [0.25]


def test_decorator_sync_and_async_keep_the_call_state() -> None:
    clock = FakeClock()
    seen: list[tuple[int, float | None, str]] = []

    def wait(state: Any) -> float:
        seen.append((state.attempt_number, state.seconds_since_start, state.get_fn_name()))
        return 1.0

    retry = retry_from_tenacity(
        stop=stop_after_attempt(3), wait=wait, retry=retry_if_exception_type(), clock=clock
    )
    attempts = {"sync": 0, "async": 0}

    @retry
    def fetch() -> str:
        attempts["sync"] += 1
        clock.advance(0.5)
        if attempts["sync"] < 3:
            raise ConnectionError
        return "sync"

    @retry
    async def afetch() -> str:
        attempts["async"] += 1
        clock.advance(0.5)
        if attempts["async"] < 3:
            raise ConnectionError
        return "async"

    assert fetch() == "sync"
    assert asyncio.run(afetch()) == "async"
    assert [s[:2] for s in seen] == [(1, 0.5), (2, 2.0), (1, 0.5), (2, 2.0)]
    assert seen[0][2].endswith("fetch")
    assert seen[2][2].endswith("afetch")


def test_the_state_carries_timings_the_outcome_and_the_arguments() -> None:
    clock = FakeClock(100.0)
    states: list[dict[str, Any]] = []

    def wait(state: Any) -> float:
        states.append(
            {
                "attempt": state.attempt_number,
                "outcome": str(state.outcome.exception()),
                "outcome_attempt": state.outcome.attempt_number,
                "start": state.start_time,
                "at": state.outcome_timestamp,
                "since": state.seconds_since_start,
                "idle": state.idle_for,
                "args": state.args,
                "kwargs": state.kwargs,
                "sleep": state.upcoming_sleep,
            }
        )
        return 3.0

    retry = retry_from_tenacity(
        stop=stop_after_attempt(3), wait=wait, retry=retry_if_exception_type(), clock=clock
    )

    def fetch(user: int, *, fresh: bool) -> None:
        clock.advance(1.0)
        raise ConnectionError(f"try at {clock.monotonic()}")

    with pytest.raises(ConnectionError):
        retry.call(fetch, 7, fresh=True)
    assert states == [
        {
            "attempt": 1,
            "outcome": "try at 101.0",
            "outcome_attempt": 1,
            "start": 100.0,
            "at": 101.0,
            "since": 1.0,
            "idle": 0.0,
            "args": (7,),
            "kwargs": {"fresh": True},
            "sleep": 0.0,
        },
        {
            "attempt": 2,
            "outcome": "try at 105.0",
            "outcome_attempt": 2,
            "start": 100.0,
            "at": 105.0,
            "since": 5.0,
            "idle": 3.0,
            "args": (7,),
            "kwargs": {"fresh": True},
            "sleep": 0.0,
        },
    ]


def test_concurrent_async_calls_keep_their_own_attempt_numbers() -> None:
    # tenacity shares one statistics dict per decorated function (#93, #701).
    clock = FakeClock()
    seen: dict[str, list[int]] = {"a": [], "b": []}

    def wait(state: Any) -> float:
        seen[state.args[0]].append(state.attempt_number)
        return 1.0 if state.args[0] == "a" else 0.3

    retry = retry_from_tenacity(
        stop=stop_after_attempt(4), wait=wait, retry=retry_if_exception_type(), clock=clock
    )

    async def fetch(who: str) -> str:
        raise ConnectionError(who)

    async def main() -> list[Any]:
        return await asyncio.gather(
            retry.acall(fetch, "a"), retry.acall(fetch, "b"), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [str(r) for r in results] == ["a", "b"]
    assert seen == {"a": [1, 2, 3], "b": [1, 2, 3]}


def test_threads_keep_their_own_call_state() -> None:
    clock = FakeClock()
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def wait(state: Any) -> float:
        with lock:
            seen.setdefault(state.args[0], []).append(state.attempt_number)
        return 0.0

    retry = retry_from_tenacity(
        stop=stop_after_attempt(5), wait=wait, retry=retry_if_exception_type(), clock=clock
    )

    def fetch(n: int) -> None:
        raise ConnectionError

    def worker(n: int) -> None:
        with pytest.raises(ConnectionError):
            retry.call(fetch, n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {n: [1, 2, 3, 4] for n in range(8)}


def test_nested_tenacity_retries_keep_separate_state() -> None:
    clock = FakeClock()
    log: list[tuple[str, int]] = []

    def waits(label: str) -> Callable[[Any], float]:
        def wait(state: Any) -> float:
            log.append((label, state.attempt_number))
            return 1.0

        return wait

    outer = retry_from_tenacity(
        stop=stop_after_attempt(2), wait=waits("outer"), retry=retry_if_exception_type(),
        clock=clock, name="outer",
    )  # fmt: skip
    inner = retry_from_tenacity(
        stop=stop_after_attempt(3), wait=waits("inner"), retry=retry_if_exception_type(),
        clock=clock, name="inner",
    )  # fmt: skip
    with pytest.raises(ConnectionError):
        rs.Pipeline(outer, inner).call(script(ConnectionError))
    assert log == [("inner", 1), ("inner", 2), ("outer", 1), ("inner", 1), ("inner", 2)]


def test_events_report_the_tenacity_delays() -> None:
    rec = RecordingListener()
    retry = retry_from_tenacity(
        stop=stop_after_attempt(3),
        wait=wait_incrementing(start=1, increment=1),
        clock=FakeClock(),
        listeners=[rec],
    )
    retry.call(script(ConnectionError, ConnectionError, "ok"))
    assert [(e.attempt, e.delay) for e in rec.of(RetryScheduled)] == [(1, 1.0), (2, 2.0)]
    assert rec.names[-1] == "call_succeeded"


def test_set_testing_drops_the_tenacity_delays() -> None:
    clock = FakeClock()
    retry = retry_from_tenacity(stop=stop_after_attempt(5), wait=wait_fixed(30), clock=clock)
    with set_testing(True, attempts=None):
        assert retry.call(script(ConnectionError, ConnectionError, "ok")) == "ok"
    assert clock.sleeps == [0.0, 0.0]


# --------------------------------------------------------------------------- building blocks


def test_stop_mapping() -> None:
    assert stop_from_tenacity(stop_after_attempt(4)) == StopLimits(4, None)
    assert stop_from_tenacity(stop_after_delay(2.5)) == StopLimits(None, 2.5)
    assert stop_from_tenacity(stop_before_delay(3)) == StopLimits(None, 3.0)
    combined = stop_after_attempt(4) | stop_after_delay(9) | stop_after_attempt(2)
    assert stop_from_tenacity(combined) == StopLimits(2, 9.0)
    nested = tenacity.stop_any(stop_before_delay(5), stop_after_delay(3))
    assert stop_from_tenacity(nested) == StopLimits(None, 3.0)


def test_a_delay_only_stop_leaves_attempts_unbounded() -> None:
    retry = retry_from_tenacity(stop=stop_after_delay(10), clock=FakeClock())
    assert retry.config.attempts == UNLIMITED_ATTEMPTS
    assert retry.config.deadline == 10.0


@pytest.mark.parametrize(
    ("stop", "named"),
    [
        (tenacity.stop_never, "stop_never"),
        (stop_after_attempt(2) & stop_after_delay(5), "stop_all"),
        (tenacity.stop_when_event_set(threading.Event()), "stop_when_event_set"),
        (lambda state: state.attempt_number > 3, "<lambda>"),
        (stop_after_attempt(3) | tenacity.stop_never, "stop_never"),
    ],
)
def test_unsupported_stops_are_config_errors_naming_them(stop: Any, named: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        retry_from_tenacity(stop=stop)
    assert info.value.path == "stop"
    assert named in str(info.value)


def test_bad_stop_values() -> None:
    with pytest.raises(rs.ConfigError, match="stop_after_attempt"):
        stop_from_tenacity(stop_after_attempt(0))
    with pytest.raises(rs.ConfigError, match="delay > 0"):
        stop_from_tenacity(stop_after_delay(0))


def test_predicates_for_exception_strategies_skip_results() -> None:
    retry_on, retry_if = retry_predicates_from_tenacity(retry_if_exception_type(KeyError))
    assert retry_on == (KeyError, TryAgain)
    assert retry_if is None
    retry_on, retry_if = retry_predicates_from_tenacity(
        retry_if_exception_type((KeyError, OSError))
    )
    assert retry_on == (KeyError, OSError, TryAgain)
    retry_on, retry_if = retry_predicates_from_tenacity(retry_if_not_exception_type(KeyError))
    assert callable(retry_on)
    assert retry_if is None
    assert retry_on(ValueError())
    assert not retry_on(KeyError())


def test_predicates_for_result_strategies_skip_exceptions() -> None:
    retry_on, retry_if = retry_predicates_from_tenacity(retry_if_result(lambda r: r == 503))
    assert retry_on == (TryAgain,)
    assert retry_if is not None
    assert retry_if(503)
    assert not retry_if(200)


@pytest.mark.parametrize(
    ("strategy", "exceptions", "results"),
    [
        (tenacity.retry_never, False, False),
        (tenacity.retry_always, True, True),
        (retry_if_result(bool) | retry_if_exception_type(), True, True),
        (retry_if_result(bool) & retry_if_exception_type(), False, False),
        (retry_if_exception_message(match="x.*"), True, False),
        (tenacity.retry_if_not_exception_message(message="x"), True, True),
        (retry_unless_exception_type(KeyError), True, True),
        (lambda state: True, True, True),
    ],
)
def test_which_outcomes_a_strategy_is_asked_about(
    strategy: Any, exceptions: bool, results: bool
) -> None:
    retry_on, retry_if = retry_predicates_from_tenacity(strategy)
    assert (retry_on != (TryAgain,)) is exceptions
    assert (retry_if is not None) is results


def test_backoff_on_its_own_asks_the_wait_with_the_retry_number() -> None:
    backoff = backoff_from_tenacity(wait_exponential(multiplier=0.5, max=2))
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.0]
    clock = FakeClock()
    retry = rs.Retry(attempts=3, backoff=backoff, retry_on=ConnectionError, clock=clock)
    retry.call(script(ConnectionError, ConnectionError, "ok"))
    assert clock.sleeps == [0.5, 1.0]
    assert "wait_exponential" in backoff.__qualname__


def test_shim_without_a_call() -> None:
    state = RetryCallStateShim(3)
    assert state.seconds_since_start is None
    assert state.get_fn_name() == "<unknown>"
    assert state.kwargs == {}
    assert state.args == ()
    assert "3" in repr(state)


def test_not_callable_or_async_strategies_are_config_errors() -> None:
    async def async_wait(state: Any) -> float:
        return 1.0

    with pytest.raises(rs.ConfigError, match="wait"):
        retry_from_tenacity(wait=3)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="sync"):
        retry_from_tenacity(wait=async_wait)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="retry"):
        retry_from_tenacity(retry="ConnectionError")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"stop": stop_after_attempt(2), "attempts": 3}, "attempts"),
        ({"stop": stop_after_delay(2), "deadline": 3}, "deadline"),
        ({"wait": wait_fixed(1), "backoff": rs.Backoff()}, "backoff"),
        ({"retry": retry_if_result(bool), "retry_if": bool}, "retry_if"),
        ({"retry": retry_if_result(bool), "retry_on": OSError}, "retry_on"),
        ({"before_sleep": print}, "before_sleep"),
        ({"retry_error_callback": print}, "retry_error_callback"),
        ({"sleep": print}, "sleep"),
        ({"reraise": False}, "reraise"),
    ],
)
def test_conflicting_or_tenacity_only_arguments(kwargs: dict[str, Any], path: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        retry_from_tenacity(**kwargs)
    assert info.value.path == path


def test_keeps_resilient_defaults_for_what_is_left_out() -> None:
    retry = retry_from_tenacity(reraise=True, name="plain")
    assert isinstance(retry, rs.Retry)
    assert retry.config.attempts == 3
    assert retry.config.retry_on == (OSError,)
    assert isinstance(retry.config.backoff, rs.Backoff)
    assert repr(retry) == "TenacityRetry(name='plain')"


def test_repr_names_the_strategies() -> None:
    retry = retry_from_tenacity(stop=tenacity.stop_after_attempt(2), wait=wait_fixed(1))
    assert repr(retry) == "TenacityRetry(stop=stop_after_attempt, wait=wait_fixed, name='retry')"


def test_from_retrying_uses_tenacity_defaults_where_it_left_them() -> None:
    clock = FakeClock()
    retry = from_retrying(tenacity.Retrying(stop=stop_after_attempt(3)), clock=clock)
    assert isinstance(retry, TenacityRetry)
    # tenacity's default retry: every exception; default wait: none.
    assert retry.call(script(KeyError, ValueError, "ok")) == "ok"
    assert clock.sleeps == [0.0, 0.0]


def test_from_retrying_accepts_a_decorated_function() -> None:
    @tenacity.retry(stop=stop_after_attempt(4), wait=wait_fixed(2), reraise=True)
    def legacy() -> None:
        raise KeyError

    clock = FakeClock()
    retry = from_retrying(legacy, clock=clock)
    with pytest.raises(KeyError):
        retry.call(script(KeyError))
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_from_retrying_refuses_hooks_and_unbounded_retries() -> None:
    with pytest.raises(rs.ConfigError) as info:
        from_retrying(tenacity.Retrying(stop=stop_after_attempt(2), before_sleep=print))
    assert info.value.path == "before_sleep"
    with pytest.raises(rs.ConfigError) as info:
        from_retrying(tenacity.Retrying())
    assert "stop_never" in str(info.value)
    with pytest.raises(rs.ConfigError):
        from_retrying(object())
    # stop_never with an explicit bound is fine.
    assert from_retrying(tenacity.Retrying(), attempts=2).config.attempts == 2


def test_from_retrying_async() -> None:
    clock = FakeClock()
    retry = from_retrying(
        tenacity.AsyncRetrying(stop=stop_after_attempt(2), wait=wait_fixed(1)), clock=clock
    )

    async def fetch() -> None:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        asyncio.run(retry.acall(fetch))
    assert clock.sleeps == [1.0]


def test_importing_the_package_does_not_import_the_peers() -> None:
    code = (
        "import sys, resilient, resilient.compat; "
        "print(sorted(m for m in ('tenacity', 'pybreaker') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_strategies_through_the_httpx_adapter_see_the_outcome() -> None:
    httpx = pytest.importorskip("httpx")
    from resilient.adapters.httpx import ResilientTransport

    answers = iter(["connect", 503, 200])
    seen: list[tuple[int, str]] = []

    def handler(request: Any) -> Any:
        answer = next(answers)
        if answer == "connect":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(answer)

    def wait(state: Any) -> float:
        outcome = state.outcome
        if outcome.failed:
            seen.append((state.attempt_number, type(outcome.exception()).__name__))
            return 2.0
        seen.append((state.attempt_number, str(outcome.result().status_code)))
        return 0.5

    clock = FakeClock()
    retry = retry_from_tenacity(stop=stop_after_attempt(3), wait=wait, clock=clock)
    transport = ResilientTransport(retry, transport=httpx.MockTransport(handler))
    with httpx.Client(transport=transport, base_url="http://127.0.0.1") as client:
        assert client.get("/").status_code == 200
    assert seen == [(1, "ConnectError"), (2, "503")]
    assert clock.sleeps == [2.0, 0.5]
