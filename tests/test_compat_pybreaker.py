"""resilient.compat.pybreaker: a pybreaker driven as a resilient policy (sync and async,
correct accounting, no lock over the call, bridged events), and migrate() building a
resilient.CircuitBreaker that behaves like the pybreaker, on fake time."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import threading
from collections.abc import Iterator
from typing import Any

import pybreaker
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient as rs
from resilient import CircuitState
from resilient.compat.pybreaker import (
    NEVER_SLOW,
    UNREACHABLE_CALLS,
    PyBreakerOpenError,
    PyBreakerPolicy,
    migrate,
    pybreaker_clock,
    state_of,
    wrap,
)
from resilient.observability import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    Event,
)
from resilient.testing import FakeClock, RecordingListener

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class Abort(BaseException):
    """Stands for cancellation / KeyboardInterrupt."""


class BusinessError(Exception):
    """Excluded from the breaker's accounting."""


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    with pybreaker_clock(fake):
        yield fake


def ok() -> str:
    return "ok"


def boom() -> str:
    raise ConnectionError("down")


def raises(exc: BaseException) -> Any:
    def fn() -> Any:
        raise exc

    return fn


def fail(run: Any, policy: Any, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            run(policy, boom)


def make(clock: FakeClock, **kw: Any) -> tuple[pybreaker.CircuitBreaker, PyBreakerPolicy]:
    kw.setdefault("fail_max", 3)
    kw.setdefault("reset_timeout", 10)
    legacy = pybreaker.CircuitBreaker(**kw)
    return legacy, wrap(legacy, clock=clock)


# ------------------------------------------------------------------ wrap: the state machine


def test_opens_after_fail_max_and_rejects_with_retry_after(run: Any, clock: FakeClock) -> None:
    legacy, policy = make(clock)
    fail(run, policy, 2)
    assert policy.state is CLOSED
    assert legacy.fail_counter == 2
    fail(run, policy)  # the tripping call raises its own exception
    assert policy.state is OPEN
    clock.advance(4)
    with pytest.raises(PyBreakerOpenError) as info:
        run(policy, ok)
    err = info.value
    assert isinstance(err, rs.CircuitOpenError)
    assert isinstance(err, pybreaker.CircuitBreakerError)
    assert err.reason == "circuit_open"
    assert err.retry_after == pytest.approx(6.0)
    assert err.retry_after >= 6.0


def test_waiting_exactly_retry_after_is_enough(run: Any, clock: FakeClock) -> None:
    _, policy = make(clock, fail_max=1, reset_timeout=2.5)
    fail(run, policy)
    clock.advance(0.7)
    with pytest.raises(PyBreakerOpenError) as info:
        run(policy, ok)
    assert info.value.retry_after is not None
    clock.advance(info.value.retry_after)
    assert run(policy, ok) == "ok"
    assert policy.state is CLOSED


def test_probe_success_closes_and_failure_reopens(run: Any, clock: FakeClock) -> None:
    legacy, policy = make(clock, fail_max=1)
    fail(run, policy)
    clock.advance(10)
    fail(run, policy)  # the probe fails: open again, for another reset_timeout
    assert policy.state is OPEN
    clock.advance(9.5)
    with pytest.raises(PyBreakerOpenError):
        run(policy, ok)
    clock.advance(0.5)
    assert run(policy, ok) == "ok"
    assert policy.state is CLOSED
    assert legacy.fail_counter == 0


def test_success_threshold_needs_that_many_probe_successes(run: Any, clock: FakeClock) -> None:
    legacy, policy = make(clock, fail_max=1, success_threshold=3)
    fail(run, policy)
    clock.advance(10)
    for _ in range(2):
        assert run(policy, ok) == "ok"
        assert policy.state is HALF_OPEN
    assert run(policy, ok) == "ok"
    assert policy.state is CLOSED
    assert legacy.success_counter == 0


def test_awaited_failures_count_unlike_pybreaker_itself(clock: FakeClock) -> None:
    legacy = pybreaker.CircuitBreaker(fail_max=3, reset_timeout=10)

    async def fetch() -> None:
        raise ConnectionError

    async def direct() -> None:
        for _ in range(5):
            with pytest.raises(ConnectionError):
                await legacy.call(fetch)

    asyncio.run(direct())
    # pybreaker recorded the coroutine's creation as a success: still closed.
    assert (legacy.current_state, legacy.fail_counter) == ("closed", 0)

    policy = wrap(legacy, clock=clock)

    async def wrapped() -> None:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await policy.acall(fetch)
        with pytest.raises(PyBreakerOpenError):
            await policy.acall(fetch)

    asyncio.run(wrapped())
    assert legacy.current_state == "open"


def test_async_success_is_recorded_after_the_await(clock: FakeClock) -> None:
    legacy, policy = make(clock, fail_max=1)
    legacy.open()
    clock.advance(10)
    states: list[str] = []

    async def probe() -> str:
        await asyncio.sleep(0)
        states.append(legacy.current_state)  # still half-open while the probe runs
        return "ok"

    assert asyncio.run(policy.acall(probe)) == "ok"
    assert states == ["half-open"]
    assert policy.state is CLOSED


def test_no_lock_is_held_while_calls_run_threads(clock: FakeClock) -> None:
    _, policy = make(clock)
    barrier = threading.Barrier(4, timeout=10)
    results: list[int] = []

    def meet() -> int:
        return barrier.wait()  # deadlocks if the calls are serialised

    def worker() -> None:
        results.append(policy.call(meet))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1, 2, 3]


