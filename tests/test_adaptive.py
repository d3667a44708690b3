"""AdaptiveConcurrency: the limit converges near a simulated dependency's capacity and
backs off when latency rises (Gradient2, AIMD, Vegas), on a fake clock; the policy's
slots, queue, rejections, cancellation, events and stats, through call and acall."""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time

import pytest
from _adaptive_sim import VirtualLoop, simulate

import resilient as rs
from resilient import AIMD, AdaptiveConcurrency, Gradient2, Vegas
from resilient._adaptive import Sample
from resilient.observability import (
    CallFailed,
    CallRejected,
    CallSucceeded,
    ConcurrencyLimitChanged,
)
from resilient.testing import FakeClock, RecordingListener

SERVERS = 20  # the simulated dependency serves 20 requests at once without queueing
SERVICE = 0.010  # in 10 ms each: 2000 requests per second


def _limiter(algorithm: object, clock: FakeClock, **options: object) -> AdaptiveConcurrency:
    return AdaptiveConcurrency(algorithm, clock=clock, max_limit=1000, **options)  # type: ignore[arg-type]


# -- convergence on a simulated dependency ------------------------------------------------


def test_without_a_limit_latency_grows_without_bound(clock: FakeClock) -> None:
    """The simulated dependency is really overloaded: unprotected, its latency explodes
    (so the convergence tests below can fail)."""

    class Unlimited:
        limit = 0

        def try_acquire(self) -> object:
            class Permit:
                def success(self) -> None:
                    pass

            return Permit()

    out = simulate(Unlimited(), clock, duration=4.0, measure_from=2.0)
    assert out.p50() > 50 * SERVICE


@pytest.mark.parametrize(
    ("algorithm", "low", "high", "goodput"),
    [
        pytest.param("gradient2", 1.0, 2.5, 0.95, id="gradient2"),
        pytest.param(AIMD(latency_threshold=2 * SERVICE), 1.0, 2.0, 0.95, id="aimd"),
        # Vegas keeps a small queue: it settles lower, and its probes cost more.
        pytest.param("vegas", 0.8, 2.0, 0.85, id="vegas"),
    ],
)
def test_the_limit_converges_near_capacity(
    clock: FakeClock, algorithm: object, low: float, high: float, goodput: float
) -> None:
    limiter = _limiter(algorithm, clock)
    out = simulate(limiter, clock, servers=SERVERS, duration=16.0, measure_from=8.0)
    settled = out.limit_mean(8.0)
    assert low * SERVERS <= settled <= high * SERVERS
    # Goodput stays near the dependency's capacity, latency near its no-load latency.
    assert out.served / 8.0 >= goodput * SERVERS / SERVICE
    assert out.p50() <= high * SERVICE * 1.2
    assert out.rejected > 0  # the excess was shed


@pytest.mark.parametrize(
    ("algorithm", "high", "drop"),
    [
        pytest.param("gradient2", 2.5, 0.75, id="gradient2"),
        pytest.param(AIMD(latency_threshold=2 * SERVICE), 2.0, 0.75, id="aimd"),
        pytest.param("vegas", 2.0, 0.85, id="vegas"),
    ],
)
def test_the_limit_backs_off_when_latency_rises(
    clock: FakeClock, algorithm: object, high: float, drop: float
) -> None:
    """Half the dependency's workers go away at t=10s: each request now waits longer at
    the same concurrency, and the limit comes down to the new capacity."""
    limiter = _limiter(algorithm, clock)
    half = SERVERS // 2
    out = simulate(limiter, clock, duration=20.0, changes=((10.0, half),), measure_from=13.0)
    before, after = out.limit_mean(5.0, 10.0), out.limit_mean(13.0)
    assert after < drop * before
    assert 0.8 * half <= after <= high * half
    assert out.served / 7.0 >= 0.85 * half / SERVICE
    assert out.p50() <= high * SERVICE * 1.3


