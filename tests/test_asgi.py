"""ResilienceMiddleware in process: raw ASGI calls (to see every message) and
Starlette / FastAPI apps through ``httpx.ASGITransport``. Time is a FakeClock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_support import (
    Exchange,
    Hello,
    call,
    http_scope,
    until,
)
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

import resilient as rs
from resilient._algorithms import Decision, Limit
from resilient.adapters.asgi import (
    FailedResponseError,
    ResilienceMiddleware,
    Route,
    TrustedProxies,
)
from resilient.testing import FakeClock, RecordingListener

QUOTA = "https://iana.org/assignments/http-problem-types#quota-exceeded"


def starlette_app(status: int = 200) -> tuple[Starlette, dict[str, int]]:
    calls = {"n": 0}

    async def endpoint(request: Request) -> Response:
        calls["n"] += 1
        return PlainTextResponse("ok", status_code=status, headers={"x-app": "yes"})

    return Starlette(routes=[StarletteRoute("/", endpoint, methods=["GET", "POST"])]), calls


def client(app: Any, ip: str = "203.0.113.9", **kw: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000), **kw)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


# -- answers and headers ---------------------------------------------------------------------


async def test_admitted_and_refused_responses_carry_the_ratelimit_fields(clock):
    app, calls = starlette_app()
    app.add_middleware(ResilienceMiddleware, rs.TokenBucket("2/s", name="api", clock=clock))
    async with client(app) as c:
        first, second, third = [await c.get("/") for _ in range(3)]
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert first.headers["ratelimit-policy"] == '"api";q=2;w=1'
    assert first.headers["ratelimit"] == '"api";r=1;t=1'
    assert second.headers["ratelimit"] == '"api";r=0;t=1'
    assert first.headers["x-app"] == "yes"  # the app's own headers are kept
    assert "retry-after" not in first.headers  # only refusals say when to come back
    assert third.headers["retry-after"] == "1"
    assert third.headers["ratelimit-policy"] == '"api";q=2;w=1'
    assert third.headers["ratelimit"] == '"api";r=0;t=1'
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json() == {
        "type": QUOTA,
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Too many requests; retry in 1 s.",
        "violated-policies": ["api"],
    }
    assert calls["n"] == 2


async def test_a_refusal_neither_calls_the_app_nor_reads_the_body(clock):
    app = Hello()
    mw = ResilienceMiddleware(app, rs.FixedWindow("1/min", clock=clock))
    assert (await call(mw, http_scope(method="POST"), body=b"data")).status == 200
    refused = await call(mw, http_scope(method="POST"), forbid_receive=True)
    assert refused.status == 429
    assert app.calls == 1
    assert refused.headers["retry-after"] == "60"
    assert int(refused.headers["content-length"]) == len(refused.body)


@pytest.mark.parametrize(
    ("period", "expected"), [(2.5, "3"), (2.0, "2"), (0.2, "1"), (59.01, "60")]
)
async def test_retry_after_is_whole_seconds_rounded_up_and_enough(clock, period, expected):
    """Never an underestimate: waiting exactly Retry-After seconds is admitted."""
    mw = ResilienceMiddleware(Hello(), rs.TokenBucket((1, period), clock=clock))
    assert (await call(mw, http_scope())).status == 200
    refused = await call(mw, http_scope())
    assert refused.headers["retry-after"] == expected
    # RateLimit's t never ends before Retry-After (draft: Retry-After not earlier).
    assert refused.headers["ratelimit"].endswith(f";t={expected}")
    clock.advance(period - 0.001)
    assert (await call(mw, http_scope())).status == 429
    clock.advance(int(expected) - (period - 0.001))
    assert (await call(mw, http_scope())).status == 200


async def test_several_rates_are_listed_and_the_tightest_is_reported(clock):
    limiter = rs.SlidingWindow("3/s;4/min", name="api", clock=clock)
    mw = ResilienceMiddleware(Hello(), limiter)
    first = await call(mw, http_scope())
    assert first.headers["ratelimit-policy"] == '"api-1s";q=3;w=1, "api-60s";q=4;w=60'
    assert first.headers["ratelimit"] == '"api-1s";r=2;t=1'
    await call(mw, http_scope())
    third = await call(mw, http_scope())
    assert third.headers["ratelimit"] == '"api-1s";r=0;t=1'
    refused = await call(mw, http_scope())
    assert refused.json()["violated-policies"] == ["api-1s"]
    clock.advance(1)
    fourth = await call(mw, http_scope())
    assert fourth.status == 200
    assert fourth.headers["ratelimit"] == '"api-60s";r=0;t=60'
    refused = await call(mw, http_scope())
    assert refused.status == 429
    assert refused.json()["violated-policies"] == ["api-60s"]
    assert refused.headers["retry-after"] == "59"


async def test_each_limiter_adds_its_item(clock):
    per_client = rs.TokenBucket("5/s", name="client", clock=clock)
    everyone = rs.TokenBucket("100/s", key="all", name="all", clock=clock)
    mw = ResilienceMiddleware(Hello(), per_client, everyone)
    answer = await call(mw, http_scope())
    assert answer.headers["ratelimit-policy"] == '"client";q=5;w=1, "all";q=100;w=1'
    assert answer.headers["ratelimit"] == '"client";r=4;t=1, "all";r=99;t=1'


async def test_legacy_headers_are_opt_in_and_the_ietf_fields_can_be_off(clock):
    limiter = rs.FixedWindow("2/min", clock=clock)
    legacy = ResilienceMiddleware(Hello(), limiter, legacy_headers=True)
    answer = await call(legacy, http_scope())
    assert answer.headers["x-ratelimit-limit"] == "2"
    assert answer.headers["x-ratelimit-remaining"] == "1"
    assert answer.headers["x-ratelimit-reset"] == "60"
    assert "ratelimit" in answer.headers
    quiet = ResilienceMiddleware(
        Hello(), rs.FixedWindow("1/min", clock=clock), rate_limit_headers=False
    )
    assert not {"ratelimit", "ratelimit-policy"} & set((await call(quiet, http_scope())).headers)
    refused = await call(quiet, http_scope())
    assert refused.status == 429
    assert refused.headers["retry-after"] == "60"
    assert not {"ratelimit", "ratelimit-policy"} & set(refused.headers)
    only_legacy = ResilienceMiddleware(
        Hello(), rs.FixedWindow("1/min", clock=clock), rate_limit_headers=False, legacy_headers=True
    )
    answer = await call(only_legacy, http_scope())
    assert answer.headers["x-ratelimit-remaining"] == "0"
    assert "ratelimit" not in answer.headers


async def test_policy_names_are_quoted_as_structured_field_strings(clock):
    mw = ResilienceMiddleware(Hello(), rs.TokenBucket("1/s", name='we"ird\\', clock=clock))
    assert (await call(mw, http_scope())).headers["ratelimit-policy"] == ('"we\\"ird\\\\";q=1;w=1')
    percent = ResilienceMiddleware(Hello(), rs.TokenBucket("2/s", name="a%d%b", clock=clock))
    assert (await call(percent, http_scope())).headers["ratelimit"] == '"a%d%b";r=1;t=1'


# -- keys --------------------------------------------------------------------------------------


async def test_each_client_address_has_its_own_limit(clock):
    mw = ResilienceMiddleware(Hello(), rs.TokenBucket("1/min", clock=clock))
    assert (await call(mw, http_scope(client=("192.0.2.1", 1)))).status == 200
    assert (await call(mw, http_scope(client=("192.0.2.1", 2)))).status == 429  # same host
    assert (await call(mw, http_scope(client=("192.0.2.2", 1)))).status == 200
    assert (await call(mw, http_scope(client=None))).status == 200  # unknown clients share one
    assert (await call(mw, http_scope(client=None))).status == 429
    assert (await call(mw, http_scope(client=("2001:db8:1:2::9", 1)))).status == 200
    assert (await call(mw, http_scope(client=("2001:db8:1:2::7", 1)))).status == 429  # same /64
    assert (await call(mw, http_scope(client=("2001:db8:1:3::9", 1)))).status == 200


async def test_a_global_limit_is_asked_for_explicitly(clock):
    shared = ResilienceMiddleware(Hello(), rs.TokenBucket("1/min", clock=clock), key="global")
    assert (await call(shared, http_scope(client=("192.0.2.1", 1)))).status == 200
    assert (await call(shared, http_scope(client=("192.0.2.2", 1)))).status == 429
    fixed = ResilienceMiddleware(Hello(), rs.TokenBucket("1/min", key="everyone", clock=clock))
    assert (await call(fixed, http_scope(client=("192.0.2.1", 1)))).status == 200
    assert (await call(fixed, http_scope(client=("192.0.2.2", 1)))).status == 429


async def test_header_keys_are_hashed_and_fall_back_to_the_address(clock):
    listener = RecordingListener()
    limiter = rs.TokenBucket("1/min", clock=clock, listeners=[listener])
    mw = ResilienceMiddleware(Hello(), limiter, key="header:X-API-Key")

    def with_key(value: bytes, ip: str = "192.0.2.1") -> dict[str, Any]:
        return http_scope(client=(ip, 1), headers=[(b"x-api-key", value)])

    assert (await call(mw, with_key(b"secret-a"))).status == 200
    assert (await call(mw, with_key(b"secret-a", ip="192.0.2.99"))).status == 429
    assert (await call(mw, with_key(b"secret-b"))).status == 200
    assert (await call(mw, http_scope(client=("192.0.2.1", 1)))).status == 200  # no key: by IP
    assert (await call(mw, http_scope(client=("192.0.2.1", 1)))).status == 429
    keys = [str(event.key) for event in listener.events]
    assert keys
    assert all("secret" not in key for key in keys)
    assert keys[0].startswith("header:x-api-key:")
    assert keys[-1] == "ip:192.0.2.1"


class HeaderUser(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


async def test_the_authenticated_user_is_a_key(clock):
    app, _ = starlette_app()
    app.add_middleware(ResilienceMiddleware, rs.TokenBucket("1/min", clock=clock), key="user")
    app.add_middleware(AuthenticationMiddleware, backend=HeaderUser())  # outside: runs first
    async with client(app, ip="192.0.2.1") as one, client(app, ip="192.0.2.2") as two:
        assert (await one.get("/", headers={"x-user": "alice"})).status_code == 200
        assert (await two.get("/", headers={"x-user": "alice"})).status_code == 429
        assert (await one.get("/", headers={"x-user": "bob"})).status_code == 200
        assert (await one.get("/")).status_code == 200  # anonymous: counted by address
        assert (await one.get("/")).status_code == 429


def test_user_keys_from_any_kind_of_user():
    from resilient.adapters.asgi import user_key

    class Anonymous:
        is_authenticated = False

    class Named:
        username = "carol"

        @property
        def identity(self) -> str:
            raise NotImplementedError

    assert user_key({"user": "dave"}) == "user:dave"
    assert user_key({"user": ""}) is None
    assert user_key({}) is None
    assert user_key({"user": Anonymous()}) is None
    assert user_key({"user": Named()}) == "user:carol"
    assert user_key({"user": SimpleUser("x" * 300)}).startswith("user:sha256:")
    assert user_key({"user": object()}) is None


async def test_key_callables_by_object_and_by_import_path(clock):
    def tenant(scope: dict[str, Any]) -> str | None:
        return dict(scope["headers"]).get(b"x-tenant", b"").decode() or None

    for key in (tenant, "_asgi_support:tenant_key"):
        mw = ResilienceMiddleware(Hello(), rs.TokenBucket("1/min", clock=FakeClock()), key=key)
        acme = http_scope(headers=[(b"x-tenant", b"acme")])
        assert (await call(mw, acme)).status == 200
        assert (await call(mw, {**acme, "client": ("192.0.2.50", 1)})).status == 429
        assert (await call(mw, http_scope(headers=[(b"x-tenant", b"other")]))).status == 200


@pytest.mark.parametrize("routed", [False, True], ids=["hot-path", "routed"])
async def test_the_apps_own_start_message_is_never_changed(clock, routed):
    """The fields are added to a copy: an app that sends the same message (and header
    list) every time sends exactly its own fields plus the two, every time."""
    app = Hello(headers=[(b"content-type", b"text/plain")])
    limiter = rs.TokenBucket("5/s", name="api", clock=clock)
    routes = [Route(limiter, path="/*")] if routed else None
    mw = ResilienceMiddleware(app, *([] if routed else [limiter]), routes=routes)
    for remaining in (4, 3):
        exchange = await call(mw, http_scope())
        assert exchange.start["headers"] == [
            (b"content-type", b"text/plain"),
            (b"ratelimit-policy", b'"api";q=5;w=1'),
            (b"ratelimit", b'"api";r=%d;t=1' % remaining),
        ]
    assert app.headers == [(b"content-type", b"text/plain")]


@pytest.mark.parametrize("headers", [True, False], ids=["fields", "no-fields"])
async def test_the_hot_path_answers_like_the_routed_path(clock, headers):
    """The one-step admission of the hot path gives the same statuses and fields as
    the general (routed) path, through refusals, refills and a forgotten key."""
    hot_limiter = rs.TokenBucket("3/s", name="api", clock=clock)
    routed_limiter = rs.TokenBucket("3/s", name="api", clock=clock)
    hot = ResilienceMiddleware(Hello(), hot_limiter, rate_limit_headers=headers)
    routed = ResilienceMiddleware(
        Hello(), routes=[Route(routed_limiter, path="/*")], rate_limit_headers=headers
    )
    assert hot._hot is not None
    assert hot._hot.reporter is not None
    assert routed._hot is None
    answers = {"hot": [], "routed": []}
    for step in range(24):
        client_ip = ("192.0.2.1", "192.0.2.2")[step % 5 == 4]
        for name, mw in (("hot", hot), ("routed", routed)):
            exchange = await call(mw, http_scope(client=(client_ip, 1)))
            answers[name].append((exchange.status, sorted(exchange.headers.items())))
        clock.advance((0.0, 0.05, 0.2, 1.5)[step % 4])
    assert answers["hot"] == answers["routed"]
    statuses = [status for status, _ in answers["hot"]]
    assert 429 in statuses
    assert statuses.count(200) > 12
    fields = [dict(items).get("ratelimit") for _, items in answers["hot"]]
    assert (len(set(fields)) > 2) if headers else fields == [None] * 24


async def test_a_key_callable_may_return_any_hashable(clock):
    """Keys that are not str (the in-memory one-call path takes str only) still count."""
    mw = ResilienceMiddleware(
        Hello(), rs.TokenBucket("1/min", clock=clock), key=lambda scope: len(scope["path"])
    )
    assert (await call(mw, http_scope("/a"))).status == 200
    assert (await call(mw, http_scope("/b"))).status == 429  # the same length: one key
    assert (await call(mw, http_scope("/ab"))).status == 200


async def test_a_limiters_own_key_callable_receives_the_scope(clock):
    limiter = rs.TokenBucket("1/min", key=lambda scope: scope["path"], clock=clock)
    mw = ResilienceMiddleware(Hello(), limiter)
    assert (await call(mw, http_scope("/a"))).status == 200
    assert (await call(mw, http_scope("/a", client=("192.0.2.77", 1)))).status == 429
    assert (await call(mw, http_scope("/b"))).status == 200


async def test_path_key_and_route_keys(clock):
    limiter = rs.TokenBucket("1/min", clock=clock)
    routes = [Route(limiter, path="/per-path/*", key="path")]
    mw = ResilienceMiddleware(Hello(), routes=routes)
    assert (await call(mw, http_scope("/per-path/x", client=("192.0.2.1", 1)))).status == 200
    assert (await call(mw, http_scope("/per-path/x", client=("192.0.2.2", 1)))).status == 429
    assert (await call(mw, http_scope("/per-path/y", client=("192.0.2.2", 1)))).status == 200


@pytest.mark.parametrize("spec", ["nope", 42, "header:", "no_such_module_xyz:fn", "os:nope"])
def test_bad_key_specs_are_config_errors(spec):
    with pytest.raises(rs.ConfigError):
        ResilienceMiddleware(Hello(), rs.TokenBucket("1/s"), key=spec)


# -- client addresses and proxies ----------------------------------------------------------------


def forwarded(peer: str, *values: bytes, header: bytes = b"x-forwarded-for") -> dict[str, Any]:
    return http_scope(client=(peer, 1234), headers=[(header, v) for v in values])


def test_forwarding_headers_from_an_untrusted_peer_are_ignored():
    none = TrustedProxies()
    assert none.client(forwarded("198.51.100.1", b"1.2.3.4")) == "198.51.100.1"
    some = TrustedProxies(["10.0.0.0/8"])
    spoof = forwarded("198.51.100.1", b"1.2.3.4", header=b"x-forwarded-for")
    assert some.client(spoof) == "198.51.100.1"


def test_a_trusted_proxy_gives_the_nearest_untrusted_address():
    proxies = TrustedProxies(["10.0.0.0/8", "192.168.1.1"])
    # The client wrote "6.6.6.6" itself; the proxies appended what they saw.
    scope = forwarded("10.0.0.2", b"6.6.6.6, 203.0.113.5", b"192.168.1.1")
    assert proxies.client(scope) == "203.0.113.5"
    assert proxies.client(forwarded("10.0.0.2", b"203.0.113.5:4431")) == "203.0.113.5"
    assert proxies.client(forwarded("10.0.0.2")) == "10.0.0.2"  # no header: the proxy itself
    assert proxies.client(forwarded("10.0.0.2", b"10.1.1.1, 10.2.2.2")) == "10.1.1.1"


def test_garbage_stops_the_walk_at_the_last_trusted_hop():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client(forwarded("10.0.0.2", b"1.2.3.4, unknown")) == "10.0.0.2"
    assert proxies.client(forwarded("10.0.0.2", b"1.2.3.4, 10.0.0.3, ???")) == "10.0.0.2"
    assert proxies.client(forwarded("10.0.0.2", b"1.2.3.4, garbage, 10.0.0.3")) == "10.0.0.3"
    assert proxies.client(forwarded("10.0.0.2", b"[::1")) == "10.0.0.2"


def test_the_forwarded_header_and_only_the_configured_one():
    proxies = TrustedProxies(["10.0.0.0/8"], header="forwarded")
    header = b'for=6.6.6.6;proto=http, for="[2001:db8::17]:4711";by=10.0.0.9, For=10.0.0.9'
    scope = forwarded("10.0.0.2", header, header=b"forwarded")
    assert proxies.client(scope) == "2001:db8::/64"
    # X-Forwarded-For is not what these proxies set: a client's copy is ignored.
    assert proxies.client(forwarded("10.0.0.2", b"1.2.3.4")) == "10.0.0.2"
    xff = TrustedProxies(["10.0.0.0/8"])
    assert xff.client(forwarded("10.0.0.2", b"for=1.2.3.4", header=b"forwarded")) == "10.0.0.2"
    hidden = forwarded("10.0.0.2", b"for=_hidden, for=unknown", header=b"forwarded")
    assert proxies.client(hidden) == "10.0.0.2"


def test_ipv6_clients_are_grouped_by_prefix():
    assert (
        TrustedProxies().client(http_scope(client=("2001:db8:1:2:3::9", 1))) == "2001:db8:1:2::/64"
    )
    exact = TrustedProxies(ipv6_prefix=128)
    assert exact.client(http_scope(client=("2001:db8::9", 1))) == "2001:db8::9"
    mapped = TrustedProxies(["10.0.0.0/8"])
    assert mapped.client(forwarded("::ffff:10.0.0.2", b"203.0.113.1")) == "203.0.113.1"
    assert TrustedProxies().client(http_scope(client=None)) is None


def test_trusting_every_peer():
    assert TrustedProxies("*").client(forwarded("198.51.100.1", b"1.2.3.4")) == "1.2.3.4"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trusted_proxies": ["not-an-ip"]},
        {"proxy_header": "x-real-ip"},
        {"ipv6_prefix": 0},
        {"ipv6_prefix": True},
    ],
)
def test_bad_proxy_settings_are_config_errors(kwargs):
    with pytest.raises(rs.ConfigError):
        ResilienceMiddleware(Hello(), **kwargs)


async def test_spoofed_addresses_do_not_escape_the_limit(clock):
    limiter = rs.TokenBucket("1/min", clock=clock)
    direct = ResilienceMiddleware(Hello(), limiter)
    assert (await call(direct, forwarded("198.51.100.1", b"1.1.1.1"))).status == 200
    assert (await call(direct, forwarded("198.51.100.1", b"2.2.2.2"))).status == 429
    behind = ResilienceMiddleware(
        Hello(), rs.TokenBucket("1/min", clock=clock), trusted_proxies=["10.0.0.1"]
    )
    assert (await call(behind, forwarded("10.0.0.1", b"203.0.113.1"))).status == 200
    spoof = forwarded("10.0.0.1", b"9.9.9.9, 203.0.113.1")  # a forged left part
    assert (await call(behind, spoof)).status == 429
    assert (await call(behind, forwarded("10.0.0.1", b"203.0.113.2"))).status == 200


# -- bulkhead ---------------------------------------------------------------------------------


class Gate:
    """A raw app that holds each request until released."""

    def __init__(self) -> None:
        self.inside = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.inside += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


async def test_a_full_bulkhead_sheds_load_with_503():
    gate = Gate()
    bulkhead = rs.Bulkhead(max_concurrent=2, max_queued=1, max_wait=None)
    mw = ResilienceMiddleware(gate, bulkhead)
    running = [asyncio.create_task(call(mw, http_scope())) for _ in range(3)]
    await until(lambda: gate.inside == 2 and bulkhead.stats().queued == 1)
    shed = await call(mw, http_scope(), forbid_receive=True)
    assert shed.status == 503
    assert shed.json()["detail"] == "The service is at capacity; retry in 1 s."
    assert shed.headers["retry-after"] == "1"  # the bulkhead cannot know: the default
    assert shed.headers["content-type"] == "application/problem+json"
    gate.release.set()
    assert [(await task).status for task in running] == [200, 200, 200]
    assert gate.inside == 3
    assert bulkhead.stats().in_flight == 0


async def test_the_bulkhead_slot_is_held_until_a_streamed_response_ends():
    chunks = asyncio.Queue[bytes]()

    async def stream() -> AsyncIterator[bytes]:
        while (chunk := await chunks.get()) != b"":
            yield chunk

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(stream())

    bulkhead = rs.Bulkhead(max_concurrent=1)
    app = ResilienceMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), bulkhead)
    task = asyncio.create_task(call(app, http_scope()))
    await chunks.put(b"a")
    await until(lambda: chunks.empty())
    assert bulkhead.stats().in_flight == 1
    assert (await call(app, http_scope())).status == 503
    await chunks.put(b"b")
    await chunks.put(b"")
    streamed = await task
    assert (streamed.status, streamed.body) == (200, b"ab")
    assert bulkhead.stats().in_flight == 0


# -- circuit breaker ----------------------------------------------------------------------------


def breaker(clock: FakeClock, **kw: Any) -> rs.CircuitBreaker:
    options: dict[str, Any] = {"minimum_calls": 4, "window": rs.CountWindow(4), "open_for": 10.0}
    options.update(kw)
    return rs.CircuitBreaker(clock=clock, **options)


async def test_the_breaker_opens_on_5xx_sheds_and_recovers(clock):
    app = Hello(status=500)
    cb = breaker(clock, half_open_calls=1)
    mw = ResilienceMiddleware(app, cb)
    for _ in range(4):
        assert (await call(mw, http_scope())).status == 500  # the app's answer, untouched
    assert cb.state is rs.CircuitState.OPEN
    shed = await call(mw, http_scope(), forbid_receive=True)
    assert shed.status == 503
    assert app.calls == 4
    assert shed.headers["retry-after"] == "10"
    clock.advance(2.5)
    assert (await call(mw, http_scope())).headers["retry-after"] == "8"  # 7.5 rounded up
    clock.advance(7.5)
    app.status = 200
    assert (await call(mw, http_scope())).status == 200  # the probe
    assert cb.state is rs.CircuitState.CLOSED


async def test_the_breaker_counts_exceptions_and_4xx_are_not_failures(clock):
    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def missing(request: Request) -> Response:
        return PlainTextResponse("no", status_code=404)

    app = Starlette(routes=[StarletteRoute("/boom", boom), StarletteRoute("/missing", missing)])
    cb = breaker(clock)
    app.add_middleware(ResilienceMiddleware, cb)
    async with client(app, raise_app_exceptions=False) as c:
        for _ in range(10):
            assert (await c.get("/missing")).status_code == 404
        assert cb.state is rs.CircuitState.CLOSED
        for _ in range(2):  # 2 of the last 4 calls failed: 50%
            assert (await c.get("/boom")).status_code == 500  # Starlette's error page
        assert cb.state is rs.CircuitState.OPEN
        assert (await c.get("/missing")).status_code == 503


async def test_failure_statuses_choose_what_the_breaker_counts(clock):
    app = Hello(status=502)
    cb = breaker(clock)
    mw = ResilienceMiddleware(app, cb, failure_statuses={503})
    for _ in range(6):
        await call(mw, http_scope())
    assert cb.state is rs.CircuitState.CLOSED
    app.status = 503
    strict = ResilienceMiddleware(app, cb, failure_statuses=lambda status: status >= 503)
    for _ in range(4):
        await call(strict, http_scope())
    assert cb.state is rs.CircuitState.OPEN


async def test_the_breaker_can_open_for_as_long_as_the_app_asks(clock):
    app = Hello(status=503, headers=[(b"retry-after", b"42")])
    mw = ResilienceMiddleware(app, rs.CircuitBreaker(clock=clock, open_on_retry_after=True))
    assert (await call(mw, http_scope())).status == 503
    shed = await call(mw, http_scope())
    assert app.calls == 1
    assert shed.headers["retry-after"] == "42"


async def test_a_response_never_started_is_a_failure(clock):
    async def silent(scope: Any, receive: Any, send: Any) -> None:
        return None

    cb = breaker(clock, minimum_calls=1, window=rs.CountWindow(1))
    exchange = await call(ResilienceMiddleware(silent, cb), http_scope())
    assert exchange.sent == []  # the server will answer 500 itself
    assert cb.state is rs.CircuitState.OPEN


# -- timeout -----------------------------------------------------------------------------------


class Slow:
    """Sleeps on the fake clock before (or after) starting its response."""

    def __init__(self, clock: FakeClock, *, seconds: float, after_start: bool = False) -> None:
        self.clock = clock
        self.seconds = seconds
        self.after_start = after_start

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.after_start:
            await self.clock.asleep(self.seconds)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        if self.after_start:
            await self.clock.asleep(self.seconds)
        await send({"type": "http.response.body", "body": b"rest"})


async def test_a_timeout_before_the_response_answers_504(clock):
    mw = ResilienceMiddleware(Slow(clock, seconds=5), rs.Timeout(2, clock=clock))
    answer = await call(mw, http_scope())
    assert answer.status == 504
    assert answer.json() == {
        "type": "about:blank",
        "title": "Gateway Timeout",
        "status": 504,
        "detail": "The request took longer than 2 s.",
    }
    assert (
        await call(
            ResilienceMiddleware(Slow(clock, seconds=1), rs.Timeout(2, clock=clock)), http_scope()
        )
    ).status == 200


async def test_a_timeout_after_the_response_started_is_not_rewritten(clock):
    mw = ResilienceMiddleware(Slow(clock, seconds=5, after_start=True), rs.Timeout(2, clock=clock))
    exchange = Exchange()
    with pytest.raises(rs.TimeoutExceededError):
        await mw(http_scope(), exchange.receive, exchange.send)
    assert [m["type"] for m in exchange.sent] == ["http.response.start", "http.response.body"]
    assert exchange.sent[0]["status"] == 200


async def test_the_apps_own_errors_are_not_turned_into_answers(clock):
    for error in (rs.TimeoutExceededError("db", 1.0), rs.CircuitOpenError("downstream")):

        async def failing(scope: Any, receive: Any, send: Any, error: Exception = error) -> None:
            raise error

        mw = ResilienceMiddleware(failing, rs.Timeout(5, clock=clock), breaker(clock))
        with pytest.raises(type(error)) as caught:
            await call(mw, http_scope())
        assert caught.value is error


# -- streaming ----------------------------------------------------------------------------------


async def test_streamed_responses_pass_through_with_the_fields(clock):
    async def numbers() -> AsyncIterator[bytes]:
        for n in range(5):
            yield f"{n},".encode()

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers(), media_type="text/csv")

    app = Starlette(routes=[StarletteRoute("/", endpoint)])
    app.add_middleware(ResilienceMiddleware, rs.TokenBucket("5/s", clock=clock), breaker(clock))
    exchange = await call(app, http_scope())
    bodies = [m["body"] for m in exchange.sent if m["type"] == "http.response.body"]
    assert b"".join(bodies) == b"0,1,2,3,4,"
    assert len(bodies) >= 5  # chunk by chunk, not buffered
    assert exchange.headers["ratelimit"] == '"token_bucket";r=4;t=1'


async def test_a_failure_mid_stream_is_not_rewritten_and_counts(clock):
    async def broken() -> AsyncIterator[bytes]:
        yield b"first"
        raise OSError("disk gone")

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(broken())

    cb = breaker(clock, minimum_calls=1, window=rs.CountWindow(1))
    mw = ResilienceMiddleware(Starlette(routes=[StarletteRoute("/", endpoint)]), cb)
    recorder = Exchange()
    with pytest.raises(OSError, match="disk gone"):
        await mw(http_scope(), recorder.receive, recorder.send)
    starts = [m for m in recorder.sent if m["type"] == "http.response.start"]
    assert [s["status"] for s in starts] == [200]
    assert cb.state is rs.CircuitState.OPEN


# -- other scopes -------------------------------------------------------------------------------


async def test_lifespan_passes_through():
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        message = await receive()
        seen.append(message["type"])
        await send({"type": "lifespan.startup.complete"})

    mw = ResilienceMiddleware(app, rs.TokenBucket("1/min"), rs.Bulkhead(1), websocket=True)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await mw({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert seen == ["lifespan", "lifespan.startup"]
    assert sent == [{"type": "lifespan.startup.complete"}]


def ws_scope(extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    scope = http_scope("/ws", type="websocket", scheme="ws")
    del scope["method"]
    scope["extensions"] = extensions or {}
    return scope


class Echo:
    def __init__(self) -> None:
        self.accepted = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        self.accepted += 1
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})


class WsPeer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_websockets_pass_through_unless_asked(clock):
    echo = Echo()
    mw = ResilienceMiddleware(echo, rs.TokenBucket("1/min", clock=clock), rs.Bulkhead(1))
    for _ in range(3):
        peer = WsPeer()
        await mw(ws_scope(), peer.receive, peer.send)
        assert peer.sent[0]["type"] == "websocket.accept"
    assert echo.accepted == 3


async def test_limited_websocket_handshakes_are_denied(clock):
    echo = Echo()
    mw = ResilienceMiddleware(echo, rs.TokenBucket("1/min", clock=clock), websocket=True)
    peer = WsPeer()
    await mw(ws_scope(), peer.receive, peer.send)
    assert peer.sent[0]["type"] == "websocket.accept"
    denial = WsPeer()
    await mw(ws_scope({"websocket.http.response": {}}), denial.receive, denial.send)
    start, body = denial.sent
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 429
    assert (b"retry-after", b"60") in start["headers"]
    assert json.loads(body["body"])["status"] == 429
    closed = WsPeer()
    await mw(ws_scope(), closed.receive, closed.send)
    assert closed.sent == [{"type": "websocket.close", "code": 1008, "reason": "rate limited"}]
    assert echo.accepted == 1


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_starlette_testclient_websocket_denial(clock):
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    from starlette.routing import WebSocketRoute

    app = Starlette(routes=[WebSocketRoute("/ws", ws)])
    app.add_middleware(ResilienceMiddleware, rs.TokenBucket("1/min", clock=clock), websocket=True)
    with TestClient(app) as test_client:
        with test_client.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "hi"
        with (
            pytest.raises(Exception) as denied,
            test_client.websocket_connect("/ws") as socket,
        ):
            socket.receive_text()
        assert (
            isinstance(denied.value, WebSocketDisconnect)
            or getattr(denied.value, "status_code", None) == 429
        )


# -- routes, registries, configuration ----------------------------------------------------------


async def test_routes_first_match_wins_and_none_exempts(clock):
    login = rs.TokenBucket("1/min", name="login", clock=clock)
    default = rs.TokenBucket("3/min", name="default", clock=clock)
    mw = ResilienceMiddleware(
        Hello(),
        default,
        routes=[
            Route(None, path="/health"),
            Route(login, path="/login", methods=["POST"]),
            Route([login, default], path="/login*"),
        ],
    )
    for _ in range(5):
        health = await call(mw, http_scope("/health"))
        assert health.status == 200
        assert "ratelimit" not in health.headers
    assert (await call(mw, http_scope("/login", method="POST"))).status == 200
    refused = await call(mw, http_scope("/login", method="POST"))
    assert refused.status == 429
    assert refused.headers["ratelimit-policy"] == '"login";q=1;w=60'
    get = await call(mw, http_scope("/login/help"))
    assert get.status == 429  # the second route: login is spent
    other = await call(mw, http_scope("/elsewhere"))
    assert other.status == 200
    assert other.headers["ratelimit"] == '"default";r=2;t=20'  # one token refills in 20 s


async def test_routes_as_mappings_and_registry_names(clock):
    registry: dict[str, Any] = {
        "api": rs.Pipeline(rs.TokenBucket("1/min", name="api", clock=clock)),
        "open": rs.Pipeline(),
    }
    mw = ResilienceMiddleware(
        Hello(),
        registry=registry,
        routes=[{"path": "/api/*", "policy": "api", "methods": ["GET"]}, {"policy": "open"}],
    )
    assert (await call(mw, http_scope("/api/x"))).status == 200
    assert (await call(mw, http_scope("/api/y"))).status == 429
    assert (await call(mw, http_scope("/api/x", method="POST"))).status == 200  # "open"
    # A reload hands out new policies: the middleware picks them up.
    registry["api"] = rs.Pipeline(rs.TokenBucket("5/min", name="api", clock=clock))
    answer = await call(mw, http_scope("/api/x"))
    assert answer.status == 200
    assert answer.headers["ratelimit-policy"] == '"api";q=5;w=60'


async def test_a_registrys_own_asgi_routes_are_used(clock):
    class Registry(dict[str, Any]):
        class routes:  # noqa: N801 - the shape of config's Routes
            asgi = (
                type(
                    "AsgiRoute",
                    (),
                    {"policy": "api", "path": "/api/*", "methods": (), "key": "global"},
                )(),
            )

    registry = Registry(api=rs.TokenBucket("1/min", name="api", clock=clock))
    mw = ResilienceMiddleware(Hello(), registry=registry)
    assert (await call(mw, http_scope("/api/a", client=("192.0.2.1", 1)))).status == 200
    assert (await call(mw, http_scope("/api/a", client=("192.0.2.2", 1)))).status == 429
    assert (await call(mw, http_scope("/other"))).status == 200


async def test_a_retry_in_a_registry_pipeline_is_skipped(clock):
    """The policy file's linter warns about it; the middleware never retries."""
    app = Hello(status=503)
    retry = rs.Retry(attempts=3, retry_on=Exception, clock=clock)
    registry = {"api": rs.Pipeline(retry, rs.Fallback(lambda exc: None), rs.Timeout(5))}
    mw = ResilienceMiddleware(app, "api", registry=registry)
    assert (await call(mw, http_scope())).status == 503
    assert app.calls == 1


