"""gRPC interceptors: resilience policies for ``grpc`` and ``grpc.aio`` clients and servers.

Clients (every arity, sync and asyncio) run each call under policies — retry
on ``UNAVAILABLE`` honouring the server's ``grpc-retry-pushback-ms``, circuit
breaker, rate limiter, timeout — with each attempt's deadline taken from the
remaining budget::

    import grpc
    import resilient as rs
    from resilient.adapters.grpc import ClientInterceptor

    channel = grpc.intercept_channel(
        grpc.insecure_channel("inventory:50051"),
        ClientInterceptor(rs.Retry(4), rs.CircuitBreaker(name="inventory")),
    )

Servers guard their methods: rate limits answer ``RESOURCE_EXHAUSTED``, an open
breaker or a full bulkhead ``UNAVAILABLE`` (both with the pushback trailer),
a timeout ``DEADLINE_EXCEEDED``; a refused call never reaches its handler.

Policies can differ per service or method (``routes=``, any mapping of method
patterns to policies, such as a config registry). Needs the ``grpc`` extra.
"""

from __future__ import annotations

try:
    import grpc as _grpc  # noqa: F401 - fail early, with the install hint
except ImportError as exc:  # pragma: no cover - exercised without grpcio
    raise ImportError(
        "resilient.adapters.grpc needs grpcio: pip install 'resilient-middleware[grpc]'"
    ) from exc

from ._aio_client import AsyncClientInterceptor
from ._aio_server import AsyncServerInterceptor
from ._client import ClientInterceptor
from ._core import (
    DEFAULT_FAILURE_CODES,
    DEFAULT_RETRY_CODES,
    PUSHBACK_KEY,
    KeyFunc,
    NotReplayableError,
    RetryableStatusError,
    StatusError,
    metadata_key,
    peer_key,
)
from ._server import ServerInterceptor

__all__ = [
    "AsyncClientInterceptor",
    "AsyncServerInterceptor",
    "ClientInterceptor",
    "DEFAULT_FAILURE_CODES",
    "DEFAULT_RETRY_CODES",
    "KeyFunc",
    "NotReplayableError",
    "PUSHBACK_KEY",
    "RetryableStatusError",
    "ServerInterceptor",
    "StatusError",
    "metadata_key",
    "peer_key",
]
