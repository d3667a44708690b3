"""Timeout: async cancels (only its own deadline), sync publishes a deadline."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import resilient as rs
from resilient.observability import TimeoutExceeded
from resilient.testing import FakeClock, RecordingListener


async def test_async_timeout_cancels_the_call_on_fake_clock():
    clock = FakeClock()
    reached = []

    async def slow() -> str:
        await clock.asleep(5.0)
        reached.append(True)
        return "late"

    recorder = RecordingListener()
    timeout = rs.Timeout(2.0, clock=clock, name="t", listeners=[recorder])
    with pytest.raises(rs.TimeoutExceededError) as info:
        await timeout.acall(slow)
    assert (info.value.policy, info.value.budget) == ("t", 2.0)
    assert isinstance(info.value, TimeoutError)
    assert reached == []
    assert [e.budget for e in recorder.of(TimeoutExceeded)] == [2.0]


async def test_async_timeout_lets_fast_calls_through():
    clock = FakeClock()

    async def fast() -> str:
        await clock.asleep(1.0)
        return "done"

    assert await rs.Timeout("2s", clock=clock).acall(fast) == "done"


async def test_async_timeout_real_clock_smoke():
    # One small real-time check that the cancel scope uses the loop's clock.
    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(rs.TimeoutExceededError):
        await rs.Timeout(0.01).acall(forever)


async def test_callee_timeout_error_passes_through():
    clock = FakeClock()

    async def own() -> None:
        raise TimeoutError("callee's own")

    with pytest.raises(TimeoutError, match="callee's own") as info:
        await rs.Timeout(2.0, clock=clock).acall(own)
    assert not isinstance(info.value, rs.TimeoutExceededError)


async def test_outer_cancellation_passes_through():
    clock = FakeClock()
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(rs.Timeout(10.0, clock=clock).acall(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_timeouts_inner_fires_first_and_outer_is_not_blamed():
    clock = FakeClock()

    async def slow() -> None:
        await clock.asleep(3.0)

    outer = rs.Timeout(10.0, clock=clock, name="outer")
    inner = rs.Timeout(2.0, clock=clock, name="inner")
    with pytest.raises(rs.TimeoutExceededError) as info:
        await outer.acall(inner.acall, slow)
    assert info.value.policy == "inner"


async def test_nested_timeouts_outer_fires_first():
    clock = FakeClock()

    async def slow() -> None:
        await clock.asleep(3.0)

    outer = rs.Timeout(1.0, clock=clock, name="outer")
    inner = rs.Timeout(5.0, clock=clock, name="inner")
    with pytest.raises(rs.TimeoutExceededError) as info:
        await outer.acall(inner.acall, slow)
    assert info.value.policy == "outer"


def test_sync_timeout_publishes_remaining_and_nested_takes_min():
    clock = FakeClock()
    seen = []

    def fn() -> str:
        seen.append(rs.remaining())
        clock.advance(0.5)
        seen.append(rs.remaining())
        return "ok"

    outer = rs.Timeout(10.0, clock=clock)
    inner = rs.Timeout(timedelta(seconds=2), clock=clock)
    assert outer.call(inner.call, fn) == "ok"
    assert seen == [2.0, 1.5]
    assert rs.remaining() is None


def test_remaining_is_never_negative():
    clock = FakeClock()
    seen = []

    def fn() -> None:
        clock.advance(5)
        seen.append(rs.remaining())

    with pytest.raises(rs.TimeoutExceededError):
        rs.Timeout(1, clock=clock).call(fn)
    assert seen == [0.0]


def test_sync_timeout_raises_after_a_late_return_and_closes_the_result():
    clock = FakeClock()

    class Resource:
        closed = False

        def close(self) -> None:
            self.closed = True

    resource = Resource()

    def slow() -> Resource:
        clock.advance(3.0)
        return resource

    with pytest.raises(rs.TimeoutExceededError):
        rs.Timeout(2.0, clock=clock).call(slow)
    assert resource.closed


def test_sync_boundary_is_inclusive():
    clock = FakeClock()

    def exactly() -> str:
        clock.advance(2.0)
        return "ok"

    assert rs.Timeout(2.0, clock=clock).call(exactly) == "ok"


def test_sync_exception_passes_through_even_when_late():
    clock = FakeClock()

    def fails() -> None:
        clock.advance(5)
        raise KeyError("mine")

    with pytest.raises(KeyError):
        rs.Timeout(1, clock=clock).call(fails)


@pytest.mark.parametrize("bad", [0, -1, "soon", "10 parsecs", None, True, float("nan")])
def test_bad_budget(bad):
    with pytest.raises(rs.ConfigError) as info:
        rs.Timeout(bad)
    assert info.value.path == "seconds"


async def test_real_clock_callee_timeout_error_passes_through():
    async def own() -> None:
        raise TimeoutError("callee's own")

    with pytest.raises(TimeoutError, match="callee's own") as info:
        await rs.Timeout(5.0).acall(own)
    assert not isinstance(info.value, rs.TimeoutExceededError)


async def test_real_clock_outer_cancellation_passes_through_and_fast_calls_return():
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.Event().wait()

    async def fast() -> str:
        return "quick"

    assert await rs.Timeout(5.0).acall(fast) == "quick"
    task = asyncio.create_task(rs.Timeout(5.0).acall(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rs.remaining() is None


def test_anyio_cancel_scope_path_without_asyncio_loop_detection(monkeypatch):
    # The generic cancel-scope path (used on non-asyncio loops) on a real clock.
    import resilient._timeout as mod

    monkeypatch.setattr(mod, "_on_asyncio", lambda: False)

    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(rs.TimeoutExceededError):
        asyncio.run(rs.Timeout(0.01).acall(forever))
