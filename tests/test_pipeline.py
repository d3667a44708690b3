"""Pipeline composition order, nesting, decorators, validation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import resilient as rs


class Trace:
    """A user-written policy (no base class) that records entry and exit."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"{self.name}>")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"<{self.name}")


def test_outermost_first_and_arguments_pass_through(run):
    log: list[str] = []
    pipeline = rs.Pipeline(Trace("a", log), Trace("b", log), Trace("c", log))
    assert run(pipeline, lambda x, *, y: x + y, 1, y=2) == 3
    assert log == ["a>", "b>", "c>", "<c", "<b", "<a"]


def test_pipelines_nest(run):
    log: list[str] = []
    inner = rs.Pipeline(Trace("b", log), Trace("c", log))
    outer = rs.Pipeline(Trace("a", log), inner, Trace("d", log))
    assert run(outer, lambda: "x") == "x"
    assert log == ["a>", "b>", "c>", "d>", "<d", "<c", "<b", "<a"]
    assert len(outer) == 3
    assert tuple(inner) == inner.policies


def test_empty_pipeline_just_calls(run):
    assert run(rs.Pipeline(), lambda: 42) == 42


def test_retry_around_attempt_runs_each_try_through_inner_policies(run, clock):
    log: list[str] = []
    calls = iter([OSError(), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        return item

    pipeline = rs.Pipeline(rs.Retry(clock=clock), Trace("inner", log))
    assert run(pipeline, fn) == "ok"
    assert log == ["inner>", "<inner", "inner>", "<inner"]


def test_retry_does_not_retry_rejections_and_fallback_catches_them(run, clock):
    calls = 0

    def rejected() -> None:
        nonlocal calls
        calls += 1
        raise rs.CircuitOpenError("db", retry_after=3.0)

    pipeline = rs.Pipeline(
        rs.Fallback(handler=lambda e: f"fallback after {e.retry_after}"),
        rs.Retry(retry_on=Exception, clock=clock),
    )
    assert run(pipeline, rejected) == "fallback after 3.0"
    assert calls == 1


def test_pipeline_decorator():
    pipeline = rs.Pipeline(rs.Retry(attempts=1))

    @pipeline
    def f(x: int) -> int:
        return x * 2

    @pipeline
    async def g(x: int) -> int:
        return x * 3

    assert f(2) == 4
    assert asyncio.run(g(2)) == 6


def test_rejects_non_policies():
    with pytest.raises(rs.ConfigError) as info:
        rs.Pipeline(rs.Retry(), "retry")  # type: ignore[arg-type]
    assert info.value.path == "Pipeline(policies[1])"


def test_decorating_a_non_callable_is_an_error():
    with pytest.raises(rs.ConfigError, match="fn"):
        rs.Retry()(3)  # type: ignore[call-overload]


def test_policy_protocol_is_runtime_checkable():
    assert isinstance(rs.Retry(), rs.Policy)
    assert isinstance(Trace("x", []), rs.Policy)
    assert not isinstance(object(), rs.Policy)


def test_pipeline_listeners_hear_every_inner_policy(clock):
    from resilient.observability import RetryScheduled, TimeoutExceeded
    from resilient.testing import RecordingListener

    recorder = RecordingListener()
    retry = rs.Retry(attempts=2, clock=clock, name="r")
    timeout = rs.Timeout(1.0, clock=clock, name="t")
    pipeline = rs.Pipeline(rs.Pipeline(retry), timeout, listeners=[recorder])
    calls = iter([OSError(), "ok"])

    def fn() -> str:
        item = next(calls)
        if isinstance(item, BaseException):
            raise item
        clock.advance(2.0)  # returns late: the sync timeout raises after the call
        return item

    with pytest.raises(rs.TimeoutExceededError):
        pipeline.call(fn)
    rare = [type(e) for e in recorder.events if not type(e).__name__.startswith("Call")]
    assert rare == [RetryScheduled, TimeoutExceeded]
    assert [e.policy for e in recorder.events if type(e) in rare] == ["r", "t"]
    assert retry._emitter.listening
