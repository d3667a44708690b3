"""Loading policy files: formats, every field, defaults, shorthands, inheritance,
interpolation, routes, and the registry as a mapping."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import resilient as rs
from resilient._rate_limit import FixedWindow, SlidingWindow, TokenBucket
from resilient.config import (
    AdaptiveConcurrencySettings,
    BackendSettings,
    BackoffSettings,
    BulkheadSettings,
    CircuitBreakerSettings,
    FallbackSettings,
    PolicySettings,
    RateLimitSettings,
    Registry,
    RetryBudgetSettings,
    RetrySettings,
    ThrottleSettings,
    TimeoutSettings,
    WindowSettings,
    load_config,
)
from resilient.testing import FakeClock


def load(text: str, fmt: str = "yaml", **kwargs: object) -> Registry:
    return load_config(textwrap.dedent(text), fmt, env=kwargs.pop("env", {}), **kwargs)  # type: ignore[arg-type]


def steps(registry: Registry, name: str) -> list[str]:
    return [type(p).__name__ for p in registry[name].policies]


def matches(spec: object, exc: BaseException) -> bool:
    """Whether exception types (a tuple) or a predicate accept *exc*."""
    return isinstance(exc, spec) if isinstance(spec, tuple) else bool(spec(exc))  # type: ignore[operator]


# -- formats ---------------------------------------------------------------------------------

SAME = {
    "yaml": """
        policies:
          api:
            timeout: 2s
            retry: {attempts: 4}
        """,
    "toml": """
        [policies.api]
        timeout = "2s"
        retry = { attempts = 4 }
        """,
    "json": '{"policies": {"api": {"timeout": "2s", "retry": {"attempts": 4}}}}',
}


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_the_three_formats_give_the_same_registry(fmt):
    registry = load(SAME[fmt], fmt)
    assert list(registry) == ["api"]
    assert steps(registry, "api") == ["Timeout", "Retry"]
    assert registry["api"].policies[1].config.attempts == 4
    assert registry.document.policies["api"].timeout == TimeoutSettings(total=2.0)


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_format_from_the_file_suffix(tmp_path, fmt):
    path = tmp_path / f"policies.{fmt}"
    path.write_text(textwrap.dedent(SAME[fmt]))
    for source in (path, str(path)):
        registry = load_config(source)
        assert registry.source == str(path)
        assert registry["api"].policies[1].config.attempts == 4


def test_yml_suffix_and_explicit_format_win(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text(textwrap.dedent(SAME["yaml"]))
    assert "api" in load_config(path)
    odd = tmp_path / "policies.conf"
    odd.write_text(textwrap.dedent(SAME["toml"]))
    assert "api" in load_config(odd, "toml")


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_text_format_is_sniffed(fmt):
    registry = load_config(textwrap.dedent(SAME[fmt]), env={})
    assert registry["api"].policies[1].config.attempts == 4
    assert registry.source is None


def test_a_mapping_is_accepted():
    registry = load_config({"policies": {"api": {"retry": 2}}})
    assert registry["api"].policies[0].config.attempts == 2


def test_empty_documents_give_an_empty_registry():
    assert len(load("")) == 0
    assert len(load("{}", "json")) == 0
    assert len(load("", "toml")) == 0
    assert repr(load("")) == "<Registry: no policies>"


def test_yaml_keeps_on_and_yes_as_strings():
    # YAML 1.1 would read the key ``on`` as True; files use YAML 1.2 booleans.
    registry = load(
        """
        policies:
          api:
            fallback: {value: yes, on: [ValueError]}
        """
    )
    fallback = registry["api"].policies[0]
    assert fallback.value == "yes"
    assert registry.document.policies["api"].fallback == FallbackSettings(
        value="yes", on=("ValueError",)
    )


def test_json_schema_key_is_ignored():
    registry = load('{"$schema": "./policies.schema.json", "policies": {"a": {}}}', "json")
    assert list(registry) == ["a"]


# -- every field -----------------------------------------------------------------------------

EVERYTHING = """
version: 1
backends:
  local:
    url: "memory://"
