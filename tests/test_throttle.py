"""Throttle: the SRE book's client-side adaptive throttling, on a fake clock with an
injected random source: the probability follows the formula call by call, the shed
share converges to what the formula predicts against a dependency of fixed capacity,
and outcomes are classified as configured (sync and async)."""

from __future__ import annotations

import asyncio
import random

import pytest

import resilient as rs
from resilient import Throttle
from resilient.observability import CallRejected
from resilient.testing import FakeClock, RecordingListener


def formula(requests: int, accepts: int, k: float = 2.0) -> float:
    return max(0.0, (requests - k * accepts) / (requests + 1))


class OverloadedError(Exception):
    pass


def refuse() -> None:
    raise rs.RejectedError("backend", reason="overloaded")


def test_the_probability_follows_the_formula_call_by_call(run, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    never = Throttle(rng=lambda: 1.0, clock=clock)  # draws never fall under p: nothing shed
    accepts = 0
    outcomes = [True] * 5 + [False] * 30 + [True] * 3 + [False] * 10
    for requests, accepted in enumerate(outcomes):
        assert never.reject_probability == pytest.approx(formula(requests, accepts))
        if accepted:
            assert run(never, lambda: "ok") == "ok"
            accepts += 1
        else:
            with pytest.raises(rs.RejectedError):
                run(never, refuse)
    stats = never.stats()
    assert (stats.requests, stats.accepts, stats.throttled) == (48, 8, 0)
    assert stats.reject_probability == pytest.approx(formula(48, 8))
    assert stats.reject_probability == pytest.approx((48 - 16) / 49)


def test_a_draw_below_p_is_shed_locally_and_still_counts_as_a_request(run, clock):  # type: ignore[no-untyped-def]
    draws = iter([0.9, 0.9, 0.74, 0.79])  # a draw is taken only when p > 0
    rec = RecordingListener()
    throttle = Throttle(rng=lambda: next(draws), clock=clock, listeners=[rec], name="api")
    for _ in range(3):  # three refusals: p = 3/4 for the next call
        with pytest.raises(rs.RejectedError):
            run(throttle, refuse)
    assert throttle.reject_probability == pytest.approx(0.75)
    with pytest.raises(rs.RateLimitedError) as info:
        run(throttle, lambda: pytest.fail("a throttled call must not run"))
    assert info.value.reason == "throttled"
    assert info.value.policy == "api"
    assert info.value.retry_after is None
    # The shed call counted as a request: p = 4/5, and 0.79 < 0.8 is shed again.
    assert throttle.reject_probability == pytest.approx(0.8)
    with pytest.raises(rs.RateLimitedError):
        run(throttle, lambda: None)
    events = rec.of(CallRejected)
    assert [e.reason for e in events] == ["throttled", "throttled"]
    assert events[0].stats.requests == 4
    assert events[0].kind == "throttle"
    assert throttle.stats().throttled == 2


@pytest.mark.parametrize("k", [1.5, 2.0, 3.0])
def test_against_a_fixed_capacity_it_sends_k_times_what_is_accepted(k: float) -> None:
    """Offered 100/s to a dependency that accepts 20/s: the client sheds
    ``1 - k * 20/100`` of its calls locally and sends about ``k * 20`` per second."""
    clock = FakeClock()
    offered, capacity = 100, 20
    tokens, last = float(capacity), 0.0
    sent = accepted = shed = 0

    def dependency() -> None:
        nonlocal tokens, last, sent, accepted
        now = clock.monotonic()
        tokens, last = min(capacity, tokens + (now - last) * capacity), now
        sent += 1
        if tokens < 1:
            raise OverloadedError
        tokens -= 1
        accepted += 1

    throttle = Throttle(
        k, window="30s", rng=random.Random(3).random, clock=clock, rejected_on=OverloadedError
    )
    for i in range(offered * 300):
        clock.advance(1 / offered)
        if i == offered * 60:  # measure after a minute (two windows)
            sent = accepted = shed = 0
        try:
            throttle.call(dependency)
        except OverloadedError:
            pass
        except rs.RateLimitedError:
            shed += 1
    calls = offered * 240
    assert shed / calls == pytest.approx(1 - k * capacity / offered, abs=0.03)
    assert sent / 240 == pytest.approx(k * capacity, rel=0.06)
    assert accepted / 240 == pytest.approx(capacity, rel=0.02)


def test_an_accept_is_any_outcome_but_an_overload_signal(run, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    throttle = Throttle(rng=lambda: 1.0, clock=clock, rejected_if=lambda result: result == 503)

    def fail(exc: Exception) -> None:
        raise exc

    with pytest.raises(ValueError):
        run(throttle, fail, ValueError("bad request"))  # the dependency answered: accepted
    with pytest.raises(TimeoutError):
        run(throttle, fail, TimeoutError())  # overload
    with pytest.raises(rs.TimeoutExceededError):
        run(throttle, fail, rs.TimeoutExceededError("t", 1.0))
    assert run(throttle, lambda: 503) == 503  # a refusing result
    assert run(throttle, lambda: 200) == 200
    stats = throttle.stats()
    assert (stats.requests, stats.accepts) == (5, 2)


def test_a_predicate_decides_what_is_a_rejection(clock: FakeClock) -> None:
    throttle = Throttle(rng=lambda: 1.0, clock=clock, rejected_on=lambda e: "overload" in str(e))
    for text in ("overload", "nope"):
        with pytest.raises(RuntimeError):
            throttle.call(lambda t=text: (_ for _ in ()).throw(RuntimeError(t)))
    assert (throttle.stats().requests, throttle.stats().accepts) == (2, 1)


async def test_a_cancelled_call_is_a_request_but_not_an_accept(clock: FakeClock) -> None:
    throttle = Throttle(rng=lambda: 1.0, clock=clock)
    task = asyncio.create_task(throttle.acall(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (throttle.stats().requests, throttle.stats().accepts) == (1, 0)


def test_outcomes_leave_the_window_one_slice_at_a_time(clock: FakeClock) -> None:
    throttle = Throttle(window="60s", buckets=6, rng=lambda: 1.0, clock=clock)
    for _ in range(10):
        with pytest.raises(rs.RejectedError):
            throttle.call(refuse)
        clock.advance(5.0)  # 10 refusals over 50 s: slices of 10 s hold 2 each
    assert throttle.stats().requests == 10
    clock.advance(10.0)  # t=60: the first slice [0, 10) left the window
    assert throttle.stats().requests == 8
    clock.advance(35.0)  # t=95: the window is [40, 100): the last slice's 2 are left
    assert throttle.stats().requests == 2
    clock.advance(10.0)
    assert throttle.stats().requests == 0
    assert throttle.reject_probability == 0.0


def test_min_requests_and_max_reject(clock: FakeClock) -> None:
    throttle = Throttle(min_requests=5, max_reject=0.5, rng=lambda: 1.0, clock=clock)
    for expected in (0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5):
        assert throttle.reject_probability == expected
        with pytest.raises(rs.RejectedError):
            throttle.call(refuse)


def test_throttle_in_a_pipeline_inside_a_retry_is_not_retried(clock: FakeClock) -> None:
    throttle = Throttle(rng=lambda: 0.0, clock=clock)
    retry = rs.Retry(3, retry_on=Exception, clock=clock)
    with pytest.raises(rs.RejectedError):
        rs.Pipeline(retry, throttle).call(refuse)  # p = 0: runs, refused, not retried
    calls = []
    with pytest.raises(rs.RateLimitedError):
        rs.Pipeline(retry, throttle).call(lambda: calls.append(1))
    assert calls == []
    assert throttle.stats().requests == 2


@pytest.mark.parametrize(
    ("options", "path"),
    [
        pytest.param({"k": 0.5}, "k", id="k-below-one"),
        pytest.param({"k": True}, "k", id="k-bool"),
        pytest.param({"window": 0}, "window", id="window"),
        pytest.param({"buckets": 0}, "buckets", id="buckets"),
        pytest.param({"min_requests": -1}, "min_requests", id="min"),
        pytest.param({"max_reject": 0}, "max_reject", id="max-zero"),
        pytest.param({"max_reject": 1.5}, "max_reject", id="max-high"),
        pytest.param({"rejected_on": "TimeoutError"}, "rejected_on", id="rejected-on"),
        pytest.param({"rejected_on": (ValueError, 3)}, "rejected_on", id="rejected-on-tuple"),
        pytest.param({"rejected_if": 3}, "rejected_if", id="rejected-if"),
        pytest.param({"rng": 0.5}, "rng", id="rng"),
    ],
)
def test_bad_settings_name_the_argument(options: dict[str, object], path: str) -> None:
    with pytest.raises(rs.ConfigError) as info:
        Throttle(**options)  # type: ignore[arg-type]
    assert info.value.path == path


def test_repr_stats_and_decorator(clock: FakeClock) -> None:
    throttle = Throttle(1.5, window="2m", clock=clock, name="search")
    assert repr(throttle) == "Throttle(k=1.5, window=120, name='search')"

    @throttle
    async def search() -> str:
        return "found"

    assert asyncio.run(search()) == "found"
    stats = throttle.stats()
    assert (stats.k, stats.window, stats.requests, stats.accepts) == (1.5, 120.0, 1, 1)


def test_threads_sharing_a_throttle_count_every_request() -> None:
    import threading

    throttle = Throttle(rng=random.Random(1).random)
    shed, lock = [0], threading.Lock()

    def client(fail: bool) -> None:
        for _ in range(500):
            try:
                throttle.call(refuse if fail else (lambda: None))
            except rs.RateLimitedError:
                with lock:
                    shed[0] += 1
            except rs.RejectedError:
                pass

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = throttle.stats()
    assert stats.requests == 8 * 500
    assert stats.throttled == shed[0]
    assert stats.accepts <= 4 * 500
