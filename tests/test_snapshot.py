"""registry.snapshot() / resilient.dashboard.snapshot(): the versioned JSON shape, each
policy type's fields on a fake clock, busiest keys (bounded), sources, and LiveStats."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

import resilient as rs
from resilient.dashboard import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, LiveStats, snapshot
from resilient.testing import FakeClock


def fail() -> None:
    raise OSError("down")


def only(data: dict[str, Any], name: str) -> dict[str, Any]:
    found = [p for p in data["policies"] if p["name"] == name]
    assert len(found) == 1, [p["name"] for p in data["policies"]]
    return found[0]


def test_the_envelope_is_versioned_and_json_ready(clock: FakeClock) -> None:
    data = snapshot([rs.Timeout(2.0, name="t", clock=clock)])
    assert data["format"] == SNAPSHOT_FORMAT == "resilient.snapshot"
    assert data["version"] == SNAPSHOT_VERSION == 1
    assert isinstance(data["time"], float)
    assert data["generated_at"].endswith("+00:00")
    assert data["source"] is None
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    (policy,) = data["policies"]
    assert policy == {
        "name": "t",
        "kind": "timeout",
        "state": None,
        "steps": [{"kind": "timeout", "name": "t", "type": "Timeout", "seconds": 2.0}],
        "keys": [],
        "rates": None,
    }


def test_breaker_state_time_in_state_and_rates_against_thresholds(clock: FakeClock) -> None:
    breaker = rs.CircuitBreaker(
        name="db",
        failure_rate=0.5,
        slow_call_rate=0.8,
        slow_call_duration=1.0,
        minimum_calls=4,
        window=rs.CountWindow(10),
        open_for=30.0,
        clock=clock,
    )
    breaker.call(lambda: 1)
    with pytest.raises(OSError):
        breaker.call(fail)
    clock.advance(7.0)
    step = only(snapshot(breaker), "db")["steps"][0]
    assert step["state"] == "closed"
    assert step["time_in_state"] == 7.0
    assert (step["calls"], step["failed_calls"], step["failure_rate"]) == (2, 1, 0.5)
    assert step["failure_rate_threshold"] == 0.5
    assert step["slow_call_rate_threshold"] == 0.8
    assert step["minimum_calls"] == 4
    assert step["window"] == "last 10 calls"
    assert step["retry_after"] is None
    for _ in range(2):
        with pytest.raises(OSError):
            breaker.call(fail)
    clock.advance(10.0)
    policy = only(snapshot(breaker), "db")
    step = policy["steps"][0]
    assert policy["state"] == step["state"] == "open"
    assert step["time_in_state"] == 10.0
    assert step["retry_after"] == 20.0
    assert step["failure_rate"] == 0.75
    with pytest.raises(rs.CircuitOpenError):
        breaker.call(lambda: 1)
    assert only(snapshot(breaker), "db")["steps"][0]["rejected"] == 1
    clock.advance(20.0)  # open_for passed: the breaker reads HALF_OPEN, as .state does
    assert only(snapshot(breaker), "db")["state"] == "half_open"
    breaker.force_open()
    assert only(snapshot(breaker), "db")["state"] == "forced_open"


def test_token_bucket_remaining_retry_after_and_reset(clock: FakeClock) -> None:
    bucket = rs.TokenBucket("10/s", burst=4, name="api", clock=clock)
    for _ in range(4):
        assert bucket.try_acquire()
    step = only(snapshot(bucket), "api")["steps"][0]
    assert step["rate"] == ["10/second"]
    assert step["store"] == "memory"
    assert (step["remaining"], step["limit"]) == (0, 4)
    assert step["retry_after"] == pytest.approx(0.1)
    assert step["reset_after"] == pytest.approx(0.4)
    assert step["own_key_used"] is True
    assert step["keys"]["tracked"] == 0
    clock.advance(0.25)
    step = only(snapshot(bucket), "api")["steps"][0]
    assert step["remaining"] == 2
    assert step["retry_after"] == 0.0
    # Reading the state consumed nothing.
    assert bucket.try_acquire().remaining == 1


def test_window_limiters(clock: FakeClock) -> None:
    exact = rs.SlidingWindow("3/minute", name="exact", clock=clock)
    fixed = rs.FixedWindow("5/minute", name="fixed", clock=clock)
    for _ in range(3):
        exact.try_acquire()
    fixed.try_acquire()
    data = snapshot([exact, fixed])
    step = only(data, "exact")["steps"][0]
    assert (step["remaining"], step["limit"], step["retry_after"]) == (0, 3, 60.0)
    assert step["kind"] == "sliding_window"
    step = only(data, "fixed")["steps"][0]
    assert (step["remaining"], step["limit"], step["retry_after"]) == (4, 5, 0.0)


def test_busiest_keys_are_the_fewest_units_left_and_bounded(clock: FakeClock) -> None:
    limiter = rs.TokenBucket("10/minute", name="per-client", clock=clock)
    for index in range(30):
        for _ in range(index % 10 + 1):
            limiter.try_acquire(f"ip:10.0.0.{index}")
    policy = only(snapshot(limiter, top_keys=3), "per-client")
    step = policy["steps"][0]
    assert step["own_key_used"] is False
    assert step["keys"]["tracked"] == 30
    assert step["keys"]["max"] == 10_000
    busiest = step["keys"]["busiest"]
    assert [key["remaining"] for key in busiest] == [0, 0, 0]
    assert {key["key"] for key in busiest} <= {"ip:10.0.0.9", "ip:10.0.0.19", "ip:10.0.0.29"}
    assert all(key["retry_after"] == pytest.approx(6.0) for key in busiest)
    assert policy["keys"] == [{"step": "token_bucket", **key} for key in busiest]
    assert only(snapshot(limiter, top_keys=0), "per-client")["keys"] == []
    # Idle keys (full again) are not busy.
    clock.advance(120)
    assert only(snapshot(limiter), "per-client")["steps"][0]["keys"]["tracked"] == 0


def test_keys_of_another_limiter_in_the_same_store_are_not_mixed(clock: FakeClock) -> None:
    store = rs.backends.memory.MemoryStore(clock=clock)  # type: ignore[attr-defined]
    one = rs.TokenBucket("5/minute", name="one", store=store, clock=clock)
    two = rs.TokenBucket("5/minute", name="two", store=store, clock=clock)
    one.try_acquire("a")
    two.try_acquire("b")
    two.try_acquire("b")
    data = snapshot([one, two])
    assert [k["key"] for k in only(data, "one")["keys"]] == ["a"]
    assert [k["key"] for k in only(data, "two")["keys"]] == ["b"]


def test_bulkhead_in_flight_and_queued(clock: FakeClock) -> None:
    bulkhead = rs.Bulkhead(max_concurrent=2, max_queued=3, max_wait=1.0, name="pool", clock=clock)
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(10)

    worker = threading.Thread(target=bulkhead.call, args=(hold,))
    worker.start()
    try:
        assert inside.wait(10)
        step = only(snapshot(bulkhead), "pool")["steps"][0]
        assert step["kind"] == "bulkhead"
        assert (step["in_flight"], step["max_concurrent"]) == (1, 2)
        assert (step["queued"], step["max_queued"]) == (0, 3)
        assert step["max_wait"] == 1.0
        assert step["admitted"] == 1
    finally:
        release.set()
        worker.join(10)
    assert only(snapshot(bulkhead), "pool")["steps"][0]["in_flight"] == 0


def test_retry_with_budget_and_other_policies(clock: FakeClock) -> None:
    budget = rs.RetryBudget(0.5, min_per_second=1, name="shared", clock=clock)
    retry = rs.Retry(4, budget=budget, deadline=3.0, name="calls", clock=clock)
    step = only(snapshot(retry), "calls")["steps"][0]
    assert step["attempts"] == 4
    assert step["deadline"] == 3.0
    assert step["budget"]["name"] == "shared"
    assert step["budget"]["available"] == 10.0
    throttle = rs.Throttle(name="throttle", clock=clock)
    adaptive = rs.AdaptiveConcurrency(name="adaptive", clock=clock)
    fallback = rs.Fallback(value=1, name="fb")
    data = snapshot([throttle, adaptive, fallback])
    assert "reject_probability" in only(data, "throttle")["steps"][0]
    assert {"limit", "in_flight", "algorithm"} <= set(only(data, "adaptive")["steps"][0])
    assert only(data, "fb")["steps"][0]["kind"] == "fallback"


def test_pipelines_are_opened_and_the_worst_state_wins(clock: FakeClock) -> None:
    inner = rs.CircuitBreaker(name="pay", clock=clock)
    outer = rs.CircuitBreaker(name="pay", clock=clock)
    pipeline = rs.Pipeline(
        rs.TokenBucket("5/s", name="pay", clock=clock),
        rs.Pipeline(rs.Retry(name="pay", clock=clock), inner),
        outer,
        name="pay",
    )
    inner.force_open()
    policy = only(snapshot({"payments": pipeline}), "payments")
    assert policy["kind"] == "pipeline"
    assert [s["kind"] for s in policy["steps"]] == [
        "token_bucket",
        "retry",
        "circuit_breaker",
        "circuit_breaker",
    ]
    assert policy["state"] == "forced_open"


def test_sources(clock: FakeClock) -> None:
    a = rs.Timeout(1.0, name="same", clock=clock)
    b = rs.Timeout(2.0, name="same", clock=clock)
    assert [p["name"] for p in snapshot([a, b])["policies"]] == ["same", "same#2"]
    assert [p["name"] for p in snapshot({"x": a})["policies"]] == ["x"]
    assert [p["name"] for p in snapshot(a)["policies"]] == ["same"]
    assert [p["name"] for p in snapshot(lambda: [b])["policies"]] == ["same"]
    for bad in (42, "policies.yaml", [a, 3], {"x": 3}):
        with pytest.raises(rs.ConfigError):
            snapshot(bad)
    with pytest.raises(rs.ConfigError):
        snapshot([a], top_keys=-1)


def test_a_failing_custom_policy_is_reported_not_raised(clock: FakeClock) -> None:
    class Odd(rs.Timeout):
        def stats(self) -> None:
            raise RuntimeError("no stats today")

    class Custom:
        kind = "custom"
        name = "mine"

        def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        async def acall(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs)

        def stats(self) -> None:
            raise RuntimeError("no stats today")

    (policy,) = snapshot([Custom()])["policies"]
    assert policy["steps"][0]["error"] == "RuntimeError: no stats today"


POLICY_FILE = """
[policies.payments]
timeout = { total = "2s" }
rate_limit = { rate = "10/s", burst = 5 }

