"""Events from the policies, the emitter, the logging listeners and set_testing()."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import resilient as rs
from resilient._retry import TESTING
from resilient.observability import (
    BackendFailed,
    BackendRecovered,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    Event,
    LoggingListener,
    RetryScheduled,
    TimeoutExceeded,
    get_listeners,
    set_listeners,
)
from resilient.observability import _logging as logging_module
from resilient.observability._emit import Emitter
from resilient.observability._events import plain
from resilient.testing import FakeClock, RecordingListener, set_testing


@pytest.fixture(autouse=True)
def _reset_globals() -> Iterator[None]:
    """Every test starts and ends with no global listeners and test mode off."""
    set_listeners(None)
    saved = (TESTING.enabled, TESTING.attempts)
    yield
    set_listeners(None)
    TESTING.enabled, TESTING.attempts = saved


class Flaky:
    """Raises the given errors, one per call, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: Any = "ok") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


class RareOnly(RecordingListener):
    """A recorder that declares it has no use for per-call events."""

    call_events = False


def fixed(**kw: Any) -> rs.Retry:
    kw.setdefault("backoff", rs.Backoff.exponential(initial=1.0, maximum=100.0, jitter="none"))
    return rs.Retry(**kw)


# -- events from Retry ------------------------------------------------------------------------


def test_retry_success_emits_one_call_succeeded(run, clock):
    """A first-try success emits CallSucceeded (duration 0 on a still clock) and nothing else."""
    rec = RecordingListener()
    clock.advance(7.0)
    assert run(fixed(clock=clock, name="db", listeners=[rec]), Flaky()) == "ok"
    assert rec.names == ["call_succeeded"]
    (event,) = rec.of(CallSucceeded)
    assert (event.policy, event.kind, event.at, event.duration) == ("db", "retry", 7.0, 0.0)
    assert event.key is None
    assert event.attributes == {}


def test_retry_schedules_retries_then_succeeds(run, clock):
    """Each failed attempt emits RetryScheduled(attempt, delay, cause); the success carries the
    whole duration."""
    errors = [OSError("a"), ConnectionError("b")]
    rec = RecordingListener()
    retry = fixed(attempts=3, clock=clock, name="db", listeners=[rec])
    assert run(retry, Flaky(*errors)) == "ok"
    assert rec.names == ["retry_scheduled", "retry_scheduled", "call_succeeded"]
    first, second = rec.of(RetryScheduled)
    assert (first.attempt, first.delay, first.cause, first.at) == (1, 1.0, errors[0], 0.0)
    assert (second.attempt, second.delay, second.cause, second.at) == (2, 2.0, errors[1], 1.0)
    assert first.result is None
    assert clock.sleeps == [1.0, 2.0]
    assert rec.of(CallSucceeded)[0].duration == 3.0


def test_retry_giving_up_emits_call_failed_with_the_last_error(run, clock):
    """When attempts run out, CallFailed carries the re-raised exception and the duration."""
    errors = [OSError("a"), OSError("b")]
    rec = RecordingListener()
    with pytest.raises(OSError, match="b"):
        run(fixed(attempts=2, clock=clock, listeners=[rec]), Flaky(*errors))
    assert rec.names == ["retry_scheduled", "call_failed"]
    failed = rec.of(CallFailed)[0]
    assert failed.exception is errors[1]
    assert (failed.duration, failed.at) == (1.0, 1.0)


def test_retry_non_retryable_error_fails_at_once(run, clock):
    """An error outside retry_on is not retried: a single CallFailed, no RetryScheduled."""
    rec = RecordingListener()
    with pytest.raises(KeyError):
        run(fixed(clock=clock, listeners=[rec]), Flaky(KeyError("k")))
    assert rec.names == ["call_failed"]
    assert isinstance(rec.of(CallFailed)[0].exception, KeyError)


