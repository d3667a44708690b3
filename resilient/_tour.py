"""The end-to-end part of ``resilient demo``: real HTTP on loopback.

A flaky upstream (a small ASGI app behind :class:`ResilienceMiddleware`) is
served by uvicorn on ``127.0.0.1`` on a free port; an httpx client calls it
through :class:`ResilientTransport` with policies from an embedded policy
file. The upstream is healthy, then down, then healthy again; at the end a
burst of concurrent requests meets the upstream's per-client rate limit. Each
request is printed as it completes, then a summary. It runs for a few seconds
and stops by itself. Needs the ``demo`` extra (httpx, uvicorn, pydantic).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from ._circuit_breaker import CircuitBreaker
from ._clock import SYSTEM_CLOCK
from ._errors import CircuitOpenError, RejectedError
from .observability._events import CircuitStateChanged, RetryScheduled
from .testing import RecordingListener

__all__ = ["POLICY_FILE", "missing_extras", "run_tour"]

POLICY_FILE = """
# The client's policies, as a policy file (TOML) would hold them.
version = 1

[backends.shared]
url = "{store}"{backend_options}

[policies.upstream]
description = "calls to the flaky upstream"
timeout = {{ total = "1s", attempt = "250ms" }}
rate_limit = {{ rate = "40/s", burst = 4, max_wait = "250ms", backend = "shared" }}

[policies.upstream.retry]
attempts = 3
backoff = {{ initial = "20ms", maximum = "100ms", jitter = "full" }}
retry_on = ["httpx.TransportError"]

