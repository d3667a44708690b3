"""A policy file driving the adapters through its routes: httpx, ASGI and gRPC."""

from __future__ import annotations

import textwrap

import pytest

from resilient.config import load_config
from resilient.testing import FakeClock

httpx = pytest.importorskip("httpx")


def test_httpx_transport_follows_the_file_routes():
    from resilient.adapters.httpx import ResilientTransport

    registry = load_config(
        textwrap.dedent(
            """
            policies:
              flaky-api:
                retry: {attempts: 3, backoff: {initial: 0, maximum: 0}}
                circuit_breaker: {}
              other:
                timeout: 5s
            routes:
              httpx:
                - {host: flaky.example, policy: flaky-api}
                - {policy: other}
            """
        ),
        "yaml",
        clock=FakeClock(),
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        return httpx.Response(503 if len(seen) < 3 else 200)

    transport = ResilientTransport(
        registry=registry,
        routes=registry.routes.httpx_routes(),
        transport=httpx.MockTransport(handler),
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("https://flaky.example/x").status_code == 200
        assert seen == ["flaky.example"] * 3
        seen.clear()
        assert client.get("https://other.example/").status_code == 503  # not retried
        assert seen == ["other.example"]


async def test_asgi_middleware_reads_the_file_routes():
    from resilient.adapters.asgi import ResilienceMiddleware

    registry = load_config(
        textwrap.dedent(
            """
            policies:
              search: {rate_limit: 1/minute}
              health: {timeout: 1s}
            routes:
              asgi:
                - {path: /health, policy: health}
                - {path: "/search*", key: "header:X-Api-Key", policy: search}
            """
        ),
        "yaml",
        clock=FakeClock(),
    )

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = ResilienceMiddleware(app, registry=registry)
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.get("/search", headers={"X-Api-Key": "a"})
        second = await client.get("/search", headers={"X-Api-Key": "a"})
        other_key = await client.get("/search", headers={"X-Api-Key": "b"})
        health = [await client.get("/health") for _ in range(3)]
    assert (first.status_code, second.status_code, other_key.status_code) == (200, 429, 200)
    assert [r.status_code for r in health] == [200, 200, 200]


def test_examples_work_with_the_adapters(monkeypatch):
    from pathlib import Path

    from resilient.adapters.asgi import ResilienceMiddleware
    from resilient.adapters.httpx import ResilientTransport

    examples = Path(__file__).parent.parent / "examples"
    asgi = load_config(examples / "asgi.toml")
    ResilienceMiddleware(lambda scope, receive, send: None, registry=asgi)
    web = load_config(examples / "httpx.yaml")
    ResilientTransport(registry=web, routes=web.routes.httpx_routes())


def test_grpc_interceptor_routes_follow_reloads():
    pytest.importorskip("grpc")
    from resilient.adapters.grpc._core import Routes

    registry = load_config(
        "policies: {orders: {timeout: 1s}, rest: {timeout: 2s}}\n"
        "routes:\n  grpc:\n"
        "    - {service: shop.v1.Orders, policy: orders, side: client}\n"
        "    - {policy: rest}\n",
        "yaml",
    )
    routes = Routes((), registry.grpc_routes("client"))
    assert routes.policy("/shop.v1.Orders/Create") is registry["orders"]
    assert routes.policy("/shop.v1.Carts/Get") is registry["rest"]
    registry.reload(
        "policies: {orders: {timeout: 3s}, rest: {timeout: 2s}}\n"
        "routes:\n  grpc:\n"
        "    - {service: shop.v1.Orders, policy: orders, side: client}\n"
        "    - {policy: rest}\n",
        "yaml",
    )
    assert routes.policy("/shop.v1.Orders/Create").policies[0].seconds == 3.0


@pytest.mark.redis
def test_replicas_share_a_limit_through_a_redis_backend(redis_url):
    import resilient as rs

    text = textwrap.dedent(
        """
        backends:
          shared: {url: "${REDIS_URL}", prefix: config-test, on_backend_error: local}
        policies:
          partner: {rate_limit: {rate: 3/minute, algorithm: sliding_window, backend: shared}}
          strict: {rate_limit: {rate: 3/minute, backend: shared, on_backend_error: deny}}
        """
    )
    replicas = [load_config(text, "yaml", env={"REDIS_URL": redis_url}) for _ in range(2)]
    a, b = (r["partner"] for r in replicas)
    assert [a.call(lambda: 1), b.call(lambda: 2), a.call(lambda: 3)] == [1, 2, 3]
    with pytest.raises(rs.RateLimitedError):
        b.call(lambda: 4)  # the fourth call of the minute, whichever replica makes it
    store = replicas[0]["strict"].policies[0].store
    assert (store.prefix, store.on_backend_error) == ("config-test", "deny")
    assert replicas[0]["partner"].policies[0].store.on_backend_error == "local"
