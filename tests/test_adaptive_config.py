"""Policy files: the adaptive_concurrency and throttle sections, and retry budgets shared
by name (``budgets:``), in memory and through a Redis backend."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from _redis_support import unique_prefix

import resilient as rs
from resilient import AIMD, AdaptiveConcurrency, Gradient2, Throttle, Vegas
from resilient.config import Registry, load_config
from resilient.testing import FakeClock


def load(text: str, **kwargs: object) -> Registry:
    return load_config(textwrap.dedent(text), "yaml", env={}, **kwargs)  # type: ignore[arg-type]


def errors_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "policies.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(rs.ConfigError) as info:
        load_config(path, env={})
    return [str(e).replace(str(tmp_path) + "/", "") for e in info.value.errors]


# -- adaptive_concurrency and throttle ------------------------------------------------------


def test_every_key_reaches_the_policies() -> None:
    clock = FakeClock()
    registry = load(
        """
        policies:
          api:
            adaptive_concurrency:
              algorithm: gradient2
              min_limit: 2
              max_limit: 50
              initial_limit: 10
              smoothing: 0.5
              max_queued: 3
              max_wait: 100ms
              drop_on: [TimeoutError, "resilient.CircuitOpenError"]
              tolerance: 2
              long_window: 100
              queue_size: 2
              window: 5
              probe_interval: 0
            timeout: 2s
            retry: {attempts: 2, budget: {ratio: 0.1}}
            throttle:
              k: 1.5
              window: 1m
              buckets: 6
              min_requests: 10
              max_reject: 0.9
              rejected_on: [OSError]
            circuit_breaker: true
          aimd:
            adaptive_concurrency: {algorithm: aimd, latency_threshold: 200ms, backoff_ratio: 0.8}
          vegas:
            adaptive_concurrency: {algorithm: vegas, alpha: 2, beta: 4, window: 20}
          bare:
            adaptive_concurrency: aimd
            throttle: 3
        """,
        clock=clock,
    )
    kinds = [type(p).__name__ for p in registry["api"].policies]
    assert kinds == ["AdaptiveConcurrency", "Timeout", "Retry", "Throttle", "CircuitBreaker"]
    limit, _, _, throttle, _ = registry["api"].policies
    assert isinstance(limit, AdaptiveConcurrency)
    cfg = limit.config
    assert cfg.algorithm == Gradient2(
        tolerance=2, long_window=100, queue_size=2, window=5, probe_interval=None
    )
    assert (cfg.min_limit, cfg.max_limit, cfg.initial_limit, cfg.smoothing) == (2, 50, 10, 0.5)
    assert (cfg.max_queued, cfg.max_wait) == (3, 0.1)
    assert cfg.is_drop(rs.CircuitOpenError("x"))
    assert cfg.is_drop(TimeoutError())
    assert not cfg.is_drop(rs.RateLimitedError("x"))
    assert (limit.name, limit.clock) == ("api", clock)
    assert isinstance(throttle, Throttle)
    t = throttle.config
    assert (t.k, t.window, t.buckets, t.min_requests, t.max_reject) == (1.5, 60.0, 6, 10, 0.9)
    assert t.is_rejection(ConnectionError())
    assert not t.is_rejection(rs.RejectedError("x"))
    (aimd,) = registry["aimd"].policies
    assert aimd.config.algorithm == AIMD(latency_threshold=0.2, backoff_ratio=0.8)  # type: ignore[attr-defined]
    (vegas,) = registry["vegas"].policies
    assert vegas.config.algorithm == Vegas(alpha=2, beta=4, window=20)  # type: ignore[attr-defined]
    bare_limit, bare_throttle = registry["bare"].policies
    assert bare_limit.config.algorithm == AIMD()  # type: ignore[attr-defined]
    assert bare_throttle.config.k == 3.0  # type: ignore[attr-defined]
    # The defaults classify the library's rejections.
    default = load("policies: {x: {adaptive_concurrency: true, throttle: true}}")
    limit, throttle = default["x"].policies
    assert limit.config.is_drop(rs.BulkheadFullError("y"))  # type: ignore[attr-defined]
    assert throttle.config.is_rejection(rs.CircuitOpenError("y"))  # type: ignore[attr-defined]


def test_options_of_another_algorithm_are_errors(tmp_path: Path) -> None:
    assert errors_of(
        """
        policies:
          api:
            adaptive_concurrency: {algorithm: aimd, tolerance: 2, smoothing: 0.3}
          other:
            adaptive_concurrency: {min_limit: 30}
          tcp:
            adaptive_concurrency: tcp
        """,
        tmp_path,
    ) == [
        "policies.yaml:3: policies.api.adaptive_concurrency.tolerance: expected no tolerance "
        "for aimd, got 2.0",
        "policies.yaml:5: policies.other.adaptive_concurrency.initial_limit: expected between "
        "min_limit (30) and max_limit (200), got 20",
        "policies.yaml:7: policies.tcp.adaptive_concurrency.algorithm: expected one of "
        "'gradient2', 'aimd', 'vegas', got 'tcp'",
    ]


def test_an_algorithm_constructor_error_names_the_key(tmp_path: Path) -> None:
    errors = errors_of(
        "policies:\n  api:\n    adaptive_concurrency: {algorithm: vegas, alpha: 5, beta: 4}\n",
        tmp_path,
    )
    assert errors == [
        "policies.yaml:3: policies.api.adaptive_concurrency.beta: expected a number > alpha "
        "(5), got 4.0"
    ]


def test_the_pipeline_describes_and_estimates_the_new_steps() -> None:
    registry = load(
        """
        budgets:
          shared: {ratio: 0.25}
        policies:
          api:
            adaptive_concurrency: {algorithm: vegas, max_queued: 2, max_wait: 1s}
            retry: {attempts: 3, budget: shared}
            throttle: {k: 1.5, max_reject: 0.8}
            timeout: {attempt: 1s}
        """
    )
    text = registry.describe()
    assert "budgets:\n  shared: 25% of calls + 3/s over 10s" in text
    assert "adaptive_concurrency  vegas limit 20 in [1, 200], 2 queued (wait 1s)" in text
    assert "throttle              k=1.5 over 2min, sheds at most 80%" in text
    assert "shared budget shared" in text
    estimate = registry.estimate("api")
    assert estimate.budgeted_amplification == 1.25
    assert estimate.latency > 1.0 + 3 * 1.0  # the queue's wait is counted


# -- budgets shared by name ------------------------------------------------------------------


SHARED = """
budgets:
  fleet: {ratio: 0.1, min_per_second: 0, ttl: 1m}