def test_no_lock_is_held_across_an_await(clock: FakeClock) -> None:
    _, policy = make(clock)

    async def main() -> list[str]:
        inside = asyncio.Event()
        release = asyncio.Event()
        locked: list[bool] = []

        async def first() -> str:
            inside.set()
            await release.wait()
            return "first"

        async def second() -> str:
            locked.append(policy.breaker._lock._is_owned())  # type: ignore[attr-defined]
            release.set()
            return "second"

        task = asyncio.create_task(policy.acall(first))
        await inside.wait()
        done = [await policy.acall(second), await task]
        assert locked == [False]
        return done

    assert asyncio.run(main()) == ["second", "first"]


# --------------------------------------------------------------------------- wrap: half-open probes


def test_half_open_admits_one_probe_and_rejects_the_others(clock: FakeClock) -> None:
    _, policy = make(clock, fail_max=1)
    with pytest.raises(ConnectionError):
        policy.call(boom)
    clock.advance(10)

    async def main() -> tuple[str, BaseException]:
        release = asyncio.Event()
        started = asyncio.Event()

        async def slow_probe() -> str:
            started.set()
            await release.wait()
            return "probe"

        task = asyncio.create_task(policy.acall(slow_probe))
        await started.wait()
        try:
            await policy.acall(asyncio.sleep, 0)
        except PyBreakerOpenError as exc:
            rejected: BaseException = exc
        release.set()
        return await task, rejected

    result, rejected = asyncio.run(main())
    assert result == "probe"
    assert isinstance(rejected, PyBreakerOpenError)
    assert rejected.reason == "half_open_full"
    assert rejected.retry_after is None
    assert policy.state is CLOSED


def test_a_hung_probe_is_forgotten_after_probe_timeout(clock: FakeClock) -> None:
    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10)
    policy = wrap(legacy, clock=clock, probe_timeout="5s")
    with pytest.raises(ConnectionError):
        policy.call(boom)
    clock.advance(10)
    log: list[str] = []

    def hung_probe() -> str:
        # While this probe "hangs", time passes and another caller comes in.
        with pytest.raises(PyBreakerOpenError):
            policy.call(ok)
        clock.advance(5)
        log.append(policy.call(ok))  # a new probe: it closes the breaker
        raise ConnectionError("late")

    with pytest.raises(ConnectionError, match="late"):
        policy.call(hung_probe)
    assert log == ["ok"]
    assert policy.state is CLOSED  # the stale probe's failure was not counted
    assert legacy.fail_counter == 0