[policies.payments.circuit_breaker]
failure_rate = 0.5
minimum_calls = 2
window = 4
open_for = "10s"

[policies.search.retry]
attempts = 2
"""


def test_registry_snapshot(tmp_path: Any, clock: FakeClock) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(POLICY_FILE)
    registry = rs.load_config(path, clock=clock)
    for _ in range(2):
        with pytest.raises(OSError):
            registry["payments"].call(fail)
    data = registry.snapshot()
    assert data["source"] == str(path)
    assert [p["name"] for p in data["policies"]] == ["payments", "search"]
    payments = only(data, "payments")
    assert payments["state"] == "open"
    kinds = [s["kind"] for s in payments["steps"]]
    assert "circuit_breaker" in kinds
    assert "token_bucket" in kinds
    limiter = next(s for s in payments["steps"] if s["kind"] == "token_bucket")
    assert limiter["remaining"] == 3  # burst 5: each call took a token
    assert only(data, "search")["state"] is None
    # A live view of the registry follows its policies' events.
    live = LiveStats(clock=clock)
    live.attach(rs.dashboard._snapshot.steps_of(registry["payments"]))  # type: ignore[attr-defined]
    with pytest.raises(rs.CircuitOpenError):
        registry["payments"].call(lambda: 1)
    rates = only(registry.snapshot(live=live), "payments")["rates"]
    assert rates["rejections"] == {"circuit_open": 1.0}


# -- LiveStats ---------------------------------------------------------------------------


def test_live_rates_over_the_window(clock: FakeClock) -> None:
    live = LiveStats(clock=clock, window=10)
    retry = rs.Retry(3, name="p", clock=clock, backoff=rs.Backoff.constant(0.0))
    breaker = rs.CircuitBreaker(name="p", minimum_calls=100, clock=clock)
    pipeline = rs.Pipeline(retry, breaker, name="p")
    live.attach([retry, breaker])
    attempts = iter([OSError("x"), None] * 100)

    def flaky() -> int:
        exc = next(attempts)
        if exc is not None:
            raise exc
        return 1

    for _ in range(20):
        pipeline.call(flaky)
        clock.advance(0.5)
    rates = live.rates("p", ["retry", "circuit_breaker"])
    # The last 10 s hold 20 calls (one retry each); the breaker saw 40 attempts.
    assert rates["calls"] == pytest.approx(2.0, rel=0.1)
    assert rates["retries"] == pytest.approx(2.0, rel=0.1)
    assert rates["failures"] == 0.0
    assert live.rates("p", ["circuit_breaker"])["calls"] == pytest.approx(4.0, rel=0.1)
    assert live.rates("p", ["circuit_breaker"])["failures"] == pytest.approx(2.0, rel=0.1)
    history = live.history("p", ["retry", "circuit_breaker"], seconds=5)
    assert history["calls"] == [2, 2, 2, 2, 2]
    assert history["retries"] == [2, 2, 2, 2, 2]
    clock.advance(30)
    assert live.rates("p")["calls"] == 0.0
    assert live.history("p", seconds=3)["calls"] == [0, 0, 0]


def test_live_rejections_by_reason_and_key(clock: FakeClock) -> None:
    live = LiveStats(clock=clock, max_keys=2)
    limiter = rs.TokenBucket("1/minute", name="api", clock=clock, listeners=[live])
    for key in ("a", "a", "a", "b", "b", "c"):
        limiter.try_acquire(key)
    rates = live.rates("api")
    assert rates["rejections"] == {"rate_limited": 3.0}
    assert rates["rejected"] == 3.0
    # Two keys kept, the least recently rejected one forgotten.
    assert live.key_rates("api") == {"a": 2.0, "b": 1.0}
    for _ in range(2):
        limiter.try_acquire("c")
    assert set(live.key_rates("api")) == {"b", "c"}


def test_live_state_changes_are_kept_and_watched(clock: FakeClock) -> None:
    live = LiveStats(clock=clock)
    seen: list[Any] = []
    live.watch(seen.append)
    live.watch(lambda change: 1 / 0)  # a raising watcher is logged and ignored
    breaker = rs.CircuitBreaker(name="db", clock=clock, listeners=[live])
    breaker.force_open()
    breaker.reset()
    assert [(c.old, c.new) for c in seen] == [("closed", "forced_open"), ("forced_open", "closed")]
    assert [c.as_dict()["new"] for c in live.changes()] == ["forced_open", "closed"]
    assert live.changes(since=seen[-1].time + 1) == []


def test_live_memory_is_bounded(clock: FakeClock) -> None:
    live = LiveStats(clock=clock, max_series=3, history=10)
    limiters = [rs.TokenBucket("1/hour", name=f"l{i}", clock=clock) for i in range(5)]
    live.attach(limiters)
    for limiter in limiters:
        limiter.try_acquire()
        limiter.try_acquire()
    assert live.dropped == 2
    assert live.rates("l4")["rejected"] == 0.0
    assert live.rates("l0")["rejected"] == 1.0
    for bad in ({"window": 0}, {"history": 5, "window": 10}, {"max_keys": 0}):
        with pytest.raises(rs.ConfigError):
            LiveStats(**bad)  # type: ignore[arg-type]


def test_attach_is_idempotent(clock: FakeClock) -> None:
    live = LiveStats(clock=clock)
    breaker = rs.CircuitBreaker(name="db", clock=clock)
    assert live.attach([breaker]) == 1
    assert live.attach([breaker]) == 0
    breaker.call(lambda: 1)
    assert live.history("db", seconds=1)["calls"] == [0]  # the current second is left out
    clock.advance(1)
    assert live.history("db", seconds=1)["calls"] == [1]