async def test_a_policy_file_reload_changes_routes_and_limits():
    clock = FakeClock()
    first = {
        "policies": {"api": {"rate_limit": "1/minute"}, "open": {"timeout": "1s"}},
        "routes": {"asgi": [{"path": "/api/*", "policy": "api"}]},
    }
    registry = rs.load_config(first, clock=clock)
    mw = ResilienceMiddleware(Hello(), registry=registry)
    assert (await call(mw, http_scope("/api/a"))).status == 200
    assert (await call(mw, http_scope("/api/a"))).status == 429
    assert (await call(mw, http_scope("/v2/a"))).status == 200
    second = {
        "policies": {"api": {"rate_limit": "1/minute"}, "open": {"timeout": "1s"}},
        "routes": {
            "asgi": [{"path": "/v2/*", "policy": "api"}, {"path": "/api/*", "policy": "open"}]
        },
    }
    registry.reload(second)
    assert (await call(mw, http_scope("/api/a"))).status == 200  # now "open"
    assert (await call(mw, http_scope("/v2/a"))).status == 429  # "api" kept its count


@pytest.mark.parametrize(
    "policies",
    [
        (rs.Retry(),),
        (rs.Pipeline(rs.Timeout(1), rs.Retry()),),
        (rs.Fallback(lambda exc: None),),
        ("missing",),
        (object(),),
    ],
)
def test_outbound_or_unknown_policies_are_refused(policies):
    with pytest.raises(rs.ConfigError):
        ResilienceMiddleware(Hello(), *policies)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"routes": [{"path": "/x", "policy": None, "bogus": 1}]},
        {"routes": [42]},
        {"routes": [Route(None, path="/x")], "registry": [1, 2]},
        {"routes": [{"path": "/x", "policy": "missing"}], "registry": {}},
        {"failure_statuses": "5xx"},
    ],
)
def test_bad_routes_and_settings_are_config_errors(kwargs):
    with pytest.raises(rs.ConfigError):
        ResilienceMiddleware(Hello(), **kwargs)


