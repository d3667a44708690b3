"""The simulation engine on small hand-written traces: exact times, exact verdicts."""

from __future__ import annotations

import asyncio

import pytest

import resilient as rs
from resilient.simulate import (
    DependencyError,
    DependencyStatusError,
    DependencyTimeoutError,
    SimulatedError,
    SimulationStalledError,
    Trace,
    TraceRow,
    VirtualClock,
    load_trace,
    simulate,
    simulate_file,
)
from resilient.simulate._loop import new_loop


def trace(*rows: tuple[float, float, str] | tuple[float, float, str, float]) -> Trace:
    out = []
    for row in rows:
        time, latency, outcome, *hint = row
        status = int(outcome) if outcome.isdigit() else None
        out.append(
            TraceRow(
                time=time,
                latency=latency,
                outcome=outcome,
                status=status,
                retry_after=hint[0] if hint else None,
            )
        )
    return Trace(tuple(out), name="t")


# -- the virtual loop ----------------------------------------------------------------------


def run_virtual(coro_fn, clock: VirtualClock | None = None):
    clock = clock or VirtualClock()
    with asyncio.Runner(loop_factory=lambda: new_loop(clock)) as runner:
        return runner.run(coro_fn(clock)), clock


def test_virtual_time_jumps_to_each_timer_exactly():
    async def body(clock):
        seen = []

        async def sleeper(delay):
            await asyncio.sleep(delay)
            seen.append((delay, clock.monotonic()))

        await asyncio.gather(*(sleeper(d) for d in (3600.0, 0.1, 2.5, 0.1)))
        return seen

    seen, clock = run_virtual(body)
    assert seen == [(0.1, 0.1), (0.1, 0.1), (2.5, 2.5), (3600.0, 3600.0)]
    assert clock.now == 3600.0


def test_asyncio_timeouts_and_anyio_scopes_run_on_virtual_time():
    import anyio

    async def body(clock):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                await asyncio.sleep(10)
        assert clock.now == 1.5
        with anyio.move_on_after(2.0):
            await clock.asleep(5)
        assert clock.now == 3.5
        return anyio.current_time()

    now, _ = run_virtual(body)
    assert now == 3.5


def test_a_stalled_simulation_raises_instead_of_hanging():
    async def body(clock):
        await asyncio.get_running_loop().create_future()  # nobody will ever resolve it

    with pytest.raises(SimulationStalledError):
        run_virtual(body)


def test_a_virtual_clock_cannot_sleep_blocking():
    clock = VirtualClock(5.0)
    assert clock.monotonic() == 5.0
    assert isinstance(clock, rs.Clock)
    with pytest.raises(RuntimeError, match="acall"):
        clock.sleep(1.0)
    assert "5.0" in repr(clock)


# -- the dependency and the policies ------------------------------------------------------------


def test_a_retry_gets_the_answer_of_the_latest_row_at_its_start():
    t = trace((0.0, 0.1, "error"), (0.3, 0.2, "error"), (0.6, 0.05, "ok"))

    def policy(clock, listeners):
        return rs.Retry(
            attempts=3, backoff=rs.Backoff.constant(0.25), clock=clock, listeners=listeners
        )

    result = simulate(t, policy)
    first = [a for a in result.attempts if a.request == 0]
    # 0.0: its own row (error, 0.1 s); 0.35: row 1, of 0.3 (error, 0.2 s); 0.8: row 2 (ok).
    assert [(a.row, a.start, a.end, a.outcome) for a in first] == [
        (0, 0.0, 0.1, "error"),
        (1, 0.35, pytest.approx(0.55), "error"),
        (2, pytest.approx(0.8), pytest.approx(0.85), "ok"),
    ]
    assert [(r.outcome, r.attempts) for r in result.requests] == [("ok", 3), ("ok", 2), ("ok", 1)]
    assert len(result.retries) == 3
    assert result.amplification == 2.0


def test_retry_after_is_honoured_exactly():
    t = trace((0.0, 0.01, "429", 2.0), (1.0, 0.01, "ok"))

    def policy(clock, listeners):
        return rs.Retry(attempts=2, clock=clock, listeners=listeners)

    result = simulate(t, policy)
    attempts = [a for a in result.attempts if a.request == 0]
    assert attempts[1].start == 2.01  # the 429 came back at 0.01, then 2 s
    assert result.requests[0].outcome == "ok"


def test_timeouts_cancel_the_attempt_at_the_deadline():
    t = trace((0.0, 5.0, "ok"), (0.5, 30.0, "timeout"), (1.0, 0.2, "ok"))

    def policy(clock, listeners):
        return rs.Timeout(1.0, clock=clock, listeners=listeners)

    result = simulate(t, policy)
    assert [(r.outcome, r.detail, r.end) for r in result.requests] == [
        ("timed_out", "timeout", 1.0),
        ("timed_out", "timeout", 1.5),
        ("ok", "", 1.2),
    ]
    assert [a.outcome for a in sorted(result.attempts, key=lambda a: a.request)] == [
        "cancelled",
        "cancelled",
        "ok",
    ]
    assert result.timeouts == ((1.0, "timeout"), (1.5, "timeout"))


