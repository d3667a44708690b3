"""A breaker shared through a Redis backend, from a policy file."""

from __future__ import annotations

import textwrap

import pytest
from _redis_support import unique_prefix

import resilient as rs
from resilient import ConfigError
from resilient.backends.redis import SharedCircuitBreaker
from resilient.config import load_config

pytestmark = pytest.mark.redis

TEXT = textwrap.dedent(
    """
    backends:
      shared: {url: "${REDIS_URL}", prefix: "${PREFIX}", on_backend_error: local}
      here: {url: "memory://"}
    policies:
      payments:
        circuit_breaker: {window: 2, minimum_calls: 2, open_for: 30s, backend: shared}
      strict:
        circuit_breaker:
          backend: shared
          on_backend_error: deny
          flush_interval: 250ms
      alone:
        circuit_breaker: {backend: here}
    """
)


def _fail() -> None:
    raise OSError("down")


def test_replicas_share_a_breaker_through_a_redis_backend(redis_url):
    env = {"REDIS_URL": redis_url, "PREFIX": unique_prefix("cfg")}
    replicas = [load_config(TEXT, "yaml", env=env) for _ in range(2)]
    a, b = (r["payments"].policies[0] for r in replicas)
    assert isinstance(a, SharedCircuitBreaker)
    assert (a.name, a.on_backend_error, a.flush_interval) == ("payments", "local", 1.0)
    assert a.key == f"{env['PREFIX']}:{{payments}}:breaker"
    for _ in range(2):
        with pytest.raises(OSError):
            a.call(_fail)
    with pytest.raises(rs.CircuitOpenError):
        b.call(lambda: 1)  # opened by the other replica
    strict = replicas[0]["strict"].policies[0]
    assert (strict.on_backend_error, strict.flush_interval) == ("deny", 0.25)
    alone = replicas[0]["alone"].policies[0]
    assert type(alone) is rs.CircuitBreaker
    # A reload that changes nothing keeps the breaker (and its view).
    result = replicas[0].reload()
    assert "payments" in result.unchanged
    assert replicas[0]["payments"].policies[0] is a
    for replica in replicas:
        replica["payments"].policies[0].store.close()


@pytest.mark.parametrize(
    ("breaker", "path", "message"),
    [
        ("{backend: nowhere}", "circuit_breaker.backend", "a backend name"),
        ("{on_backend_error: deny}", "circuit_breaker.on_backend_error", "without a backend"),
        ("{flush_interval: 1s}", "circuit_breaker.flush_interval", "without a backend"),
        (
            "{backend: here, flush_interval: 1s}",
            "circuit_breaker.flush_interval",
            "in this process",
        ),
    ],
)
def test_bad_breaker_backends_are_reported(breaker, path, message):
    text = textwrap.dedent(
        f"""
        backends:
          here: {{url: "memory://"}}
        policies:
          p:
            circuit_breaker: {breaker}
        """
    )
    with pytest.raises(ConfigError) as caught:
        load_config(text, "yaml")
    error = str(caught.value)
    assert path in error
    assert message in error
