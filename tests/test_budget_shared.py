"""A retry budget shared by name: policies in one process (sync and async), and a
fleet of processes through Redis, cap retries at the configured ratio under a full
outage; Redis failures fall back as configured; denials are events."""

from __future__ import annotations

import asyncio
import multiprocessing

import pytest
from _redis_support import command_log, unique_prefix

import resilient as rs
from resilient.observability import BackendFailed, BackendRecovered, CallRejected
from resilient.testing import FakeClock, RecordingListener

NO_WAIT = rs.Backoff.constant(0)


class Outage:
    """A dependency that is down: every attempt fails, and is counted."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self) -> None:
        self.attempts += 1
        raise ConnectionError("down")

    async def acall(self) -> None:
        self()


def run_calls(retry: rs.Retry, outage: Outage, calls: int, flavour: str) -> None:
    """*calls* calls through ``call``, or through ``acall`` in one event loop (a Redis
    budget's connection for that loop is closed before the loop ends)."""

    async def many() -> None:
        for _ in range(calls):
            with pytest.raises(ConnectionError):
                await retry.acall(outage.acall)
        aclose = getattr(retry.config.budget, "aclose", None)
        if aclose is not None:
            await aclose()

    if flavour == "async":
        asyncio.run(many())
        return
    for _ in range(calls):
        with pytest.raises(ConnectionError):
            retry.call(outage)


# -- in one process ------------------------------------------------------------------------


def test_policies_sharing_a_budget_add_at_most_ratio_of_the_calls(clock: FakeClock) -> None:
    """Two policies, one sync and one async, share a 10 % budget in a full outage:
    together they retry exactly 10 % of their calls, whatever their attempts."""
    budget = rs.RetryBudget(ratio=0.1, min_per_second=0, ttl=60, clock=clock)
    rec = RecordingListener()
    outage = Outage()
    a = rs.Retry(5, backoff=NO_WAIT, budget=budget, clock=clock, name="a", listeners=[rec])
    b = rs.Retry(3, backoff=NO_WAIT, budget=budget, clock=clock, name="b", listeners=[rec])
    for _ in range(50):
        run_calls(a, outage, 4, "sync")
        run_calls(b, outage, 6, "async")
        clock.advance(0.1)
    calls = 500
    assert outage.attempts - calls == 50
    stats = budget.stats()
    assert (stats.calls, stats.retries) == (500, 50)
    denied = rec.of(CallRejected)
    assert len(denied) == stats.denied > 0
    assert {e.reason for e in denied} == {"retry_budget"}
    assert {e.policy for e in denied} == {"a", "b"}


def test_over_time_retries_follow_the_calls_of_the_last_ttl(clock: FakeClock) -> None:
    """A long outage: in every 10 s window, retries <= 20 % of the window's calls plus
    the 1/s minimum, and the budget does not save up unused retries."""
    budget = rs.RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0, buckets=10, clock=clock)
    outage = Outage()
    retry = rs.Retry(3, backoff=NO_WAIT, budget=budget, clock=clock)
    per_second = []
    for second in range(60):
        before = outage.attempts
        run_calls(retry, outage, 50, "sync" if second % 2 else "async")
        per_second.append(outage.attempts - before - 50)
        clock.advance(1.0)
    # Any 10 s window holds 500 calls: 0.2 * 500 retries, plus the minimum of 1/s
    # (10 over the window; it is spent by whoever fails first, not spread evenly).
    assert per_second[:11] == [20] + [10] * 9 + [20]
    for start in range(51):
        assert sum(per_second[start : start + 10]) == 0.2 * 500 + 10


# -- a fleet, through Redis ----------------------------------------------------------------


def _budget(url: str, prefix: str, **options: object) -> rs.RetryBudget:
    from resilient.backends.redis import RedisRetryBudget

    return RedisRetryBudget(url, prefix=prefix, name="payments", **options)  # type: ignore[arg-type]


@pytest.mark.redis
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_redis_budget_caps_retries_at_the_ratio(redis_url: str, flavour: str) -> None:
    clock = FakeClock()
    budget = _budget(redis_url, unique_prefix(), ratio=0.2, min_per_second=0, clock=clock)
    outage = Outage()
    retry = rs.Retry(4, backoff=NO_WAIT, budget=budget, clock=clock)
    run_calls(retry, outage, 100, flavour)
    assert outage.attempts - 100 == 20
    assert budget.flush() == rs.RetryBudgetStats(100, 20, budget.stats().denied, 0.0)
    assert budget.stats().denied > 0


@pytest.mark.redis
def test_one_round_trip_per_decision_and_calls_sent_in_batches(redis_url: str) -> None:
    clock = FakeClock()
    budget = _budget(
        redis_url, unique_prefix(), ratio=0.5, min_per_second=0, clock=clock, flush_interval=1.0
    )
    budget.flush()  # connected, script loaded
    with command_log() as log:
        for _ in range(10):
            budget.record_call()  # counted here: no round trip before the flush interval
        assert log.names == []
        assert budget.try_spend() is True  # the 10 calls travel with the decision
        assert log.names == ["EVALSHA"]
        log.clear()
        clock.advance(1.0)
        budget.record_call()  # due: sent on its own
        assert log.names == ["EVALSHA"]
    stats = budget.stats()
    assert (stats.calls, stats.retries, stats.available) == (11, 1, 4.5)


def _fleet_worker(url: str, prefix: str, calls: int, flavour: str, results: object) -> None:
    from resilient.backends.redis import RedisRetryBudget

    budget = RedisRetryBudget(url, prefix=prefix, name="fleet", ratio=0.2, min_per_second=0)
    outage = Outage()
    run_calls(rs.Retry(3, backoff=rs.Backoff.constant(0), budget=budget), outage, calls, flavour)
    results.put(outage.attempts - calls)  # type: ignore[attr-defined]