def test_bad_route_fields_are_config_errors():
    with pytest.raises(rs.ConfigError):
        Route(None, path="")
    with pytest.raises(rs.ConfigError):
        Route(None, methods=["GE T"])
    with pytest.raises(rs.ConfigError):
        Route(42)  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError):
        Route(None, key="what")
    assert Route(None, methods="get").methods == frozenset({"GET"})


async def test_no_policies_means_a_plain_passthrough():
    app = Hello()
    mw = ResilienceMiddleware(app)
    answer = await call(mw, http_scope())
    assert answer.status == 200
    assert app.calls == 1
    assert "ratelimit" not in answer.headers


# -- backends, state, frameworks ----------------------------------------------------------------


class DownStore:
    """A store whose backend is unreachable (mode "raise")."""

    def try_acquire(self, key: str, limits: Any, cost: int = 1, *, max_wait: float = 0.0) -> Any:
        raise rs.BackendError("redis://down", "token_bucket")

    async def atry_acquire(
        self, key: str, limits: Any, cost: int = 1, *, max_wait: float = 0.0
    ) -> Decision:
        raise rs.BackendError("redis://down", "token_bucket")

    def release(self, *args: Any) -> None: ...
    def reset(self, *args: Any) -> None: ...
    def ping(self) -> bool:
        return False

    def close(self) -> None: ...
    async def arelease(self, *args: Any) -> None: ...
    async def areset(self, *args: Any) -> None: ...
    async def aping(self) -> bool:
        return False

    async def aclose(self) -> None: ...