def test_gradient2_without_probes_creeps_up_under_sustained_overload(clock: FakeClock) -> None:
    """Why Gradient2 probes: a long-term average alone learns an overloaded latency as
    normal, and the limit keeps climbing."""
    limiter = _limiter(Gradient2(probe_interval=None), clock)
    out = simulate(limiter, clock, duration=12.0, sigma=0.05)
    assert out.limit_mean(10.0) > 5 * SERVERS
    probed = _limiter(Gradient2(), FakeClock())
    out = simulate(probed, probed.clock, duration=12.0, sigma=0.05)  # type: ignore[arg-type]
    assert out.limit_mean(10.0) < 2.5 * SERVERS


async def test_acall_measures_latency_and_converges_on_virtual_time(clock: FakeClock) -> None:
    """The async driver, end to end: 60 clients in a closed loop against a dependency
    whose latency grows with its concurrency past 10."""
    vt = VirtualLoop(clock)
    limiter = AdaptiveConcurrency(
        AIMD(latency_threshold=0.03), clock=clock, max_limit=500, initial_limit=40
    )
    capacity, busy = 10, [0]
    served = [0]

    async def dependency() -> None:
        busy[0] += 1
        try:
            await vt.sleep(SERVICE * max(1.0, busy[0] / capacity))
        finally:
            busy[0] -= 1

    async def client() -> None:
        while clock.monotonic() < 10.0:
            try:
                await limiter.acall(dependency)
                served[0] += 1
            except rs.BulkheadFullError as exc:
                await vt.sleep(exc.retry_after or SERVICE)

    await vt.run([client] * 60)
    stats = limiter.stats()
    assert capacity <= stats.limit <= 3 * capacity
    assert stats.samples == served[0] > 0.8 * 10.0 * capacity / SERVICE
    assert stats.rejected > 0
    assert stats.latency is not None
    assert stats.latency <= 0.03


# -- the algorithms, one sample at a time ----------------------------------------------------


def _state(algorithm: object, initial: int = 20, low: int = 1, high: int = 200):  # type: ignore[no-untyped-def]
    limiter = AdaptiveConcurrency(
        algorithm,  # type: ignore[arg-type]
        initial_limit=initial,
        min_limit=low,
        max_limit=high,
        clock=FakeClock(),
    )
    return limiter._estimator


def test_aimd_adds_one_slot_per_round_and_backs_off_once_per_round() -> None:
    state = _state(AIMD(latency_threshold=1.0))
    for i in range(20):
        state.feed(Sample(start=float(i), rtt=0.1, in_flight=20, dropped=False), now=float(i))
    assert 20.9 < state.limit < 21.0  # one round of 20 calls: about one slot
    state.feed(Sample(start=100.0, rtt=0.1, in_flight=21, dropped=True), now=101.0)
    after = state.limit
    assert after == pytest.approx(0.9 * 20.96, rel=1e-2)
    # Calls started before the decrease do not decrease it again, slow or dropped.
    state.feed(Sample(start=100.5, rtt=2.0, in_flight=21, dropped=False), now=102.0)
    state.feed(Sample(start=100.9, rtt=0.1, in_flight=21, dropped=True), now=102.0)
    assert state.limit == after
    state.feed(Sample(start=101.5, rtt=2.0, in_flight=21, dropped=False), now=103.0)
    assert state.limit == pytest.approx(0.9 * after)


def test_aimd_does_not_grow_while_the_caller_sets_the_pace_and_respects_bounds() -> None:
    state = _state(AIMD(latency_threshold=None), initial=20, low=5, high=21)
    for i in range(100):
        state.feed(Sample(start=float(i), rtt=9.0, in_flight=9, dropped=False), now=float(i))
    assert state.limit == 20  # 9 in flight out of 20: app-limited; no threshold: no decrease
    for i in range(1000):
        state.feed(Sample(start=float(i), rtt=9.0, in_flight=20, dropped=False), now=float(i))
    assert state.limit == 21
    for i in range(100):
        state.feed(Sample(start=2000.0 + i, rtt=0.1, in_flight=20, dropped=True), now=2001.0 + i)
    assert state.limit == 5