def test_retry_on_results_reports_the_result(run, clock):
    """A result retried by retry_if is in RetryScheduled.result; giving up on results is a
    CallFailed without exception."""
    rec = RecordingListener()
    retry = fixed(attempts=2, clock=clock, retry_if=lambda r: r == 503, listeners=[rec])
    assert run(retry, Flaky(value=503)) == 503
    assert rec.names == ["retry_scheduled", "call_failed"]
    scheduled = rec.of(RetryScheduled)[0]
    assert (scheduled.cause, scheduled.result) == (None, 503)
    assert rec.of(CallFailed)[0].exception is None


def test_global_listeners_see_every_policy_after_local_ones(run, clock):
    """Local listeners are called first, then the global ones, for every policy."""
    order: list[str] = []
    set_listeners([lambda e: order.append(f"global:{e.event_name}")])
    retry = fixed(clock=clock, listeners=[lambda e: order.append(f"local:{e.event_name}")])
    run(retry, Flaky(OSError()))
    assert order == [
        "local:retry_scheduled",
        "global:retry_scheduled",
        "local:call_succeeded",
        "global:call_succeeded",
    ]


def test_per_call_events_are_not_built_when_no_listener_wants_them(run, clock):
    """A listener with call_events=False gets rare events only; the policy builds no
    CallSucceeded/CallFailed for it."""
    rare = RareOnly()
    retry = fixed(clock=clock, listeners=[rare])
    assert not retry._emitter.listening
    run(retry, Flaky(OSError()))
    with pytest.raises(OSError):
        run(retry, Flaky(OSError(), OSError(), OSError()))
    assert rare.names == ["retry_scheduled"] * 3


def test_listening_follows_set_listeners_for_existing_policies(run, clock):
    """set_listeners() switches per-call events on and off for policies built before it."""
    retry = fixed(clock=clock)
    assert retry._emitter.listening is False
    rec = RecordingListener()
    set_listeners([rec])
    assert retry._emitter.listening is True
    run(retry, Flaky())
    assert rec.names == ["call_succeeded"]
    set_listeners([RareOnly()])
    assert retry._emitter.listening is False
    set_listeners(None)
    assert get_listeners() == ()
    assert retry._emitter.listening is False


# -- events from Timeout ----------------------------------------------------------------------


def _late(run: Any, clock: FakeClock, seconds: float) -> Any:
    """A callee taking *seconds* on *clock*, for the driver *run* uses."""
    if run.is_async:

        async def slow() -> str:
            await clock.asleep(seconds)
            return "late"

        return slow

    def sync_slow() -> str:
        clock.advance(seconds)
        return "late"

    return sync_slow


def _drive(run: Any, policy: Any, fn: Any) -> Any:
    if run.is_async:
        return asyncio.run(policy.acall(fn))
    return policy.call(fn)


def test_timeout_exceeded_event(run, clock):
    """A call past the budget raises TimeoutExceededError and emits TimeoutExceeded once."""
    rec = RecordingListener()
    timeout = rs.Timeout(2.0, clock=clock, name="slowpoke", listeners=[rec])
    with pytest.raises(rs.TimeoutExceededError):
        _drive(run, timeout, _late(run, clock, 5.0))
    (event,) = rec.of(TimeoutExceeded)
    assert (event.policy, event.kind, event.budget) == ("slowpoke", "timeout", 2.0)
    assert event.at == 5.0
    assert rec.names == ["timeout_exceeded"]


def test_timeout_within_budget_emits_no_timeout(run, clock):
    """A call within its budget emits no TimeoutExceeded."""
    rec = RecordingListener()
    timeout = rs.Timeout(2.0, clock=clock, listeners=[rec])
    assert _drive(run, timeout, _late(run, clock, 1.0)) == "late"
    assert rec.of(TimeoutExceeded) == []


def test_pipeline_retry_over_timeout_emits_both(run, clock):
    """Retry around a timed-out attempt: TimeoutExceeded, then RetryScheduled caused by it."""
    rec = RecordingListener()
    set_listeners([rec])
    pipeline = rs.Pipeline(
        fixed(attempts=2, clock=clock, name="r"), rs.Timeout(1.0, clock=clock, name="t")
    )
    with pytest.raises(rs.TimeoutExceededError):
        _drive(run, pipeline, _late(run, clock, 3.0))
    assert rec.names == [
        "timeout_exceeded",
        "retry_scheduled",
        "timeout_exceeded",
        "call_failed",
    ]
    assert isinstance(rec.of(RetryScheduled)[0].cause, rs.TimeoutExceededError)
    assert [e.policy for e in rec.events] == ["t", "r", "t", "r"]


