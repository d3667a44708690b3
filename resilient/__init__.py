"""resilient: composable sync and async resilience policies.

Retry, circuit breaker, rate limiters, timeout, bulkhead and fallback, as
decorators or pipelines, with state in memory or shared through Redis.
``import resilient`` imports no optional integration (httpx, grpc, redis...).
"""

from __future__ import annotations

from typing import Any

from ._clock import Clock, SystemClock, remaining
from ._duration import Rate
from ._errors import (
    BackendError,
    BulkheadFullError,
    CircuitOpenError,
    ConfigError,
    RateLimitedError,
    RejectedError,
    ResilienceError,
    TimeoutExceededError,
)
from ._pipeline import Pipeline, Policy

__all__ = [
    "BackendError",
    "BulkheadFullError",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "Pipeline",
    "Policy",
    "Rate",
    "RateLimitedError",
    "RejectedError",
    "remaining",
    "ResilienceError",
    "SystemClock",
    "TimeoutExceededError",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("resilient-middleware")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
