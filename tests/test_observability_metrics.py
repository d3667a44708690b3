"""Prometheus and OpenTelemetry listeners: exact families and labels, bounded cardinality."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import resilient as rs
from resilient.observability import (
    BackendFailed,
    BackendRecovered,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    ConcurrencyLimitChanged,
    Event,
    set_listeners,
)
from resilient.observability._metrics import DURATION_BUCKETS, STATES
from resilient.testing import FakeClock

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from resilient.observability import OpenTelemetryListener, PrometheusListener  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_listeners() -> Iterator[None]:
    set_listeners(None)
    yield
    set_listeners(None)


class Flaky:
    def __init__(self, *errors: BaseException, value: Any = "ok") -> None:
        self.errors = list(errors)
        self.value = value

    def __call__(self) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def fixed(**kw: Any) -> rs.Retry:
    kw.setdefault("backoff", rs.Backoff.exponential(initial=0.1, maximum=10.0, jitter="none"))
    return rs.Retry(**kw)


def scrape(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The registry as Prometheus scrapes it: sample name -> sorted labels -> value
    (``_created`` samples left out)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def families(registry: CollectorRegistry) -> dict[str, str]:
    """Scraped family name -> type (the ``_created`` timestamps left out)."""
    return {
        family.name: family.type
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        if not family.name.endswith("_created")
    }


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def drive_traffic(run: Any, clock: FakeClock) -> None:
    """Two retried calls (one success after a retry, one giving up), a timeout, and
    synthetic breaker, limiter and backend events."""
    retry = fixed(attempts=2, clock=clock, name="payments")
    assert run(retry, Flaky(OSError())) == "ok"
    with pytest.raises(OSError):
        run(retry, Flaky(OSError(), OSError()))
    timeout = rs.Timeout(1.0, clock=clock, name="slow")

    def late() -> str:
        clock.advance(2.0)
        return "late"

    with pytest.raises(rs.TimeoutExceededError):
        timeout.call(late)
    emit = rs.Retry(name="synthetic")._emitter.emit
    emit(CircuitStateChanged(policy="db", kind="circuit_breaker", at=0, old="closed", new="open"))
    emit(CallRejected(policy="db", kind="circuit_breaker", at=0, reason="circuit_open"))
    emit(CallRejected(policy="db", kind="circuit_breaker", at=0, reason="circuit_open"))
    emit(CallRejected(policy="api", kind="rate_limit", at=0, reason="rate_limited", key="u1"))
    emit(BackendFailed(policy="api", kind="rate_limit", at=0, backend="redis", mode="local"))
    emit(ConcurrencyLimitChanged(policy="pool", kind="adaptive_concurrency", at=0, old=20, new=23))
    emit(ConcurrencyLimitChanged(policy="pool", kind="adaptive_concurrency", at=0, old=23, new=21))


# -- Prometheus --------------------------------------------------------------------------------


def test_prometheus_exact_families_and_samples(run, clock):
    """Scraping a real registry gives exactly the documented families, labels and values."""
    registry = CollectorRegistry()
    set_listeners([PrometheusListener(registry)])
    drive_traffic(run, clock)
    assert families(registry) == {
        "resilient_calls": "counter",
        "resilient_call_duration_seconds": "histogram",
        "resilient_retries": "counter",
        "resilient_rejections": "counter",
        "resilient_timeouts": "counter",
        "resilient_circuit_state": "gauge",
        "resilient_circuit_transitions": "counter",
        "resilient_backend_errors": "counter",
        "resilient_backend_degraded": "gauge",
        "resilient_concurrency_limit": "gauge",
    }
    samples = scrape(registry)
    assert samples["resilient_calls_total"] == {
        labels(policy="payments", kind="retry", outcome="success"): 1.0,
        labels(policy="payments", kind="retry", outcome="failure"): 1.0,
        labels(policy="db", kind="circuit_breaker", outcome="rejected"): 2.0,
        labels(policy="api", kind="rate_limit", outcome="rejected"): 1.0,
    }
    assert samples["resilient_retries_total"] == {labels(policy="payments"): 2.0}
    assert samples["resilient_rejections_total"] == {
        labels(policy="db", kind="circuit_breaker", reason="circuit_open"): 2.0,
        labels(policy="api", kind="rate_limit", reason="rate_limited"): 1.0,
    }
    assert samples["resilient_timeouts_total"] == {labels(policy="slow"): 1.0}
    assert samples["resilient_circuit_state"] == {
        labels(policy="db", state=state): float(state == "open") for state in STATES
    }
    assert samples["resilient_circuit_transitions_total"] == {
        labels(policy="db", from_state="closed", to_state="open"): 1.0
    }
    assert samples["resilient_backend_errors_total"] == {labels(policy="api", mode="local"): 1.0}
    assert samples["resilient_backend_degraded"] == {labels(policy="api"): 1.0}
    assert samples["resilient_concurrency_limit"] == {labels(policy="pool"): 21.0}
    # Both calls took 0.1 s of fake time (one backoff sleep each).
    success = labels(policy="payments", kind="retry", outcome="success")
    assert samples["resilient_call_duration_seconds_count"][success] == 1.0
    assert samples["resilient_call_duration_seconds_sum"][success] == pytest.approx(0.1)
    buckets = samples["resilient_call_duration_seconds_bucket"]
    assert {dict(k)["le"] for k in buckets} == {str(b) for b in DURATION_BUCKETS} | {"+Inf"}
    assert buckets[tuple(sorted({**dict(success), "le": "0.1"}.items()))] == 1.0
    assert buckets[tuple(sorted({**dict(success), "le": "0.075"}.items()))] == 0.0
    # No histogram series for rejected calls (they have no duration).
    assert {dict(k)["outcome"] for k in samples["resilient_call_duration_seconds_count"]} == {
        "success",
        "failure",
    }


def test_prometheus_circuit_state_set_follows_transitions():
    """The state gauge has one series per state, exactly one of them at 1."""
    registry = CollectorRegistry()
    listener = PrometheusListener(registry)
    for old, new in [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]:
        listener(CircuitStateChanged(policy="db", kind="circuit_breaker", at=0, old=old, new=new))
    assert scrape(registry)["resilient_circuit_state"] == {
        labels(policy="db", state=state): float(state == "closed") for state in STATES
    }
    listener(BackendRecovered(policy="db", kind="circuit_breaker", at=0, backend="redis"))
    assert scrape(registry)["resilient_backend_degraded"] == {labels(policy="db"): 0.0}


def test_prometheus_unknown_state_is_reported_and_cleared():
    """A state outside the standard five gets its own series, reset when left."""
    registry = CollectorRegistry()
    listener = PrometheusListener(registry)
    listener(CircuitStateChanged(policy="db", kind="cb", at=0, old="closed", new="metrics_only"))
    listener(CircuitStateChanged(policy="db", kind="cb", at=0, old="metrics_only", new="open"))
    state = scrape(registry)["resilient_circuit_state"]
    assert state[labels(policy="db", state="metrics_only")] == 0.0
    assert state[labels(policy="db", state="open")] == 1.0


def test_prometheus_namespace_and_buckets():
    """namespace= prefixes every family; buckets= sets the histogram's."""
    registry = CollectorRegistry()
    listener = PrometheusListener(registry, namespace="myapp", buckets=(0.5, 1.0))
    listener(CallSucceeded(policy="p", kind="retry", at=0, duration=0.7))
    samples = scrape(registry)
    assert samples["myapp_calls_total"] == {labels(policy="p", kind="retry", outcome="success"): 1}
    assert {dict(k)["le"] for k in samples["myapp_call_duration_seconds_bucket"]} == {
        "0.5",
        "1.0",
        "+Inf",
    }