# -- a raising listener -----------------------------------------------------------------------


def test_raising_listener_is_logged_and_changes_nothing(run, clock, caplog):
    """A listener that raises is logged with its traceback; the call's outcome is unchanged
    and the other listeners still get every event."""

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    rec = RecordingListener()
    retry = fixed(attempts=3, clock=clock, name="db", listeners=[broken, rec])
    with caplog.at_level(logging.ERROR, logger="resilient"):
        assert run(retry, Flaky(OSError("x"))) == "ok"
        error = OSError("final")
        with pytest.raises(OSError) as info:
            run(retry, Flaky(OSError(), OSError(), error))
    assert info.value is error
    assert rec.names == ["retry_scheduled", "call_succeeded"] + ["retry_scheduled"] * 2 + [
        "call_failed"
    ]
    broken_logs = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(broken_logs) == len(rec.events)
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in broken_logs)
    assert "RetryScheduled from 'db'" in broken_logs[0].getMessage()


def test_raising_global_listener_on_timeout_keeps_the_timeout_error(run, clock, caplog):
    """A raising global listener cannot replace the policy's own error."""

    def broken(event: Event) -> None:
        raise ValueError("bad")

    set_listeners([broken])
    with caplog.at_level(logging.ERROR, logger="resilient"), pytest.raises(rs.TimeoutExceededError):
        _drive(run, rs.Timeout(1.0, clock=clock), _late(run, clock, 2.0))
    assert len([r for r in caplog.records if r.exc_info]) == 1


# -- built-in logging and LoggingListener -----------------------------------------------------


def test_rare_events_are_logged_by_default_with_structured_extra(run, clock, caplog):
    """With no listener, a retry is logged at INFO on "resilient", fields in the record."""
    caplog.set_level(logging.INFO, logger="resilient")
    cause = OSError("boom")
    run(fixed(clock=clock, name="db"), Flaky(cause))
    (record,) = caplog.records
    assert record.name == "resilient"
    assert record.levelno == logging.INFO
    assert record.getMessage() == "retry 'db': attempt 1 failed (OSError: boom); retrying in 1.000s"
    assert record.event == "retry_scheduled"
    assert (record.policy, record.kind, record.attempt, record.delay) == ("db", "retry", 1, 1.0)
    assert record.cause == "OSError: boom"
    assert isinstance(record.resilient_event, RetryScheduled)
    assert record.resilient_event.cause is cause


def test_default_logging_respects_the_logger_level(run, clock, caplog):
    """Above INFO, the built-in logging writes nothing for retries."""
    caplog.set_level(logging.WARNING, logger="resilient")
    run(fixed(clock=clock), Flaky(OSError()))
    assert caplog.records == []


