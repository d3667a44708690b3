"""resilient: composable sync and async resilience policies.

Retry, circuit breaker, rate limiters, timeout, bulkhead and fallback, as
decorators or pipelines, with state in memory or shared through Redis.
``import resilient`` imports no optional integration (httpx, grpc, redis...).
"""

from __future__ import annotations

from typing import Any as _Any

from ._adaptive import AIMD, AdaptiveConcurrency, AdaptiveConcurrencyStats, Gradient2, Vegas
from ._algorithms import Decision
from ._backoff import Backoff
from ._budget import RetryBudget, RetryBudgetStats
from ._bulkhead import Bulkhead, BulkheadStats
from ._circuit_breaker import CircuitBreaker, CircuitBreakerStats, CircuitState
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
from ._fallback import Fallback
from ._pipeline import Pipeline, Policy
from ._rate_limit import FixedWindow, SlidingWindow, TokenBucket
from ._retry import Retry
from ._throttle import Throttle, ThrottleStats
from ._timeout import Timeout
from ._windows import CountWindow, TimeWindow
from .config import Registry, load_config

__all__ = [
    "AdaptiveConcurrency",
    "AdaptiveConcurrencyStats",
    "AIMD",
    "BackendError",
    "Backoff",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadStats",
    "CircuitBreaker",
    "CircuitBreakerStats",
    "CircuitOpenError",
    "CircuitState",
    "Clock",
    "ConfigError",
    "CountWindow",
    "Decision",
    "Fallback",
    "FixedWindow",
    "Gradient2",
    "load_config",
    "Pipeline",
    "Policy",
    "Rate",
    "RateLimitedError",
    "Registry",
    "RejectedError",
    "remaining",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryBudgetStats",
    "SlidingWindow",
    "SystemClock",
    "Throttle",
    "ThrottleStats",
    "Timeout",
    "TimeoutExceededError",
    "TimeWindow",
    "TokenBucket",
    "Vegas",
]


def __getattr__(name: str) -> _Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("resilient-middleware")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