def test_gradient2_shrinks_when_latency_rises_and_grows_when_it_is_flat() -> None:
    state = _state(Gradient2(window=1, probe_interval=None))
    for i in range(20):
        state.feed(Sample(start=float(i), rtt=0.010, in_flight=20, dropped=False), now=float(i))
    grown = state.limit
    assert grown > 20  # flat latency: + queue_size, smoothed
    state.feed(Sample(start=30.0, rtt=0.050, in_flight=20, dropped=False), now=30.0)
    # gradient = max(0.5, 1.5 * long / short) = 0.5 (long ~ 10 ms): target limit/2 + 4
    assert state.limit == pytest.approx(grown + (grown * 0.5 + 4 - grown) * 0.2, rel=0.05)
    before = state.limit
    state.feed(Sample(start=31.0, rtt=0.010, in_flight=2, dropped=False), now=31.0)
    assert state.limit == before  # app-limited: no growth
    state.feed(Sample(start=32.0, rtt=0.010, in_flight=2, dropped=True), now=32.0)
    assert state.limit < before  # a drop shrinks it whatever the latency


def test_gradient2_probes_at_low_concurrency_and_caps_the_long_term_latency() -> None:
    clock = FakeClock()
    limiter = AdaptiveConcurrency(
        Gradient2(window=1, probe_interval=60.0, probe_samples=6), clock=clock, initial_limit=50
    )
    # The first window starts a probe: the limit drops to 3 until 6 calls ran at <= 3.
    permit = limiter.try_acquire()
    assert permit is not None
    clock.advance(0.1)
    permit.success()
    assert limiter.limit == 3
    for _ in range(2):
        assert limiter.limit == 3
        permits = [limiter.try_acquire() for _ in range(3)]
        assert limiter.try_acquire() is None
        clock.advance(0.02)
        for p in permits:
            assert p is not None
            p.success()
    stats = limiter.stats()
    assert stats.limit > 3  # back to the estimate
    assert stats.baseline == pytest.approx(0.02)
    # Slow calls now cannot raise the long-term latency above the probe's 20 ms.
    for _ in range(50):
        permit = limiter.try_acquire()
        assert permit is not None
        clock.advance(0.2)
        permit.success()
    assert limiter.stats().baseline == pytest.approx(0.02)


def test_vegas_grows_with_no_queue_and_shrinks_with_a_long_one() -> None:
    state = _state(Vegas(window=1, rng=lambda: 0.5), initial=100, high=1000)
    # update() is the rule itself (feed() adds the windows and the probes).
    state.update(Sample(start=0.0, rtt=0.010, in_flight=100, dropped=False), now=0.0)
    assert state.baseline() == 0.010  # a first guess of the no-load latency
    state.update(Sample(start=1.0, rtt=0.010, in_flight=100, dropped=False), now=1.0)
    assert state.limit == 100 + 6 * 2  # no queue: + beta * log10(limit)
    limit = state.limit
    state.update(Sample(start=2.0, rtt=0.020, in_flight=112, dropped=False), now=2.0)
    assert state.limit == limit - math.log10(limit)  # a queue of half the limit
    limit = state.limit
    state.update(Sample(start=3.0, rtt=0.010, in_flight=10, dropped=False), now=3.0)
    assert state.limit == limit  # app-limited
    state.update(Sample(start=4.0, rtt=0.005, in_flight=50, dropped=False), now=4.0)
    assert state.baseline() == 0.010  # a fast call at high concurrency is not "no load"
    state.update(Sample(start=5.0, rtt=0.005, in_flight=2, dropped=False), now=5.0)
    assert state.baseline() == 0.005