def test_logging_listener_replaces_the_builtin_logging(run, clock, caplog):
    """With a LoggingListener installed each event is logged once, successes at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="resilient")
    set_listeners([LoggingListener(call_events=True)])
    run(fixed(clock=clock, name="db"), Flaky(OSError()))
    assert [(r.levelname, r.event) for r in caplog.records] == [
        ("INFO", "retry_scheduled"),
        ("DEBUG", "call_succeeded"),
    ]
    assert caplog.records[1].getMessage() == "retry 'db': call succeeded in 1.000s"
    assert caplog.records[1].duration == 1.0


def test_logging_listener_leaves_successes_alone_by_default(run, clock, caplog):
    """LoggingListener() logs rare events only: policies build no per-call events for it."""
    caplog.set_level(logging.DEBUG, logger="resilient")
    listener = LoggingListener()
    set_listeners([listener])
    retry = fixed(clock=clock)
    assert retry._emitter.listening is False
    run(retry, Flaky(OSError()))
    listener(CallSucceeded(policy="p", kind="retry", at=0.0, duration=0.0))
    records = [r for r in caplog.records if r.name == "resilient"]
    assert [r.event for r in records] == ["retry_scheduled"]


def test_logging_listener_on_its_own_logger_and_levels(run, clock, caplog):
    """A named logger and per-type levels are honoured; the built-in logging stands down."""
    caplog.set_level(logging.DEBUG)
    listener = LoggingListener(
        "app.resilience", levels={RetryScheduled: logging.WARNING}, call_events=True
    )
    run(fixed(clock=clock, listeners=[listener]), Flaky(OSError()))
    records = [r for r in caplog.records if r.name.startswith(("app", "resilient"))]
    assert [(r.name, r.levelname, r.event) for r in records] == [
        ("app.resilience", "WARNING", "retry_scheduled"),
        ("app.resilience", "DEBUG", "call_succeeded"),
    ]


def test_logging_listener_skips_formatting_when_the_level_is_disabled(
    run, clock, monkeypatch, caplog
):
    """With the level disabled the listener neither formats nor builds extra."""
    logger = logging.getLogger("resilient.test.disabled")
    caplog.set_level(logging.ERROR, logger="resilient.test.disabled")
    formatted: list[Event] = []

    def spy(event: Event) -> Any:
        formatted.append(event)
        raise AssertionError("formatted a disabled event")

    monkeypatch.setattr(logging_module, "describe", spy)
    monkeypatch.setattr(logging_module, "extra_for", spy)
    rec = RecordingListener()
    listener = LoggingListener(logger, call_events=True)
    with caplog.at_level(logging.DEBUG, logger="resilient"):
        run(fixed(clock=clock, listeners=[listener, rec]), Flaky(OSError()))
    assert rec.names == ["retry_scheduled", "call_succeeded"]
    for event in rec.events:
        listener(event)
    assert formatted == []
    assert [r for r in caplog.records if r.name.startswith("resilient")] == []


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"


@pytest.mark.parametrize(
    ("event", "level", "message"),
    [
        pytest.param(
            CircuitStateChanged(
                policy="db",
                kind="circuit_breaker",
                at=0,
                old=State.CLOSED,
                new=State.OPEN,
                why="failure rate 60% >= 50%",
            ),
            logging.WARNING,
            "circuit_breaker 'db': closed -> open (failure rate 60% >= 50%)",
            id="opening-warns",
        ),
        pytest.param(
            CircuitStateChanged(
                policy="db", kind="circuit_breaker", at=0, old="half_open", new="closed"
            ),
            logging.INFO,
            "circuit_breaker 'db': half_open -> closed (no reason given)",
            id="closing-informs",
        ),
        pytest.param(
            CallRejected(
                policy="api",
                kind="rate_limit",
                at=0,
                reason="rate_limited",
                key="1.2.3.4",
                retry_after=0.25,
            ),
            logging.INFO,
            "rate_limit 'api' [key '1.2.3.4']: rejected a call (rate_limited), retry after 0.250s",
            id="rejection-with-key",
        ),
        pytest.param(
            CallRejected(policy="pool", kind="bulkhead", at=0, reason="bulkhead_full"),
            logging.INFO,
            "bulkhead 'pool': rejected a call (bulkhead_full)",
            id="rejection",
        ),
        pytest.param(
            TimeoutExceeded(policy="t", kind="timeout", at=0, budget=2.0),
            logging.INFO,
            "timeout 't': exceeded its 2.000s budget",
            id="timeout",
        ),
        pytest.param(
            BackendFailed(
                policy="rl",
                kind="rate_limit",
                at=0,
                backend="redis",
                error=OSError("down"),
                mode="local",
            ),
            logging.WARNING,
            "rate_limit 'rl': backend redis failed (OSError: down); on_backend_error=local",
            id="backend-failed",
        ),
        pytest.param(
            BackendRecovered(policy="rl", kind="rate_limit", at=0, backend="redis"),
            logging.INFO,
            "rate_limit 'rl': backend redis recovered",
            id="backend-recovered",
        ),
        pytest.param(
            CallFailed(policy="r", kind="retry", at=0, duration=0.5),
            logging.DEBUG,
            "retry 'r': call failed after 0.500s (result rejected)",
            id="failed-on-result",
        ),
    ],
)
def test_logging_listener_levels_and_messages(event, level, message, caplog):
    """Each event type has its level and a fixed, readable message template."""
    caplog.set_level(logging.DEBUG, logger="resilient")
    LoggingListener(call_events=True)(event)
    (record,) = caplog.records
    assert (record.levelno, record.getMessage()) == (level, message)
    assert record.event == event.event_name


def test_logging_extra_never_clashes_with_log_record_fields(caplog):
    """Adapter attributes named like LogRecord fields get a trailing underscore."""
    caplog.set_level(logging.INFO, logger="resilient")
    event = CallRejected(
        policy="p",
        kind="rate_limit",
        at=0,
        reason="rate_limited",
        attributes={"name": "GET /", "module": "x", "host": "example.org", "policy": "spoof"},
    )
    LoggingListener()(event)
    (record,) = caplog.records
    assert record.name == "resilient"
    assert (record.name_, record.module_, record.host) == ("GET /", "x", "example.org")
    assert record.policy == "p"


def test_logging_listener_rejects_bad_levels():
    """levels= must map event types to int levels."""
    with pytest.raises(rs.ConfigError, match="levels"):
        LoggingListener(levels={"RetryScheduled": 10})  # type: ignore[dict-item]
    with pytest.raises(rs.ConfigError, match=r"levels\[RetryScheduled\]"):
        LoggingListener(levels={RetryScheduled: "INFO"})  # type: ignore[dict-item]


def test_structlog_listener_logs_key_values():
    """StructlogListener logs the event name with the flat fields, at the event's level."""
    structlog = pytest.importorskip("structlog")
    from resilient.observability import StructlogListener

    with structlog.testing.capture_logs() as logs:
        listener = StructlogListener(call_events=True)
        listener(
            RetryScheduled(
                policy="db", kind="retry", at=1.5, attempt=2, delay=0.5, cause=OSError("x")
            )
        )
        listener(CallSucceeded(policy="db", kind="retry", at=2.0, duration=2.0))
    assert logs == [
        {
            "event": "retry_scheduled",
            "log_level": "info",
            "policy": "db",
            "kind": "retry",
            "at": 1.5,
            "key": None,
            "attempt": 2,
            "delay": 0.5,
            "cause": "OSError: x",
            "result": None,
        },
        {
            "event": "call_succeeded",
            "log_level": "debug",
            "policy": "db",
            "kind": "retry",
            "at": 2.0,
            "key": None,
            "duration": 2.0,
        },
    ]