[policies.upstream.circuit_breaker]
failure_rate = 0.5
minimum_calls = 6
window = 10
open_for = "400ms"
half_open_calls = 2
"""

# The upstream's schedule, in seconds since the tour started.
DOWN_FROM, DOWN_UNTIL, BURST_AT, END_AT = 0.8, 1.6, 2.6, 2.9


def missing_extras() -> list[str]:
    """The packages the tour needs that are not installed."""
    import importlib.util

    return [m for m in ("httpx", "uvicorn", "pydantic") if importlib.util.find_spec(m) is None]


def _upstream(started: float, store: str | None) -> Any:
    from ._rate_limit import TokenBucket
    from .adapters.asgi import ResilienceMiddleware, Route
    from .backends import store_from_url

    hits = Counter[str]()
    # Given as an object (not a URL) so that the app can close it when it stops.
    shared = store_from_url(store) if store else None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            if shared is not None:
                await shared.aclose()  # its connections belong to this event loop
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        elapsed = SYSTEM_CLOCK.monotonic() - started
        hits["requests"] += 1
        down = DOWN_FROM <= elapsed < DOWN_UNTIL
        status, body = (503, b"down") if down else (200, b'{"price": 101.5}')
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    # Per client address: bursts of 8, then 50 a second; /burst allows 2 a second.
    limiter = TokenBucket("50/s", burst=8, store=shared, name="upstream-per-client")
    strict = TokenBucket("2/s", burst=8, store=shared, name="upstream-burst")
    routes = [Route(strict, path="/burst")]
    return ResilienceMiddleware(app, limiter, routes=routes), hits  # type: ignore[arg-type]


class _Server:
    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = SYSTEM_CLOCK.monotonic() + 10
        while not self.server.started:
            if SYSTEM_CLOCK.monotonic() > deadline or not self.thread.is_alive():
                msg = "the demo's upstream server did not start"
                raise RuntimeError(msg)
            SYSTEM_CLOCK.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _row(elapsed: float, outcome: str, attempts: int, state: str, note: str = "") -> str:
    return f"  {elapsed:5.2f}s  {outcome:<22} attempts={attempts}  breaker={state:<9} {note}"


def run_tour(print_: Callable[[str], object] = print, redis_url: str | None = None) -> int:
    """Run the tour; returns an exit code."""
    import httpx

    from .adapters.httpx import AsyncResilientTransport, ResilientTransport
    from .config import load_config

    recorder = RecordingListener()
    # The client's limiter stays in this process; --redis shares the upstream's limit.
    text = POLICY_FILE.format(store="memory://", backend_options="")
    registry = load_config(text, format="toml", listeners=[recorder])
    pipeline = registry["upstream"]
    breaker = next(p for p in pipeline.policies if isinstance(p, CircuitBreaker))
    started = SYSTEM_CLOCK.monotonic()
    app, hits = _upstream(started, redis_url)
    totals = Counter[str]()
    transitions: list[str] = []
    where = f"the upstream's limit in Redis at {redis_url}" if redis_url else "state in memory"
    print_(f"\nEnd-to-end over loopback HTTP ({where})")
    print_("  upstream: uvicorn on 127.0.0.1, ResilienceMiddleware with a per-client token bucket")
    print_(f"  upstream down from {DOWN_FROM}s to {DOWN_UNTIL}s; a burst of 12 at {BURST_AT}s")
    print_("  client: httpx + ResilientTransport, policies from a policy file:")
    print_("          rate limit 40/s (paced) -> 1s total -> retry x3 -> breaker -> 250ms attempt")
    with _Server(app) as base:
        transport = ResilientTransport(pipeline, transport=httpx.HTTPTransport())
        with httpx.Client(transport=transport, base_url=base) as client:
            last, repeats = "", 0
            while (now := SYSTEM_CLOCK.monotonic() - started) < BURST_AT:
                recorder.clear()
                outcome = _one(lambda: client.get("/quote").status_code)
                totals[outcome] += 1
                retries = len(recorder.of(RetryScheduled))
                changes = recorder.of(CircuitStateChanged)
                transitions.extend(f"{c.old} -> {c.new}" for c in changes)
                note = "; ".join(f"breaker {c.old} -> {c.new}" for c in changes)
                row = _row(now, outcome, retries + 1, str(breaker.state), note)
                if row[8:] == last[8:]:
                    repeats += 1  # the same as the row before: counted, not printed
                else:
                    if repeats:
                        print_(f"          ... and {repeats} more like that")
                    print_(row)
                    last, repeats = row, 0
                SYSTEM_CLOCK.sleep(0.03)  # the client's own pace between requests (real time)
            if repeats:
                print_(f"          ... and {repeats} more like that")
        elapsed = SYSTEM_CLOCK.monotonic() - started
        print_(f"  {elapsed:5.2f}s  burst of 12 concurrent requests, paced by")
        print_("          the client's own limiter (40/s, waits up to 250ms):")
        t0 = SYSTEM_CLOCK.monotonic()
        burst = asyncio.run(_burst(base, pipeline, AsyncResilientTransport))
        totals.update(burst)
        took = (SYSTEM_CLOCK.monotonic() - t0) * 1000
        print_(
            "          "
            + ", ".join(f"{n} x {o}" for o, n in sorted(burst.items()))
            + f" in {took:.0f}ms"
        )
        print_("          a plain httpx client's burst of 12 to /burst (2/s, bursts of 8):")
        bare, header = asyncio.run(_bare_burst(base))
        print_("          " + ", ".join(f"{n} x {o}" for o, n in sorted(bare.items())))
        if header:
            print_(f"          a 429 carried: {header}")
    print_(_summary(totals, transitions, hits["requests"]))
    return 0


async def _burst(base: str, pipeline: Any, transport_class: Any) -> Counter[str]:
    import httpx

    transport = transport_class(pipeline, transport=httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:

        async def one() -> str:
            try:
                return str((await client.get("/quote")).status_code)
            except CircuitOpenError:
                return "breaker open"
            except RejectedError as exc:
                return exc.reason

        return Counter(await asyncio.gather(*(one() for _ in range(12))))


async def _bare_burst(base: str) -> tuple[Counter[str], str]:
    import httpx

    async with httpx.AsyncClient(base_url=base) as client:
        responses = await asyncio.gather(*(client.get("/burst") for _ in range(12)))
    limited = [r for r in responses if r.status_code == 429]
    header = ""
    if limited:
        h = limited[0].headers
        header = f"Retry-After: {h.get('retry-after')}; RateLimit: {h.get('ratelimit')}"
    return Counter(str(r.status_code) for r in responses), header


def _one(send: Callable[[], int]) -> str:
    try:
        return str(send())
    except CircuitOpenError:
        return "rejected: breaker open"
    except RejectedError as exc:
        return f"rejected: {exc.reason}"
    except Exception as exc:  # a transport error after the retries
        return type(exc).__name__


def _summary(totals: Counter[str], transitions: list[str], upstream_requests: int) -> str:
    lines = ["\nSummary (outcomes as the caller saw them)"]
    for outcome, count in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {count:4d}  {outcome}")
    lines.append(f"  {upstream_requests:4d}  requests reached the upstream app")
    lines.append(f"  breaker: {', '.join(transitions) or 'no transitions'}")
    return "\n".join(lines)