policies:
  a: {retry: {attempts: 5, backoff: {initial: 0}, budget: fleet}}
  b: {retry: {attempts: 3, backoff: {initial: 0}, budget: fleet}}
  own: {retry: {attempts: 3, backoff: {initial: 0}, budget: {ratio: 0.5}}}
"""


def test_every_retry_naming_a_budget_gets_the_same_one(run) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    registry = load(SHARED, clock=clock)
    (a,), (b,), (own,) = (registry[name].policies for name in ("a", "b", "own"))
    fleet = registry.budgets["fleet"]
    assert a.config.budget is fleet  # type: ignore[attr-defined]
    assert b.config.budget is fleet  # type: ignore[attr-defined]
    assert own.config.budget is not fleet  # type: ignore[attr-defined]
    assert list(registry.budgets) == ["fleet"]
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise OSError

    for policy in ("a", "b") * 50:  # a full outage through both policies
        with pytest.raises(OSError):
            run(registry[policy], down)
    assert attempts - 100 == 10  # 10 % of the calls of both, not 4 or 2 retries each
    assert fleet.stats().retries == 10


def test_a_reload_keeps_an_unchanged_budget_and_rebuilds_a_changed_one() -> None:
    registry = load(SHARED)
    fleet = registry.budgets["fleet"]
    retry = registry["a"].policies[0]
    registry.reload(textwrap.dedent(SHARED).replace("own: {", "own2: {"), "yaml")
    assert registry.budgets["fleet"] is fleet
    assert registry["a"].policies[0] is retry
    registry.reload(textwrap.dedent(SHARED).replace("ratio: 0.1", "ratio: 0.2"), "yaml")
    assert registry.budgets["fleet"] is not fleet
    assert registry.budgets["fleet"].ratio == 0.2
    assert registry["a"].policies[0].config.budget is registry.budgets["fleet"]  # type: ignore[attr-defined]


def test_budget_references_are_checked(tmp_path: Path) -> None:
    assert errors_of(
        """
        backends:
          redis: {url: "memory://"}
        budgets:
          fleet: {backend: redsi}
        policies:
          a: {retry: {budget: flet}}
          b: {retry: {budget: {on_backend_error: deny}}}
        """,
        tmp_path,
    ) == [
        "policies.yaml:4: budgets.fleet.backend: expected a backend name (redis) (did you "
        "mean 'redis'?), got 'redsi'",
        "policies.yaml:6: policies.a.retry.budget: expected a budget name (fleet) (did you "
        "mean 'fleet'?), got 'flet'",
        "policies.yaml:7: policies.b.retry.budget.on_backend_error: expected null without a "
        "backend (it says what to do when the backend fails), got 'deny'",
    ]


def test_unused_budgets_are_warned_about() -> None:
    registry = load("budgets: {spare: {}}\npolicies: {a: {retry: 2}}\n")
    assert {w.code for w in registry.warnings} == {"unused-budget", "retry-without-budget"}
    (unused,) = [w for w in registry.warnings if w.code == "unused-budget"]
    assert (unused.path, unused.line) == ("budgets.spare", 1)


def test_a_memory_backend_keeps_the_budget_in_this_process() -> None:
    registry = load(
        """
        backends: {local: {url: "memory://"}}
        budgets: {fleet: {backend: local}}
        policies: {a: {retry: {budget: fleet}}}
        """
    )
    assert type(registry.budgets["fleet"]) is rs.RetryBudget
    with pytest.raises(rs.ConfigError, match="keeps budgets in this process"):
        load(
            """
            backends: {local: {url: "memory://"}}
            budgets: {fleet: {backend: local, on_backend_error: deny}}
            """
        )


@pytest.mark.redis
def test_a_redis_backend_shares_the_budget_across_registries(redis_url: str) -> None:
    """Two registries (two processes, in effect) loading the same file share one budget."""
    from resilient.backends.redis import RedisRetryBudget

    text = f"""
        backends:
          shared: {{url: "{redis_url}", prefix: {unique_prefix()}}}
        budgets:
          fleet: {{ratio: 0.2, min_per_second: 0, backend: shared}}
        policies:
          a: {{retry: {{attempts: 3, backoff: {{initial: 0}}, budget: fleet}}}}
        """
    one, two = load(text), load(text)
    budget = one.budgets["fleet"]
    assert isinstance(budget, RedisRetryBudget)
    assert budget.on_backend_error == "local"
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise OSError

    for registry in (one, two) * 25:
        with pytest.raises(OSError):
            registry["a"].call(down)
    assert attempts - 50 == 10
    assert budget.flush().calls == 50