def test_structlog_listener_skips_disabled_levels(run, clock):
    """With a filtering logger above INFO nothing is logged, and the built-in logging is off."""
    structlog = pytest.importorskip("structlog")
    from resilient.observability import StructlogListener

    calls: list[Any] = []

    class Capture:
        def is_enabled_for(self, level: int) -> bool:
            return level >= logging.WARNING

        def log(self, level: int, event: str, **kw: Any) -> None:
            calls.append((level, event, kw))

    listener = StructlogListener(Capture())
    set_listeners([listener])
    run(fixed(clock=clock), Flaky(OSError()))
    listener(
        CircuitStateChanged(policy="b", kind="circuit_breaker", at=0, old="closed", new="open")
    )
    assert [(level, event) for level, event, _ in calls] == [
        (logging.WARNING, "circuit_state_changed")
    ]
    assert structlog is not None


# -- the emitter and listener validation ------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("abc", id="string"),
        pytest.param([1], id="not-callable"),
        pytest.param(print, id="single-callable"),
    ],
)
def test_listeners_must_be_a_list_of_callables(bad):
    """set_listeners() and listeners= reject anything but an iterable of callables."""
    with pytest.raises(rs.ConfigError, match="listeners"):
        set_listeners(bad)
    with pytest.raises(rs.ConfigError, match="listeners"):
        rs.Retry(listeners=bad)