def test_a_stale_probe_ending_during_the_next_probe_is_ignored(clock: FakeClock) -> None:
    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10)
    policy = wrap(legacy, clock=clock, probe_timeout=5)
    legacy.open()
    clock.advance(10)

    async def main() -> list[str]:
        gates = [asyncio.Event(), asyncio.Event()]
        started = [asyncio.Event(), asyncio.Event()]
        log: list[str] = []

        async def probe(n: int, fails: bool) -> str:
            started[n].set()
            await gates[n].wait()
            if fails:
                raise ConnectionError(f"probe {n}")
            return f"probe {n}"

        async def third() -> str:
            return "third"

        stale = asyncio.create_task(policy.acall(probe, 0, True))
        await started[0].wait()
        clock.advance(5)  # the first probe is now presumed lost
        fresh = asyncio.create_task(policy.acall(probe, 1, False))
        await started[1].wait()
        gates[0].set()
        with contextlib.suppress(ConnectionError):
            await stale
        log.append(legacy.current_state)  # the stale failure did not re-open it
        try:
            await policy.acall(third)
        except PyBreakerOpenError as exc:
            log.append(exc.reason)  # the fresh probe still holds the place
        gates[1].set()
        log.append(await fresh)
        return log

    assert asyncio.run(main()) == ["half-open", "half_open_full", "probe 1"]
    assert policy.state is CLOSED


@pytest.mark.parametrize("exc", [Abort(), asyncio.CancelledError(), KeyboardInterrupt()])
def test_cancellation_frees_the_probe_and_is_not_counted(
    run: Any, clock: FakeClock, exc: BaseException
) -> None:
    legacy, policy = make(clock, fail_max=2)
    with pytest.raises(type(exc)):
        run(policy, raises(exc))
    assert legacy.fail_counter == 0
    legacy.open()
    clock.advance(10)
    with pytest.raises(type(exc)):
        run(policy, raises(exc))
    assert legacy.current_state == "half-open"
    assert run(policy, ok) == "ok"  # the probe's place was given back
    assert policy.state is CLOSED


def test_a_late_verdict_from_an_earlier_state_is_dropped(clock: FakeClock) -> None:
    legacy, policy = make(clock, fail_max=2)

    def slow_failure() -> None:
        fail(lambda p, f: p.call(f), policy, 2)  # meanwhile, the breaker trips
        assert legacy.current_state == "open"
        raise ConnectionError("late")

    with pytest.raises(ConnectionError, match="late"):
        policy.call(slow_failure)
    assert legacy.fail_counter == 2  # the late failure did not count again


def test_excluded_exceptions_count_as_success_as_in_pybreaker(run: Any, clock: FakeClock) -> None:
    legacy, policy = make(clock, exclude=[BusinessError, lambda e: "benign" in str(e)])
    fail(run, policy, 2)
    with pytest.raises(BusinessError):
        run(policy, raises(BusinessError()))
    assert legacy.fail_counter == 0
    fail(run, policy, 2)
    with pytest.raises(ValueError, match="benign"):
        run(policy, raises(ValueError("benign")))
    assert legacy.fail_counter == 0


def test_trip_error_is_swallowed_even_without_a_new_error(run: Any, clock: FakeClock) -> None:
    legacy, policy = make(clock, fail_max=1, throw_new_error_on_trip=False)
    fail(run, policy)
    assert legacy.current_state == "open"
    clock.advance(10)
    fail(run, policy)
    assert legacy.current_state == "open"


def test_the_caller_sees_a_traceback_without_pybreaker_frames(clock: FakeClock) -> None:
    _, policy = make(clock, fail_max=1)
    with pytest.raises(ConnectionError) as info:
        policy.call(boom)
    frames = [str(entry.path) for entry in info.traceback]
    assert not any(name.endswith("pybreaker/__init__.py") for name in frames)


# ------------------------------------------------------------------ wrap: events and listeners


