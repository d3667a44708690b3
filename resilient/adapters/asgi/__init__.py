"""Inbound resilience for ASGI apps: ``ResilienceMiddleware``.

Pure ASGI (no web framework is imported), ``app`` first, so it works with
Starlette's and FastAPI's ``app.add_middleware(ResilienceMiddleware, ...)`` and
wraps any ASGI 3 app directly::

    import resilient as rs
    from resilient.adapters.asgi import ResilienceMiddleware, Route

    app.add_middleware(
        ResilienceMiddleware,
        rs.TokenBucket("20/s", burst=40),   # per client address
        rs.Bulkhead(max_concurrent=100, max_queued=50, max_wait="100ms"),
        rs.CircuitBreaker(failure_rate=0.5, minimum_calls=20, open_for="10s"),
        rs.Timeout("5s"),
        routes=[Route(None, path="/health")],   # never limited
        trusted_proxies=["10.0.0.0/8"],
    )

Inbound policies only: rate limiters (per client, user, API key, path, or
global), a bulkhead, a circuit breaker fed by the app's exceptions and 5xx
responses, and a timeout. A request is never retried. Refusals answer 429 or
503 with ``Retry-After``, the IETF ``RateLimit-Policy`` / ``RateLimit`` fields
and an RFC 9457 problem body, without calling the app or reading the request
body; a timeout before the response starts answers 504. A response the app has
started is never altered.

See :class:`ResilienceMiddleware` for every option, and :class:`TrustedProxies`
for how the client address is found behind proxies.
"""

from __future__ import annotations

from ._keys import GLOBAL, KeySpec, TrustedProxies, header_key, path_key, user_key
from ._middleware import FailedResponseError, ResilienceMiddleware
from ._plan import Route, Target
from ._types import ASGIApp, KeyFunc, Message, Receive, Scope, Send

__all__ = [
    "ASGIApp",
    "FailedResponseError",
    "GLOBAL",
    "KeyFunc",
    "KeySpec",
    "Message",
    "Receive",
    "ResilienceMiddleware",
    "Route",
    "Scope",
    "Send",
    "Target",
    "TrustedProxies",
    "header_key",
    "path_key",
    "user_key",
]