def test_wants_tells_whether_an_event_would_reach_anyone(caplog):
    """wants(): per-call events need a listener that asks for them; rare events need any
    listener or the built-in logging enabled at their level."""
    caplog.set_level(logging.WARNING, logger="resilient")
    emitter = Emitter()
    assert not emitter.wants(CallSucceeded)
    assert not emitter.wants(CallRejected)
    assert emitter.wants(CircuitStateChanged)  # WARNING
    caplog.set_level(logging.INFO, logger="resilient")
    assert emitter.wants(CallRejected)
    caplog.set_level(logging.ERROR, logger="resilient")
    set_listeners([RareOnly()])
    assert (emitter.observed, emitter.listening) == (True, False)
    assert emitter.wants(CallRejected)
    assert not emitter.wants(CallFailed)
    set_listeners([RecordingListener()])
    assert emitter.wants(CallFailed)
    set_listeners(None)
    assert not Emitter().wants(TimeoutExceeded)
    assert Emitter([RareOnly()]).wants(TimeoutExceeded)


def test_emitters_are_not_kept_alive_by_the_registry():
    """The emitter registry holds policies weakly."""
    import gc
    import weakref

    emitter = Emitter()
    ref = weakref.ref(emitter)
    del emitter
    gc.collect()
    assert ref() is None


# -- events themselves ------------------------------------------------------------------------


def test_events_are_frozen_and_named():
    """Events are immutable and each type has a stable event_name."""
    event = CallSucceeded(policy="p", kind="retry", at=0.0, duration=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.duration = 2.0  # type: ignore[misc]
    names = {
        cls.event_name
        for cls in (
            CallSucceeded,
            CallFailed,
            RetryScheduled,
            CallRejected,
            CircuitStateChanged,
            TimeoutExceeded,
            BackendFailed,
            BackendRecovered,
        )
    }
    assert len(names) == 8


def test_as_dict_is_flat_and_plain():
    """as_dict() renders exceptions, enums and objects as scalars and merges attributes."""
    event = CircuitStateChanged(
        policy="db",
        kind="circuit_breaker",
        at=3.0,
        old=State.CLOSED,
        new=State.OPEN,
        why="x",
        key=("tenant", 7),
        attributes={"host": "db1", "why": "not me"},
    )
    assert event.as_dict() == {
        "event": "circuit_state_changed",
        "policy": "db",
        "kind": "circuit_breaker",
        "at": 3.0,
        "key": "('tenant', 7)",
        "old": "closed",
        "new": "open",
        "why": "x",
        "host": "db1",
    }


def test_plain_values():
    """plain() keeps scalars, names enums and exceptions, and shortens long reprs."""

    class Numbered(enum.Enum):
        HALF_OPEN = 2

    assert plain(Numbered.HALF_OPEN) == "half_open"
    assert plain(ValueError()) == "ValueError"
    assert plain(True) is True
    assert len(str(plain(list(range(1000))))) == 200


# -- RecordingListener ------------------------------------------------------------------------


def test_recording_listener_is_thread_safe():
    """Threads recording at once lose nothing."""
    rec = RecordingListener()
    event = CallSucceeded(policy="p", kind="retry", at=0.0, duration=0.0)

    def hammer() -> None:
        for _ in range(2_000):
            rec(event)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(rec) == 16_000
    assert len(list(rec)) == 16_000
    assert rec.of(CallFailed) == []
    rec.clear()
    assert rec.names == []


# -- set_testing ------------------------------------------------------------------------------


def test_set_testing_caps_attempts_and_drops_delays(run, clock):
    """In test mode a retry makes at most `attempts` tries and never sleeps."""
    fn = Flaky(*[OSError(str(i)) for i in range(5)])
    rec = RecordingListener()
    retry = fixed(attempts=5, clock=clock, listeners=[rec])
    with set_testing(True, attempts=2), pytest.raises(OSError, match="1"):
        run(retry, fn)
    assert fn.calls == 2
    assert clock.sleeps == [0.0]
    assert [e.delay for e in rec.of(RetryScheduled)] == [0.0]
    assert TESTING.enabled is False


def test_set_testing_defaults_to_a_single_attempt(run, clock):
    """set_testing() with no arguments means: no retries at all; it acts without `with`."""
    mode = set_testing()
    assert (mode.enabled, mode.attempts) == (True, 1)
    fn = Flaky(OSError())
    with pytest.raises(OSError):
        run(fixed(clock=clock), fn)
    assert fn.calls == 1
    assert clock.sleeps == []


def test_set_testing_without_cap_keeps_attempts(run, clock):
    """attempts=None keeps each retry's own count and only drops the delays."""
    fn = Flaky(OSError(), OSError(), OSError())
    with set_testing(attempts=None):
        assert run(fixed(attempts=4, clock=clock), fn) == "ok"
    assert fn.calls == 4
    assert clock.sleeps == [0.0, 0.0, 0.0]


def test_set_testing_never_raises_a_retry_count(run, clock):
    """The cap only lowers: a retry configured with fewer attempts keeps them."""
    fn = Flaky(OSError(), OSError())
    with set_testing(attempts=10), pytest.raises(OSError):
        run(fixed(attempts=2, clock=clock), fn)
    assert fn.calls == 2


def test_set_testing_nests_and_restores():
    """Leaving a `with set_testing(...)` restores the mode in force before it."""
    with set_testing(True, attempts=3):
        with set_testing(False):
            assert TESTING.enabled is False
        assert (TESTING.enabled, TESTING.attempts) == (True, 3)
    assert TESTING.enabled is False


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        pytest.param({"attempts": 0}, "attempts", id="zero"),
        pytest.param({"attempts": True}, "attempts", id="bool"),
        pytest.param({"attempts": 1.5}, "attempts", id="float"),
        pytest.param({"enabled": "yes"}, "enabled", id="enabled"),
    ],
)
def test_set_testing_validates(kwargs, path):
    """Bad arguments raise ConfigError and leave the mode unchanged."""
    with pytest.raises(rs.ConfigError, match=path):
        set_testing(**kwargs)
    assert TESTING.enabled is False


