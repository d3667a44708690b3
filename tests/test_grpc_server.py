"""The gRPC server interceptors against real servers on 127.0.0.1:0, ``grpc.server``
and ``grpc.aio.server``, every arity: rejections answer the right codes and
pushback trailers without calling the handler; handler outcomes are classified;
deadlines are published and enforced."""

from __future__ import annotations

import asyncio
import threading
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from _grpc_support import (
    ARITIES,
    STREAM_REQUESTS,
    STREAM_RESPONSES,
    AsyncCountingLimiter,
    CountingLimiter,
    Decision,
    Pair,
    Recorder,
    Refuse,
    Script,
    expected,
    spec,
)

import resilient as rs
from resilient.adapters.grpc import (
    PUSHBACK_KEY,
    AsyncServerInterceptor,
    ServerInterceptor,
    metadata_key,
    peer_key,
)
from resilient.testing import FakeClock

RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture(params=["sync", "aio"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def late_requests() -> Any:
    await asyncio.sleep(0.2)
    yield b"a"


async def failing(pair: Pair, arity: str, **kw: Any) -> grpc.RpcError:
    """The error of a call the server refuses.

    An asyncio client writing requests while the server already answered may
    report ``INTERNAL`` instead of the server's status (grpc/grpc#36066), so
    asyncio request streams that are refused send their request late.
    """
    if pair.flavour == "aio" and arity in STREAM_REQUESTS and "requests" not in kw:
        kw["requests"] = late_requests()
    with pytest.raises(grpc.RpcError) as info:
        await pair.call(arity, **kw)
    return info.value


def trailers(error: grpc.RpcError) -> dict[str, str]:
    return dict(error.trailing_metadata() or ())


# --------------------------------------------------------------------------- rate limits


@pytest.mark.parametrize("arity", ARITIES)
async def test_a_rate_limit_answers_resource_exhausted_with_pushback(flavour, arity):
    limiter = CountingLimiter(allow=1, retry_after=1.5)
    script = Script()
    async with Pair(flavour, script, server=spec(limiter)) as pair:
        assert await pair.call(arity) == expected(arity)
        error = await failing(pair, arity)
    assert error.code() is RESOURCE_EXHAUSTED
    assert trailers(error)[PUSHBACK_KEY] == "1500"
    assert "limiter" in (error.details() or "")
    assert script.total == 1  # the refused call never reached the handler


async def test_pushback_milliseconds_are_rounded_up(flavour):
    limiter = CountingLimiter(allow=0, retry_after=0.0101)
    async with Pair(flavour, Script(), server=spec(limiter)) as pair:
        error = await failing(pair, "unary_unary")
    assert trailers(error)[PUSHBACK_KEY] == "11"


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (float("inf"), "-1")])
async def test_unknown_or_never_retry_after(flavour, retry_after, header):
    limiter = CountingLimiter(allow=0, retry_after=retry_after)
    async with Pair(flavour, Script(), server=spec(limiter)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is RESOURCE_EXHAUSTED
    assert trailers(error).get(PUSHBACK_KEY) == header


async def test_rate_limits_are_per_client_address_by_default(flavour):
    limiter = CountingLimiter(allow=5)
    async with Pair(flavour, Script(), server=spec(limiter)) as pair:
        await pair.call("unary_unary")
        await pair.call("unary_stream")
    assert limiter.keys == ["127.0.0.1", "127.0.0.1"]


async def test_rate_limits_can_be_keyed_on_metadata(flavour):
    limiter = CountingLimiter(allow=1)
    key = metadata_key("x-api-key")
    async with Pair(flavour, Script(), server=spec(limiter, key=key)) as pair:
        await pair.call("unary_unary", metadata=(("x-api-key", "alice"),))
        await pair.call("unary_unary", metadata=(("x-api-key", "bob"),))
        error = await failing(pair, "unary_unary", metadata=(("x-api-key", "alice"),))
        await pair.call("unary_unary")  # no key: the client address
    assert error.code() is RESOURCE_EXHAUSTED
    assert limiter.keys == ["alice", "bob", "alice", "127.0.0.1"]


async def test_key_none_is_one_limit_for_everyone(flavour):
    limiter = CountingLimiter(allow=1)
    async with Pair(flavour, Script(), server=spec(limiter, key=None)) as pair:
        await pair.call("unary_unary", metadata=(("x-api-key", "alice"),))
        error = await failing(pair, "unary_unary", metadata=(("x-api-key", "bob"),))
    assert error.code() is RESOURCE_EXHAUSTED
    assert limiter.keys == [None, None]


async def test_a_custom_key_function_sees_the_method_and_context(flavour):
    seen: list[str] = []

    def key(method: str, context: Any) -> str:
        seen.append(method)
        return f"{method}@{peer_key(method, context)}"

    limiter = CountingLimiter(allow=1)
    async with Pair(flavour, Script(), server=spec(limiter, key=key)) as pair:
        await pair.call("unary_unary")
        await pair.call("stream_unary")
    assert seen == ["/test.Echo/Unary", "/test.Echo/ClientStream"]
    assert limiter.keys == ["/test.Echo/Unary@127.0.0.1", "/test.Echo/ClientStream@127.0.0.1"]


async def test_the_asyncio_server_prefers_atry_acquire():
    limiter = AsyncCountingLimiter(allow=1)
    async with Pair("aio", Script(), server=spec(limiter)) as pair:
        await pair.call("unary_unary")
        await failing(pair, "unary_unary")
    assert limiter.async_calls == 2


async def test_limiters_inside_a_pipeline_are_asked_first_and_keyed(flavour):
    recorder = Recorder()
    limiter = CountingLimiter(allow=1)
    pipeline = rs.Pipeline(recorder, limiter)
    async with Pair(flavour, Script(), server=spec(pipeline)) as pair:
        await pair.call("unary_unary")
        await failing(pair, "unary_unary")
    assert limiter.keys == ["127.0.0.1", "127.0.0.1"]
    assert recorder.outcomes == ["ok"]  # the refused call never reached the other policies


# --------------------------------------------------------------------------- other rejections


@pytest.mark.parametrize("arity", ARITIES)
async def test_an_open_breaker_answers_unavailable_with_pushback(flavour, arity):
    gate = Refuse(rs.CircuitOpenError("backend", retry_after=2.0))
    script = Script()
    async with Pair(flavour, script, server=spec(gate)) as pair:
        error = await failing(pair, arity)
    assert error.code() is UNAVAILABLE
    assert trailers(error)[PUSHBACK_KEY] == "2000"
    assert "circuit_open" in (error.details() or "")
    assert script.total == 0


async def test_a_full_bulkhead_answers_unavailable(flavour):
    gate = Refuse(rs.BulkheadFullError("pool"))
    script = Script()
    async with Pair(flavour, script, server=spec(gate)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is UNAVAILABLE
    assert PUSHBACK_KEY not in trailers(error)
    assert script.total == 0


async def test_a_rate_limit_raised_by_a_policy_answers_resource_exhausted(flavour):
    gate = Refuse(rs.RateLimitedError("quota", retry_after=0.5))
    async with Pair(flavour, Script(), server=spec(gate)) as pair:
        error = await failing(pair, "unary_stream")
    assert (error.code(), trailers(error)[PUSHBACK_KEY]) == (RESOURCE_EXHAUSTED, "500")


# --------------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("arity", ARITIES)
async def test_an_asyncio_timeout_answers_deadline_exceeded(arity):
    script = Script().block()
    async with Pair("aio", script, server=spec(rs.Timeout(0.1))) as pair:
        error = await failing(pair, arity, timeout=5.0)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert script.total == 1


@pytest.mark.parametrize("arity", ["unary_unary", "stream_unary"])
async def test_a_sync_timeout_answers_deadline_exceeded_when_the_handler_is_late(arity):
    clock = FakeClock()
    script = Script(on_call=lambda context: clock.advance(2.0))
    async with Pair("sync", script, server=spec(rs.Timeout(1.0, clock=clock))) as pair:
        error = await failing(pair, arity)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_sync_timeout_ends_a_late_stream_with_deadline_exceeded():
    clock = FakeClock()
    script = Script(on_call=lambda context: clock.advance(2.0))
    received: list[bytes] = []
    async with Pair("sync", script, server=spec(rs.Timeout(1.0, clock=clock))) as pair:

        def read() -> None:
            for message in pair.multicallable("unary_stream")(b"x"):
                received.append(message)

        with pytest.raises(grpc.RpcError) as info:
            await asyncio.to_thread(read)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert received == expected("unary_stream")


# --------------------------------------------------------------------------- handler outcomes


@pytest.mark.parametrize("arity", ARITIES)
async def test_handler_failures_answers_and_successes(flavour, arity):
    recorder = Recorder()
    script = Script().fail(grpc.StatusCode.INTERNAL).fail(grpc.StatusCode.NOT_FOUND)
    async with Pair(flavour, script, server=spec(recorder)) as pair:
        internal = await failing(pair, arity)
        not_found = await failing(pair, arity)
        assert await pair.call(arity) == expected(arity)
    assert internal.code() is grpc.StatusCode.INTERNAL
    assert not_found.code() is grpc.StatusCode.NOT_FOUND
    assert recorder.outcomes == ["failure", "ok", "ok"]


@pytest.mark.parametrize("arity", ["unary_unary", "stream_unary"])
async def test_a_failure_code_set_without_raising_is_a_failure(flavour, arity):
    recorder = Recorder()
    script = Script().fail(grpc.StatusCode.INTERNAL, set_code=True)
    async with Pair(flavour, script, server=spec(recorder)) as pair:
        error = await failing(pair, arity)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert recorder.outcomes == ["failure"]


async def test_a_sync_handler_failing_after_its_client_left_gives_no_verdict():
    recorder = Recorder()

    def fail_when_cancelled(context: Any) -> None:
        done = threading.Event()
        context.add_callback(done.set)
        script.entered.set()
        done.wait(5.0)
        raise RuntimeError("the client went away")

    script = Script(on_call=fail_when_cancelled)
    async with Pair("sync", script, server=spec(recorder)) as pair:
        future = pair.multicallable("unary_unary").future(b"x")
        assert await asyncio.to_thread(script.entered.wait, 5.0)
        future.cancel()
        for _ in range(100):
            if recorder.outcomes:
                break
            await asyncio.sleep(0.02)
    assert recorder.outcomes == ["cancelled"]


async def test_an_unexpected_exception_is_a_failure_and_answers_unknown(flavour):
    recorder = Recorder()

    def explode(context: Any) -> None:
        raise RuntimeError("boom")

    script = Script(on_call=explode)
    async with Pair(flavour, script, server=spec(recorder)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert recorder.outcomes == ["failure"]
    assert isinstance(recorder.errors[0], RuntimeError)


@pytest.mark.parametrize("arity", ARITIES)
async def test_a_client_that_went_away_is_never_a_failure(flavour, arity):
    recorder = Recorder()
    script = Script().block()
    async with Pair(flavour, script, server=spec(recorder)) as pair:
        argument = [b"a"] if arity in ("stream_unary", "stream_stream") else b"x"
        if flavour == "sync":
            argument = iter(argument) if isinstance(argument, list) else argument
            call = pair.multicallable(arity)
            future_or_stream = (
                call(argument) if arity in STREAM_RESPONSES else call.future(argument)
            )
            if arity in STREAM_RESPONSES:
                reading = asyncio.ensure_future(asyncio.to_thread(list, future_or_stream))
            assert await asyncio.to_thread(script.entered.wait, 5.0)
            future_or_stream.cancel()
            if arity in STREAM_RESPONSES:
                with pytest.raises(grpc.RpcError):
                    await reading
        else:
            call = pair.multicallable(arity)(argument)
            assert await asyncio.to_thread(script.entered.wait, 5.0)
            call.cancel()
        for _ in range(100):  # the server notices the cancellation on its own time
            if recorder.outcomes:
                break
            await asyncio.sleep(0.02)
    # asyncio cancels the handler; a sync handler that returns normally did its work
    assert recorder.outcomes == (["cancelled"] if flavour == "aio" else ["ok"])


# --------------------------------------------------------------------------- deadlines


async def test_the_client_deadline_is_published_to_handlers(flavour):
    script = Script()
    async with Pair(flavour, script, server=spec(Recorder())) as pair:
        await pair.call("unary_unary", timeout=2.0)
        await pair.call("unary_stream")
    published, unbounded = script.published
    assert published is not None
    assert 1.5 < published <= 2.05
    assert unbounded is None


async def test_deadline_propagation_can_be_turned_off(flavour):
    script = Script()
    server = spec(Recorder(), propagate_deadline=False)
    async with Pair(flavour, script, server=server) as pair:
        await pair.call("unary_unary", timeout=2.0)
    assert script.published == [None]


# --------------------------------------------------------------------------- both ends


async def test_server_pushback_paces_the_client_retry(flavour):
    class RefuseOnce(CountingLimiter):
        def try_acquire(self, key: Any = None, cost: int = 1) -> Decision:
            self.keys.append(key)
            return Decision(len(self.keys) > 1, None if len(self.keys) > 1 else 0.25)

    clock = FakeClock()
    script = Script()
    client = spec(
        rs.Retry(3, clock=clock),
        retry_codes={UNAVAILABLE, RESOURCE_EXHAUSTED},
    )
    async with Pair(flavour, script, client=client, server=spec(RefuseOnce(0))) as pair:
        assert await pair.call("unary_unary") == expected("unary_unary")
    assert clock.sleeps == [0.25]
    assert script.total == 1


async def test_an_open_server_breaker_tells_the_client_when_to_come_back(flavour):
    clock = FakeClock()
    gate = Refuse(rs.CircuitOpenError("backend", retry_after=3.0))
    client = spec(rs.Retry(2, clock=clock))
    async with Pair(flavour, Script(), client=client, server=spec(gate)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is UNAVAILABLE
    assert clock.sleeps == [3.0]
    assert gate.refused == 2


# --------------------------------------------------------------------------- routes and setup


async def test_server_routes_pick_policies_per_method(flavour):
    limiter = CountingLimiter(allow=0)
    other = Recorder()
    routes = {"test.Echo/Unary": limiter, "test.Echo/*": other, "test.Echo/Bidi": None}
    async with Pair(flavour, Script(), server=spec(routes=routes)) as pair:
        error = await failing(pair, "unary_unary")
        await pair.call("unary_stream")
        await pair.call("stream_stream", requests=iter([b"a"]))
    assert error.code() is RESOURCE_EXHAUSTED
    assert other.outcomes == ["ok"]


async def test_unknown_methods_stay_unimplemented(flavour):
    async with Pair(flavour, Script(), server=spec(Recorder())) as pair:
        method = pair.raw_channel if flavour == "sync" else pair.channel
        call = method.unary_unary("/test.Echo/Nope")

        def sync() -> Any:
            return call(b"x")

        async def aio() -> Any:
            return await call(b"x")

        with pytest.raises(grpc.RpcError) as info:
            await pair.sync_or_aio(sync, aio)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_sync_handlers_on_an_asyncio_server():
    """grpc.aio serves sync handlers in its thread pool: unary ones get every
    policy (through the sync driver), streaming ones their rate limits."""
    recorder = Recorder()
    limiter = CountingLimiter(allow=1)

    def unary(request: bytes, context: Any) -> bytes:
        return b"sync:" + request

    def stream(request: bytes, context: Any) -> Any:
        yield b"s1"

    handler = grpc.method_handlers_generic_handler(
        "test.Sync",
        {
            "U": grpc.unary_unary_rpc_method_handler(unary),
            "S": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    routes = {"test.Sync/U": recorder, "test.Sync/S": [limiter, recorder]}
    pool = futures.ThreadPoolExecutor(max_workers=2)
    server = grpc.aio.server(
        migration_thread_pool=pool, interceptors=[AsyncServerInterceptor(routes=routes)]
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await channel.unary_unary("/test.Sync/U")(b"x") == b"sync:x"
            assert [m async for m in channel.unary_stream("/test.Sync/S")(b"x")] == [b"s1"]
            with pytest.raises(grpc.aio.AioRpcError) as info:
                [m async for m in channel.unary_stream("/test.Sync/S")(b"x")]
    finally:
        await server.stop(None)
        pool.shutdown(wait=False)
    assert recorder.outcomes == ["ok"]
    assert info.value.code() is RESOURCE_EXHAUSTED


async def test_a_retry_from_a_registry_is_skipped_on_the_server(flavour, caplog):
    recorder = Recorder()
    registry = {"orders": rs.Pipeline(rs.Retry(3), recorder)}
    script = Script().fail(UNAVAILABLE)
    async with Pair(flavour, script, server=spec("orders", registry=registry)) as pair:
        await failing(pair, "unary_unary")
    assert script.total == 1  # the handler ran once
    assert recorder.outcomes == ["failure"]
    assert "never run twice" in caplog.text


def test_bad_arguments_are_config_errors():
    with pytest.raises(rs.ConfigError, match="never runs a handler twice"):
        ServerInterceptor(rs.Retry(2))
    with pytest.raises(rs.ConfigError, match="never runs a handler twice"):
        AsyncServerInterceptor(routes={"a.B": [Recorder(), rs.Pipeline(rs.Retry(2))]})
    with pytest.raises(rs.ConfigError, match="key"):
        ServerInterceptor(key="peer")  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="failure_codes"):
        AsyncServerInterceptor(failure_codes=[500])
    with pytest.raises(rs.ConfigError, match="name"):
        metadata_key("")
    assert "routes" in repr(ServerInterceptor(Recorder()))


class _Context:
    def __init__(self, peer: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._peer = peer
        self._metadata = metadata

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:10.0.0.7:51234", "10.0.0.7"),
        ("ipv6:[::1]:51234", "::1"),
        ("ipv6:%5B2001:db8::1%5D:443", "2001:db8::1"),
        ("unix:/run/app.sock", "unix:/run/app.sock"),
    ],
)
def test_peer_keys_drop_the_port(peer, key):
    assert peer_key("/s/M", _Context(peer)) == key


def test_metadata_keys_fall_back():
    context = _Context("ipv4:1.2.3.4:5", (("x-api-key", "k1"),))
    assert metadata_key("X-Api-Key")("/s/M", context) == "k1"
    assert metadata_key("x-tenant")("/s/M", context) == "1.2.3.4"
    assert metadata_key("x-tenant", fallback=None)("/s/M", context) is None