@pytest.mark.redis
def test_a_fleet_of_processes_shares_one_budget(redis_url: str) -> None:
    """Four processes (two sync, two async) in a full outage, each allowed 2 retries
    per call: between them they retry 20 % of the fleet's calls, not 20 % each, and
    certainly not 200 %."""
    prefix, calls = unique_prefix(), 150
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_fleet_worker, args=(redis_url, prefix, calls, flavour, results))
        for flavour in ("sync", "async", "sync", "async")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    retries = [results.get(timeout=5) for _ in workers]
    total = 4 * calls
    assert 0.2 * total - len(workers) <= sum(retries) <= 0.2 * total
    from resilient.backends.redis import RedisRetryBudget

    observer = RedisRetryBudget(redis_url, prefix=prefix, name="fleet", ratio=0.2)
    stats = observer.flush()
    assert (stats.calls, stats.retries) == (total, sum(retries))
    observer.close()


@pytest.mark.redis
def test_budgets_share_a_store_and_are_separate_by_name(redis_url: str) -> None:
    from resilient.backends import store_from_url
    from resilient.backends.redis import RedisRetryBudget

    clock = FakeClock()
    store = store_from_url(redis_url, prefix=unique_prefix(), clock=clock)
    a = RedisRetryBudget(store=store, name="a", ratio=0, min_per_second=0.1, ttl=10)
    a2 = RedisRetryBudget(store=store, name="a", ratio=0, min_per_second=0.1, ttl=10)
    b = RedisRetryBudget(store=store, name="b", ratio=0, min_per_second=0.1, ttl=10)
    assert [a.try_spend(), a2.try_spend(), b.try_spend()] == [True, False, True]
    assert a.key != b.key
    assert a.key.startswith(f"{store.prefix}:{{budget:a}}")
    assert "payments" in repr(_budget(redis_url, "x"))


@pytest.mark.redis
@pytest.mark.parametrize(
    ("mode", "expected"),
    [("local", [True, True, False]), ("allow", [True] * 3), ("deny", [False] * 3)],
)
def test_when_redis_fails_the_budget_does_what_on_backend_error_says(
    own_redis: object, mode: str, expected: list[bool]
) -> None:
    clock = FakeClock()
    rec = RecordingListener()
    budget = _budget(
        own_redis.url,  # type: ignore[attr-defined]
        unique_prefix(),
        ratio=0.2,
        min_per_second=0,
        on_backend_error=mode,
        clock=clock,
        listeners=[rec],
        probe_interval=5.0,
    )
    for _ in range(10):
        budget.record_call()  # 10 calls: 2 retries in the local budget
    own_redis.stop()  # type: ignore[attr-defined]
    assert [budget.try_spend() for _ in range(3)] == expected
    budget.record_call()  # never raises
    (failed,) = rec.of(BackendFailed)
    assert (failed.policy, failed.kind, failed.mode) == ("payments", "retry_budget", mode)
    own_redis.start()  # type: ignore[attr-defined]
    clock.advance(5.0)
    assert budget.try_spend() is False  # Redis again: only the 1 call recorded since
    assert len(rec.of(BackendRecovered)) == 1
    budget.close()


@pytest.mark.redis
def test_raise_mode_raises_from_decisions_only(own_redis: object) -> None:
    budget = _budget(
        own_redis.url,  # type: ignore[attr-defined]
        unique_prefix(),
        on_backend_error="raise",
        flush_interval=0,
    )
    own_redis.stop()  # type: ignore[attr-defined]
    budget.record_call()
    with pytest.raises(rs.BackendError) as info:
        budget.try_spend()
    assert info.value.operation == "retry_budget"
    with pytest.raises(rs.BackendError):
        asyncio.run(budget.atry_spend())  # down and not due for a probe: not even called


@pytest.mark.parametrize(
    ("options", "path"),
    [
        pytest.param({}, "url", id="neither"),
        pytest.param({"url": "redis://h", "store": object()}, "url", id="both"),
        pytest.param({"store": object()}, "store", id="not-a-store"),
        pytest.param({"url": "redis://h", "on_backend_error": "ignore"}, "on_backend_error"),
        pytest.param({"url": "redis://h", "name": ""}, "name", id="name"),
        pytest.param({"url": "redis://h", "ratio": -1}, "ratio", id="ratio"),
        pytest.param({"url": "redis://h", "flush_interval": "x"}, "flush_interval", id="flush"),
    ],
)
def test_bad_redis_budget_arguments(options: dict[str, object], path: str) -> None:
    from resilient.backends.redis import RedisRetryBudget

    with pytest.raises(rs.ConfigError) as info:
        RedisRetryBudget(**options)  # type: ignore[arg-type]
    assert info.value.path == path


@pytest.mark.redis
@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_budget_on_redis_cluster(redis_cluster: object, flavour: str) -> None:
    """One key with a hash tag: the script runs on the node owning the budget's slot."""
    clock = FakeClock()
    budget = _budget(
        redis_cluster.url,  # type: ignore[attr-defined]
        unique_prefix(),
        ratio=0.5,
        min_per_second=0,
        clock=clock,
        on_backend_error="raise",
    )
    outage = Outage()
    run_calls(rs.Retry(3, backoff=NO_WAIT, budget=budget, clock=clock), outage, 40, flavour)
    assert outage.attempts - 40 == 20
    assert budget.flush().retries == 20
    budget.close()