def test_prometheus_twice_in_one_registry_is_a_clear_error():
    """A second listener on the same registry and namespace raises ConfigError and
    leaves the registry as it was."""
    registry = CollectorRegistry()
    first = PrometheusListener(registry)
    before = set(families(registry))
    with pytest.raises(rs.ConfigError, match="one PrometheusListener per registry"):
        PrometheusListener(registry)
    assert set(families(registry)) == before
    first(CallSucceeded(policy="p", kind="retry", at=0, duration=0.0))
    other = PrometheusListener(registry, namespace="other")
    other(CallSucceeded(policy="p", kind="retry", at=0, duration=0.0))
    assert "other_calls_total" in scrape(registry)


def test_prometheus_defaults_to_the_global_registry():
    """registry=None registers in prometheus_client's global registry."""
    listener = PrometheusListener(namespace="resilient_test_global")
    try:
        assert listener.registry is prometheus_client.REGISTRY
        assert "resilient_test_global_calls" in families(prometheus_client.REGISTRY)
    finally:
        for metric in (
            listener.calls,
            listener.call_duration,
            listener.retries,
            listener.rejections,
            listener.timeouts,
            listener.circuit_state,
            listener.circuit_transitions,
            listener.backend_errors,
            listener.backend_degraded,
        ):
            prometheus_client.REGISTRY.unregister(metric)


