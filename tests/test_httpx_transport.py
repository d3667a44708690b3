"""The httpx transports over ``httpx.MockTransport``: the edge cases, each run
through ``httpx.Client`` + ``ResilientTransport`` and ``httpx.AsyncClient`` +
``AsyncResilientTransport`` (the ``flavour`` fixture). Backoff sleeps go to a
FakeClock, so nothing waits on the wall clock."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import itertools
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from _httpx_support import Flavour

import resilient as rs
from resilient.adapters.httpx import (
    AsyncResilientTransport,
    FailedResponseError,
    ResilientTransport,
    Route,
    request_host,
)
from resilient.adapters.httpx._core import MAX_HOLD, MAX_HOSTS, _Holds
from resilient.observability import CallFailed, CallRejected, CallSucceeded, RetryScheduled
from resilient.testing import FakeClock, RecordingListener

NOW = 1_700_000_000.0  # the injected wall clock


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)


class Log(list[str]):
    """What happened, in order: response closes and clock sleeps."""


class LoggingClock(FakeClock):
    def __init__(self, log: Log) -> None:
        super().__init__()
        self.log = log

    def sleep(self, seconds: float) -> None:
        self.log.append(f"sleep {seconds:g}")
        super().sleep(seconds)


class Tracked(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body that logs when it is closed."""

    def __init__(self, content: bytes, log: Log, label: str) -> None:
        self.content, self.log, self.label, self.closed = content, log, label, False

    def __iter__(self) -> Iterator[bytes]:
        yield self.content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.content

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.log.append(f"close {self.label}")

    async def aclose(self) -> None:
        self.close()


@dataclasses.dataclass
class Seen:
    method: str
    host: str
    headers: httpx.Headers
    body: bytes
    timeout: dict[str, float | None]