def test_events_state_changes_rejections_and_calls(run: Any, clock: FakeClock) -> None:
    rec = RecordingListener()
    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10, name="db")
    policy = wrap(legacy, clock=clock, listeners=[rec])
    assert policy.name == "db"
    assert run(policy, ok) == "ok"
    fail(run, policy)
    with pytest.raises(PyBreakerOpenError):
        run(policy, ok)
    clock.advance(10)
    assert run(policy, ok) == "ok"
    assert rec.names == [
        "call_succeeded",
        "circuit_state_changed",
        "call_failed",
        "call_rejected",
        "circuit_state_changed",
        "circuit_state_changed",
        "call_succeeded",
    ]
    changes = [(e.old, e.new) for e in rec.of(CircuitStateChanged)]
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert all(e.policy == "db" and e.kind == "circuit_breaker" for e in rec)
    (rejected,) = rec.of(CallRejected)
    assert (rejected.reason, rejected.retry_after) == ("circuit_open", 10.0)
    assert isinstance(rec.of(CallFailed)[0].exception, ConnectionError)
    assert rec.of(CallSucceeded)[0].duration == 0.0


def test_events_are_emitted_outside_the_pybreakers_lock(clock: FakeClock) -> None:
    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10)
    held: list[bool] = []

    def listener(event: Event) -> None:
        held.append(legacy._lock._is_owned())  # type: ignore[attr-defined]

    policy = wrap(legacy, clock=clock, listeners=[listener])
    with pytest.raises(ConnectionError):
        policy.call(boom)
    clock.advance(10)
    policy.call(ok)
    assert len(held) >= 4
    assert not any(held)


def test_a_pybreaker_listener_reading_the_wrapper_loses_no_event(clock: FakeClock) -> None:
    rec = RecordingListener()
    seen: list[str] = []
    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10)
    policy = wrap(legacy, clock=clock, listeners=[rec])

    class Reader(pybreaker.CircuitBreakerListener):
        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            policy.state  # noqa: B018 - re-enters the wrapper while it buffers events
            seen.append(new.name)

    legacy.add_listener(Reader())
    with pytest.raises(ConnectionError):
        policy.call(boom)
    clock.advance(10)
    policy.call(ok)
    assert seen == ["open", "half-open", "closed"]
    assert [(e.old, e.new) for e in rec.of(CircuitStateChanged)] == [
        (CLOSED, OPEN),
        (OPEN, HALF_OPEN),
        (HALF_OPEN, CLOSED),
    ]


def test_state_changes_made_elsewhere_are_bridged(clock: FakeClock) -> None:
    rec = RecordingListener()
    legacy, _ = make(clock)
    wrap(legacy, clock=clock, listeners=[rec])
    legacy.open()
    legacy.close()
    assert [(e.old, e.new) for e in rec.of(CircuitStateChanged)] == [
        (CLOSED, OPEN),
        (OPEN, CLOSED),
    ]


def test_detach_stops_the_bridge(clock: FakeClock) -> None:
    rec = RecordingListener()
    legacy = pybreaker.CircuitBreaker()
    policy = wrap(legacy, clock=clock, listeners=[rec])
    policy.detach()
    policy.detach()  # idempotent
    legacy.open()
    assert rec.of(CircuitStateChanged) == []
    assert legacy.listeners == ()


def test_pybreaker_listeners_keep_firing(run: Any, clock: FakeClock) -> None:
    log: list[str] = []

    class Legacy(pybreaker.CircuitBreakerListener):
        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            log.append(f"before {args}")

        def success(self, cb: Any) -> None:
            log.append("success")

        def failure(self, cb: Any, exc: BaseException) -> None:
            log.append(f"failure {type(exc).__name__}")

        def state_change(self, cb: Any, old: Any, new: Any) -> None:
            log.append(f"{old.name} -> {new.name}")

    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10, listeners=[Legacy()])
    policy = wrap(legacy, clock=clock)
    assert run(policy, lambda x: x, 1) == 1
    fail(run, policy)
    assert log == [
        "before (1,)",
        "success",
        "before ()",
        "failure ConnectionError",
        "closed -> open",
    ]