def test_a_timeout_row_without_a_policy_timeout_fails_after_its_latency():
    result = simulate(trace((0.0, 3.0, "timeout")), lambda c, ls: rs.Retry(1, clock=c))
    assert (result.requests[0].outcome, result.requests[0].detail) == ("failed", "timeout")
    assert result.requests[0].end == 3.0


def test_the_failure_classes():
    caught: list[BaseException] = []

    class Spy:
        def __init__(self, clock):
            self.clock = clock

        def call(self, fn, *a, **k):  # pragma: no cover - the simulation only awaits
            raise NotImplementedError

        async def acall(self, fn, *a, **k):
            try:
                return await fn(*a, **k)
            except Exception as exc:
                caught.append(exc)
                raise

    t = trace((0.0, 0.1, "error"), (1.0, 0.1, "timeout"), (2.0, 0.1, "503", 7.0))
    simulate(t, lambda clock, listeners: Spy(clock))
    error, timeout, status = caught
    assert isinstance(error, DependencyError)
    assert isinstance(error, ConnectionError)
    assert isinstance(timeout, DependencyTimeoutError)
    assert isinstance(timeout, TimeoutError)
    assert isinstance(status, DependencyStatusError)
    assert (status.status, status.retry_after, status.outcome) == (503, 7.0, "503")
    assert all(isinstance(e, SimulatedError) for e in caught)


def test_a_bulkhead_rejects_concurrent_calls_and_the_breaker_rejects_when_open():
    rows = [(i * 0.01, 1.0, "error") for i in range(4)] + [(5.0, 0.1, "ok"), (5.0, 0.1, "ok")]
    t = trace(*rows)

    def policy(clock, listeners):
        return rs.Pipeline(
            rs.Bulkhead(max_concurrent=2, clock=clock, listeners=listeners),
            rs.CircuitBreaker(
                minimum_calls=2,
                open_for=3.0,
                half_open_calls=1,
                clock=clock,
                listeners=listeners,
                name="cb",
            ),
        )

    result = simulate(t, policy)
    assert [(r.outcome, r.detail) for r in result.requests] == [
        ("failed", "error"),
        ("failed", "error"),
        ("rejected", "bulkhead_full"),
        ("rejected", "bulkhead_full"),
        ("ok", ""),  # the probe, 4 s after opening (open_for 3 s)
        ("rejected", "half_open_full"),  # arrived with it, while it was out
    ]
    assert result.state_sequence() == ["closed", "open", "half_open", "closed"]
    assert result.state_sequence("cb") == result.state_sequence()
    assert [c.at for c in result.state_changes] == [1.01, 5.0, 5.1]
    reasons = [(r.policy, r.reason) for r in result.rejections]
    assert reasons == [
        ("bulkhead", "bulkhead_full"),
        ("bulkhead", "bulkhead_full"),
        ("cb", "half_open_full"),
    ]


def test_a_fallback_is_counted_as_such():
    def policy(clock, listeners):
        return rs.Pipeline(rs.Fallback("cached"), rs.Retry(1, clock=clock, listeners=listeners))

    result = simulate(trace((0.0, 0.1, "error"), (1.0, 0.1, "ok")), policy)
    assert [r.outcome for r in result.requests] == ["fallback", "ok"]
    assert result.summary().outcomes["fallback"] == 1