policies:
  full:
    description: every key set
    order: [fallback, bulkhead, rate_limit, timeout, retry, circuit_breaker, attempt_timeout]
    fallback:
      handler: "json:dumps"
      on: [KeyError, LookupError]
    rate_limit:
      rate: 50/minute
      algorithm: token_bucket
      burst: 7
      initial: 3
      precise: true
      max_wait: 250ms
      backend: local
    bulkhead:
      max_concurrent: 4
      max_queued: 2
      max_wait: 1.5s
    timeout:
      total: 9s
      attempt: 2s
    retry:
      attempts: 5
      backoff: {initial: 50ms, maximum: 3s, multiplier: 3, jitter: equal, increment: 10ms}
      retry_on: [ConnectionError, "json.JSONDecodeError"]
      deadline: 8s
      max_retry_after: 30s
      retry_rejected: true
      budget: {ratio: 0.5, min_per_second: 1, ttl: 20s, buckets: 4}
    circuit_breaker:
      failure_rate: 0.25
      slow_call_rate: 0.75
      slow_call_duration: 1500ms
      window: {seconds: 2m, buckets: 12}
      minimum_calls: 6
      half_open_calls: 2
      open_for: 45s
      open_for_multiplier: 2
      max_open_for: 5m
      consecutive_failures: 3
      half_open_max_wait: 20s
      open_on_retry_after: true
      max_retry_after: 100s
      record: [OSError]
      ignore: [FileNotFoundError]
      observe_only: true
      backend: local
  windows:
    rate_limit: {rate: "5/s;100/min", algorithm: sliding_window, precise: false}
    circuit_breaker: {window: {size: 10}}
  fixed:
    rate_limit: {rate: 10 per second, algorithm: fixed_window}
  gradient:
    adaptive_concurrency:
      algorithm: gradient2
      min_limit: 2
      max_limit: 50
      initial_limit: 10
      smoothing: 0.5
      max_queued: 3
      max_wait: 100ms
      drop_on: [TimeoutError]
      tolerance: 2
      long_window: 100
      queue_size: 2
      window: 5
      probe_interval: 30s
    throttle:
      {k: 1.5, window: 1m, buckets: 6, min_requests: 10, max_reject: 0.9, rejected_on: [OSError]}
  aimd:
    adaptive_concurrency:
      {algorithm: aimd, latency_threshold: 200ms, backoff_ratio: 0.8, increase: 2}
  vegas:
    adaptive_concurrency: {algorithm: vegas, alpha: 2, beta: 4}
routes:
  httpx:
    - {policy: full, host: "*.example.com", path: /v1, methods: [get, PUT]}
  asgi:
    - {policy: windows, path: "/api/*", methods: POST, key: "header:X-Api-Key"}
  grpc:
    - {policy: fixed, service: "shop.v1.*", method: "Get*", side: client}