async def test_an_unreachable_backend_answers_503_without_calling_the_app():
    app = Hello()
    mw = ResilienceMiddleware(app, rs.TokenBucket("10/s", store=DownStore()))
    answer = await call(mw, http_scope(), forbid_receive=True)
    assert answer.status == 503
    assert app.calls == 0
    assert answer.json()["detail"] == "The rate limit could not be checked."
    assert answer.headers["retry-after"] == "1"
    quiet = ResilienceMiddleware(
        app, rs.TokenBucket("10/s", store=DownStore()), default_retry_after=None
    )
    assert "retry-after" not in (await call(quiet, http_scope())).headers


async def test_the_default_retry_after_for_policies_that_cannot_say(clock):
    cb = breaker(clock)
    cb.force_open()  # no retry_after: a manual state
    answer = await call(ResilienceMiddleware(Hello(), cb, default_retry_after="2.5s"), http_scope())
    assert answer.status == 503
    assert answer.headers["retry-after"] == "3"
    answer = await call(ResilienceMiddleware(Hello(), cb, default_retry_after=None), http_scope())
    assert "retry-after" not in answer.headers
    assert answer.json()["detail"] == "The service is temporarily unavailable."
    with pytest.raises(rs.ConfigError):
        ResilienceMiddleware(Hello(), cb, default_retry_after=-1)