# -- import cost ------------------------------------------------------------------------------


def test_observability_imports_no_metrics_library():
    """Importing resilient.observability (and the listener names) imports no optional
    library; constructing a listener does."""
    code = (
        "import sys, resilient, resilient.observability as o, resilient.testing\n"
        "mods = ('prometheus_client', 'opentelemetry', 'structlog')\n"
        "assert not [m for m in mods if m in sys.modules], sys.modules.keys()\n"
        "cls = o.PrometheusListener; o.OpenTelemetryListener; o.StructlogListener\n"
        "assert not [m for m in mods if m in sys.modules]\n"
        "cls()\n"
        "assert 'prometheus_client' in sys.modules\n"
        "assert 'opentelemetry' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_observability_attribute():
    """A missing name still raises AttributeError."""
    import resilient.observability as obs

    with pytest.raises(AttributeError, match="Nope"):
        obs.Nope  # noqa: B018
    assert "PrometheusListener" in dir(obs)


@pytest.mark.parametrize("module", ["resilient.observability", "resilient.testing"])
def test_all_is_sorted_and_resolvable(module):
    """__all__ is sorted and every name in it resolves (lazy ones included)."""
    import importlib

    mod = importlib.import_module(module)
    assert mod.__all__ == sorted(mod.__all__, key=str.casefold)
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_logging_levels_of_custom_events(caplog):
    """A subclass logs at its base's level; an event type of its own at INFO."""

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class HedgeScheduled(RetryScheduled):
        event_name = "hedge_scheduled"

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class CacheHit(Event):
        event_name = "cache_hit"

    caplog.set_level(logging.DEBUG, logger="resilient")
    listener = LoggingListener(levels={RetryScheduled: logging.WARNING})
    listener(HedgeScheduled(policy="h", kind="hedge", at=0, attempt=1, delay=0.05))
    listener(CacheHit(policy="c", kind="cache", at=0))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "hedge 'h': attempt 1 failed (result rejected); retrying in 0.050s"),
        (logging.INFO, "cache 'c': cache_hit"),
    ]
    assert "call_events=False" in repr(listener)
