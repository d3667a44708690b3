"""AdaptiveConcurrency as server-side load shedding: in the ASGI middleware (503 with
Retry-After) and in the gRPC server interceptors (UNAVAILABLE with pushback), like a
bulkhead; the Throttle and a shared budget in client pipelines."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from _asgi_support import call, http_scope
from _grpc_support import Pair, Script, Step, expected, spec

import resilient as rs
from resilient import AIMD, AdaptiveConcurrency
from resilient.adapters.asgi import ResilienceMiddleware
from resilient.adapters.grpc import PUSHBACK_KEY


def fixed_limit(limit: int) -> AdaptiveConcurrency:
    """An adaptive limit pinned at *limit* (the tests are about admission, not adaptation)."""
    return AdaptiveConcurrency(
        AIMD(latency_threshold=None), min_limit=limit, max_limit=limit, initial_limit=limit
    )


async def until(predicate: object, give_up: float = 5.0) -> None:
    deadline = time.monotonic() + give_up
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)  # another thread (a gRPC server) does the work


class Gate:
    """A raw ASGI app holding each request until released."""

    def __init__(self) -> None:
        self.inside = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: object, receive: object, send: object) -> None:
        self.inside += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"done"})  # type: ignore[operator]


async def test_the_asgi_middleware_sheds_load_beyond_the_adaptive_limit() -> None:
    gate = Gate()
    limit = fixed_limit(2)
    app = ResilienceMiddleware(gate, limit)
    gate.release.set()
    assert (await call(app, http_scope())).status == 200  # a first latency sample
    gate.release.clear()
    running = [asyncio.create_task(call(app, http_scope())) for _ in range(2)]
    await until(lambda: gate.inside == 3)
    shed = await call(app, http_scope(), forbid_receive=True)
    assert shed.status == 503
    assert shed.json()["detail"].startswith("The service is at capacity")
    assert int(shed.headers["retry-after"]) >= 1
    gate.release.set()
    assert [(await task).status for task in running] == [200, 200]
    stats = limit.stats()
    assert (stats.in_flight, stats.samples, stats.rejected) == (0, 3, 1)


async def test_an_asgi_app_that_times_out_shrinks_the_limit() -> None:
    async def slow(scope: object, receive: object, send: object) -> None:
        await asyncio.sleep(10)

    limit = AdaptiveConcurrency(AIMD(latency_threshold=None), initial_limit=10)
    app = ResilienceMiddleware(slow, limit, rs.Timeout(0.01))
    assert (await call(app, http_scope())).status == 504
    assert limit.stats().dropped == 1
    assert limit.limit == 9


@pytest.mark.parametrize("flavour", ["sync", "aio"])
async def test_the_grpc_server_interceptor_sheds_load_beyond_the_adaptive_limit(
    flavour: str,
) -> None:
    limit = fixed_limit(1)
    script = Script()
    script.steps.extend([Step(), Step(pause=True)])
    async with Pair(flavour, script, server=spec(limit)) as pair:
        assert await pair.call("unary_stream") == expected("unary_stream")
        held = asyncio.create_task(pair.call("unary_stream"))
        await until(lambda: script.calls["ServerStream"] == 2)
        with pytest.raises(grpc.RpcError) as info:
            await pair.call("unary_unary")
        error = info.value
        assert error.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        pushback = dict(error.trailing_metadata() or ())[PUSHBACK_KEY]  # type: ignore[attr-defined]
        assert int(pushback) >= 1
        assert script.calls["Unary"] == 0  # the handler never ran
        script.resume.set()
        assert await held == expected("unary_stream")
    await until(lambda: limit.stats().in_flight == 0)
    stats = limit.stats()
    assert (stats.samples, stats.rejected) == (2, 1)


def test_a_throttle_and_a_shared_budget_in_client_pipelines() -> None:
    """Two client pipelines share a budget, each with a throttle inside its retry: in a
    full outage the throttles shed attempts, and the budget caps the retries of both."""
    from resilient.testing import FakeClock

    clock = FakeClock()
    budget = rs.RetryBudget(0.1, min_per_second=0, clock=clock)
    throttles = [rs.Throttle(rng=lambda: 0.9, clock=clock) for _ in range(2)]
    pipelines = [
        rs.Pipeline(rs.Retry(3, backoff=rs.Backoff.constant(0), budget=budget, clock=clock), t)
        for t in throttles
    ]
    reached = 0

    def down() -> None:
        nonlocal reached
        reached += 1
        raise TimeoutError

    shed = 0
    for i in range(200):
        try:
            pipelines[i % 2].call(down)
        except TimeoutError:
            pass
        except rs.RateLimitedError:
            shed += 1
    assert budget.stats().retries <= 0.1 * 200
    assert shed == sum(t.stats().throttled for t in throttles) > 100
    # With no accepts, p = requests / (requests + 1): a draw of 0.9 passes while p <= 0.9,
    # so each throttle lets its first 10 requests reach the dependency, then sheds the rest.
    assert reached == 2 * 10