async def test_a_rate_limit_refusal_from_another_policy_answers_429():
    class Quota:
        async def acall(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            raise rs.RateLimitedError("quota", retry_after=4.2)

        def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            raise rs.RateLimitedError("quota", retry_after=4.2)

    answer = await call(ResilienceMiddleware(Hello(), Quota()), http_scope())
    assert answer.status == 429
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["detail"] == "Too many requests; retry in 5 s."


async def test_unusable_reloaded_routes_keep_the_old_ones(clock, caplog):
    class Registry(dict[str, Any]):
        routes: Any = None

    registry = Registry(api=rs.TokenBucket("1/min", clock=clock))
    registry.routes = type("Routes", (), {"asgi": ({"path": "/api/*", "policy": "api"},)})()
    mw = ResilienceMiddleware(Hello(), registry=registry)
    assert "ResilienceMiddleware(app=" in repr(mw)
    assert (await call(mw, http_scope("/api/x"))).status == 200
    registry.routes = type("Routes", (), {"asgi": ({"path": "/api/*", "policy": "gone"},)})()
    assert (await call(mw, http_scope("/api/x"))).status == 429  # the old routes still apply
    assert "unusable" in caplog.text


async def test_a_guard_whose_backend_fails_answers_503():
    class Unreachable:
        def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            raise rs.BackendError("redis://down", "breaker")

        async def acall(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            raise rs.BackendError("redis://down", "breaker")

    app = Hello()
    answer = await call(ResilienceMiddleware(app, Unreachable()), http_scope())
    assert answer.status == 503
    assert answer.json()["detail"] == "A policy could not be checked."
    assert app.calls == 0


async def test_no_request_state_lives_on_the_middleware(clock):
    """Many concurrent requests with different outcomes leave the instance as it was."""
    app = Hello()
    mw = ResilienceMiddleware(
        app,
        rs.TokenBucket("50/min", clock=clock),
        rs.Bulkhead(8, max_queued=100, max_wait=None),
        breaker(clock),
    )
    before = dict(vars(mw).items())
    answers = await asyncio.gather(
        *(call(mw, http_scope(client=(f"192.0.2.{i % 3}", 1))) for i in range(200))
    )
    assert sorted({a.status for a in answers}) == [200, 429]
    assert sum(a.status == 200 for a in answers) == 150
    assert vars(mw).keys() == before.keys()
    assert all(vars(mw)[name] is value for name, value in before.items())


async def test_fastapi_add_middleware_with_positional_policies(clock):
    api = FastAPI()

    @api.get("/items/{item}")
    async def item(item: int) -> dict[str, int]:
        return {"item": item}

    api.add_middleware(ResilienceMiddleware, rs.TokenBucket("1/s", clock=clock), rs.Timeout(5))
    async with client(api) as c:
        ok = await c.get("/items/3")
        refused = await c.get("/items/4")
    assert ok.json() == {"item": 3}
    assert ok.headers["ratelimit"].endswith("r=0;t=1")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"


def test_failed_response_error_pickles():
    import pickle

    error = pickle.loads(pickle.dumps(FailedResponseError(503, 2.0)))
    assert (error.status, error.retry_after) == (503, 2.0)
    assert str(error) == "the app answered HTTP 503"


def test_limit_headers_for_a_token_bucket_with_burst():
    from resilient.adapters.asgi._responses import LimitHeaders

    headers = LimitHeaders(
        "b", [Limit(algorithm="token_bucket", amount=100, period=1.0, burst=250)]
    )
    assert headers.policy == b'"b";q=250;w=3'


def test_the_module_imports_no_framework():
    import subprocess
    import sys

    code = (
        "import sys, resilient.adapters.asgi\n"
        "bad = [m for m in ('starlette', 'fastapi', 'httpx', 'uvicorn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asgi_app.py"


async def test_the_example_app_runs(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("asgi_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    await module.tour()
    out = capsys.readouterr().out
    assert "RateLimit-Policy:" in out
    assert "every route sheds -> 503" in out