"""


def test_every_key_reaches_the_policies():
    clock = FakeClock()
    registry = load(EVERYTHING, clock=clock, resolve_imports=True)
    fallback, bulkhead, limiter, total, retry, breaker, attempt = registry["full"].policies
    assert isinstance(fallback, rs.Fallback)
    assert fallback.handler({"a": 1}) == '{"a": 1}'
    assert matches(fallback.on, KeyError())
    assert not matches(fallback.on, ValueError())
    assert isinstance(limiter, TokenBucket)
    assert limiter.config.rates == (rs.Rate(50, 60.0),)
    assert (limiter.config.burst, limiter.config.initial, limiter.config.max_wait) == (7, 3, 0.25)
    assert limiter.store is registry._state.built.stores["local"][1]
    assert bulkhead.config == rs.Bulkhead(4, max_queued=2, max_wait=1.5).config
    assert (total.seconds, attempt.seconds, attempt.name) == (9.0, 2.0, "full.attempt")
    cfg = retry.config
    assert cfg.attempts == 5
    assert cfg.backoff == rs.Backoff(
        initial=0.05, maximum=3.0, multiplier=3, jitter="equal", increment=0.01
    )
    assert matches(cfg.retry_on, ConnectionError())
    assert matches(cfg.retry_on, json.JSONDecodeError("x", "", 0))
    assert not matches(cfg.retry_on, OSError())
    assert (cfg.deadline, cfg.max_retry_after, cfg.retry_rejected) == (8.0, 30.0, True)
    budget = cfg.budget
    assert (budget.ratio, budget.min_per_second, budget.ttl) == (0.5, 1.0, 20.0)
    assert budget.clock is clock
    b = breaker.config
    assert (b.failure_rate, b.slow_call_rate, b.slow_call_duration) == (0.25, 0.75, 1.5)
    assert b.window == rs.TimeWindow(120.0, buckets=12)
    assert (b.minimum_calls, b.half_open_calls, b.open_for) == (6, 2, 45.0)
    assert (b.open_for_multiplier, b.max_open_for, b.consecutive_failures) == (2.0, 300.0, 3)
    assert (b.half_open_max_wait, b.open_on_retry_after, b.max_retry_after) == (20.0, True, 100.0)
    assert b.observe_only is True
    assert b.classify(OSError()) != b.classify(FileNotFoundError())
    for policy in registry["full"].policies:
        assert policy.clock is clock or isinstance(policy, rs.Fallback)
    sliding, count_breaker = registry["windows"].policies
    assert isinstance(sliding, SlidingWindow)
    assert sliding.config.precise is False
    assert sliding.config.rates == (rs.Rate(5, 1.0), rs.Rate(100, 60.0))
    assert count_breaker.config.window == rs.CountWindow(10)
    (fixed,) = registry["fixed"].policies
    assert isinstance(fixed, FixedWindow)
    routes = registry.routes
    assert routes.httpx[0].methods == ("GET", "PUT")
    assert routes.asgi[0].methods == ("POST",)
    assert routes.asgi[0].key == "header:X-Api-Key"
    assert routes.grpc[0].side == "client"


def _keys_written(text: str) -> set[str]:
    from resilient.config._parse import parse_text

    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                found.add(str(key))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(parse_text(text, "yaml", None).data)
    return found


@pytest.mark.parametrize(
    "cls",
    [
        PolicySettings,
        FallbackSettings,
        RateLimitSettings,
        BulkheadSettings,
        TimeoutSettings,
        RetrySettings,
        BackoffSettings,
        RetryBudgetSettings,
        CircuitBreakerSettings,
        WindowSettings,
        AdaptiveConcurrencySettings,
        ThrottleSettings,
    ],
)
def test_the_every_key_document_really_has_every_key(cls):
    # A new field must be added to EVERYTHING (and so be tested end to end).
    missing = {f.name for f in dataclasses.fields(cls)} - _keys_written(EVERYTHING)
    # covered by test_fallback_value, the inheritance tests, test_backend_options_reach_the_store
    # (and, for a shared breaker's flush_interval, test_redis_breaker_config)
    assert missing <= {"value", "extends", "on_backend_error", "flush_interval"}


def test_backend_options_reach_the_store(monkeypatch):
    from resilient import backends
    from resilient.backends.memory import MemoryStore

    made: list[tuple[str, dict[str, object]]] = []

    class Store(MemoryStore):
        __slots__ = ("mode",)

        def with_options(self, *, on_backend_error: str) -> Store:
            view = Store()
            view.mode = on_backend_error
            return view

    def factory(url: str, **options: object) -> Store:
        made.append((url, options))
        return Store()

    monkeypatch.setitem(backends._SCHEMES, "fake", factory)
    registry = load(
        """
        backends:
          shared:
            url: "fake://:pw@host/0"
            on_backend_error: local
            prefix: shop
            timeout: 100ms
            connect_timeout: 1s
            probe_interval: 2s
        policies:
          a: {rate_limit: {rate: 1/s, backend: shared}}
          b: {rate_limit: {rate: 1/s, backend: shared, on_backend_error: deny}}
        """
    )
    assert made == [
        (
            "fake://:pw@host/0",
            {
                "on_backend_error": "local",
                "prefix": "shop",
                "timeout": 0.1,
                "connect_timeout": 1.0,
                "probe_interval": 2.0,
            },
        )
    ]
    store = registry._state.built.stores["shared"][1]
    assert registry["a"].policies[0].store is store
    assert registry["b"].policies[0].store.mode == "deny"
    assert {f.name for f in dataclasses.fields(BackendSettings)} == {
        "url",
        "on_backend_error",
        "prefix",
        "timeout",
        "connect_timeout",
        "probe_interval",
    }


def test_fallback_value():
    registry = load("policies: {a: {fallback: {value: [1, 2]}}, b: {fallback: 0}}")
    assert registry["a"].call(_boom) == [1, 2]
    assert registry["b"].call(_boom) == 0


def _boom() -> None:
    raise RuntimeError("boom")


# -- defaults --------------------------------------------------------------------------------


def test_settings_defaults_are_the_constructors_defaults():
    retry = RetrySettings()
    cfg = rs.Retry().config
    assert (retry.attempts, retry.deadline, retry.max_retry_after, retry.retry_rejected) == (
        cfg.attempts,
        cfg.deadline,
        cfg.max_retry_after,
        cfg.retry_rejected,
    )
    assert cfg.retry_on == (OSError,)
    assert retry.retry_on == ("OSError",)
    assert rs.Backoff(**dataclasses.asdict(BackoffSettings())) == rs.Backoff()
    budget = rs.RetryBudget()
    b = RetryBudgetSettings()
    assert (b.ratio, b.min_per_second, b.ttl) == (budget.ratio, budget.min_per_second, budget.ttl)
    breaker = rs.CircuitBreaker().config
    settings = CircuitBreakerSettings()
    for field in dataclasses.fields(CircuitBreakerSettings):
        if field.name in ("window", "record", "ignore"):
            continue
        if field.name in ("backend", "on_backend_error", "flush_interval"):
            assert getattr(settings, field.name) is None  # a shared breaker's (null: memory)
            continue
        assert getattr(settings, field.name) == getattr(breaker, field.name), field.name
    assert breaker.window == rs.CountWindow(settings.window.size or 0)
    assert breaker.record == (Exception,)
    assert settings.record == ("Exception",)
    assert breaker.ignore == ()
    assert settings.ignore == ()
    assert WindowSettings(seconds=1).buckets == rs.TimeWindow(1).buckets
    bulkhead = rs.Bulkhead().config
    assert dataclasses.asdict(BulkheadSettings()) == dataclasses.asdict(bulkhead)
    bucket = TokenBucket("1/s").config
    limit = RateLimitSettings(rate="1/s")
    assert (limit.burst, limit.initial, limit.max_wait) == (
        bucket.burst,
        bucket.initial,
        bucket.max_wait,
    )
    assert limit.precise == SlidingWindow("1/s").config.precise
    fallback = rs.Fallback(None)
    assert fallback.on == (Exception,)
    assert FallbackSettings().on == ("Exception",)


def test_a_policy_with_empty_sections_gets_the_defaults():
    registry = load(
        """
        policies:
          api:
            retry: {}
            circuit_breaker: true
            bulkhead: {}
        """
    )
    assert steps(registry, "api") == ["Bulkhead", "Retry", "CircuitBreaker"]
    assert registry["api"].policies[1].config.attempts == 3
    assert registry.document.policies["api"].retry == RetrySettings()


def test_default_order_and_explicit_order():
    registry = load(
        """
        policies:
          default:
            fallback: 1
            circuit_breaker: {}
            retry: 2
            timeout: {total: 5s, attempt: 1s}
            bulkhead: 3
            rate_limit: 9/s
          explicit:
            order: [circuit_breaker, retry, timeout]
            timeout: 5s
            retry: 2
            circuit_breaker: {}
        """
    )
    assert rs.config.DEFAULT_ORDER == (
        "fallback",
        "rate_limit",
        "bulkhead",
        "adaptive_concurrency",
        "timeout",
        "retry",
        "throttle",
        "circuit_breaker",
        "attempt_timeout",
    )
    assert steps(registry, "default") == [
        "Fallback",
        "TokenBucket",
        "Bulkhead",
        "Timeout",
        "Retry",
        "CircuitBreaker",
        "Timeout",
    ]
    assert steps(registry, "explicit") == ["CircuitBreaker", "Retry", "Timeout"]


def test_shorthands():
    registry = load(
        """
        policies:
          api:
            timeout: 1.5
            retry: 4
            bulkhead: 8
            rate_limit: 10/s
            circuit_breaker: {window: 50}
          timed:
            circuit_breaker: {window: 30s}
        """
    )
    p = registry.document.policies["api"]
    assert p.timeout == TimeoutSettings(total=1.5)
    assert p.retry == RetrySettings(attempts=4)
    assert p.bulkhead == BulkheadSettings(max_concurrent=8)
    assert p.rate_limit == RateLimitSettings(rate="10/s")
    assert p.circuit_breaker == CircuitBreakerSettings(window=WindowSettings(size=50))
    timed = registry.document.policies["timed"].circuit_breaker
    assert timed is not None
    assert timed.window == WindowSettings(seconds=30.0)


def test_durations_accept_numbers_and_units():
    registry = load(
        """
        policies:
          a: {timeout: {total: 2, attempt: 250ms}}
          b: {timeout: {total: 1h, attempt: 0.5m}}
          c: {timeout: "1e-3"}
        """
    )
    docs = registry.document.policies
    assert docs["a"].timeout == TimeoutSettings(total=2.0, attempt=0.25)
    assert docs["b"].timeout == TimeoutSettings(total=3600.0, attempt=30.0)
    assert docs["c"].timeout == TimeoutSettings(total=0.001)


# -- inheritance -----------------------------------------------------------------------------

INHERIT = """
defaults:
  retry: {attempts: 4, backoff: {maximum: 2s}}
  circuit_breaker: {open_for: 10s}
