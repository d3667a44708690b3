"""The gRPC interceptors with the library's real policies (CircuitBreaker,
TokenBucket, SlidingWindow, Bulkhead, Timeout) against real servers on
127.0.0.1:0, ``grpc`` and ``grpc.aio``."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import grpc
import grpc.aio
import pytest
from _grpc_support import ARITIES, STREAM_REQUESTS, Pair, Script, Step, expected, spec

import resilient as rs
from resilient.adapters.grpc import PUSHBACK_KEY, metadata_key
from resilient.testing import FakeClock

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(params=["sync", "aio"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def breaker(clock: FakeClock, **kw: Any) -> rs.CircuitBreaker:
    settings: dict[str, Any] = {
        "window": rs.CountWindow(4),
        "minimum_calls": 2,
        "failure_rate": 0.5,
        "open_for": 30.0,
        "clock": clock,
    }
    settings.update(kw)
    return rs.CircuitBreaker(**settings)


async def late_requests() -> Any:
    await asyncio.sleep(0.2)  # see grpc/grpc#36066: don't race a refused aio stream
    yield b"a"


async def refused(pair: Pair, arity: str, **kw: Any) -> grpc.RpcError:
    if pair.flavour == "aio" and arity in STREAM_REQUESTS and "requests" not in kw:
        kw["requests"] = late_requests()
    with pytest.raises(grpc.RpcError) as info:
        await pair.call(arity, **kw)
    return info.value


# --------------------------------------------------------------------------- client side


@pytest.mark.parametrize("arity", ARITIES)
async def test_the_client_breaker_opens_on_unavailable(flavour, arity):
    clock = FakeClock()
    policy = breaker(clock)
    script = Script().fail(UNAVAILABLE, times=2)
    async with Pair(flavour, script, client=spec(policy)) as pair:
        for _ in range(2):
            assert (await refused(pair, arity)).code() is UNAVAILABLE
        assert policy.state is rs.CircuitState.OPEN
        with pytest.raises(rs.CircuitOpenError) as info:
            await pair.call(arity)
        assert info.value.retry_after == pytest.approx(30.0)
        clock.advance(30.0)
        assert await pair.call(arity) == expected(arity)  # a probe
    assert script.total == 3


async def test_retries_inside_the_breaker_count_each_attempt(flavour):
    clock = FakeClock()
    policy = breaker(clock)
    script = Script().fail(UNAVAILABLE, times=3)
    retry = rs.Retry(3, backoff=rs.Backoff.constant(0.1), clock=clock)
    async with Pair(flavour, script, client=spec(retry, policy)) as pair:
        with pytest.raises(rs.CircuitOpenError):
            await pair.call("unary_unary")
    assert script.total == 2  # the third attempt met an open breaker
    assert policy.stats().failed_calls == 2


async def test_answers_and_cancellations_never_open_the_client_breaker(flavour):
    clock = FakeClock()
    policy = breaker(clock, minimum_calls=2, failure_rate=0.01)
    script = Script().fail(grpc.StatusCode.NOT_FOUND, times=3).fail(grpc.StatusCode.CANCELLED)
    async with Pair(flavour, script, client=spec(policy)) as pair:
        for _ in range(4):
            await refused(pair, "unary_unary")
    stats = policy.stats()
    assert stats.state is rs.CircuitState.CLOSED
    assert (stats.calls, stats.failed_calls) == (3, 0)


async def test_cancelled_aio_calls_never_open_the_breaker():
    clock = FakeClock()
    policy = breaker(clock, minimum_calls=1, failure_rate=0.01, half_open_calls=1)
    script = Script()
    async with Pair("aio", script, client=spec(policy)) as pair:
        for _ in range(3):
            script.entered.clear()
            script.block()
            call = pair.multicallable("unary_unary")(b"x")
            assert await asyncio.to_thread(script.entered.wait, 5.0)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        assert await pair.call("unary_unary") == b"echo:x"
    stats = policy.stats()
    assert stats.state is rs.CircuitState.CLOSED
    assert (stats.calls, stats.failed_calls) == (1, 0)


async def test_a_pushback_can_hold_the_breaker_open(flavour):
    clock = FakeClock()
    policy = breaker(clock, open_on_retry_after=True)
    script = Script().fail(UNAVAILABLE, pushback="7000")
    async with Pair(flavour, script, client=spec(policy)) as pair:
        await refused(pair, "unary_unary")
        with pytest.raises(rs.CircuitOpenError) as info:
            await pair.call("unary_unary")
    assert info.value.retry_after == pytest.approx(7.0)


async def test_a_client_token_bucket_refuses_calls(flavour):
    limiter = rs.TokenBucket("1/minute", burst=1)
    async with Pair(flavour, Script(), client=spec(limiter)) as pair:
        await pair.call("unary_unary")
        with pytest.raises(rs.RateLimitedError) as info:
            await pair.call("unary_unary")
    assert info.value.retry_after is not None
    assert 59.0 < info.value.retry_after <= 60.0


# --------------------------------------------------------------------------- server side


@pytest.mark.parametrize("arity", ARITIES)
async def test_a_server_token_bucket_answers_resource_exhausted(flavour, arity):
    limiter = rs.TokenBucket("1/minute", burst=1)
    script = Script()
    async with Pair(flavour, script, server=spec(limiter)) as pair:
        assert await pair.call(arity) == expected(arity)
        error = await refused(pair, arity)
    assert error.code() is RESOURCE_EXHAUSTED
    pushback = int(dict(error.trailing_metadata())[PUSHBACK_KEY])
    assert 59_000 < pushback <= 60_000
    assert script.total == 1


async def test_server_limits_are_per_client_unless_the_limiter_has_a_key(flavour):
    per_client = rs.SlidingWindow("2/minute")
    shared = rs.TokenBucket("1/minute", burst=1, key="everyone")
    by_request = rs.TokenBucket("1/minute", burst=1, key=lambda request, context: request)
    routes = {
        "test.Echo/Unary": per_client,
        "test.Echo/ServerStream": shared,
        "test.Echo/ClientStream": None,
        "test.Echo/Bidi": None,
    }
    async with Pair(flavour, Script(), server=spec(routes=routes)) as pair:
        await pair.call("unary_unary")
        await pair.call("unary_unary")
        assert (await refused(pair, "unary_unary")).code() is RESOURCE_EXHAUSTED
        await pair.call("unary_stream")
        assert (await refused(pair, "unary_stream")).code() is RESOURCE_EXHAUSTED
    assert per_client.try_acquire("127.0.0.1").allowed is False
    assert shared.try_acquire().allowed is False
    routes["test.Echo/Unary"] = by_request
    async with Pair(flavour, Script(), server=spec(routes=routes)) as pair:
        await pair.call("unary_unary", b"alice")
        await pair.call("unary_unary", b"bob")
        error = await refused(pair, "unary_unary", payload=b"alice")
    assert "alice" in (error.details() or "")


async def test_metadata_keys_with_a_real_limiter(flavour):
    limiter = rs.TokenBucket("1/minute", burst=1)
    server = spec(limiter, key=metadata_key("x-api-key"))
    async with Pair(flavour, Script(), server=server) as pair:
        await pair.call("unary_unary", metadata=(("x-api-key", "a"),))
        await pair.call("unary_unary", metadata=(("x-api-key", "b"),))
        error = await refused(pair, "unary_unary", metadata=(("x-api-key", "a"),))
    assert error.code() is RESOURCE_EXHAUSTED


@pytest.mark.parametrize("arity", ARITIES)
async def test_a_full_server_bulkhead_answers_unavailable(flavour, arity):
    bulkhead = rs.Bulkhead(max_concurrent=1)
    script = Script().block()
    async with Pair(flavour, script, server=spec(bulkhead)) as pair:
        first = pair.multicallable("unary_unary")
        busy = first.future(b"x") if flavour == "sync" else first(b"x")
        assert await asyncio.to_thread(script.entered.wait, 5.0)
        error = await refused(pair, arity)
        busy.cancel()
        for _ in range(100):  # the slot is given back once the handler ends
            if bulkhead.stats().in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert await pair.call(arity) == expected(arity)
    assert error.code() is UNAVAILABLE
    assert script.total == 2  # the refused call never reached its handler


async def test_a_streaming_handler_holds_its_bulkhead_slot_until_the_end(flavour):
    bulkhead = rs.Bulkhead(max_concurrent=1)
    script = Script(steps=deque([Step(pause=True)]))
    async with Pair(flavour, script, server=spec(bulkhead)) as pair:
        method = pair.multicallable("unary_stream")

        def sync() -> Any:
            stream = method(b"x")
            first = next(stream)
            active = bulkhead.stats().in_flight
            script.resume.set()
            return first, active, list(stream)

        async def aio() -> Any:
            stream = method(b"x")
            first = await stream.read()
            active = bulkhead.stats().in_flight
            script.resume.set()
            rest = []
            while (message := await stream.read()) is not grpc.aio.EOF:
                rest.append(message)
            return first, active, rest

        first, active, rest = await pair.sync_or_aio(sync, aio)
        for _ in range(100):
            if bulkhead.stats().in_flight == 0:
                break
            await asyncio.sleep(0.02)
    assert (first, active, rest) == (b"x-1", 1, [b"x-2"])
    assert bulkhead.stats().in_flight == 0


async def test_a_server_breaker_opens_on_handler_failures(flavour):
    clock = FakeClock()
    policy = breaker(clock, open_for=12.0)
    script = Script().fail(grpc.StatusCode.INTERNAL, times=2)
    async with Pair(flavour, script, server=spec(policy)) as pair:
        for _ in range(2):
            assert (await refused(pair, "unary_unary")).code() is grpc.StatusCode.INTERNAL
        error = await refused(pair, "unary_unary")
    assert error.code() is UNAVAILABLE
    assert dict(error.trailing_metadata())[PUSHBACK_KEY] == "12000"
    assert script.total == 2


async def test_answers_never_open_the_server_breaker(flavour):
    clock = FakeClock()
    policy = breaker(clock, failure_rate=0.01)
    script = Script().fail(grpc.StatusCode.NOT_FOUND, times=3)
    async with Pair(flavour, script, server=spec(policy)) as pair:
        for _ in range(3):
            await refused(pair, "unary_unary")
    assert policy.state is rs.CircuitState.CLOSED


async def test_breaker_and_limiter_together_on_both_ends(flavour):
    """The client retries what the server refuses, waiting as long as it says."""
    clock = FakeClock()
    server_limiter = rs.TokenBucket("1/s", burst=1)
    client = spec(
        rs.Retry(2, clock=clock, max_retry_after=5.0),
        breaker(clock, minimum_calls=4),
        retry_codes={UNAVAILABLE, RESOURCE_EXHAUSTED},
    )
    script = Script()
    async with Pair(flavour, script, client=client, server=spec(server_limiter)) as pair:
        await pair.call("unary_unary")
        await refused(pair, "unary_unary")  # refused twice: the bucket refills in real time
    assert len(clock.sleeps) == 1
    assert 0.5 < clock.sleeps[0] <= 1.0
    assert script.total == 1