def test_a_raising_before_call_listener_frees_the_probe(clock: FakeClock) -> None:
    class Grumpy(pybreaker.CircuitBreakerListener):
        armed = True

        def before_call(self, cb: Any, func: Any, *args: Any, **kwargs: Any) -> None:
            if self.armed:
                raise RuntimeError("listener")

    grumpy = Grumpy()
    legacy = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=10, listeners=[grumpy])
    legacy.open()
    clock.advance(10)
    policy = wrap(legacy, clock=clock)
    with pytest.raises(RuntimeError, match="listener"):
        policy.call(ok)
    grumpy.armed = False
    assert policy.call(ok) == "ok"


# --------------------------------------------------------------------------- wrap: misc


def test_wrap_is_a_policy_decorator_and_pipeline_member(clock: FakeClock) -> None:
    _, policy = make(clock, fail_max=1)
    assert isinstance(policy, rs.Policy)

    @policy
    def fetch() -> str:
        raise ConnectionError

    @policy
    async def afetch() -> str:
        return "async"

    with pytest.raises(ConnectionError):
        fetch()
    with pytest.raises(PyBreakerOpenError):
        asyncio.run(afetch())
    retry = rs.Retry(attempts=3, retry_on=ConnectionError, clock=clock)
    with pytest.raises(PyBreakerOpenError):
        rs.Pipeline(retry, policy).call(ok)  # rejections are not retried
    assert clock.sleeps == []


def test_state_and_repr(clock: FakeClock) -> None:
    legacy, policy = make(clock)
    assert policy.state is CLOSED
    assert repr(policy) == "PyBreakerPolicy(name='circuit_breaker', state='closed')"
    legacy.half_open()
    assert policy.state is HALF_OPEN
    assert state_of("half-open") is HALF_OPEN
    assert state_of(None) is None


def test_an_open_breaker_without_opened_at_lets_a_probe_through(clock: FakeClock) -> None:
    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_OPEN)
    legacy = pybreaker.CircuitBreaker(fail_max=1, state_storage=storage)
    policy = wrap(legacy, clock=clock)
    assert policy.call(ok) == "ok"
    assert policy.state is CLOSED


def test_open_error_pickles() -> None:
    err = PyBreakerOpenError("db", reason="circuit_open", retry_after=1.5)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is PyBreakerOpenError
    assert (copy.policy, copy.reason, copy.retry_after) == ("db", "circuit_open", 1.5)


def test_wrap_rejects_other_objects() -> None:
    with pytest.raises(rs.ConfigError):
        wrap(object())  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError):
        wrap(pybreaker.CircuitBreaker(), probe_timeout=0)


# --------------------------------------------------------------------------- migrate


def test_migrate_maps_the_settings() -> None:
    legacy = pybreaker.CircuitBreaker(fail_max=4, reset_timeout=30, name="payments")
    cb = migrate(legacy)
    cfg = cb.config
    assert cb.name == "payments"
    assert cfg.consecutive_failures == 4
    assert cfg.open_for == 30.0
    assert cfg.half_open_calls == 1
    assert cfg.failure_rate == 1.0
    assert cfg.window == rs.CountWindow(4)
    assert cfg.minimum_calls == 4
    assert cfg.slow_call_duration == NEVER_SLOW


def test_migrate_with_a_success_threshold() -> None:
    cfg = migrate(pybreaker.CircuitBreaker(fail_max=2, success_threshold=4)).config
    assert cfg.half_open_calls == 4
    assert cfg.failure_rate == 0.25
    assert cfg.minimum_calls == UNREACHABLE_CALLS


def test_migrate_overrides_apply_last() -> None:
    clock = FakeClock()
    cb = migrate(pybreaker.CircuitBreaker(), clock=clock, open_for="5s", name="x")
    assert cb.clock is clock
    assert cb.config.open_for == 5.0
    assert cb.name == "x"


