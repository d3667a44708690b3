"""The httpx transports against a real HTTP server: uvicorn on 127.0.0.1 (a free
port) serving a small ASGI app, with ``httpx.Client`` and ``httpx.AsyncClient``.
Retry backoff runs on a FakeClock; only the timeout tests wait (a fraction of a
second) on the wall clock."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from _httpx_support import App, Flavour, Server, closed_port, serve

import resilient as rs
from resilient.adapters.httpx import AsyncResilientTransport, ResilientTransport, request_host
from resilient.observability import RetryScheduled
from resilient.testing import FakeClock, RecordingListener

_keys = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve(App()) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    return Flavour(request.param)


def key() -> str:
    return f"k{next(_keys)}"


def retry(attempts: int = 3, **kw: Any) -> rs.Retry:
    return rs.Retry(attempts, backoff=rs.Backoff.constant(0.5), clock=FakeClock(), **kw)


def test_a_flaky_service_is_retried_until_it_answers(server, flavour):
    path = f"/flaky/{key()}"
    transport = flavour.transport(retry(3))
    response = flavour.send(transport, "GET", f"{server.url}{path}?fail=2&status=503")
    assert (response.status_code, response.text) == (200, "attempt 3")
    assert server.app.counts[path] == 3


def test_retry_after_from_the_server_sets_the_delay(server, flavour):
    path = f"/flaky/{key()}"
    clock = FakeClock()
    transport = flavour.transport(rs.Retry(3, clock=clock))
    url = f"{server.url}{path}?fail=2&status=429&retry_after=3"
    assert flavour.send(transport, "GET", url).status_code == 200
    assert clock.sleeps == [3.0, 3.0]


def test_when_retries_run_out_the_last_response_comes_back(server, flavour):
    path = f"/flaky/{key()}"
    transport = flavour.transport(retry(2))
    response = flavour.send(transport, "GET", f"{server.url}{path}?fail=5&status=504")
    assert (response.status_code, response.text) == (504, "attempt 2")
    assert server.app.counts[path] == 2


def test_post_is_not_retried_on_a_status(server, flavour):
    path = f"/flaky/{key()}"
    transport = flavour.transport(retry(3))
    response = flavour.send(transport, "POST", f"{server.url}{path}?fail=1", content=b"order")
    assert response.status_code == 503
    assert server.app.counts[path] == 1


def test_post_with_an_idempotency_key_when_opted_in(server, flavour):
    path = f"/flaky/{key()}"
    transport = flavour.transport(retry(3), retry_methods={"GET", "POST"}, idempotency_key=True)
    response = flavour.send(transport, "POST", f"{server.url}{path}?fail=2", json={"n": 1})
    assert response.status_code == 200
    keys = server.app.keys[path]
    assert len(keys) == 3
    assert keys[0] is not None
    assert len(set(keys)) == 1
    assert server.app.bodies[path] == [b'{"n":1}'] * 3


def test_a_streamed_upload_is_buffered_and_replayed(server, flavour):
    path = f"/flaky/{key()}"
    chunks = [b"alpha-", b"beta-", b"gamma"]
    if flavour.is_async:

        async def agen() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        content: Any = agen()
    else:
        content = iter(chunks)
    transport = flavour.transport(retry(3))
    response = flavour.send(transport, "PUT", f"{server.url}{path}?fail=1", content=content)
    assert response.status_code == 200
    assert server.app.bodies[path] == [b"alpha-beta-gamma"] * 2


def test_connection_refused_is_retried_then_raised(flavour):
    listener = RecordingListener()
    transport = flavour.transport(retry(3, listeners=[listener]))
    url = f"http://127.0.0.1:{closed_port()}/x"
    with pytest.raises(httpx.ConnectError):
        flavour.send(transport, "POST", url, content=b"never sent")
    events = listener.of(RetryScheduled)
    assert [e.attempt for e in events] == [1, 2]
    assert all(e.attributes["error"] == "ConnectError" for e in events)
    assert all(e.attributes["host"].startswith("127.0.0.1:") for e in events)


# -- the connection pool -------------------------------------------------------------------


def connections(transport: ResilientTransport | AsyncResilientTransport) -> list[Any]:
    pool = transport.transport._pool  # type: ignore[attr-defined]
    return list(pool.connections)


@pytest.mark.parametrize("size", [10, 100_000], ids=["drained", "closed"])
def test_retried_responses_release_their_connections_sync(server, size):
    path = f"/flaky/{key()}"
    transport = ResilientTransport(retry(4))
    with httpx.Client(transport=transport) as client:
        for _ in range(3):
            client.get(f"{server.url}/ok")  # a warm, idle connection
        response = client.get(f"{server.url}{path}?fail=3&size={size}")
        assert response.status_code == 200
        pool = connections(transport)
        # No response is left holding a connection: one idle connection remains
        # (the same one reused when the small bodies were read; the last of
        # several new ones when big bodies were closed unread).
        assert len(pool) == 1
        assert pool[0].is_idle()
    assert server.app.counts[path] == 4


@pytest.mark.parametrize("size", [10, 100_000], ids=["drained", "closed"])
def test_retried_responses_release_their_connections_async(server, size):
    path = f"/flaky/{key()}"

    async def go() -> None:
        transport = AsyncResilientTransport(retry(4))
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                await client.get(f"{server.url}/ok")
            response = await client.get(f"{server.url}{path}?fail=3&size={size}")
            assert response.status_code == 200
            pool = connections(transport)
            assert len(pool) == 1
            assert pool[0].is_idle()

    asyncio.run(go())
    assert server.app.counts[path] == 4


def test_small_retried_bodies_reuse_one_connection(server):
    path = f"/flaky/{key()}"
    opened = []

    class Counting(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            opened.append(len(self._pool.connections))
            return super().handle_request(request)

    transport = ResilientTransport(retry(4), transport=Counting())
    with httpx.Client(transport=transport) as client:
        assert client.get(f"{server.url}{path}?fail=3&size=10").status_code == 200
        assert len(connections(transport)) == 1
    assert opened == [0, 1, 1, 1]  # one connection, reused by every retry


# -- deadlines -------------------------------------------------------------------------------


def test_a_timeout_cuts_a_slow_response(server, flavour):
    transport = flavour.transport(rs.Timeout(0.3, name="call"))
    started = time.monotonic()
    with pytest.raises(rs.TimeoutExceededError) as info:
        flavour.send(transport, "GET", f"{server.url}/slow?seconds=3", timeout=10.0)
    assert time.monotonic() - started < 2.0
    assert info.value.policy == "call"


def test_a_retry_deadline_bounds_every_attempt(server):
    transport = ResilientTransport(rs.Retry(5, deadline=0.4, name="budget"))
    started = time.monotonic()
    client = httpx.Client(transport=transport, timeout=10.0)
    with client, pytest.raises(rs.TimeoutExceededError) as info:
        client.get(f"{server.url}/slow?seconds=3")
    assert time.monotonic() - started < 2.0
    assert info.value.policy == "budget"


# -- with the other policies -----------------------------------------------------------------

CircuitBreaker = getattr(rs, "CircuitBreaker", None)
TokenBucket = getattr(rs, "TokenBucket", None)


@pytest.mark.skipif(CircuitBreaker is None, reason="CircuitBreaker has not landed yet")
def test_a_breaker_opens_on_5xx_responses(server, flavour):
    assert CircuitBreaker is not None
    breaker = CircuitBreaker(
        name="api", minimum_calls=3, failure_rate=0.5, open_for=60, clock=FakeClock()
    )
    transport = flavour.transport(breaker)
    path = f"/status/{500 + next(_keys) % 4}"
    for _ in range(3):
        assert flavour.send(transport, "GET", f"{server.url}{path}").status_code >= 500
    with pytest.raises(rs.CircuitOpenError):
        flavour.send(transport, "GET", f"{server.url}{path}")
    assert server.app.counts[path] == 3
    assert str(breaker.state).lower().endswith("open")


@pytest.mark.skipif(CircuitBreaker is None, reason="CircuitBreaker has not landed yet")
def test_a_breaker_counts_transport_errors_and_ignores_429(server, flavour):
    assert CircuitBreaker is not None
    breaker = CircuitBreaker(name="api", minimum_calls=2, failure_rate=0.5, clock=FakeClock())
    transport = flavour.transport(breaker)
    for _ in range(4):
        flavour.send(transport, "GET", f"{server.url}/status/429")
    stats = breaker.stats()
    assert (stats.calls, stats.failed_calls) == (4, 0)
    url = f"http://127.0.0.1:{closed_port()}/x"
    for _ in range(4):
        with pytest.raises((httpx.ConnectError, rs.CircuitOpenError)):
            flavour.send(transport, "GET", url)
    with pytest.raises(rs.CircuitOpenError):
        flavour.send(transport, "GET", f"{server.url}/ok")


@pytest.mark.skipif(TokenBucket is None, reason="TokenBucket has not landed yet")
def test_a_limiter_per_host(server, flavour):
    assert TokenBucket is not None
    limiter = TokenBucket(rate="1/minute", burst=1, key=request_host, clock=FakeClock())
    transport = flavour.transport(limiter)
    assert flavour.send(transport, "GET", f"{server.url}/ok").status_code == 200
    with pytest.raises(rs.RateLimitedError):
        flavour.send(transport, "GET", f"{server.url}/ok")
    other = server.url.replace("127.0.0.1", "localhost")
    assert flavour.send(transport, "GET", f"{other}/ok").status_code == 200
