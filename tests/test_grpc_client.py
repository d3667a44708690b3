"""The gRPC client interceptors against real servers on 127.0.0.1:0, ``grpc`` and
``grpc.aio``, every arity. Backoff runs on a FakeClock: nothing sleeps on the wall
clock except the deadline tests (a fraction of a second)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import grpc.aio
import pytest
from _grpc_support import (
    ARITIES,
    STREAM_REQUESTS,
    STREAM_RESPONSES,
    Pair,
    Recorder,
    Refuse,
    Script,
    expected,
    path,
    spec,
)

import resilient as rs
from resilient.adapters.grpc import (
    AsyncClientInterceptor,
    ClientInterceptor,
    NotReplayableError,
    RetryableStatusError,
    StatusError,
)
from resilient.observability import RetryScheduled
from resilient.testing import FakeClock, RecordingListener

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
SKEW = 0.05  # a server may see a few milliseconds more than the client's timeout


@pytest.fixture(params=["sync", "aio"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def retry(attempts: int = 3, clock: FakeClock | None = None, **kw: Any) -> rs.Retry:
    return rs.Retry(attempts, backoff=rs.Backoff.constant(0.5), clock=clock or FakeClock(), **kw)


async def failing(pair: Pair, arity: str, **kw: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        await pair.call(arity, **kw)
    return info.value


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("arity", ARITIES)
async def test_unavailable_is_retried_until_the_call_succeeds(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=2)
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock))) as pair:
        assert await pair.call(arity) == expected(arity)
    assert script.total == 3
    assert clock.sleeps == [0.5, 0.5]


@pytest.mark.parametrize("arity", ARITIES)
async def test_when_attempts_run_out_the_caller_gets_the_last_grpc_error(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=5, details="down")
    async with Pair(flavour, script, client=spec(retry(3))) as pair:
        error = await failing(pair, arity)
    assert error.code() is UNAVAILABLE
    assert not isinstance(error, StatusError)
    assert script.total == 3
    assert any("gave up after 3 attempts" in note for note in getattr(error, "__notes__", []))


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.NOT_FOUND])
async def test_other_codes_are_not_retried_by_default(flavour, code):
    script = Script().fail(code, times=3)
    async with Pair(flavour, script, client=spec(retry(3))) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is code
    assert script.total == 1


async def test_retry_codes_are_configurable(flavour):
    script = Script().fail(grpc.StatusCode.RESOURCE_EXHAUSTED, times=1)
    codes = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}
    async with Pair(flavour, script, client=spec(retry(3), retry_codes=codes)) as pair:
        assert await pair.call("unary_unary") == expected("unary_unary")
    assert script.total == 2


async def test_a_retry_configured_for_other_errors_leaves_grpc_failures_alone(flavour):
    script = Script().fail(UNAVAILABLE, times=1)
    policy = rs.Retry(3, retry_on=(KeyError,), clock=FakeClock())
    async with Pair(flavour, script, client=spec(policy)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is UNAVAILABLE
    assert script.total == 1


async def test_a_retry_on_rpc_error_retries_every_failure_code(flavour):
    """StatusError is a grpc.RpcError, so a policy file's ``retry_on: [grpc.RpcError]``
    works (answers such as NOT_FOUND are still not failures)."""
    script = Script().fail(grpc.StatusCode.INTERNAL).fail(grpc.StatusCode.NOT_FOUND)
    policy = rs.Retry(3, retry_on=grpc.RpcError, clock=FakeClock())
    async with Pair(flavour, script, client=spec(policy)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert script.total == 2


@pytest.mark.parametrize("arity", STREAM_REQUESTS)
async def test_even_a_retry_on_any_rpc_error_never_resends_a_one_shot_stream(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=2)
    policy = rs.Retry(3, retry_on=grpc.RpcError, clock=FakeClock())

    async def agenerate() -> Any:
        yield b"a"

    requests = iter([b"a"]) if flavour == "sync" else agenerate()
    async with Pair(flavour, script, client=spec(policy)) as pair:
        await failing(pair, arity, requests=requests)
        await asyncio.sleep(0.05)
    assert script.total == 1


# --------------------------------------------------------------------------- pushback


@pytest.mark.parametrize("arity", ARITIES)
async def test_server_pushback_replaces_the_backoff(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=2, pushback="250")
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock))) as pair:
        assert await pair.call(arity) == expected(arity)
    assert clock.sleeps == [0.25, 0.25]


@pytest.mark.parametrize("value", ["-1", "soon"])
@pytest.mark.parametrize("arity", ARITIES)
async def test_negative_or_malformed_pushback_means_do_not_retry(flavour, arity, value):
    script = Script().fail(UNAVAILABLE, times=3, pushback=value)
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock))) as pair:
        error = await failing(pair, arity)
    assert error.code() is UNAVAILABLE
    assert script.total == 1
    assert clock.sleeps == []


async def test_pushback_is_capped_by_max_retry_after(flavour):
    script = Script().fail(UNAVAILABLE, times=1, pushback="90000")
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock, max_retry_after=2.0))) as pair:
        assert await pair.call("unary_unary") == expected("unary_unary")
    assert clock.sleeps == [2.0]


async def test_pushback_longer_than_the_call_timeout_stops_at_once(flavour):
    script = Script().fail(UNAVAILABLE, times=1, pushback="5000")
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock), clock=clock)) as pair:
        error = await failing(pair, "unary_unary", timeout=2.0)
    assert error.code() is UNAVAILABLE
    assert script.total == 1
    assert clock.sleeps == []


async def test_pushback_longer_than_a_retry_deadline_stops_at_once(flavour):
    script = Script().fail(UNAVAILABLE, times=1, pushback="5000")
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock, deadline=3.0))) as pair:
        await failing(pair, "unary_unary")
    assert (script.total, clock.sleeps) == (1, [])


async def test_the_pushback_reaches_retry_through_the_status_error(flavour):
    seen: list[BaseException] = []
    script = Script().fail(UNAVAILABLE, times=1, pushback="1500")

    def hint(outcome: object) -> float | None:
        seen.append(outcome)  # type: ignore[arg-type]
        return getattr(outcome, "retry_after", None)

    async with Pair(flavour, script, client=spec(retry(2, retry_after=hint))) as pair:
        await pair.call("unary_unary")
    [error] = seen
    assert isinstance(error, RetryableStatusError)
    assert isinstance(error, OSError)
    assert (error.code, error.retry_after) == (UNAVAILABLE, 1.5)
    assert error.details == "scripted"


# --------------------------------------------------------------------------- streams


@pytest.mark.parametrize("arity", STREAM_RESPONSES)
async def test_a_stream_that_failed_after_its_first_message_is_not_retried(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=1, after_first=True)
    received: list[bytes] = []
    async with Pair(flavour, script, client=spec(retry(3))) as pair:
        method = pair.multicallable(arity)
        argument = [b"a", b"b"] if arity in STREAM_REQUESTS else b"x"

        def read() -> None:
            for message in method(argument):
                received.append(message)

        async def aread() -> None:
            async for message in method(argument):
                received.append(message)

        with pytest.raises(grpc.RpcError) as info:
            await pair.sync_or_aio(read, aread)
    assert info.value.code() is UNAVAILABLE
    assert received == expected(arity)[:1]
    assert script.total == 1


@pytest.mark.parametrize("arity", STREAM_REQUESTS)
async def test_a_replayable_request_stream_is_sent_again(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=1)
    async with Pair(flavour, script, client=spec(retry(3))) as pair:
        answer = await pair.call(arity, requests=[b"a", b"b"])
    assert answer == expected(arity)
    assert script.total == 2
    assert script.requests[-1] == [b"a", b"b"]


@pytest.mark.parametrize("arity", STREAM_REQUESTS)
async def test_a_one_shot_request_stream_is_not_retried(flavour, arity):
    script = Script().fail(UNAVAILABLE, times=2)
    recorder = Recorder()

    def generate() -> Any:
        yield b"a"
        yield b"b"

    async def agenerate() -> Any:
        yield b"a"
        yield b"b"

    requests = generate() if flavour == "sync" else agenerate()
    async with Pair(flavour, script, client=spec(retry(3), recorder)) as pair:
        error = await failing(pair, arity, requests=requests)
        await asyncio.sleep(0.05)  # aio: the policies watch a one-shot call in the background
    assert error.code() is UNAVAILABLE
    assert script.total == 1
    assert recorder.outcomes == ["failure"]
    assert not isinstance(recorder.errors[0], RetryableStatusError)


async def test_a_second_attempt_of_a_spent_request_stream_is_refused():
    """A policy that calls again on its own cannot resend a generator: the second
    attempt fails with NotReplayableError instead (nothing is sent)."""

    class Twice:
        def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            fn(*args, **kwargs)
            return fn(*args, **kwargs)

        async def acall(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    script = Script()
    async with Pair("sync", script, client=spec(Twice())) as pair:
        with pytest.raises(NotReplayableError) as info:
            await pair.call("stream_unary", requests=iter([b"a"]))
    assert script.total == 1
    assert info.value.key == "/test.Echo/ClientStream"


async def test_aio_write_style_calls_are_sent_once_and_still_watched():
    script = Script().fail(UNAVAILABLE, times=1)
    recorder = Recorder()
    async with Pair("aio", script, client=spec(retry(3), recorder)) as pair:
        call = pair.multicallable("stream_stream")()
        await call.write(b"a")
        await call.done_writing()
        with pytest.raises(grpc.aio.AioRpcError):
            [m async for m in call]
        call = pair.multicallable("stream_unary")()
        await call.write(b"q")
        await call.write(b"r")
        await call.done_writing()
        assert await call == b"q|r"
        await asyncio.sleep(0.05)
    assert script.total == 2
    assert recorder.outcomes == ["failure", "ok"]


async def test_sync_response_streams_start_when_first_read():
    script = Script()
    async with Pair("sync", script, client=spec(retry(3))) as pair:
        stream = pair.multicallable("unary_stream")(b"x")
        await asyncio.sleep(0.05)
        assert script.total == 0
        assert not stream.done()
        assert await asyncio.to_thread(list, stream) == expected("unary_stream")
        assert stream.code() is grpc.StatusCode.OK
        assert stream.done()
    assert script.total == 1


# --------------------------------------------------------------------------- answers, cancellation


@pytest.mark.parametrize("arity", ARITIES)
async def test_answers_are_not_failures_but_reach_the_caller(flavour, arity):
    script = Script().fail(grpc.StatusCode.NOT_FOUND)
    recorder = Recorder()
    async with Pair(flavour, script, client=spec(recorder)) as pair:
        error = await failing(pair, arity)
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert recorder.outcomes == ["ok"]


@pytest.mark.parametrize("arity", ARITIES)
async def test_failure_codes_are_failures_for_the_policies(flavour, arity):
    script = Script().fail(grpc.StatusCode.INTERNAL)
    recorder = Recorder()
    async with Pair(flavour, script, client=spec(recorder)) as pair:
        error = await failing(pair, arity)
    assert error.code() is grpc.StatusCode.INTERNAL
    assert recorder.outcomes == ["failure"]
    assert isinstance(recorder.errors[0], StatusError)
    assert recorder.errors[0].error is error or flavour == "sync"


async def test_failure_codes_are_configurable(flavour):
    script = Script().fail(grpc.StatusCode.INTERNAL).fail(grpc.StatusCode.NOT_FOUND)
    recorder = Recorder()
    codes = {grpc.StatusCode.NOT_FOUND}
    async with Pair(flavour, script, client=spec(recorder, failure_codes=codes)) as pair:
        await failing(pair, "unary_unary")
        await failing(pair, "unary_unary")
    assert recorder.outcomes == ["ok", "failure"]


async def test_cancelling_a_sync_stream_is_not_a_failure():
    script = Script().block()
    recorder = Recorder()
    async with Pair("sync", script, client=spec(recorder, retry(3))) as pair:
        stream = pair.multicallable("unary_stream")(b"x")
        reading = asyncio.ensure_future(asyncio.to_thread(list, stream))
        assert await asyncio.to_thread(script.entered.wait, 5.0)
        assert stream.cancel()
        with pytest.raises(grpc.RpcError) as info:
            await reading
    assert info.value.code() is grpc.StatusCode.CANCELLED
    assert recorder.outcomes == ["cancelled"]
    assert script.total == 1


@pytest.mark.parametrize("arity", ARITIES)
async def test_cancelling_an_aio_call_is_not_a_failure(arity):
    script = Script().block()
    recorder = Recorder()
    async with Pair("aio", script, client=spec(recorder, retry(3))) as pair:
        argument = [b"a"] if arity in STREAM_REQUESTS else b"x"
        call = pair.multicallable(arity)(argument)
        assert await asyncio.to_thread(script.entered.wait, 5.0)
        assert call.cancel()

        async def finish() -> Any:
            if arity in STREAM_RESPONSES:
                return [m async for m in call]
            return await call

        with pytest.raises(asyncio.CancelledError):
            await finish()
        await asyncio.sleep(0.05)
    assert recorder.outcomes == ["cancelled"]
    assert script.total == 1


async def test_cancelling_the_awaiting_task_is_not_a_failure():
    script = Script().block()
    recorder = Recorder()
    async with Pair("aio", script, client=spec(recorder)) as pair:
        task = asyncio.ensure_future(pair.call("unary_unary"))
        assert await asyncio.to_thread(script.entered.wait, 5.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)
    assert recorder.outcomes == ["cancelled"]


async def test_a_cancelled_status_from_the_server_is_not_a_failure(flavour):
    script = Script().fail(grpc.StatusCode.CANCELLED, times=2)
    recorder = Recorder()
    async with Pair(flavour, script, client=spec(retry(3), recorder)) as pair:
        error = await failing(pair, "unary_unary")
    assert error.code() is grpc.StatusCode.CANCELLED
    assert recorder.outcomes == ["cancelled"]
    assert script.total == 1


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("arity", ARITIES)
async def test_rejections_reach_the_caller_and_no_rpc_is_made(flavour, arity):
    gate = Refuse(rs.CircuitOpenError("backend", retry_after=3.0))
    script = Script()
    async with Pair(flavour, script, client=spec(retry(3), gate)) as pair:
        with pytest.raises(rs.CircuitOpenError):
            await pair.call(arity)
    assert gate.refused == 1  # a rejection is not retried
    assert script.total == 0


async def test_a_rate_limiter_in_the_client_pipeline_refuses_calls(flavour):
    limiter = Refuse(rs.RateLimitedError("out", retry_after=1.0))
    async with Pair(flavour, Script(), client=spec(limiter)) as pair:
        with pytest.raises(rs.RateLimitedError) as info:
            await pair.call("unary_unary")
    assert info.value.retry_after == 1.0


async def test_a_fallback_can_answer_unary_calls(flavour):
    script = Script().fail(grpc.StatusCode.INTERNAL)
    policies = (rs.Fallback(b"cached"),)
    async with Pair(flavour, script, client=spec(*policies)) as pair:
        assert await pair.call("unary_unary") == b"cached"


# --------------------------------------------------------------------------- deadlines


async def test_a_timeout_policy_sets_the_call_deadline(flavour):
    script = Script()
    async with Pair(flavour, script, client=spec(rs.Timeout(0.8))) as pair:
        await pair.call("unary_unary")
    [left] = script.time_left
    assert left is not None
    assert 0.3 < left <= 0.8 + SKEW


async def test_the_smallest_of_the_call_timeout_and_the_budget_wins(flavour):
    script = Script()
    async with Pair(flavour, script, client=spec(rs.Timeout(30))) as pair:
        await pair.call("unary_unary", timeout=0.7)
    [left] = script.time_left
    assert left is not None
    assert 0.2 < left <= 0.7 + SKEW


async def test_each_retry_gets_what_is_left_of_the_call_timeout(flavour):
    script = Script().fail(UNAVAILABLE, times=1, pushback="1000")
    clock = FakeClock()
    async with Pair(flavour, script, client=spec(retry(3, clock), clock=clock)) as pair:
        await pair.call("unary_unary", timeout=3.0)
    first, second = script.time_left
    assert first is not None
    assert second is not None
    assert 2.5 < first <= 3.0 + SKEW
    assert 1.5 < second <= 2.0 + SKEW  # one (fake) second of pushback was spent


async def test_an_expired_deadline_answers_deadline_exceeded_and_is_not_retried(flavour):
    script = Script().block()
    recorder = Recorder()
    async with Pair(flavour, script, client=spec(retry(3), recorder)) as pair:
        error = await failing(pair, "unary_unary", timeout=0.2)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert script.total == 1
    assert recorder.outcomes == ["failure"]


async def test_calls_without_any_deadline_keep_none(flavour):
    script = Script()
    async with Pair(flavour, script, client=spec(retry(3))) as pair:
        await pair.call("unary_unary")
    assert script.time_left == [None]


# --------------------------------------------------------------------------- routes


async def test_routes_pick_policies_per_method_and_service(flavour):
    unary, service, default = Recorder(), Recorder(), Recorder()
    routes = {
        "test.Echo/Unary": unary,
        "test.Echo": service,
        "test.Echo/Bidi": None,  # passes through
    }
    async with Pair(flavour, Script(), client=spec(default, routes=routes)) as pair:
        await pair.call("unary_unary")
        await pair.call("unary_stream")
        await pair.call("stream_stream", requests=iter([b"a"]))  # passes through untouched
    assert unary.outcomes == ["ok"]
    assert service.outcomes == ["ok"]
    assert default.outcomes == []


async def test_unmatched_methods_get_the_default_policies(flavour):
    routed, default = Recorder(), Recorder()
    routes = {"other.Service/*": routed, "test.*/Server*": [routed]}
    async with Pair(flavour, Script(), client=spec(default, routes=routes)) as pair:
        await pair.call("unary_unary")
        await pair.call("unary_stream")
    assert default.outcomes == ["ok"]
    assert routed.outcomes == ["ok"]


async def test_a_route_value_is_looked_up_on_every_call(flavour):
    first, second = Recorder(), Recorder()
    registry: dict[str, Any] = {"*": first}
    async with Pair(flavour, Script(), client=spec(routes=registry)) as pair:
        await pair.call("unary_unary")
        registry["*"] = [second, retry(2)]
        await pair.call("unary_unary")
    assert (first.outcomes, second.outcomes) == (["ok"], ["ok"])


async def test_route_values_can_be_registry_names_looked_up_per_call(flavour):
    first, second, default = Recorder(), Recorder(), Recorder()
    registry: dict[str, Any] = {"inventory": first, "fallback": default}
    client = spec("fallback", routes={"test.Echo/Unary": ["inventory"]}, registry=registry)
    async with Pair(flavour, Script(), client=client) as pair:
        await pair.call("unary_unary")
        registry["inventory"] = second  # what a registry reload does
        await pair.call("unary_unary")
        await pair.call("unary_stream")
    assert (first.outcomes, second.outcomes, default.outcomes) == (["ok"], ["ok"], ["ok"])


async def test_a_policy_file_drives_the_interceptors(flavour):
    clock = FakeClock()
    document: dict[str, Any] = {
        "policies": {
            "inventory": {"retry": {"attempts": 3}},
            "strict": {"retry": {"attempts": 1}},
        },
        "routes": {
            "grpc": [
                {
                    "service": "test.Echo",
                    "method": "Unary",
                    "side": "client",
                    "policy": "inventory",
                },
                {"service": "test.Echo", "side": "server", "policy": "strict"},
            ]
        },
    }
    registry = rs.Registry(document, clock=clock)
    script = Script().fail(UNAVAILABLE, times=2)
    client = spec(routes=registry.grpc_routes("client"))
    async with Pair(flavour, script, client=client) as pair:
        assert await pair.call("unary_unary") == expected("unary_unary")  # 2 failures, then ok
        document["policies"]["inventory"]["retry"]["attempts"] = 1
        registry.reload(document)
        script.fail(UNAVAILABLE)
        error = await failing(pair, "unary_unary")  # the reloaded policy: one attempt
        assert await pair.call("unary_stream") == expected("unary_stream")  # no client route
    assert error.code() is UNAVAILABLE
    assert script.total == 5


def test_names_need_a_registry():
    with pytest.raises(rs.ConfigError, match="registry"):
        ClientInterceptor("inventory")
    with pytest.raises(rs.ConfigError, match="registry"):
        AsyncClientInterceptor(routes={"test.Echo": ["inventory", rs.Retry(2)]})
    with pytest.raises(rs.ConfigError, match="registry"):
        ClientInterceptor(registry=[("a", rs.Retry(2))])  # type: ignore[arg-type]


async def test_an_unknown_registry_name_is_reported_when_used(flavour):
    client = spec(routes={"test.Echo/Unary": "nope"}, registry={"known": rs.Retry(2)})
    async with Pair(flavour, Script(), client=client) as pair:
        with pytest.raises(rs.ConfigError, match="nope"):
            await pair.call("unary_unary")


def test_bad_routes_and_codes_are_config_errors():
    with pytest.raises(rs.ConfigError, match="routes"):
        ClientInterceptor(routes={"test.Echo": object()})
    with pytest.raises(rs.ConfigError, match="routes"):
        ClientInterceptor(routes=[("a", None)])  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="retry_codes"):
        AsyncClientInterceptor(retry_codes={503})
    with pytest.raises(rs.ConfigError, match="failure_codes"):
        ClientInterceptor(failure_codes={grpc.StatusCode.OK})
    with pytest.raises(rs.ConfigError, match="retry_codes"):
        ClientInterceptor(retry_codes="UNAVAILABLE")


# --------------------------------------------------------------------------- events


async def test_retry_events_carry_service_method_and_code(flavour):
    listener = RecordingListener()
    script = Script().fail(UNAVAILABLE, times=1)
    policy = rs.Retry(2, clock=FakeClock(), listeners=[listener])
    async with Pair(flavour, script, client=spec(policy)) as pair:
        await pair.call("unary_stream")
    [event] = listener.of(RetryScheduled)
    assert event.attributes == {
        "service": "test.Echo",
        "method": "ServerStream",
        "code": "UNAVAILABLE",
    }
    assert policy._emitter.local == (listener,)  # the user's retry was not changed


# --------------------------------------------------------------------------- sync specifics


async def test_sync_future_calls_run_under_the_policies():
    script = Script().fail(UNAVAILABLE, times=1)
    async with Pair("sync", script, client=spec(retry(3))) as pair:
        future = await asyncio.to_thread(pair.multicallable("unary_unary").future, b"x")
        assert future.result() == b"echo:x"
    assert script.total == 2


async def test_sync_with_call_returns_the_final_call():
    script = Script().fail(UNAVAILABLE, times=1)
    async with Pair("sync", script, client=spec(retry(3))) as pair:
        response, call = await asyncio.to_thread(pair.multicallable("unary_unary").with_call, b"x")
    assert response == b"echo:x"
    assert call.code() is grpc.StatusCode.OK


async def test_sync_streams_are_thread_safe_to_start():
    script = Script()
    async with Pair("sync", script, client=spec(retry(3))) as pair:
        stream = pair.multicallable("unary_stream")(b"x")
        codes: list[Any] = []
        threads = [threading.Thread(target=lambda: codes.append(stream.code())) for _ in range(4)]
        for thread in threads:
            thread.start()
        messages = await asyncio.to_thread(list, stream)
        for thread in threads:
            thread.join(5.0)
    assert messages == expected("unary_stream")
    assert codes == [grpc.StatusCode.OK] * 4
    assert script.total == 1


async def test_unrouted_calls_pass_through_untouched(flavour):
    async with Pair(flavour, Script(), client=spec(routes={"other.S": Recorder()})) as pair:
        assert await pair.call("unary_unary") == b"echo:x"
        assert await pair.call("stream_stream", requests=iter([b"q"])) == [b"Q"]


def test_interceptors_describe_themselves():
    assert "routes" in repr(ClientInterceptor(rs.Retry(2)))
    assert path("unary_unary") == "/test.Echo/Unary"


async def test_a_sync_stream_is_a_grpc_call_and_future():
    script = Script()
    async with Pair("sync", script, client=spec(retry(3))) as pair:
        stream = pair.multicallable("unary_stream")(b"x", timeout=5.0)
        ended: list[str] = []
        assert stream.add_callback(lambda: ended.append("before"))
        stream.add_done_callback(lambda future: ended.append("done"))
        assert stream.is_active()
        assert stream.running()
        assert stream.time_remaining() is None  # not started yet
        assert not stream.cancelled()
        messages = await asyncio.to_thread(list, stream)
        assert messages == expected("unary_stream")
        assert stream.initial_metadata() is not None
        assert stream.trailing_metadata() is not None
        assert stream.details() is None or isinstance(stream.details(), str)
        assert stream.exception() is None
        assert stream.traceback() is None
        assert stream.done()
        assert not stream.is_active()
        assert stream.debug_error_string() is not None or True
        assert not stream.cancel()  # finished: nothing to cancel
        assert not stream.add_callback(lambda: ended.append("after"))
        stream.add_done_callback(lambda future: ended.append("late"))
        assert stream.next is not None
    for _ in range(100):
        if len(ended) >= 3:
            break
        await asyncio.sleep(0.01)
    assert sorted(ended) == ["before", "done", "late"]


async def test_a_refused_sync_stream_reports_the_rejection():
    gate = Refuse(rs.CircuitOpenError("backend", retry_after=1.0))
    async with Pair("sync", Script(), client=spec(gate)) as pair:
        stream = pair.multicallable("unary_stream")(b"x")
        assert isinstance(stream.exception(), rs.CircuitOpenError)
        assert stream.code() is None
        assert "circuit_open" in stream.details()
        assert stream.initial_metadata() is None
        assert stream.done()
        assert isinstance(stream.traceback(), type(stream.exception().__traceback__))
        with pytest.raises(rs.CircuitOpenError):
            stream.result()
        with pytest.raises(rs.CircuitOpenError):
            next(stream)
        fired: list[Any] = []
        stream.add_done_callback(fired.append)
        assert fired == [stream]
        assert not stream.add_callback(lambda: None)


async def test_cancelling_a_sync_stream_before_it_starts():
    script = Script()
    async with Pair("sync", script, client=spec(retry(3))) as pair:
        stream = pair.multicallable("unary_stream")(b"x")
        assert stream.cancel()
        assert stream.cancelled()
        assert not stream.is_active()
        with pytest.raises(grpc.RpcError) as info:
            await asyncio.to_thread(list, stream)
    assert info.value.code() is grpc.StatusCode.CANCELLED
    assert script.total <= 1  # the attempt was cancelled as it started


async def test_a_fallback_can_answer_streams_with_messages(flavour):
    script = Script().fail(grpc.StatusCode.INTERNAL, times=2)
    fallback = rs.Fallback([b"cached-1", b"cached-2"])
    async with Pair(flavour, script, client=spec(fallback)) as pair:
        assert await pair.call("unary_stream") == [b"cached-1", b"cached-2"]
        assert await pair.call("stream_stream") == [b"cached-1", b"cached-2"]


async def test_a_sync_fallback_outcome_is_a_finished_call():
    script = Script().fail(grpc.StatusCode.INTERNAL)
    async with Pair("sync", script, client=spec(rs.Fallback(b"cached"))) as pair:
        response, call = await asyncio.to_thread(pair.multicallable("unary_unary").with_call, b"x")
    assert response == b"cached"
    assert call.code() is grpc.StatusCode.OK
    assert (call.details(), call.initial_metadata(), call.trailing_metadata()) == (None, None, None)
    assert (call.is_active(), call.time_remaining(), call.cancel(), call.cancelled()) == (
        False,
        None,
        False,
        False,
    )
    assert (call.running(), call.done(), call.exception(), call.traceback()) == (
        False,
        True,
        None,
        None,
    )
    assert not call.add_callback(lambda: None)
    seen: list[Any] = []
    call.add_done_callback(seen.append)
    assert seen == [call]


@pytest.mark.parametrize("arity", STREAM_REQUESTS)
async def test_a_refused_one_shot_aio_stream_raises_the_rejection(arity):
    gate = Refuse(rs.RateLimitedError("quota", retry_after=1.0))

    async def requests() -> Any:
        yield b"a"

    script = Script()
    async with Pair("aio", script, client=spec(gate)) as pair:
        with pytest.raises(rs.RateLimitedError):
            await pair.call(arity, requests=requests())
    assert script.total == 0


async def test_a_one_shot_aio_stream_that_answers_is_not_a_failure():
    script = Script().fail(grpc.StatusCode.NOT_FOUND).fail(grpc.StatusCode.NOT_FOUND)
    recorder = Recorder()

    async def requests() -> Any:
        yield b"a"

    async with Pair("aio", script, client=spec(recorder)) as pair:
        for arity in STREAM_REQUESTS:
            error = await failing(pair, arity, requests=requests())
            assert error.code() is grpc.StatusCode.NOT_FOUND
        await asyncio.sleep(0.05)
    assert recorder.outcomes == ["ok", "ok"]