def test_migrate_refuses_to_lose_listeners_or_shared_state() -> None:
    legacy = pybreaker.CircuitBreaker(listeners=[pybreaker.CircuitBreakerListener()])
    with pytest.raises(rs.ConfigError) as info:
        migrate(legacy)
    assert info.value.path == "listeners"
    assert migrate(legacy, listeners=[RecordingListener()]).config.consecutive_failures == 5

    class SharedStorage(pybreaker.CircuitBreakerStorage):
        """Stands for CircuitRedisStorage (state shared between processes)."""

        state = "closed"
        counter = success_counter = 0
        opened_at = None

    with pytest.raises(rs.ConfigError) as info:
        migrate(pybreaker.CircuitBreaker(state_storage=SharedStorage("shared")))
    assert info.value.path == "state_storage"
    with pytest.raises(rs.ConfigError):
        migrate(object())  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError):
        migrate(pybreaker.CircuitBreaker(), excluded="maybe")  # type: ignore[arg-type]


def test_migrate_ignores_the_wrappers_own_bridge() -> None:
    legacy = pybreaker.CircuitBreaker()
    wrap(legacy)
    assert migrate(legacy).config.consecutive_failures == 5


def test_migrate_excluded_as_ignore_does_not_reset_the_streak(run: Any) -> None:
    clock = FakeClock()
    legacy = pybreaker.CircuitBreaker(fail_max=3, exclude=[BusinessError])
    as_success = migrate(legacy, clock=clock)
    as_ignored = migrate(legacy, clock=clock, excluded="ignore")
    for cb in (as_success, as_ignored):
        fail(run, cb, 2)
        with pytest.raises(BusinessError):
            run(cb, raises(BusinessError()))
        fail(run, cb)
    assert as_success.state is CLOSED  # the business error broke the streak
    assert as_ignored.state is OPEN


# One step of a scripted scenario: a call outcome, or time passing.
STEP = st.one_of(
    st.sampled_from(["ok", "fail", "excluded"]),
    st.sampled_from([0.5, 1.0, 4.0, 10.0, 25.0]),
)


def replay(steps: list[Any], fail_max: int, reset: float, threshold: int, how: str) -> list[Any]:
    """Run *steps* through a pybreaker itself (*how* = "pybreaker"), its wrapper ("wrap")
    or its migrated replacement ("migrate"): (ran / rejected, state) after each call."""
    clock = FakeClock()
    trace: list[tuple[str, str]] = []
    with pybreaker_clock(clock):
        legacy = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset,
            success_threshold=threshold,
            exclude=[BusinessError],
        )
        policy: Any = {
            "pybreaker": legacy,
            "wrap": wrap(legacy, clock=clock),
            "migrate": migrate(legacy, clock=clock),
        }[how]
        for step in steps:
            if isinstance(step, float):
                clock.advance(step)
                continue
            ran = []

            def fn(step: str = step, ran: list[int] = ran) -> str:
                ran.append(1)
                if step == "fail":
                    raise ConnectionError
                if step == "excluded":
                    raise BusinessError
                return "ok"

            rejections = (pybreaker.CircuitBreakerError, rs.CircuitOpenError)
            with contextlib.suppress(ConnectionError, BusinessError, *rejections):
                policy.call(fn)
            state = state_of(legacy.current_state) if how == "pybreaker" else policy.state
            trace.append(("ran" if ran else "rejected", state.value))
    return trace


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(STEP, max_size=40),
    fail_max=st.integers(1, 4),
    reset=st.sampled_from([1.0, 10.0, 30.0]),
    threshold=st.integers(1, 3),
)
def test_wrapped_and_migrated_breakers_behave_like_pybreaker(
    steps: list[Any], fail_max: int, reset: float, threshold: int
) -> None:
    expected = replay(steps, fail_max, reset, threshold, "pybreaker")
    assert replay(steps, fail_max, reset, threshold, "wrap") == expected
    assert replay(steps, fail_max, reset, threshold, "migrate") == expected