def test_policies_must_use_the_simulation_clock():
    with pytest.raises(rs.ConfigError, match="simulation's clock"):
        simulate(trace((0.0, 0.1, "ok")), lambda clock, listeners: rs.Retry(2))
    with pytest.raises(rs.ConfigError, match="a policy"):
        simulate(trace((0.0, 0.1, "ok")), lambda clock, listeners: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(rs.ConfigError, match="Trace"):
        simulate([(0.0, 0.1, "ok")], lambda c, ls: rs.Retry(clock=c))  # type: ignore[arg-type]


def test_jitter_is_seeded():
    rows = [(float(i), 0.01, "error") for i in range(20)] + [(100.0, 0.01, "ok")]

    def policy(clock, listeners):
        return rs.Retry(attempts=3, clock=clock, listeners=listeners)  # full jitter

    a, b, c = (simulate(trace(*rows), policy, seed=s) for s in (1, 1, 2))
    assert [x.start for x in a.attempts] == [x.start for x in b.attempts]
    assert [x.start for x in a.attempts] != [x.start for x in c.attempts]


def test_it_runs_from_inside_an_event_loop():
    async def main():
        return simulate(trace((0.0, 0.1, "ok")), lambda c, ls: rs.Retry(clock=c))

    assert asyncio.run(main()).requests[0].outcome == "ok"


# -- policy files ----------------------------------------------------------------------------------

BREAKER_FOR_HTTPX = """\
policies:
  api:
    retry: {attempts: 2, retry_on: [httpx.TransportError], backoff: {jitter: none}}
    circuit_breaker: {minimum_calls: 5, record: [httpx.TransportError]}
"""


def test_failures_take_the_classes_a_policy_file_names(tmp_path):
    pytest.importorskip("httpx")
    path = tmp_path / "api.yaml"
    path.write_text(BREAKER_FOR_HTTPX)
    result = simulate_file(path, None, trace((0.0, 0.1, "error"), (5.0, 0.1, "ok")))
    assert result.requests[0].attempts == 2  # retried: the failure is an httpx.TransportError
    assert result.notes[-1] == (
        "simulated failures are also httpx.TransportError (as the policy expects)"
    )
    assert "[retry-without-jitter]" in result.notes[0]  # the file's lint warnings come first


def test_a_policy_file_with_a_shared_backend_is_refused(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text(
        "backends: {shared: {url: 'redis://127.0.0.1:1/0'}}\n"
        "policies: {api: {rate_limit: {rate: 10/s, backend: shared}}}\n"
    )
    with pytest.raises(rs.ConfigError, match="shared store"):
        simulate_file(path, "api", trace((0.0, 0.1, "ok")))
    path.write_text(
        "backends: {shared: {url: 'redis://127.0.0.1:1/0'}}\n"
        "policies: {api: {circuit_breaker: {backend: shared}}}\n"
    )
    with pytest.raises(rs.ConfigError, match="shared store"):
        simulate_file(path, "api", trace((0.0, 0.1, "ok")))


def test_a_policy_file_with_an_unimportable_class_stops_the_run(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("policies: {api: {retry: {retry_on: [nowhere.Missing]}}}\n")
    with pytest.raises(rs.ConfigError, match="nowhere"):
        simulate_file(path, "api", trace((0.0, 0.1, "error")))


def test_the_trace_loader_feeds_the_engine(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time,latency,outcome,headers\n0,100ms,503,Retry-After: 1\n0.5,50ms,ok,\n")
    loaded = load_trace(path)

    def policy(clock, listeners):
        return rs.Retry(attempts=2, clock=clock, listeners=listeners)

    result = simulate(loaded, policy)
    assert [(a.request, a.row, a.start) for a in result.attempts] == [
        (0, 0, 0.0),  # in the order they ended
        (1, 1, 0.5),
        (0, 1, 1.1),  # the 503 ended at 0.1 and asked for 1 s; row 1 answers
    ]


# -- a dependency with a capacity -------------------------------------------------------------


def test_a_dependency_at_its_capacity_refuses_at_once():
    rows = [(0.0, 1.0, "ok")] * 4 + [(0.5, 1.0, "ok"), (1.01, 1.0, "ok")]
    result = simulate(trace(*rows), lambda c, ls: rs.Retry(1, clock=c), capacity=2)
    assert [(r.outcome, r.detail, r.end) for r in result.requests] == [
        ("ok", "", 1.0),
        ("ok", "", 1.0),
        ("failed", "overloaded", 0.0),
        ("failed", "overloaded", 0.0),
        ("failed", "overloaded", 0.5),
        ("ok", "", 2.01),  # the first two were done at 1.0
    ]
    assert result.peak_in_flight == 2
    assert result.summary().dependency == {"ok": 3, "overloaded": 3}


def test_abandoned_work_keeps_the_dependency_busy():
    rows = [(0.0, 1.0, "ok"), (0.5, 0.1, "ok"), (1.01, 0.1, "ok")]

    def policy(clock, listeners):
        return rs.Timeout(0.2, clock=clock, listeners=listeners)

    result = simulate(trace(*rows), policy, capacity=1)
    # The first call was given up at 0.2, but the dependency worked on it until 1.0.
    assert [(r.outcome, r.detail) for r in result.requests] == [
        ("timed_out", "timeout"),
        ("failed", "overloaded"),
        ("ok", ""),
    ]


def test_retries_into_an_overloaded_dependency_make_it_worse():
    rows = [(i * 0.05, 0.5, "ok") for i in range(40)]

    def retrying(clock, listeners):
        return rs.Retry(attempts=4, backoff=rs.Backoff.constant(0.05), clock=clock)

    def once(clock, listeners):
        return rs.Retry(attempts=1, clock=clock)

    calm = simulate(trace(*rows), once, capacity=5)
    storm = simulate(trace(*rows), retrying, capacity=5)
    assert calm.amplification == 1.0
    assert storm.amplification > 2.0
    assert storm.summary().dependency["overloaded"] > calm.summary().dependency["overloaded"]


def test_capacity_is_validated():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(rs.ConfigError, match="capacity"):
            simulate(trace((0.0, 0.1, "ok")), lambda c, ls: rs.Retry(clock=c), capacity=bad)
