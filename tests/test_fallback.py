"""Fallback through call and acall."""

from __future__ import annotations

import asyncio

import pytest

import resilient as rs


def boom(exc: BaseException):
    def fn() -> str:
        raise exc

    return fn


def test_value_on_exception(run):
    assert run(rs.Fallback("cached"), boom(OSError())) == "cached"


def test_handler_receives_the_exception(run):
    err = KeyError("k")
    assert run(rs.Fallback(handler=lambda e: f"got {e!r}"), boom(err)) == f"got {err!r}"


def test_catches_rejections(run):
    assert run(rs.Fallback("busy"), boom(rs.CircuitOpenError("b"))) == "busy"


def test_other_exceptions_propagate(run):
    with pytest.raises(ValueError, match="x"):
        run(rs.Fallback("no", on=KeyError), boom(ValueError("x")))


def test_predicate(run):
    fb = rs.Fallback("p", on=lambda e: "soft" in str(e))
    assert run(fb, boom(RuntimeError("soft"))) == "p"
    with pytest.raises(RuntimeError):
        run(fb, boom(RuntimeError("hard")))


def test_on_result(run):
    fb = rs.Fallback(handler=lambda r: r * 10, on_result=lambda r: r < 0)
    assert run(fb, lambda: -1) == -10
    assert run(fb, lambda: 3) == 3


def test_async_handler_is_awaited():
    async def handler(exc: BaseException) -> str:
        return "async fallback"

    async def fails() -> str:
        raise OSError

    assert asyncio.run(rs.Fallback(handler=handler).acall(fails)) == "async fallback"


def test_async_handler_refused_in_sync_call():
    async def handler(exc: BaseException) -> str:  # pragma: no cover - never awaited
        return "x"

    with pytest.raises(rs.ConfigError, match="acall"):
        rs.Fallback(handler=handler).call(lambda: 1)


def test_cancellation_is_not_caught():
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(rs.Fallback("x", on=BaseException).acall(cancelled))


@pytest.mark.parametrize(
    ("args", "kwargs", "path"),
    [
        ((), {}, "value/handler"),
        (("v",), {"handler": lambda e: 1}, "value/handler"),
        ((), {"handler": 3}, "handler"),
        (("v",), {"on": 3}, "on"),
        (("v",), {"on": (int,)}, "on"),
        (("v",), {"on_result": 3}, "on_result"),
    ],
)
def test_bad_arguments(args, kwargs, path):
    with pytest.raises(rs.ConfigError) as info:
        rs.Fallback(*args, **kwargs)
    assert info.value.path == path