def test_prometheus_no_key_label_by_default_with_100000_keys():
    """Without per_key, 100,000 distinct keys collapse into one series per label set."""
    registry = CollectorRegistry()
    listener = PrometheusListener(registry)
    for i in range(100_000):
        listener(
            CallRejected(
                policy="api", kind="rate_limit", at=0, reason="rate_limited", key=f"client-{i}"
            )
        )
        listener(
            CircuitStateChanged(
                policy="api", kind="cb", at=0, old="closed", new="open", key=f"client-{i}"
            )
        )
    samples = scrape(registry)
    assert samples["resilient_rejections_total"] == {
        labels(policy="api", kind="rate_limit", reason="rate_limited"): 100_000.0
    }
    assert samples["resilient_calls_total"] == {
        labels(policy="api", kind="rate_limit", outcome="rejected"): 100_000.0
    }
    # Keyed circuits are counted in transitions but cannot drive one per-policy gauge.
    assert "resilient_circuit_state" not in samples
    assert samples["resilient_circuit_transitions_total"] == {
        labels(policy="api", from_state="closed", to_state="open"): 100_000.0
    }


def test_prometheus_per_key_labels_are_capped_with_100000_keys():
    """With per_key, each policy keeps at most max_keys key values plus "other", and no
    count is lost."""
    registry = CollectorRegistry()
    listener = PrometheusListener(registry, per_key=True, max_keys=50)
    for i in range(100_000):
        key = f"client-{i}"
        listener(
            CallRejected(policy="api", kind="rate_limit", at=0, reason="rate_limited", key=key)
        )
        listener(CallSucceeded(policy="api", kind="rate_limit", at=0, duration=0.001, key=key))
        listener(
            CircuitStateChanged(policy="api", kind="cb", at=0, old="closed", new="open", key=key)
        )
    listener(CallSucceeded(policy="quiet", kind="retry", at=0, duration=0.0))
    samples = scrape(registry)
    rejections = samples["resilient_rejections_total"]
    assert len(rejections) == 51
    assert (
        rejections[labels(policy="api", kind="rate_limit", reason="rate_limited", key="other")]
        == 100_000 - 50
    )
    assert sum(rejections.values()) == 100_000
    calls = samples["resilient_calls_total"]
    assert {dict(k)["key"] for k in calls if dict(k)["policy"] == "api"} == {
        f"client-{i}" for i in range(50)
    } | {"other"}
    assert sum(v for k, v in calls.items() if dict(k)["outcome"] == "success") == 100_001
    assert calls[labels(policy="quiet", kind="retry", outcome="success", key="")] == 1
    # The histogram never carries keys.
    assert len(samples["resilient_call_duration_seconds_count"]) == 2
    # Gauge: 50 keyed circuits x 5 states; the overflow keys are not reported.
    assert len(samples["resilient_circuit_state"]) == 50 * len(STATES)
    assert listener._keys is not None
    assert listener._keys.count("api") == 50
    assert len(listener.states) == 50


def test_prometheus_long_keys_are_truncated():
    """A key label value is at most 100 characters."""
    registry = CollectorRegistry()
    listener = PrometheusListener(registry, per_key=True)
    listener(CallRejected(policy="p", kind="rl", at=0, reason="r", key="x" * 500))
    (key,) = [dict(k)["key"] for k in scrape(registry)["resilient_rejections_total"]]
    assert key == "x" * 100


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        pytest.param({"max_keys": 0}, "max_keys", id="zero-keys"),
        pytest.param({"max_keys": True}, "max_keys", id="bool-keys"),
        pytest.param({"per_key": "yes"}, "per_key", id="per-key"),
    ],
)
def test_metric_listener_arguments_are_validated(kwargs, path):
    """Bad per_key/max_keys raise ConfigError naming the argument."""
    with pytest.raises(rs.ConfigError, match=path):
        PrometheusListener(CollectorRegistry(), **kwargs)