bases:
  standard:
    timeout: {total: 5s, attempt: 1s}
    retry: {retry_on: [ConnectionError]}
  strict:
    extends: standard
    circuit_breaker: {failure_rate: 0.2}
policies:
  payments:
    extends: strict
    retry: {attempts: 2}
    timeout: {attempt: 500ms}
  search:
    extends: payments
    circuit_breaker: false
    retry: {backoff: {jitter: equal}}
  multiple:
    extends: [standard, search]
    bulkhead: 3
  plain:
    rate_limit: 1/s
"""


def test_extends_merges_mappings_key_by_key():
    registry = load(INHERIT)
    payments = registry.document.policies["payments"]
    assert payments.extends == ("strict",)
    assert payments.timeout == TimeoutSettings(total=5.0, attempt=0.5)
    assert payments.retry == RetrySettings(
        attempts=2, retry_on=("ConnectionError",), backoff=BackoffSettings(maximum=2.0)
    )
    assert payments.circuit_breaker == CircuitBreakerSettings(failure_rate=0.2, open_for=10.0)


def test_false_removes_an_inherited_section_and_defaults_apply_only_to_present_sections():
    registry = load(INHERIT)
    search = registry.document.policies["search"]
    assert search.circuit_breaker is None
    assert search.retry == RetrySettings(
        attempts=2,
        retry_on=("ConnectionError",),
        backoff=BackoffSettings(maximum=2.0, jitter="equal"),
    )
    plain = registry.document.policies["plain"]
    assert (plain.retry, plain.circuit_breaker, plain.timeout) == (None, None, None)


def test_several_parents_merge_left_to_right():
    multiple = load(INHERIT).document.policies["multiple"]
    assert multiple.extends == ("standard", "search")
    assert multiple.timeout == TimeoutSettings(total=5.0, attempt=0.5)
    assert multiple.circuit_breaker is None
    assert multiple.bulkhead == BulkheadSettings(max_concurrent=3)


def test_description_and_extends_are_not_inherited():
    registry = load(
        """
        bases:
          b: {description: a template, retry: 2}
        policies:
          p: {extends: b}
          q: {extends: p, description: mine}
        """
    )
    p, q = registry.document.policies["p"], registry.document.policies["q"]
    assert (p.description, p.extends) == (None, ("b",))
    assert (q.description, q.extends) == ("mine", ("p",))
    assert q.retry == RetrySettings(attempts=2)


def test_bases_are_not_policies():
    registry = load(INHERIT)
    assert list(registry) == ["payments", "search", "multiple", "plain"]
    assert "standard" not in registry


def test_a_window_is_replaced_not_merged():
    registry = load(
        """
        bases:
          b: {circuit_breaker: {window: {size: 10}}}
        policies:
          p: {extends: b, circuit_breaker: {window: {seconds: 30s}}}
        """
    )
    breaker = registry.document.policies["p"].circuit_breaker
    assert breaker is not None
    assert breaker.window == WindowSettings(seconds=30.0)


# -- interpolation ---------------------------------------------------------------------------


def test_environment_interpolation():
    registry = load(
        """
        backends:
          shared: {url: "memory://${MEM_OPTS:-}"}
        policies:
          api:
            description: "${TEAM}-api costs $${X} and ${UNSET:-${nothing}"
            retry: "${RETRIES}"
            timeout: "${TIMEOUT:-3s}"
            rate_limit: {rate: "${RATE:-5}/s", backend: shared}
        """,
        env={"TEAM": "core", "RETRIES": "6", "TIMEOUT": ""},
    )
    api = registry.document.policies["api"]
    assert api.description == "core-api costs ${X} and ${nothing"
    assert api.retry == RetrySettings(attempts=6)
    assert api.timeout == TimeoutSettings(total=3.0)  # empty counts as unset with :-
    assert api.rate_limit is not None
    assert api.rate_limit.rate == "5/s"


def test_environment_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("RESILIENT_TEST_ATTEMPTS", "7")
    registry = load_config('{"policies": {"a": {"retry": "${RESILIENT_TEST_ATTEMPTS}"}}}')
    assert registry["a"].policies[0].config.attempts == 7


# -- routes ----------------------------------------------------------------------------------


def test_routes_match_first_wins():
    registry = load(
        """
        policies: {a: {}, b: {}, c: {}}
        routes:
          httpx:
            - {policy: a, host: "*.Example.com", path: /v1/, methods: [POST]}
            - {policy: b, host: "api.example.com:8443"}
            - {policy: c, host: api.example.com}
          asgi:
            - {policy: a, path: "/admin/*", methods: [GET, post]}
            - {policy: c}
          grpc:
            - {policy: a, service: "shop.v1.Orders", method: "Create*", side: server}
            - {policy: b, service: "shop.*"}
        """
    )
    routes = registry.routes
    assert routes.httpx[0].host == "*.example.com"
    assert routes.httpx[0].path == "/v1"
    assert routes.for_httpx("post", "API.example.com", "/v1/charges").policy == "a"
    assert routes.for_httpx("POST", "api.example.com", "/v10").policy == "c"
    assert routes.for_httpx("GET", "api.example.com", "/v1/charges", 8443).policy == "b"
    assert routes.for_httpx("GET", "example.com", "/") is None  # not the apex
    assert routes.for_asgi("POST", "/admin/users").policy == "a"
    assert routes.for_asgi("DELETE", "/admin/users").policy == "c"
    server, client = routes.grpc
    assert server.pattern == "shop.v1.Orders/Create*"
    assert server.matches("/shop.v1.Orders/CreateOrder", "server")
    assert not server.matches("/shop.v1.Orders/CreateOrder", "client")
    assert client.matches("/shop.v2.Carts/Get")


def test_grpc_routes_are_a_live_mapping_for_the_interceptors():
    registry = load(
        """
        policies: {a: {retry: 2}, b: {timeout: 1s}}
        routes:
          grpc:
            - {policy: a, service: "shop.v1.Orders", side: client}
            - {policy: b, service: "shop.v1.Orders", method: Get, side: server}
            - {policy: b}
        """
    )
    client = registry.grpc_routes("client")
    assert dict(client) == {"shop.v1.Orders/*": registry["a"], "*": registry["b"]}
    server = registry.grpc_routes("server")
    assert list(server) == ["shop.v1.Orders/Get", "*"]
    assert len(registry.grpc_routes()) == 3
    old = client["*"]
    registry.reload(
        "policies: {a: {retry: 2}, b: {timeout: 2s}}\nroutes: {grpc: [{policy: b}]}\n", "yaml"
    )
    assert client["*"] is registry["b"] is not old
    assert list(client) == ["*"]
    with pytest.raises(rs.ConfigError):
        registry.grpc_routes("both")


def test_httpx_routes_match_as_the_transport_does():
    pytest.importorskip("httpx")
    registry = load(
        """
        policies: {a: {}, b: {}}
        routes:
          httpx:
            - {policy: a, host: "*.example.com", path: /v1, methods: [GET]}
            - {policy: b, host: "api.example.com:8443", path: /}
            - {policy: b, host: "API.other.org"}
        """
    )
    adapter_routes = registry.routes.httpx_routes()
    assert [r.policy for r in adapter_routes] == ["a", "b", "b"]
    requests = [
        ("GET", "api.example.com", None, "/v1/x"),
        ("GET", "api.example.com", None, "/v10"),
        ("POST", "api.example.com", None, "/v1"),
        ("GET", "example.com", None, "/v1"),
        ("GET", "api.example.com", 8443, "/anything"),
        ("GET", "api.other.org", None, "/"),
        ("PUT", "api.other.org", 80, "/"),
    ]
    for method, host, port, path in requests:
        host_port = host if port is None else f"{host}:{port}"
        for mine, theirs in zip(registry.routes.httpx, adapter_routes, strict=True):
            assert mine.matches(method, host, path, port) == theirs.matches(
                host, host_port, path, method
            ), (mine, method, host, port, path)


# -- the registry ----------------------------------------------------------------------------


def test_each_name_is_built_once_and_shared():
    registry = load("policies: {api: {circuit_breaker: {}}, other: {circuit_breaker: {}}}")
    assert registry["api"] is registry["api"]
    assert registry["api"].policies[0] is not registry["other"].policies[0]
    assert isinstance(registry["api"], rs.Pipeline)
    assert registry["api"].name == "api"
    assert registry["api"].policies[0].name == "api"


def test_registry_is_a_mapping_with_helpful_key_errors():
    registry = load("policies: {payments: {}, search: {}}")
    assert len(registry) == 2
    assert "payments" in registry
    assert "nope" not in registry
    assert registry.get("nope") is None
    assert dict(registry) == {"payments": registry["payments"], "search": registry["search"]}
    with pytest.raises(KeyError, match=r"no policy named 'paymnets' \(did you mean 'payments'"):
        registry["paymnets"]


def test_pipelines_run_sync_and_async(run):
    registry = load("policies: {api: {retry: {attempts: 3, backoff: {initial: 0, maximum: 0}}}}")
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return "ok"

    assert run(registry["api"], flaky) == "ok"
    assert len(calls) == 3


def test_live_policy_follows_reloads_and_decorates():
    registry = load("policies: {api: {fallback: 1}}")
    live = registry.live("api")

    @live
    def fails() -> int:
        raise RuntimeError

    assert fails() == 1
    registry.reload({"policies": {"api": {"fallback": 2}}})
    assert fails() == 2
    with pytest.raises(KeyError):
        registry.live("nope")


def test_exports():
    assert rs.load_config is load_config
    assert rs.Registry is Registry
    assert Registry("policies: {a: {}}", env={}).document.policies["a"] == PolicySettings()


def test_import_does_not_pull_pydantic_or_yaml():
    code = (
        "import sys, resilient, resilient.config\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pydantic', 'yaml'}\n"
        "    or m.startswith('resilient.config._') and m != 'resilient.config._registry'))\n"
        "from resilient.config import RetrySettings, Estimate\n"
        "print(RetrySettings.__module__, Estimate.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "[]",
        "resilient.config._schema resilient.config._lint",
    ]


# -- examples --------------------------------------------------------------------------------

EXAMPLES = sorted(
    p
    for p in (Path(__file__).parent.parent / "examples").iterdir()
    if p.suffix in (".yaml", ".yml", ".toml", ".json")
)


def test_there_are_examples_for_each_adapter_and_redis():
    names = {p.stem for p in EXAMPLES}
    assert {"httpx", "asgi", "grpc", "redis"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path, monkeypatch):
    from resilient import backends
    from resilient.backends.memory import MemoryStore

    if "redis" not in backends.store_schemes():  # until the Redis backend is installed
        for scheme in ("redis", "rediss", "redis+cluster"):
            monkeypatch.setitem(backends._SCHEMES, scheme, lambda url, **options: MemoryStore())
    registry = load_config(path, env={}, resolve_imports=True)
    assert len(registry) >= 1
    for name in registry:
        assert isinstance(registry[name], rs.Pipeline)
        assert registry.estimate(name).amplification >= 1
    assert registry.warnings == ()  # the examples show good practice