class Script:
    """A MockTransport handler answering from a script: a status, ``(status,
    headers)`` or an exception per request, then ``default``."""

    def __init__(self, *outcomes: Any, default: Any = 200, length: bool = False) -> None:
        self.outcomes = list(outcomes)
        self.default = default
        self.length = length
        self.seen: list[Seen] = []
        self.log = Log()
        self.streams: list[Tracked] = []
        self.on_request: Any = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        number = len(self.seen) + 1
        self.seen.append(
            Seen(
                request.method,
                request.url.host,
                request.headers.copy(),
                request.read(),
                dict(request.extensions.get("timeout", {})),
            )
        )
        if self.on_request is not None:
            self.on_request(request)
        item = self.outcomes.pop(0) if self.outcomes else self.default
        if isinstance(item, BaseException):
            raise item
        status, headers = item if isinstance(item, tuple) else (item, {})
        content = f"body {number}".encode()
        if self.length:
            headers = {**headers, "content-length": str(len(content))}
        stream = Tracked(content, self.log, str(number))
        self.streams.append(stream)
        return httpx.Response(status, headers=headers, stream=stream)

    @property
    def calls(self) -> int:
        return len(self.seen)

    @property
    def mock(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def fixed(seconds: float = 1.0) -> rs.Backoff:
    return (
        rs.Backoff.constant(seconds)
        if hasattr(rs.Backoff, "constant")
        else rs.Backoff(initial=seconds, maximum=seconds, multiplier=1.0, jitter="none")
    )


def retry(attempts: int = 3, clock: FakeClock | None = None, **kw: Any) -> rs.Retry:
    return rs.Retry(attempts, backoff=fixed(), clock=clock or FakeClock(), **kw)


URL = "http://api.example.com/items?token=secret"


# -- what is retried -------------------------------------------------------------------------


def test_retries_a_503_then_returns_the_success(flavour):
    script = Script(503, 503)
    clock = FakeClock()
    transport = flavour.transport(retry(3, clock), transport=script.mock)
    response = flavour.send(transport, "GET", URL)
    assert response.status_code == 200
    assert response.text == "body 3"
    assert script.calls == 3
    assert clock.sleeps == [1.0, 1.0]


def test_when_retries_run_out_the_caller_gets_the_last_real_response(flavour):
    script = Script(default=503)
    transport = flavour.transport(retry(3), transport=script.mock)
    response = flavour.send(transport, "GET", URL)
    assert type(response) is httpx.Response
    assert response.status_code == 503
    assert response.text == "body 3"
    assert script.calls == 3
    # The discarded responses were closed; the last one was read by the client.
    assert [s.closed for s in script.streams] == [True, True, True]


@pytest.mark.parametrize("length", [False, True], ids=["closed", "drained"])
def test_a_retried_response_is_closed_before_the_sleep(flavour, length):
    script = Script(503, 502, length=length)
    clock = LoggingClock(script.log)
    transport = flavour.transport(retry(3, clock), transport=script.mock)
    response = flavour.send(transport, "GET", URL)
    assert response.status_code == 200
    assert script.log == ["close 1", "sleep 1", "close 2", "sleep 1", "close 3"]


def test_a_drained_last_response_is_still_readable_and_streamable(flavour):
    script = Script(default=503, length=True)
    transport = flavour.transport(retry(2), transport=script.mock)
    response = flavour.send(transport, "GET", URL, stream=True)
    assert response.status_code == 503
    assert script.streams[-1].closed  # drained: the connection went back already
    assert not response.is_stream_consumed
    content = asyncio.run(response.aread()) if flavour.is_async else response.read()
    assert content == b"body 2"


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_default_retry_statuses(flavour, status):
    script = Script(status)
    transport = flavour.transport(retry(2), transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert script.calls == 2


@pytest.mark.parametrize("status", [400, 404, 500, 501])
def test_other_statuses_are_not_retried(flavour, status):
    script = Script(status)
    transport = flavour.transport(retry(3), transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == status
    assert script.calls == 1


def test_retry_statuses_are_configurable(flavour):
    script = Script(500, 503)
    transport = flavour.transport(retry(3), transport=script.mock, retry_statuses=[500])
    assert flavour.send(transport, "GET", URL).status_code == 503
    assert script.calls == 2


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"])
def test_idempotent_methods_are_retried(flavour, method):
    script = Script(503)
    transport = flavour.transport(retry(2), transport=script.mock)
    assert flavour.send(transport, method, URL).status_code == 200
    assert script.calls == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_non_idempotent_methods_are_not_retried_on_statuses_or_read_errors(flavour, method):
    script = Script(503)
    transport = flavour.transport(retry(3), transport=script.mock)
    assert flavour.send(transport, method, URL, content=b"x").status_code == 503
    assert script.calls == 1
    script = Script(httpx.ReadError("reset"))
    transport = flavour.transport(retry(3), transport=script.mock)
    with pytest.raises(httpx.ReadError):
        flavour.send(transport, method, URL, content=b"x")
    assert script.calls == 1


def test_non_idempotent_methods_are_retried_when_the_request_was_never_sent(flavour):
    script = Script(httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"))
    transport = flavour.transport(retry(3), transport=script.mock)
    assert flavour.send(transport, "POST", URL, content=b"x").status_code == 200
    assert script.calls == 3
    script = Script(httpx.ConnectError("refused"))
    transport = flavour.transport(retry(3), transport=script.mock, retry_unsent=False)
    with pytest.raises(httpx.ConnectError):
        flavour.send(transport, "POST", URL, content=b"x")
    assert script.calls == 1


def test_retry_methods_opt_in_with_a_constant_idempotency_key(flavour):
    script = Script(503, 503)
    keys = (f"key-{n}" for n in itertools.count())
    transport = flavour.transport(
        retry(3),
        transport=script.mock,
        retry_methods={"GET", "post"},
        idempotency_key=lambda: next(keys),
    )
    assert flavour.send(transport, "POST", URL, content=b"x").status_code == 200
    assert [s.headers["idempotency-key"] for s in script.seen] == ["key-0"] * 3
    # A caller's own key is kept; idempotent methods get none.
    flavour.send(transport, "POST", URL, content=b"x", headers={"Idempotency-Key": "mine"})
    assert script.seen[-1].headers["idempotency-key"] == "mine"
    flavour.send(transport, "GET", URL)
    assert "idempotency-key" not in script.seen[-1].headers


def test_default_idempotency_keys_are_uuids(flavour):
    script = Script()
    transport = flavour.transport(retry(), transport=script.mock, idempotency_key=True)
    flavour.send(transport, "POST", URL, content=b"x")
    flavour.send(transport, "POST", URL, content=b"x")
    first, second = (s.headers["idempotency-key"] for s in script.seen)
    assert len(first) == 36
    assert first != second


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadError("reset"),
        httpx.ReadTimeout("slow read"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_errors_are_retried(flavour, error):
    script = Script(error)
    transport = flavour.transport(retry(3), transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert script.calls == 2


def test_the_last_transport_error_is_reraised_unwrapped_with_a_note(flavour):
    errors = [httpx.ReadTimeout(f"slow {n}") for n in range(3)]
    script = Script(*errors)
    transport = flavour.transport(retry(3, name="api"), transport=script.mock)
    with pytest.raises(httpx.ReadTimeout) as info:
        flavour.send(transport, "GET", URL)
    assert info.value is errors[2]
    assert any("gave up after 3 attempts" in note for note in info.value.__notes__)


def test_other_errors_are_not_retried_unless_the_retry_says_so(flavour):
    script = Script(httpx.UnsupportedProtocol("gopher"))
    transport = flavour.transport(retry(3), transport=script.mock)
    with pytest.raises(httpx.UnsupportedProtocol):
        flavour.send(transport, "GET", URL)
    assert script.calls == 1
    script = Script(httpx.UnsupportedProtocol("gopher"))
    transport = flavour.transport(
        retry(3, retry_on=httpx.UnsupportedProtocol), transport=script.mock
    )
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert script.calls == 2


def test_the_retrys_own_exception_predicate_still_applies(flavour):
    script = Script(httpx.DecodingError("bad gzip"), httpx.UnsupportedProtocol("x"))
    transport = flavour.transport(
        retry(3, retry_on=lambda exc: isinstance(exc, httpx.DecodingError)), transport=script.mock
    )
    with pytest.raises(httpx.UnsupportedProtocol):
        flavour.send(transport, "GET", URL)
    assert script.calls == 2


def test_the_retrys_own_result_predicate_still_applies(flavour):
    script = Script(202, 202)
    transport = flavour.transport(
        retry(3, retry_if=lambda response: response.status_code == 202), transport=script.mock
    )
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert script.calls == 3


# -- request bodies --------------------------------------------------------------------------


def body(flavour: Flavour, *chunks: bytes) -> Any:
    if flavour.is_async:

        async def agen() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return agen()

    def gen() -> Iterator[bytes]:
        yield from chunks

    return gen()


def test_a_small_streamed_body_is_buffered_and_replayed(flavour):
    script = Script(503)
    transport = flavour.transport(retry(3), transport=script.mock)
    response = flavour.send(transport, "PUT", URL, content=body(flavour, b"ab", b"cd"))
    assert response.status_code == 200
    assert [s.body for s in script.seen] == [b"abcd", b"abcd"]


def test_a_large_streamed_body_is_sent_whole_once_and_not_retried(flavour):
    script = Script(503)
    transport = flavour.transport(retry(3), transport=script.mock, buffer_body=3)
    response = flavour.send(transport, "PUT", URL, content=body(flavour, b"ab", b"cd", b"ef"))
    assert response.status_code == 503
    assert [s.body for s in script.seen] == [b"abcdef"]


def test_a_streamed_body_with_a_long_content_length_is_not_read_ahead(flavour):
    script = Script(503)
    transport = flavour.transport(retry(3), transport=script.mock, buffer_body=3)
    response = flavour.send(
        transport, "PUT", URL, content=body(flavour, b"abcd"), headers={"Content-Length": "4"}
    )
    assert response.status_code == 503
    assert script.calls == 1


def test_without_buffering_a_stream_is_not_retried_even_when_unsent(flavour):
    script = Script(httpx.ConnectError("refused"))
    transport = flavour.transport(retry(3), transport=script.mock, buffer_body=0)
    with pytest.raises(httpx.ConnectError):
        flavour.send(transport, "PUT", URL, content=body(flavour, b"ab"))
    assert script.calls == 1


def test_bodies_in_memory_are_replayed(flavour):
    script = Script(503)
    transport = flavour.transport(retry(3), transport=script.mock, buffer_body=0)
    flavour.send(transport, "PUT", URL, json={"a": 1})
    assert [s.body for s in script.seen] == [b'{"a":1}'] * 2


# -- server hints ----------------------------------------------------------------------------


def test_retry_after_seconds_replaces_the_backoff(flavour):
    script = Script((503, {"Retry-After": "7"}), (429, {"Retry-After": "0"}))
    clock = FakeClock()
    transport = flavour.transport(retry(3, clock), transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert clock.sleeps == [7.0, 0.0]


def test_retry_after_http_date_uses_the_injected_wall_clock(flavour):
    date = email.utils.formatdate(NOW + 12, usegmt=True)
    script = Script(
        (503, {"Retry-After": date}), (503, {"Retry-After": "Thu, 01 Jan 2015 00:00:00 GMT"})
    )
    clock = FakeClock()
    transport = flavour.transport(retry(3, clock), transport=script.mock, now=lambda: NOW)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert clock.sleeps == [12.0, 0.0]


def test_rate_limit_fields_feed_the_delay_and_retry_after_wins(flavour):
    script = Script(
        (429, {"RateLimit": '"burst";r=0;t=4', "RateLimit-Policy": '"burst";q=10;w=60'}),
        (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 9)}),
        (429, {"RateLimit": '"burst";r=0;t=4', "Retry-After": "2"}),
        (503, {"Retry-After": "soon", "RateLimit": "malformed;;"}),
    )
    clock = FakeClock()
    transport = flavour.transport(retry(5, clock), transport=script.mock, now=lambda: NOW)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert clock.sleeps == [4.0, 9.0, 2.0, 1.0]  # the malformed hints fall back to the backoff


def test_a_hint_is_capped_by_max_retry_after(flavour):
    script = Script((503, {"Retry-After": "3600"}))
    clock = FakeClock()
    transport = flavour.transport(retry(2, clock, max_retry_after=30), transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert clock.sleeps == [30.0]


def test_a_hint_longer_than_the_deadline_ends_the_retries_at_once(flavour):
    script = Script((503, {"Retry-After": "20"}))
    clock = FakeClock()
    transport = flavour.transport(retry(3, clock, deadline=10), transport=script.mock)
    response = flavour.send(transport, "GET", URL)
    assert response.status_code == 503
    assert script.calls == 1
    assert clock.sleeps == []


# -- failures for the other policies -----------------------------------------------------------


class Spy:
    """A policy recording what it sees (its arguments, and outcomes as exceptions)."""

    def __init__(self) -> None:
        self.args: list[tuple[Any, ...]] = []
        self.outcomes: list[Any] = []

    def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.args.append(args)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.outcomes.append(exc)
            raise
        self.outcomes.append(result)
        return result

    async def acall(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.args.append(args)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self.outcomes.append(exc)
            raise
        self.outcomes.append(result)
        return result


def test_policies_see_failure_statuses_as_exceptions_and_get_the_request(flavour):
    script = Script(503, 500, 200)
    outer, inner = Spy(), Spy()
    transport = flavour.transport(outer, retry(3), inner, transport=script.mock)
    response = flavour.send(transport, "GET", URL)
    assert response.status_code == 500  # 500 is a failure but not retried
    assert [type(o) for o in inner.outcomes] == [FailedResponseError] * 2
    assert [o.response.status_code for o in inner.outcomes] == [503, 500]
    # Outside the retry, the final failure is still seen as one.
    (final,) = outer.outcomes
    assert isinstance(final, FailedResponseError)
    assert isinstance(final, httpx.HTTPStatusError)
    assert final.response is response
    assert "api.example.com" in str(final)
    assert "secret" not in str(final)
    request = outer.args[0][0]
    assert isinstance(request, httpx.Request)
    assert inner.args[0] == (request,)
    assert request_host(request) == "api.example.com"


def test_429_is_not_a_failure_by_default_but_can_be(flavour):
    script = Script(429)
    spy = Spy()
    transport = flavour.transport(spy, transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 429
    assert isinstance(spy.outcomes[0], httpx.Response)
    script = Script((429, {"Retry-After": "3"}))
    spy = Spy()
    transport = flavour.transport(spy, transport=script.mock, failure_statuses=[429])
    assert flavour.send(transport, "GET", URL).status_code == 429
    assert isinstance(spy.outcomes[0], FailedResponseError)
    assert spy.outcomes[0].retry_after == 3.0


def test_a_fallback_can_answer_a_failed_response(flavour):
    script = Script(default=503)
    fallback = rs.Fallback(
        handler=lambda exc: httpx.Response(200, text=f"cached ({exc.response.status_code})")
    )
    transport = flavour.transport(fallback, retry(2), transport=script.mock)
    response = flavour.send(transport, "GET", URL)
    assert (response.status_code, response.text) == (200, "cached (503)")
    transport = flavour.transport(rs.Fallback("not a response"), transport=Script(500).mock)
    with pytest.raises(TypeError, match=r"httpx\.Response"):
        flavour.send(transport, "GET", URL)


def test_rejections_reach_the_caller(flavour):
    class Reject:
        def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            raise rs.CircuitOpenError("api", retry_after=5.0)

        async def acall(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            raise rs.CircuitOpenError("api", retry_after=5.0)

    script = Script()
    transport = flavour.transport(retry(3), Reject(), transport=script.mock)
    with pytest.raises(rs.CircuitOpenError):
        flavour.send(transport, "GET", URL)
    assert script.calls == 0


def test_pipelines_are_flattened_and_keep_their_order(flavour):
    script = Script(503)
    spy = Spy()
    transport = flavour.transport(rs.Pipeline(retry(2), rs.Pipeline(spy)), transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert len(spy.args) == 2  # inside the retry: once per attempt


def test_without_policies_nothing_is_retried_but_failures_still_come_back(flavour):
    script = Script(503)
    transport = flavour.transport(transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 503
    assert script.calls == 1


# -- the adapted retry ---------------------------------------------------------------------------


def test_the_adapted_retry_keeps_the_users_settings():
    clock = FakeClock()
    listener = RecordingListener()
    budget = rs.RetryBudget() if hasattr(rs, "RetryBudget") else None
    extra = {"budget": budget} if budget is not None else {}
    user = rs.Retry(
        5,
        backoff=fixed(2.0),
        deadline=30,
        max_retry_after=12,
        retry_rejected=True,
        name="api",
        clock=clock,
        listeners=[listener],
        **extra,
    )
    transport = ResilientTransport(user, transport=Script().mock)
    adapted = transport._core.adapt(user, 2)
    assert adapted is not user
    assert (adapted.name, adapted.clock) == ("api", clock)
    assert listener in adapted._emitter.local
    for field in dataclasses.fields(user.config):
        if field.name not in ("retry_on", "retry_if", "retry_after"):
            assert getattr(adapted.config, field.name) is getattr(user.config, field.name)


def test_retry_events_carry_method_host_and_status_but_never_the_url(flavour):
    listener = RecordingListener()
    script = Script(503, httpx.ConnectError("refused"))
    transport = flavour.transport(retry(3, listeners=[listener]), transport=script.mock)
    flavour.send(transport, "GET", "http://user:pw@api.example.com:8080/items?token=secret")
    first, second = listener.of(RetryScheduled)
    assert first.attributes == {"method": "GET", "host": "api.example.com:8080", "status": 503}
    assert second.attributes == {
        "method": "GET",
        "host": "api.example.com:8080",
        "error": "ConnectError",
    }
    (succeeded,) = listener.of(CallSucceeded)
    assert succeeded.attributes["status"] == 200
    listener.clear()
    script = Script(*[httpx.ConnectError("refused")] * 2)
    transport = flavour.transport(retry(2, listeners=[listener]), transport=script.mock)
    with pytest.raises(httpx.ConnectError):
        flavour.send(transport, "GET", URL)
    (gave_up,) = listener.of(CallFailed)
    assert gave_up.attributes == {
        "method": "GET",
        "host": "api.example.com",
        "error": "ConnectError",
    }
    for event in listener.events:
        text = repr(event.attributes)
        assert "secret" not in text
        assert "pw" not in text
        assert "/items" not in text


# -- deadlines ---------------------------------------------------------------------------------


def test_request_timeouts_are_clamped_to_the_deadline_left(flavour):
    clock = FakeClock()
    script = Script(503, 503)
    script.on_request = lambda request: clock.advance(3.0)
    transport = flavour.transport(retry(3, clock, deadline=10), transport=script.mock)
    flavour.send(transport, "GET", URL, timeout=httpx.Timeout(8.0, connect=2.0))
    # Attempt 1 starts with 10 s left, attempt 2 after 3 + 1 s, attempt 3 after 8 s.
    assert [s.timeout for s in script.seen] == [
        {"connect": 2.0, "read": 8.0, "write": 8.0, "pool": 8.0},
        {"connect": 2.0, "read": 6.0, "write": 6.0, "pool": 6.0},
        {"connect": 2.0, "read": 2.0, "write": 2.0, "pool": 2.0},
    ]


def test_sync_timeout_clamps_and_the_request_extensions_are_restored():
    clock = FakeClock()
    script = Script()
    transport = ResilientTransport(rs.Timeout(1.5, clock=clock), transport=script.mock)
    request = httpx.Request("GET", URL, extensions={"timeout": {"connect": 5.0, "read": None}})
    original = request.extensions
    transport.handle_request(request)
    assert script.seen[0].timeout == {"connect": 1.5, "read": 1.5, "write": 1.5, "pool": 1.5}
    assert request.extensions is original


def test_an_io_timeout_imposed_by_the_deadline_becomes_the_policys_timeout():
    clock = FakeClock()
    script = Script(httpx.ReadTimeout("timed out"))
    transport = ResilientTransport(rs.Timeout(1.0, clock=clock, name="call"), transport=script.mock)
    client = httpx.Client(transport=transport, timeout=5.0)
    with client, pytest.raises(rs.TimeoutExceededError) as info:
        client.get(URL)
    assert info.value.policy == "call"
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    # Its own (shorter) timeout stays httpx's.
    script = Script(httpx.ReadTimeout("timed out"))
    transport = ResilientTransport(rs.Timeout(10.0, clock=clock), transport=script.mock)
    with httpx.Client(transport=transport, timeout=5.0) as client, pytest.raises(httpx.ReadTimeout):
        client.get(URL)


def test_no_retry_starts_once_an_outer_deadline_has_passed():
    clock = FakeClock()
    script = Script(503)
    script.on_request = lambda request: clock.advance(5.0)
    transport = ResilientTransport(
        rs.Timeout(4.0, clock=clock), retry(3, clock), transport=script.mock
    )
    response = transport.handle_request(httpx.Request("GET", URL))
    assert response.status_code == 503
    assert script.calls == 1
    assert clock.sleeps == []


def test_nothing_is_sent_once_the_deadline_has_passed(flavour):
    clock = FakeClock()

    class Slow(Spy):
        def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            clock.advance(2.0)
            return fn(*args, **kwargs)

        async def acall(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            clock.advance(2.0)
            return await fn(*args, **kwargs)

    script = Script()
    transport = flavour.transport(
        retry(3, clock, deadline=1.0, name="budget"), Slow(), transport=script.mock
    )
    with pytest.raises(rs.TimeoutExceededError) as info:
        flavour.send(transport, "GET", URL)
    assert info.value.policy == "budget"
    assert script.calls == 0


# -- pacing ------------------------------------------------------------------------------------


def test_pacing_holds_a_host_after_a_hint(flavour):
    script = Script((429, {"Retry-After": "5"}))
    clock = FakeClock()
    transport = flavour.transport(transport=script.mock, pace=True, clock=clock)
    assert flavour.send(transport, "GET", URL).status_code == 429
    assert flavour.send(transport, "GET", URL).status_code == 200
    assert clock.sleeps == [5.0]
    flavour.send(transport, "GET", "http://other.example.com/")  # another host: no wait
    flavour.send(transport, "GET", URL)  # the hold has passed
    assert clock.sleeps == [5.0]


def test_holds_are_bounded_and_expire():
    clock = FakeClock()
    holds = _Holds(clock)
    for n in range(MAX_HOSTS + 10):
        holds.hold(f"h{n}", 10.0)
    assert holds.wait("h0") == 0.0  # the least recently held were forgotten
    assert holds.wait(f"h{MAX_HOSTS + 9}") == 10.0
    holds.hold("x", 1e9)
    assert holds.wait("x") == MAX_HOLD
    holds.hold("x", 1.0)  # a shorter hint never shortens a hold
    assert holds.wait("x") == MAX_HOLD
    clock.advance(MAX_HOLD)
    assert holds.wait("x") == 0.0
    assert "x" not in holds._until


def test_pacing_also_follows_an_exhausted_quota_and_rejects_long_waits(flavour):
    script = Script((200, {"RateLimit": '"default";r=0;t=100'}))
    listener = RecordingListener()
    transport = flavour.transport(
        transport=script.mock,
        pace=True,
        clock=FakeClock(),
        max_pace_wait=10,
        listeners=[listener],
    )
    assert flavour.send(transport, "GET", URL).status_code == 200
    with pytest.raises(rs.RateLimitedError) as info:
        flavour.send(transport, "GET", URL)
    assert info.value.retry_after == pytest.approx(100.0)
    assert info.value.key == "api.example.com"
    assert script.calls == 1
    (event,) = listener.of(CallRejected)
    assert event.attributes == {"method": "GET", "host": "api.example.com"}


def test_without_pacing_nothing_is_held(flavour):
    script = Script((429, {"Retry-After": "5"}))
    clock = FakeClock()
    transport = flavour.transport(transport=script.mock, clock=clock)
    flavour.send(transport, "GET", URL)
    flavour.send(transport, "GET", URL)
    assert clock.sleeps == []


# -- routes ------------------------------------------------------------------------------------


def test_routes_pick_policies_per_host_path_and_method(flavour):
    script = Script(default=503)
    transport = flavour.transport(
        retry(2),
        transport=script.mock,
        routes=[
            Route(retry(4), host="pay.example.com", path="/v2"),
            Route(None, methods=["DELETE"]),
            Route([retry(3)], host="*.internal"),
        ],
    )

    def calls(method: str, url: str) -> int:
        before = script.calls
        flavour.send(transport, method, url)
        return script.calls - before

    assert calls("GET", "http://pay.example.com/v2/charges") == 4
    assert calls("GET", "http://pay.example.com/v2") == 4
    assert calls("GET", "http://pay.example.com/v20") == 2  # segment boundary: default
    assert calls("GET", "http://PAY.example.com/v2/x") == 4  # host case-insensitive
    assert calls("DELETE", "http://pay.example.com/v2/x") == 4  # first match wins
    assert calls("DELETE", "http://api.example.com/") == 1
    assert calls("GET", "http://db.internal/") == 3
    assert calls("GET", "http://internal/") == 2


def test_routes_match_a_port_when_given():
    route = Route(None, host="api.example.com:8443")
    assert route.matches("api.example.com", "api.example.com:8443", "/", "GET")
    assert not route.matches("api.example.com", "api.example.com", "/", "GET")


def test_routes_resolve_registry_names_per_request(flavour):
    script = Script(default=503)
    registry: dict[str, Any] = {"payments": rs.Pipeline(retry(4))}
    transport = flavour.transport(
        "payments", transport=script.mock, registry=registry, routes=[Route(retry(2), host="b")]
    )
    flavour.send(transport, "GET", URL)
    assert script.calls == 4
    registry["payments"] = retry(3)  # a reloaded registry
    flavour.send(transport, "GET", URL)
    assert script.calls == 7


def test_bad_settings_are_config_errors():
    mock = Script().mock
    with pytest.raises(rs.ConfigError, match="registry"):
        ResilientTransport("payments", transport=mock)
    with pytest.raises(rs.ConfigError, match="payments"):
        ResilientTransport(routes=[Route("payments")], registry={}, transport=mock)
    with pytest.raises(rs.ConfigError, match="retry_statuses"):
        ResilientTransport(retry_statuses=[600], transport=mock)
    with pytest.raises(rs.ConfigError, match="retry_methods"):
        AsyncResilientTransport(retry_methods="GET", transport=mock)
    with pytest.raises(rs.ConfigError, match="buffer_body"):
        ResilientTransport(buffer_body=-1, transport=mock)
    with pytest.raises(rs.ConfigError, match="retry_errors"):
        ResilientTransport(retry_errors=("x",), transport=mock)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match=r"Route\.host"):
        Route(None, host="http://x/")
    with pytest.raises(rs.ConfigError, match=r"Route\.path"):
        Route(None, path="v2")
    with pytest.raises(rs.ConfigError, match="policies"):
        ResilientTransport(object(), transport=mock)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError, match="routes"):
        ResilientTransport(routes=["x"], transport=mock)  # type: ignore[list-item]


def test_close_closes_the_inner_transport():
    closed = []

    class Inner(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        def close(self) -> None:
            closed.append(True)

    with ResilientTransport(transport=Inner()) as transport:
        assert "ResilientTransport" in repr(transport)
    assert closed == [True]


@pytest.mark.skipif(not hasattr(rs, "CircuitBreaker"), reason="CircuitBreaker has not landed yet")
def test_a_breaker_can_stay_open_as_long_as_the_server_asks(flavour):
    clock = FakeClock()
    breaker = rs.CircuitBreaker(
        name="api", minimum_calls=1, open_on_retry_after=True, open_for=5, clock=clock
    )
    script = Script((503, {"Retry-After": "120"}))
    transport = flavour.transport(breaker, transport=script.mock)
    assert flavour.send(transport, "GET", URL).status_code == 503
    with pytest.raises(rs.CircuitOpenError) as info:
        flavour.send(transport, "GET", URL)
    assert info.value.retry_after == pytest.approx(120.0)


# -- concurrency -------------------------------------------------------------------------------


class FailFirstTry:
    """Fails the first attempt of every request (told apart by an ``X-Id`` header)
    with a 503, then answers 200; counts attempts per id, thread-safely."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        ident = request.headers["x-id"]
        with self.lock:
            self.attempts[ident] += 1
            first = self.attempts[ident] == 1
        return httpx.Response(503 if first else 200, text=ident)


def test_threads_sharing_one_transport_retry_exactly_their_own_requests():
    service = FailFirstTry()
    listener = RecordingListener()
    transport = ResilientTransport(
        retry(3, listeners=[listener]), transport=httpx.MockTransport(service)
    )
    client = httpx.Client(transport=transport)

    def worker(n: int) -> None:
        for i in range(50):
            ident = f"{n}-{i}"
            response = client.get(f"http://host{n}.example.com/", headers={"X-Id": ident})
            assert (response.status_code, response.text) == (200, ident)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(service.attempts) == 400
    assert set(service.attempts.values()) == {2}
    events = listener.of(RetryScheduled)
    assert len(events) == 400
    assert Counter(e.attributes["host"] for e in events) == {
        f"host{n}.example.com": 50 for n in range(8)
    }


def test_concurrent_tasks_sharing_one_transport_retry_exactly_their_own_requests():
    service = FailFirstTry()
    listener = RecordingListener()
    transport = AsyncResilientTransport(
        retry(3, listeners=[listener]), transport=httpx.MockTransport(service)
    )

    async def main() -> None:
        async with httpx.AsyncClient(transport=transport) as client:

            async def one(n: int) -> None:
                response = await client.get(
                    f"http://host{n % 5}.example.com/", headers={"X-Id": str(n)}
                )
                assert (response.status_code, response.text) == (200, str(n))

            await asyncio.gather(*(one(n) for n in range(200)))

    asyncio.run(main())
    assert set(service.attempts.values()) == {2}
    assert len(service.attempts) == 200
    events = listener.of(RetryScheduled)
    assert Counter(e.attributes["host"] for e in events) == {
        f"host{n}.example.com": 40 for n in range(5)
    }


def test_a_policy_file_drives_the_routes(flavour):
    registry = rs.load_config(
        {
            "policies": {
                "payments": {"retry": {"attempts": 4}},
                "default": {"retry": {"attempts": 2}},
            },
            "routes": {"httpx": [{"policy": "payments", "host": "pay.example.com", "path": "/v2"}]},
        },
        clock=FakeClock(),
    )
    script = Script(default=503)
    transport = flavour.transport(
        "default",
        registry=registry,
        routes=registry.routes.httpx_routes(),
        transport=script.mock,
    )
    flavour.send(transport, "GET", "http://pay.example.com/v2/charges")
    assert script.calls == 4
    flavour.send(transport, "GET", "http://pay.example.com/v1/charges")
    assert script.calls == 6


def test_a_name_removed_by_a_reload_is_a_config_error():
    registry: dict[str, Any] = {"payments": retry(2)}
    transport = ResilientTransport("payments", registry=registry, transport=Script().mock)
    del registry["payments"]
    with pytest.raises(rs.ConfigError, match="payments"):
        transport.handle_request(httpx.Request("GET", URL))