def test_metric_listeners_ignore_unknown_events_and_accept_subclasses():
    """An event type without an instrument is ignored; a subclass counts as its base."""
    from dataclasses import dataclass

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Custom(Event):
        event_name = "custom"

    @dataclass(frozen=True, slots=True, kw_only=True)
    class AdapterFailed(CallFailed):
        event_name = "adapter_failed"

    registry = CollectorRegistry()
    listener = PrometheusListener(registry)
    listener(Custom(policy="p", kind="x", at=0))
    listener(AdapterFailed(policy="p", kind="httpx", at=0, duration=0.2))
    assert scrape(registry)["resilient_calls_total"] == {
        labels(policy="p", kind="httpx", outcome="failure"): 1.0
    }


# -- OpenTelemetry -----------------------------------------------------------------------------


def otel_setup(**kwargs: Any) -> tuple[Any, OpenTelemetryListener]:
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = sdk.MeterProvider(metric_readers=[reader])
    return reader, OpenTelemetryListener(meter_provider=provider, **kwargs)


def read(reader: Any) -> dict[str, dict[str, Any]]:
    """instrument name -> {"unit", "points": {sorted attributes: value or histogram point}}."""
    out: dict[str, dict[str, Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "resilient"
            for metric in scope.metrics:
                points = {}
                for point in metric.data.data_points:
                    key = tuple(sorted(point.attributes.items()))
                    points[key] = point.value if hasattr(point, "value") else point
                out[metric.name] = {"unit": metric.unit, "points": points}
    return out


def test_opentelemetry_instruments_read_back_through_the_sdk(run, clock):
    """The SDK's in-memory reader sees the documented instruments, units and attributes."""
    reader, listener = otel_setup()
    set_listeners([listener])
    drive_traffic(run, clock)
    metrics = read(reader)
    assert {name: m["unit"] for name, m in metrics.items()} == {
        "resilient.calls": "{call}",
        "resilient.call.duration": "s",
        "resilient.retries": "{retry}",
        "resilient.rejections": "{call}",
        "resilient.timeouts": "{call}",
        "resilient.circuit.transitions": "{transition}",
        "resilient.backend.errors": "{error}",
        "resilient.circuit.state": "",
        "resilient.backend.degraded": "",
        "resilient.concurrency.limit": "{slot}",
    }
    assert metrics["resilient.calls"]["points"] == {
        labels(policy="payments", kind="retry", outcome="success"): 1,
        labels(policy="payments", kind="retry", outcome="failure"): 1,
        labels(policy="db", kind="circuit_breaker", outcome="rejected"): 2,
        labels(policy="api", kind="rate_limit", outcome="rejected"): 1,
    }
    assert metrics["resilient.retries"]["points"] == {labels(policy="payments"): 2}
    assert metrics["resilient.rejections"]["points"] == {
        labels(policy="db", kind="circuit_breaker", reason="circuit_open"): 2,
        labels(policy="api", kind="rate_limit", reason="rate_limited"): 1,
    }
    assert metrics["resilient.timeouts"]["points"] == {labels(policy="slow"): 1}
    assert metrics["resilient.circuit.state"]["points"] == {
        labels(policy="db", state=state): int(state == "open") for state in STATES
    }
    assert metrics["resilient.circuit.transitions"]["points"] == {
        labels(policy="db", from_state="closed", to_state="open"): 1
    }
    assert metrics["resilient.backend.errors"]["points"] == {labels(policy="api", mode="local"): 1}
    assert metrics["resilient.backend.degraded"]["points"] == {labels(policy="api"): 1}
    assert metrics["resilient.concurrency.limit"]["points"] == {labels(policy="pool"): 21}
    histogram = metrics["resilient.call.duration"]["points"]
    success = histogram[labels(policy="payments", kind="retry", outcome="success")]
    assert (success.count, success.sum) == (1, pytest.approx(0.1))
    assert tuple(success.explicit_bounds) == DURATION_BUCKETS
    assert len(histogram) == 2


def test_opentelemetry_through_its_prometheus_exporter_matches_prometheus_listener(clock):
    """Exported by OpenTelemetry's Prometheus exporter, the instruments become exactly the
    PrometheusListener's families with the same label names, so one dashboard fits both."""
    exporter = pytest.importorskip("opentelemetry.exporter.prometheus")
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    otel_registry = CollectorRegistry()
    reader = exporter.PrometheusMetricReader(
        disable_target_info=True, scope_info_enabled=False, registry=otel_registry
    )
    provider = sdk.MeterProvider(metric_readers=[reader])
    prom_registry = CollectorRegistry()
    set_listeners(
        [PrometheusListener(prom_registry), OpenTelemetryListener(meter_provider=provider)]
    )
    drive_traffic(lambda policy, fn: policy.call(fn), clock)

    def shape(registry: CollectorRegistry) -> dict[str, tuple[str, frozenset[str]]]:
        out: dict[str, tuple[str, frozenset[str]]] = {}
        text = generate_latest(registry).decode()
        for family in text_string_to_metric_families(text):
            if family.name.endswith("_created"):
                continue
            names = {k for s in family.samples for k in s.labels if k != "le"}
            out[family.name] = (family.type, frozenset(names))
        return out

    assert shape(otel_registry) == shape(prom_registry)
    provider.shutdown()


def test_opentelemetry_per_key_capped_with_100000_keys():
    """With per_key the key attribute takes at most max_keys values plus "other"."""
    reader, listener = otel_setup(per_key=True, max_keys=20)
    for i in range(100_000):
        listener(CallRejected(policy="api", kind="rate_limit", at=0, reason="rate_limited", key=i))
    listener(CircuitStateChanged(policy="api", kind="cb", at=0, old="closed", new="open", key=3))
    metrics = read(reader)
    points = metrics["resilient.rejections"]["points"]
    assert len(points) == 21
    assert sum(points.values()) == 100_000
    assert (
        points[labels(policy="api", kind="rate_limit", reason="rate_limited", key="other")]
        == 100_000 - 20
    )
    assert len(metrics["resilient.calls"]["points"]) == 21
    assert (
        metrics["resilient.circuit.state"]["points"][labels(policy="api", state="open", key="3")]
        == 1
    )


def test_opentelemetry_without_per_key_has_no_key_attribute():
    """By default the key never reaches an attribute."""
    reader, listener = otel_setup()
    for i in range(1_000):
        listener(CallRejected(policy="api", kind="rate_limit", at=0, reason="rate_limited", key=i))
    assert read(reader)["resilient.rejections"]["points"] == {
        labels(policy="api", kind="rate_limit", reason="rate_limited"): 1_000
    }


def test_opentelemetry_explicit_meter_and_namespace():
    """meter= is used as given and namespace= prefixes the instrument names."""
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = sdk.MeterProvider(metric_readers=[reader]).get_meter("resilient")
    listener = OpenTelemetryListener(meter, namespace="svc")
    assert listener.meter is meter
    listener(CallSucceeded(policy="p", kind="retry", at=0, duration=0.0))
    assert set(read(reader)) >= {"svc.calls", "svc.call.duration"}
    with pytest.raises(rs.ConfigError, match="meter_provider"):
        OpenTelemetryListener(meter, sdk.MeterProvider())


def test_opentelemetry_with_the_global_noop_provider():
    """With no SDK installed globally the listener works and records nothing."""
    listener = OpenTelemetryListener()
    listener(CallSucceeded(policy="p", kind="retry", at=0, duration=0.0))
    listener(CircuitStateChanged(policy="p", kind="cb", at=0, old="closed", new="open"))


def test_async_metrics_through_acall(clock):
    """The metric listeners count async calls too (acall)."""
    registry = CollectorRegistry()
    retry = fixed(clock=clock, name="a", listeners=[PrometheusListener(registry)])
    calls = Flaky(OSError())

    async def fn() -> Any:
        return calls()

    assert asyncio.run(retry.acall(fn)) == "ok"
    samples = scrape(registry)
    assert samples["resilient_retries_total"] == {labels(policy="a"): 1.0}
    assert samples["resilient_calls_total"] == {
        labels(policy="a", kind="retry", outcome="success"): 1.0
    }


# -- the documented metrics and the example dashboard ------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_and_dashboard_name_only_real_metrics(clock):
    """The docs' metric table lists exactly the families a registry exposes, and every
    series the Grafana dashboard queries exists."""
    registry = CollectorRegistry()
    set_listeners([PrometheusListener(registry)])
    drive_traffic(lambda policy, fn: policy.call(fn), clock)
    exposed = set(scrape(registry))
    documented = set(
        re.findall(r"^\| `(resilient_[a-z_]+)`", (DOCS / "observability.md").read_text(), re.M)
    )
    expected = {
        name.removesuffix("_total") if name.endswith("_total") else name
        for name in families(registry)
    }
    assert {name.removesuffix("_total") for name in documented} == expected
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"resilient_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= exposed, queried - exposed
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