def test_vegas_probes_the_no_load_latency_at_low_concurrency() -> None:
    clock = FakeClock()
    limiter = AdaptiveConcurrency(
        Vegas(window=1, probe_samples=3, probe_multiplier=1, rng=lambda: 0.0),
        initial_limit=40,
        clock=clock,
    )
    permit = limiter.try_acquire()
    clock.advance(0.5)
    permit.success()  # type: ignore[union-attr]
    assert limiter.limit == 3  # the first sample starts a probe at 3 in flight
    permits = [limiter.try_acquire() for _ in range(3)]
    clock.advance(0.04)
    for p in permits:
        p.success()  # type: ignore[union-attr]
    assert limiter.stats().baseline == pytest.approx(0.04)
    assert limiter.limit == 40


# -- the policy ----------------------------------------------------------------------------


def test_rejects_beyond_the_limit_with_a_retry_hint(run, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    rec = RecordingListener()
    ac = AdaptiveConcurrency(
        "aimd", initial_limit=1, min_limit=1, max_limit=1, clock=clock, listeners=[rec]
    )
    seen: list[BaseException] = []

    def inner() -> str:
        try:
            ac.call(lambda: None)
        except rs.BulkheadFullError as exc:
            seen.append(exc)
        clock.advance(0.25)
        return "done"

    assert run(ac, inner) == "done"
    assert isinstance(seen[0], rs.BulkheadFullError)
    assert seen[0].reason == "bulkhead_full"
    assert seen[0].retry_after is None  # no latency measured yet
    assert run(ac, inner) == "done"
    assert seen[1].retry_after == pytest.approx(0.25)  # the smoothed latency of a call
    rejected = rec.of(CallRejected)
    assert [e.reason for e in rejected] == ["bulkhead_full", "bulkhead_full"]
    assert rejected[1].retry_after == pytest.approx(0.25)
    assert rejected[0].kind == "adaptive_concurrency"
    assert [type(e) for e in rec.of(CallSucceeded)] == [CallSucceeded, CallSucceeded]
    stats = ac.stats()
    assert (stats.admitted, stats.rejected, stats.samples, stats.in_flight) == (2, 2, 2, 0)


def test_drops_and_ordinary_failures_are_told_apart(run, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    rec = RecordingListener()
    ac = AdaptiveConcurrency("aimd", clock=clock, listeners=[rec])

    def raises(exc: Exception) -> None:
        raise exc

    for exc in (TimeoutError("slow"), rs.CircuitOpenError("down"), ValueError("bad")):
        with pytest.raises(type(exc)):
            run(ac, raises, exc)
    stats = ac.stats()
    assert (stats.samples, stats.dropped) == (3, 2)
    assert len(rec.of(CallFailed)) == 3
    custom = AdaptiveConcurrency("aimd", clock=clock, drop_on=lambda e: isinstance(e, ValueError))
    with pytest.raises(ValueError):
        run(custom, raises, ValueError("overloaded"))
    with pytest.raises(TimeoutError):
        run(custom, raises, TimeoutError())
    assert custom.stats().dropped == 1


async def test_a_cancelled_call_frees_its_slot_and_teaches_nothing(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency("aimd", initial_limit=1, max_limit=1, clock=clock)
    started = asyncio.Event()

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(ac.acall(hang))
    await started.wait()
    assert ac.stats().in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = ac.stats()
    assert (stats.in_flight, stats.samples, stats.dropped) == (0, 0, 0)
    assert await ac.acall(asyncio.sleep, 0, "next") == "next"


def test_an_interrupted_sync_call_frees_its_slot_without_a_sample(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency("aimd", initial_limit=1, max_limit=1, clock=clock)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ac.call(interrupted)
    assert (ac.stats().in_flight, ac.stats().samples) == (0, 0)


def test_a_queued_thread_waits_and_expires_on_the_fake_clock(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency(
        "aimd", initial_limit=1, max_limit=1, max_queued=1, max_wait="50ms", clock=clock
    )
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def holder() -> None:
        inside.set()
        release.wait(5)

    def waiter() -> None:
        try:
            ac.call(lambda: None)
        except rs.BulkheadFullError as exc:
            errors.append(exc)

    first = threading.Thread(target=ac.call, args=(holder,))
    first.start()
    inside.wait(5)
    second = threading.Thread(target=waiter)
    second.start()
    for _ in range(1000):
        if ac.stats().queued == 1:
            break
        threading.Event().wait(0.001)
    assert ac.stats().queued == 1
    clock.advance(0.05)
    assert ac.stats().timed_out == 1  # touching it expires the waiter
    second.join(5)
    release.set()
    first.join(5)
    assert [e.reason for e in errors] == ["bulkhead_timeout"]  # type: ignore[attr-defined]


async def test_a_growing_limit_admits_queued_tasks_at_once(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency(
        AIMD(latency_threshold=None, increase=5.0),
        initial_limit=1,
        max_limit=10,
        max_queued=5,
        max_wait=None,
        clock=clock,
    )
    gate = asyncio.Event()
    order: list[int] = []

    async def work(i: int) -> None:
        order.append(i)
        await gate.wait()

    tasks = [asyncio.create_task(ac.acall(work, i)) for i in range(4)]
    await asyncio.sleep(0)
    assert (ac.stats().in_flight, ac.stats().queued) == (1, 3)
    gate.set()  # the first call succeeds: +5 slots, so every waiter is admitted in order
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert ac.limit > 1


def test_a_shrinking_limit_holds_the_slots_of_calls_in_flight(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency(
        AIMD(latency_threshold=None, backoff_ratio=0.5), initial_limit=4, max_limit=4, clock=clock
    )
    permits = [ac.try_acquire() for _ in range(4)]
    assert ac.try_acquire() is None
    permits[0].drop()  # type: ignore[union-attr]
    assert ac.limit == 2
    assert ac.stats().in_flight == 3
    assert ac.try_acquire() is None
    permits[1].ignore()  # type: ignore[union-attr]
    permits[1].success()  # type: ignore[union-attr]  # a second report is ignored
    assert ac.stats().in_flight == 2
    assert ac.stats().samples == 1
    assert ac.try_acquire() is None
    permits[2].success()  # type: ignore[union-attr]
    assert ac.try_acquire() is not None


@pytest.mark.parametrize(
    ("options", "path"),
    [
        pytest.param({"algorithm": "tcp"}, "algorithm", id="unknown-algorithm"),
        pytest.param({"algorithm": 3}, "algorithm", id="not-an-algorithm"),
        pytest.param({"min_limit": 0}, "min_limit", id="min-zero"),
        pytest.param({"min_limit": 30}, "initial_limit", id="initial-below-min"),
        pytest.param({"max_limit": 10}, "initial_limit", id="initial-above-max"),
        pytest.param({"min_limit": 5, "max_limit": 4, "initial_limit": 4}, "max_limit", id="max"),
        pytest.param({"smoothing": 0}, "smoothing", id="smoothing-zero"),
        pytest.param({"algorithm": "aimd", "smoothing": 0.5}, "smoothing", id="aimd-smoothing"),
        pytest.param({"max_queued": 3}, "max_wait", id="queue-without-wait"),
        pytest.param({"drop_on": "TimeoutError"}, "drop_on", id="drop-on-text"),
    ],
)
def test_bad_settings_name_the_argument(options: dict[str, object], path: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        AdaptiveConcurrency(**options)  # type: ignore[arg-type]
    assert info.value.path == path


@pytest.mark.parametrize(
    ("make", "path"),
    [
        pytest.param(lambda: Gradient2(tolerance=0.5), "tolerance", id="tolerance"),
        pytest.param(lambda: Gradient2(window=0), "window", id="window"),
        pytest.param(lambda: Gradient2(probe_interval="soon"), "probe_interval", id="probe"),
        pytest.param(lambda: AIMD(backoff_ratio=1.0), "backoff_ratio", id="ratio"),
        pytest.param(lambda: AIMD(latency_threshold=0), "latency_threshold", id="threshold"),
        pytest.param(lambda: Vegas(alpha=6, beta=3), "beta", id="beta"),
    ],
)
def test_bad_algorithm_settings_name_the_argument(make: object, path: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        make()  # type: ignore[operator]
    assert info.value.path == path


def test_stats_and_repr(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency(name="db", clock=clock)
    stats = ac.stats()
    assert (stats.algorithm, stats.limit, stats.estimate, stats.min_limit, stats.max_limit) == (
        "gradient2",
        20,
        20.0,
        1,
        200,
    )
    assert stats.latency is None
    assert stats.baseline is None
    assert repr(ac) == (
        "AdaptiveConcurrency('gradient2', limit=20, min_limit=1, max_limit=200, name='db')"
    )
    assert ac.config.smoothing == 0.2
    assert AdaptiveConcurrency("vegas").config.smoothing == 1.0
    assert AdaptiveConcurrency("AIMD").config.smoothing is None


def test_a_decorated_function_runs_under_the_limit(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency(clock=clock)

    @ac
    def double(x: int) -> int:
        return 2 * x

    assert double(21) == 42
    assert ac.stats().samples == 1


def test_it_composes_in_a_pipeline_with_a_timeout_inside(clock: FakeClock) -> None:
    ac = AdaptiveConcurrency("aimd", clock=clock)
    pipeline = rs.Pipeline(ac, rs.Timeout(1.0, clock=clock))

    async def slow() -> None:
        await clock.asleep(2.0)

    with pytest.raises(rs.TimeoutExceededError):
        asyncio.run(pipeline.acall(slow))
    assert ac.stats().dropped == 1  # the timeout inside is an overload signal


def test_threads_hammering_one_limit_never_exceed_it_and_counts_add_up() -> None:
    limit = AdaptiveConcurrency(
        AIMD(latency_threshold=None), min_limit=4, max_limit=4, initial_limit=4
    )
    inside, peak, lock = [0], [0], threading.Lock()
    barrier = threading.Barrier(16)

    def work() -> None:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0)  # yield the GIL inside the slot (not a timed wait)
        with lock:
            inside[0] -= 1

    outcomes: list[int] = []

    def client() -> None:
        barrier.wait()
        served = 0
        for _ in range(200):
            try:
                limit.call(work)
                served += 1
            except rs.BulkheadFullError:
                pass
        with lock:
            outcomes.append(served)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = limit.stats()
    assert peak[0] <= 4
    assert stats.admitted == stats.samples == sum(outcomes)
    assert stats.admitted + stats.rejected == 16 * 200
    assert stats.in_flight == 0


def test_limit_changes_are_events_with_the_slots_before_and_after(clock: FakeClock) -> None:
    """Every change of the whole number of slots is one ConcurrencyLimitChanged whose
    ``old`` is the previous event's ``new``; a sample that moves nothing emits nothing."""
    rec = RecordingListener()
    limiter = rs.AdaptiveConcurrency(
        "aimd", initial_limit=4, max_limit=8, clock=clock, listeners=[rec], name="pool"
    )

    def work() -> None:  # an overload signal: AIMD backs off once per round
        clock.advance(0.01)
        raise TimeoutError

    seen = [limiter.limit]
    for _ in range(60):
        with pytest.raises(TimeoutError):
            limiter.call(work)
        if limiter.limit != seen[-1]:
            seen.append(limiter.limit)
    events = rec.of(ConcurrencyLimitChanged)
    assert [(e.old, e.new) for e in events] == list(itertools.pairwise(seen))
    assert len(events) >= 1
    assert {(e.policy, e.kind) for e in events} == {("pool", "adaptive_concurrency")}
