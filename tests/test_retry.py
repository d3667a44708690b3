"""Retry: same bodies through call and acall (the `run` fixture), on a fake clock."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

import resilient as rs
from resilient.observability import RetryScheduled
from resilient.testing import FakeClock, RecordingListener


class Flaky:
    """Fails with the given exceptions, one per call, then returns ``value``."""

    def __init__(self, *errors: BaseException, value: Any = "ok") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.args = (args, kwargs)
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def no_jitter(**kw: Any) -> rs.Retry:
    kw.setdefault("backoff", rs.Backoff.exponential(initial=1.0, maximum=100.0, jitter="none"))
    return rs.Retry(**kw)


def test_success_first_try_does_not_sleep(run, clock):
    fn = Flaky()
    assert run(rs.Retry(clock=clock), fn, 1, b=2) == "ok"
    assert fn.calls == 1
    assert fn.args == ((1,), {"b": 2})
    assert clock.sleeps == []


def test_retries_transient_errors_with_exponential_delays(run, clock):
    fn = Flaky(OSError("a"), ConnectionError("b"), TimeoutError("c"))
    retry = no_jitter(attempts=4, clock=clock)
    assert run(retry, fn) == "ok"
    assert fn.calls == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_attempts_count_all_tries_and_last_error_is_reraised_with_note(run, clock):
    errors = [OSError(f"e{i}") for i in range(3)]
    fn = Flaky(*errors)
    with pytest.raises(OSError, match="e2") as info:
        run(no_jitter(attempts=3, clock=clock, name="db"), fn)
    assert info.value is errors[2]
    assert fn.calls == 3
    assert any("gave up after 3 attempts" in n and "'db'" in n for n in info.value.__notes__)
    assert clock.sleeps == [1.0, 2.0]


def test_non_matching_exception_is_not_retried(run, clock):
    fn = Flaky(ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        run(rs.Retry(clock=clock), fn)
    assert fn.calls == 1
    assert clock.sleeps == []


def test_retry_on_predicate(run, clock):
    fn = Flaky(ValueError("again"), ValueError("stop"))
    retry = no_jitter(retry_on=lambda e: str(e) == "again", clock=clock)
    with pytest.raises(ValueError, match="stop"):
        run(retry, fn)
    assert fn.calls == 2


@pytest.mark.parametrize(
    "error",
    [
        rs.CircuitOpenError("b", retry_after=1.0),
        rs.RateLimitedError("l", retry_after=0.5),
        rs.BulkheadFullError("k"),
    ],
)
def test_rejections_are_not_retried_by_default(run, clock, error):
    fn = Flaky(error)
    with pytest.raises(type(error)):
        run(rs.Retry(retry_on=Exception, clock=clock), fn)
    assert fn.calls == 1


def test_rejections_retried_when_asked_and_hint_wins(run, clock):
    fn = Flaky(rs.RateLimitedError("l", retry_after=0.25))
    retry = no_jitter(retry_on=Exception, retry_rejected=True, clock=clock)
    assert run(retry, fn) == "ok"
    assert clock.sleeps == [0.25]


class HintedError(OSError):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after}")
        self.retry_after = retry_after


def test_server_hint_replaces_backoff_and_is_capped_by_max_retry_after(run, clock):
    fn = Flaky(HintedError(5.0), HintedError(500.0))
    retry = no_jitter(attempts=3, max_retry_after=60, clock=clock)
    assert run(retry, fn) == "ok"
    assert clock.sleeps == [5.0, 60.0]


def test_negative_hint_means_do_not_retry(run, clock):
    fn = Flaky(HintedError(-1.0))
    with pytest.raises(HintedError) as info:
        run(rs.Retry(clock=clock), fn)
    assert fn.calls == 1
    assert "asked not to retry" in info.value.__notes__[-1]


def test_custom_retry_after_reader(run, clock):
    fn = Flaky(OSError("x"))
    retry = rs.Retry(retry_after=lambda outcome: 7.0, clock=clock)
    assert run(retry, fn) == "ok"
    assert clock.sleeps == [7.0]


def test_deadline_never_slept_past(run, clock):
    fn = Flaky(*[OSError(str(i)) for i in range(10)])
    retry = no_jitter(attempts=10, deadline=5.0, clock=clock)
    with pytest.raises(OSError) as info:
        run(retry, fn)
    # delays 1 + 2 = 3; the next (4) would end at 7 > 5.
    assert clock.sleeps == [1.0, 2.0]
    assert clock.monotonic() <= 5.0
    assert "deadline" in info.value.__notes__[-1]


def test_deadline_caps_server_hint(run, clock):
    fn = Flaky(HintedError(30.0))
    with pytest.raises(HintedError):
        run(rs.Retry(deadline=10, clock=clock), fn)
    assert clock.sleeps == []


def test_deadline_is_published_to_remaining(run, clock):
    seen = []

    def fn() -> str:
        seen.append(rs.remaining())
        clock.advance(1.5)
        if len(seen) < 2:
            raise OSError
        return "ok"

    retry = no_jitter(deadline=10.0, clock=clock)
    assert run(retry, fn) == "ok"
    assert seen == [10.0, 7.5]  # 10 - 1.5 (first call) - 1.0 (sleep)
    assert rs.remaining() is None


class Response:
    def __init__(self, status: int) -> None:
        self.status = status
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_retry_if_result_retries_and_closes_discarded_results(run, clock):
    responses = [Response(503), Response(503), Response(200)]
    fn = Flaky()
    fn.value = None

    def call() -> Response:
        return responses[fn.calls - 1] if fn() is None else responses[0]

    retry = no_jitter(retry_if=lambda r: r.status == 503, clock=clock)
    result = run(retry, call)
    assert result is responses[2]
    assert [r.closed for r in responses] == [True, True, False]


def test_retry_if_exhausted_returns_last_result_unclosed(run, clock):
    responses = iter([Response(503), Response(503)])
    retry = no_jitter(attempts=2, retry_if=lambda r: r.status == 503, clock=clock)
    result = run(retry, lambda: next(responses))
    assert result.status == 503
    assert result.closed is False


def test_async_result_closed_with_aclose():
    class AsyncResponse:
        def __init__(self) -> None:
            self.aclosed = False

        async def aclose(self) -> None:
            self.aclosed = True

    made: list[AsyncResponse] = []

    async def fn() -> AsyncResponse:
        made.append(AsyncResponse())
        return made[-1]

    clock = FakeClock()
    retry = rs.Retry(attempts=2, retry_if=lambda r: True, clock=clock)
    result = asyncio.run(retry.acall(fn))
    assert result is made[1]
    assert [r.aclosed for r in made] == [True, False]


def test_custom_backoff_callable(run, clock):
    fn = Flaky(OSError(), OSError())
    retry = rs.Retry(backoff=lambda n: n * 0.5, clock=clock)
    assert run(retry, fn) == "ok"
    assert clock.sleeps == [0.5, 1.0]


def test_custom_backoff_returning_garbage_is_a_clear_error(run, clock):
    fn = Flaky(OSError())
    retry = rs.Retry(backoff=lambda n: -1, clock=clock)
    with pytest.raises(rs.ConfigError, match="backoff"):
        run(retry, fn)


def test_retry_scheduled_events(run, clock):
    recorder = RecordingListener()
    fn = Flaky(OSError("x"))
    retry = no_jitter(clock=clock, listeners=[recorder], name="api")
    run(retry, fn)
    (event,) = recorder.of(RetryScheduled)
    assert (event.policy, event.attempt, event.delay) == ("api", 1, 1.0)
    assert isinstance(event.cause, OSError)


def test_cancellation_is_not_retried_or_counted():
    clock = FakeClock()
    started = asyncio.Event()
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()

    async def main() -> None:
        task = asyncio.create_task(rs.Retry(retry_on=BaseException, clock=clock).acall(slow))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == 1
    assert clock.sleeps == []


def test_keyboard_interrupt_passes_through_sync(clock):
    fn = Flaky(KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        rs.Retry(retry_on=BaseException, clock=clock).call(fn)
    assert fn.calls == 1


def test_cancellation_during_backoff_sleep_stops_retrying():
    clock = FakeClock()
    calls = 0

    class BlockingClock(FakeClock):
        async def asleep(self, seconds: float) -> None:
            await asyncio.Event().wait()

    blocking = BlockingClock()

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise OSError

    async def main() -> None:
        task = asyncio.create_task(rs.Retry(clock=blocking).acall(failing))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == 1
    assert clock.sleeps == []


def test_decorator_sync_and_async_keep_metadata(clock):
    retry = rs.Retry(clock=clock)
    fn = Flaky(OSError())

    @retry
    def get(x: int) -> str:
        """Doc."""
        return f"{fn()}-{x}"

    @retry
    async def aget(x: int) -> str:
        return f"{fn()}-{x}"

    assert get(1) == "ok-1"
    assert get.__name__ == "get"
    assert get.__doc__ == "Doc."
    assert asyncio.run(aget(2)) == "ok-2"
    assert asyncio.iscoroutinefunction(aget)


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": 2.5}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"retry_on": 42}, "retry_on"),
        ({"retry_on": (ValueError, int)}, "retry_on"),
        ({"retry_if": 3}, "retry_if"),
        ({"deadline": "10 parsecs"}, "deadline"),
        ({"deadline": 0}, "deadline"),
        ({"max_retry_after": -1}, "max_retry_after"),
        ({"backoff": "fast"}, "backoff"),
        ({"name": ""}, "name"),
        ({"clock": object()}, "clock"),
        ({"listeners": [1]}, "listeners"),
    ],
)
def test_bad_arguments_raise_config_error_naming_them(kwargs, path):
    with pytest.raises(rs.ConfigError) as info:
        rs.Retry(**kwargs)
    assert info.value.path == path
    assert isinstance(info.value, ValueError)
    assert path in str(info.value)


def test_set_testing_disables_backoff_and_caps_attempts():
    from resilient._retry import TESTING

    clock = FakeClock()
    fn = Flaky(*[OSError() for _ in range(5)])
    TESTING.enabled, TESTING.attempts = True, 2
    try:
        with pytest.raises(OSError):
            no_jitter(attempts=5, clock=clock).call(fn)
    finally:
        TESTING.enabled, TESTING.attempts = False, None
    assert fn.calls == 2
    assert clock.sleeps == [0.0]


def test_retry_inside_pipeline_with_attempt_timeout(run, clock):
    calls = []

    def fn() -> str:
        calls.append(clock.monotonic())
        if len(calls) == 1:
            clock.advance(3.0)  # blows the 2 s attempt budget (sync: raised after return)
            if run.is_async:
                raise rs.TimeoutExceededError("attempt", 2.0)
        return "ok"

    pipeline = rs.Pipeline(no_jitter(clock=clock), rs.Timeout(2.0, clock=clock, name="attempt"))
    assert run(pipeline, fn) == "ok"
    assert len(calls) == 2
    assert math.isclose(calls[1], 4.0)
