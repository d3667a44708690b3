"""The migration guide, checked: each peer's setup (docs/examples/migrate_*.py) and its
resilient rewrite run side by side on fake time, and must agree on the attempts made, the
delays slept, the final outcome, the breaker's admissions and states, the requests refused.
Where they differ on purpose (the guide lists each case), the difference is pinned here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient as rs
import resilient._pipeline
from resilient.compat.pybreaker import pybreaker_clock, state_of
from resilient.testing import FakeClock

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"

Loader = Callable[[str], ModuleType]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def load(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Loader:
    """Import a docs example afresh, its policies built on the fake clock (as if each had
    been given ``clock=clock``)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with monkeypatch.context() as patch:
            patch.setattr(resilient._pipeline, "SYSTEM_CLOCK", clock)
            patch.setitem(sys.modules, spec.name, module)  # dataclasses look it up
            spec.loader.exec_module(module)
        return module

    return load


def fake_datetime(clock: FakeClock) -> type[dt.datetime]:
    epoch = dt.datetime(2000, 1, 1)

    class FakeDatetime(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return epoch + dt.timedelta(seconds=clock.monotonic())

    return FakeDatetime


@pytest.fixture
def fake_tenacity_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """tenacity (and stamina on top of it) sleep and read time on the fake clock."""
    import tenacity
    import tenacity.nap

    monkeypatch.setattr(tenacity, "time", SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=clock.sleep))


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What calling ``fn(*args)`` gave: ``("returned", value)`` or ``("raised", type name)``."""
    try:
        return ("returned", fn(*args))
    except Exception as exc:
        return ("raised", type(exc).__name__)


# --------------------------------------------------------------------------- tenacity


SCRIPTS = {
    "recovers": [ConnectionError(), ConnectionError(), "ok"],
    "gives up": [ConnectionError()] * 6,
    "not retried": [ConnectionError(), KeyError("x"), "ok"],
}


@pytest.mark.parametrize("script", list(SCRIPTS))
@pytest.mark.usefixtures("fake_tenacity_time")
def test_tenacity_basic(script: str, load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_tenacity")
    answers = [a if isinstance(a, BaseException) else mod.Response(200) for a in SCRIPTS[script]]

    results = []
    for fetch in (mod.fetch_before, mod.fetch_after):
        client = mod.Client(*answers)
        start = len(clock.sleeps)
        results.append((outcome(fetch, client), client.calls, clock.sleeps[start:]))
    theirs, ours = results
    assert ours == theirs
    assert (
        ours[2]
        == {"recovers": [0.2, 0.4], "gives up": [0.2, 0.4, 0.8], "not retried": [0.2]}[script]
    )


@pytest.mark.usefixtures("fake_tenacity_time")
def test_tenacity_results_same_attempts_and_jittered_delays(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_tenacity")
    results = []
    for report in (mod.report_before, mod.report_after):
        client = mod.Client(mod.Response(503), mod.Response(503), mod.Response(200))
        start = len(clock.sleeps)
        random.seed(11)  # the same draws: both use full jitter on the global random
        results.append(
            (outcome(lambda c, r=report: r(c).status, client), client.calls, clock.sleeps[start:])
        )
    assert results[0] == results[1]
    assert results[0][1] == 3
    assert all(0 <= d <= b for d, b in zip(results[0][2], (0.5, 1.0), strict=True))


@pytest.mark.usefixtures("fake_tenacity_time")
def test_tenacity_results_when_attempts_run_out_differ_on_purpose(
    load: Loader, clock: FakeClock
) -> None:
    import tenacity

    mod = load("migrate_tenacity")
    theirs, ours = mod.Client(mod.Response(503)), mod.Client(mod.Response(503))
    random.seed(3)
    with pytest.raises(tenacity.RetryError):
        mod.report_before(theirs)
    their_sleeps = list(clock.sleeps)
    random.seed(3)
    assert mod.report_after(ours).status == 503  # the last result, not a RetryError
    assert clock.sleeps[len(their_sleeps) :] == their_sleeps
    assert theirs.calls == ours.calls == 5


@pytest.mark.usefixtures("fake_tenacity_time")
def test_tenacity_delay_stop_is_a_deadline_in_resilient(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_tenacity")
    starts: list[list[float]] = [[], []]

    def slow_get(path: str, starts: list[float]) -> Any:
        starts.append(clock.monotonic())
        clock.advance(3.0)  # each request takes 3 s
        return mod.Response(503)

    for n, report in enumerate((mod.report_before, mod.report_after)):
        client = mod.Client(mod.Response(503))
        client.get = lambda path="/", n=n: slow_get(path, starts[n])
        origin = clock.monotonic()
        random.seed(7)  # delays 0.16, 0.15, 1.30: the third try ends at 9.3 s
        with contextlib.suppress(Exception):
            report(client)
        starts[n] = [round(t - origin, 6) for t in starts[n]]
    theirs, ours = starts
    assert len(theirs) == 4
    assert theirs[-1] > 10.0  # tenacity slept past 10 s and tried again
    assert ours == theirs[:3]  # resilient would not sleep past its 10 s deadline


def test_tenacity_async(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_tenacity")

    async def fake_sleep(seconds: float) -> None:
        clock.sleep(seconds)

    results = []
    for ping in (mod.ping_before.retry_with(sleep=fake_sleep), mod.ping_after):
        client = mod.Client(KeyError("boom"), ValueError("again"), mod.Response(204))
        start = len(clock.sleeps)
        response = asyncio.run(ping(client))
        results.append((response.status, client.calls, clock.sleeps[start:]))
    assert results[0] == results[1] == (204, 3, [1.0, 1.0])


@pytest.mark.usefixtures("fake_tenacity_time")
def test_tenacity_compat_keeps_the_strategies(load: Loader, clock: FakeClock) -> None:
    import tenacity

    mod = load("migrate_tenacity_compat")
    theirs = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_exponential(multiplier=0.5, max=8),
        retry=tenacity.retry_if_exception_type(ConnectionError),
        reraise=True,
    )
    results = []
    for policy in (theirs, mod.retry.call):
        for failures in (2, 9):
            calls, fetch = mod.flaky_factory(failures)
            start = len(clock.sleeps)
            results.append((outcome(policy, fetch), len(calls), clock.sleeps[start:]))
    assert results[:2] == results[2:]
    assert results[3] == (("raised", "ConnectionError"), 5, [0.5, 1.0, 2.0, 4.0])


@pytest.mark.usefixtures("fake_tenacity_time")
def test_tenacity_compat_from_a_decorated_function(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_tenacity_compat")
    results = []
    for policy in (mod.legacy_fetch.retry, mod.same_policy.call):
        calls, fetch = mod.flaky_factory(9)
        start = len(clock.sleeps)
        results.append((outcome(policy, fetch), len(calls), clock.sleeps[start:]))
    assert results[0] == results[1] == (("raised", "ConnectionError"), 3, [2.0, 2.0])


# --------------------------------------------------------------------------- stamina


@pytest.fixture
def stamina_live() -> Iterator[None]:
    import stamina

    stamina.set_testing(False)
    yield
    stamina.set_testing(False)


@pytest.mark.parametrize("failures", [0, 2, 3, 9])
@pytest.mark.usefixtures("fake_tenacity_time", "stamina_live")
def test_stamina(failures: int, load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_stamina")
    results = []
    for call in (mod.call_before, mod.call_after):
        upstream = mod.Upstream(failures)
        start = len(clock.sleeps)
        results.append((outcome(call, upstream), upstream.calls, clock.sleeps[start:]))
    assert results[0] == results[1]
    assert results[0][2] == [0.1, 0.2, 0.4][: min(failures, 3)]


@pytest.mark.usefixtures("stamina_live")
def test_stamina_test_mode_maps_to_set_testing(load: Loader) -> None:
    import stamina

    from resilient.testing import set_testing

    mod = load("migrate_stamina")
    try:
        mod.configure_test_mode()
        theirs, ours = mod.Upstream(1), mod.Upstream(1)
        assert outcome(lambda: mod.call_before(theirs)) == ("raised", "ConnectionError")
        assert outcome(lambda: mod.call_after(ours)) == ("raised", "ConnectionError")
        assert theirs.calls == ours.calls == 1
    finally:
        stamina.set_testing(False)
        set_testing(False)


# --------------------------------------------------------------------------- backoff


@pytest.fixture
def fake_backoff_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import backoff._sync

    monkeypatch.setattr(backoff._sync, "time", SimpleNamespace(sleep=clock.sleep))
    monkeypatch.setattr(backoff._sync, "datetime", SimpleNamespace(datetime=fake_datetime(clock)))


@pytest.mark.parametrize(
    "answers",
    [
        [ConnectionError(), ConnectionError(), "value"],
        [ConnectionError()] * 9,
        [KeyError("x"), "value"],
    ],
    ids=["recovers", "gives up", "not retried"],
)
@pytest.mark.usefixtures("fake_backoff_time")
def test_backoff_on_exception(answers: list[object], load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_backoff")
    results = []
    for poll in (mod.poll_before, mod.poll_after):
        feed = mod.Feed(*answers)
        start = len(clock.sleeps)
        random.seed(17)  # both draw full jitter from the global random, once per retry
        results.append((outcome(poll, feed), feed.calls, clock.sleeps[start:]))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "answers", [[None, None, "job"], [None] * 9, [ConnectionError(), "job"]], ids=str
)
@pytest.mark.usefixtures("fake_backoff_time")
def test_backoff_on_predicate(answers: list[object], load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_backoff")
    results = []
    for wait_for_job in (mod.wait_for_job_before, mod.wait_for_job_after):
        feed = mod.Feed(*answers)
        start = len(clock.sleeps)
        random.seed(17)
        results.append((outcome(wait_for_job, feed), feed.calls, clock.sleeps[start:]))
    assert results[0] == results[1]


# --------------------------------------------------------------------------- pybreaker

BREAKER_STEP = st.one_of(
    st.sampled_from(["ok", "down", "not found"]),
    st.sampled_from([1.0, 30.0, 60.0, 61.0]),
)


def load_fresh(name: str, clock: FakeClock, patch: pytest.MonkeyPatch) -> ModuleType:
    """Like the ``load`` fixture, for hypothesis tests (a fresh module per example)."""
    spec = importlib.util.spec_from_file_location(f"_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    patch.setattr(resilient._pipeline, "SYSTEM_CLOCK", clock)
    patch.setitem(sys.modules, spec.name, module)  # dataclasses look it up
    spec.loader.exec_module(module)
    return module


def breaker_trace(steps: list[Any], how: str) -> list[tuple[str, str]]:
    """(what the caller saw, the breaker's state) after each call, for the pybreaker
    ("before"), the hand-written rewrite ("after") or the migrate() result ("migrate")."""
    clock = FakeClock()
    trace = []
    with pybreaker_clock(clock), pytest.MonkeyPatch.context() as patch:
        mod = load_fresh("migrate_pybreaker", clock, patch)
        real = mod.db.get_user
        call = {
            "before": mod.get_user_before,
            "after": mod.get_user_after,
            "migrate": lambda user_id: mod.migrated.call(mod.db.get_user, user_id),
        }[how]
        for step in steps:
            if isinstance(step, float):
                clock.advance(step)
                continue
            mod.db.up = step != "down"
            ran: list[int] = []

            def counted(user_id: int, ran: list[int] = ran) -> Any:
                ran.append(1)
                return real(user_id)

            patch.setattr(mod.db, "get_user", counted)
            seen = outcome(lambda step=step: call(-1 if step == "not found" else 1))[1]
            if not ran:
                assert seen in ("CircuitBreakerError", "CircuitOpenError")
                seen = "rejected"
            elif seen == "CircuitBreakerError":
                seen = "ConnectionError"  # pybreaker swaps the tripping failure
            breaker = {"before": None, "after": mod.db_circuit, "migrate": mod.migrated}[how]
            state = state_of(mod.db_breaker.current_state) if breaker is None else breaker.state
            assert state is not None
            trace.append((str(seen), state.value))
    return trace


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(BREAKER_STEP, max_size=30))
def test_pybreaker_the_rewrite_and_migrate_agree(steps: list[Any]) -> None:
    expected = breaker_trace(steps, "before")
    assert breaker_trace(steps, "after") == expected
    assert breaker_trace(steps, "migrate") == expected


def test_pybreaker_scenario(load: Loader) -> None:
    steps: list[Any] = ["ok", "not found", *["down"] * 5, "ok", 59.0, "ok", 1.0, "ok", "ok"]
    trace = breaker_trace(steps, "after")
    assert trace == breaker_trace(steps, "before")
    assert [state for _, state in trace] == [
        *["closed"] * 6,
        "open",
        "open",
        "open",
        "closed",
        "closed",
    ]
    assert trace[6] == ("ConnectionError", "open")
    assert trace[7] == trace[8] == ("rejected", "open")


def test_pybreaker_wrap_example_counts_awaited_failures(load: Loader) -> None:
    mod = load("migrate_pybreaker_wrap")
    asyncio.run(mod.main())
    assert mod.legacy_breaker.current_state == "open"


# --------------------------------------------------------------------------- circuitbreaker

CB_STEP = st.one_of(
    st.sampled_from(["ok", "down", "bug"]),
    st.sampled_from([0.5, 10.0, 29.0, 30.0]),
)


def circuit_trace(steps: list[Any], how: str) -> list[tuple[bool, tuple[str, Any]]]:
    import circuitbreaker

    clock = FakeClock()
    trace = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(circuitbreaker, "monotonic", clock.monotonic)
        mod = load_fresh("migrate_circuitbreaker", clock, patch)
        fn = mod.quote_before if how == "before" else mod.quote_after
        for step in steps:
            if isinstance(step, float):
                clock.advance(step)
                continue
            ran: list[int] = []

            def quote(sku: str, step: str = step, ran: list[int] = ran) -> float:
                ran.append(1)
                if step == "down":
                    raise ConnectionError("pricing down")
                if step == "bug":
                    raise ValueError("not a pricing outage")
                return 9.5

            patch.setattr(mod.pricing, "quote", quote)
            seen = outcome(fn, "tea")
            trace.append((bool(ran), seen))
    return trace


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(CB_STEP, max_size=30))
def test_circuitbreaker_and_its_rewrite(steps: list[Any]) -> None:
    assert circuit_trace(steps, "after") == circuit_trace(steps, "before")


def test_circuitbreaker_scenario() -> None:
    steps: list[Any] = ["down", "bug", "down", "down", "down", "ok", 30.0, "down", "ok", 30.0]
    steps += ["ok", "ok"]
    trace = circuit_trace(steps, "after")
    assert trace == circuit_trace(steps, "before")
    assert [ran for ran, _ in trace] == [True] * 5 + [False, True, False, True, True]
    assert trace[5] == (False, ("returned", 9.0))  # open: the fallback answers


# --------------------------------------------------------------------------- slowapi


@pytest.fixture
def fake_limits_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import limits.storage.memory

    monkeypatch.setattr(limits.storage.memory, "time", SimpleNamespace(time=clock.monotonic))


@pytest.mark.usefixtures("fake_limits_time")
def test_slowapi_route_limit(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_slowapi")
    results = []
    for app in (mod.app_before, mod.app_after):
        first = asyncio.run(mod.statuses(app, 7))
        clock.advance(30)
        middle = asyncio.run(mod.statuses(app, 1))
        clock.advance(30)  # a minute after the first request: a new window
        last = asyncio.run(mod.statuses(app, 6))
        results.append((first, middle, last))
        clock.advance(3600)
    assert results[0] == results[1]
    assert results[0] == ([200] * 5 + [429] * 2, [429], [200] * 5 + [429])


def test_slowapi_rewrite_answers_with_retry_after_and_ratelimit_fields(load: Loader) -> None:
    import httpx

    mod = load("migrate_slowapi")

    async def last_refusal() -> httpx.Response:
        transport = httpx.ASGITransport(app=mod.app_after)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for _ in range(5):
                assert (await client.get("/search")).status_code == 200
            return await client.get("/search")

    refused = asyncio.run(last_refusal())
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) == 60
    assert "RateLimit-Policy" in refused.headers


# --------------------------------------------------------------------------- limits


@pytest.fixture
def fake_limits_strategy_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    import limits.storage.memory
    import limits.strategies

    now = SimpleNamespace(time=clock.monotonic)
    monkeypatch.setattr(limits.storage.memory, "time", now)
    monkeypatch.setattr(limits.strategies, "time", now)


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(
        # Pauses are multiples of 0.0707 s, so no hit is ever exactly one period (1 s) old:
        # that boundary is the one place the two differ (see the next test).
        st.tuples(st.integers(0, 12), st.sampled_from([0.0707 * n for n in (1, 4, 7, 10, 15)])),
        max_size=12,
    )
)
def test_limits_moving_window_and_sliding_window_agree(steps: list[tuple[int, float]]) -> None:
    import limits.storage.memory
    import limits.strategies

    traces = []
    for how in ("before", "after"):
        clock = FakeClock(1000.0)
        now = SimpleNamespace(time=clock.monotonic)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(limits.storage.memory, "time", now)
            patch.setattr(limits.strategies, "time", now)
            mod = load_fresh("migrate_limits", clock, patch)
            allow = mod.allow_search_before if how == "before" else mod.allow_search_after
            trace = []
            for hits, pause in steps:  # a burst of hits, then a pause
                trace.append([allow("alice") for _ in range(hits)])
                clock.advance(pause)
            traces.append(trace)
    assert traces[0] == traces[1]


@pytest.mark.usefixtures("fake_limits_strategy_time")
def test_limits_counts_a_hit_exactly_one_period_old_resilient_does_not(
    load: Loader, clock: FakeClock
) -> None:
    mod = load("migrate_limits")
    clock.advance(1000)
    results = []
    for allow in (mod.allow_search_before, mod.allow_search_after):
        assert all(allow("dave") for _ in range(10))
        clock.advance(1.0)  # the ten are now exactly one period old
        results.append(allow("dave"))
        clock.advance(10)
    assert results == [False, True]


@pytest.mark.usefixtures("fake_limits_strategy_time")
def test_limits_moving_window_scenario(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_limits")
    clock.advance(1000.5)
    traces = []
    for allow in (mod.allow_search_before, mod.allow_search_after):
        trace = [allow("carol") for _ in range(10)]
        clock.advance(0.7)  # into the next second: the ten are still within one second
        trace.append(allow("carol"))
        clock.advance(0.31)  # now they are not
        trace += [allow("carol") for _ in range(11)]
        traces.append(trace)
        clock.advance(10)
    assert traces[0] == traces[1] == [True] * 10 + [False] + [True] * 10 + [False]


@pytest.mark.usefixtures("fake_limits_strategy_time")
def test_limits_fixed_window_remaining(load: Loader, clock: FakeClock) -> None:
    mod = load("migrate_limits")
    clock.advance(1000)
    theirs = [mod.allow_export_before("bob") for _ in range(101)]
    ours = [mod.allow_export_after("bob") for _ in range(101)]
    assert ours == theirs
    assert theirs[-1] == (False, 0)


@pytest.mark.usefixtures("fake_limits_strategy_time")
def test_limits_counts_refused_fixed_window_hits_resilient_does_not(
    load: Loader, clock: FakeClock
) -> None:
    import limits

    mod = load("migrate_limits")
    clock.advance(1000)
    heavy = limits.parse("5/minute")
    assert not mod.fixed.hit(heavy, "bulk", cost=10)  # too big: refused...
    assert not mod.fixed.hit(heavy, "bulk")  # ...yet it consumed the window
    ours = rs.FixedWindow("5/minute")
    with pytest.raises(rs.ConfigError):
        ours.try_acquire("bulk", cost=10)  # refused up front
    assert ours.try_acquire("bulk").allowed


def test_examples_are_the_ones_the_guide_shows() -> None:
    guide = (EXAMPLES.parent / "migration.md").read_text()
    for path in sorted(EXAMPLES.glob("migrate_*.py")):
        assert f'"{path.name}:' in guide, f"{path.name} is not shown in docs/migration.md"
    assert sys.modules.get("_example_migrate_tenacity") is None
