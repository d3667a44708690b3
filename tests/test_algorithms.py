"""The pure rate-limiting algorithms: unit cases, invariants (hypothesis) and a
model-based comparison of each algorithm with a brute-force reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resilient import ConfigError
from resilient._algorithms import (
    ALGORITHMS,
    Decision,
    Limit,
    SlidingLog,
    acquire,
    decision,
    release,
    sliding_counter_check,
    sliding_log_check,
    status,
    token_bucket_check,
    token_bucket_commit,
    wait_until,
)

TB = "token_bucket"
LOG = "sliding_log"
COUNTER = "sliding_counter"
FIXED = "fixed_window"
ALL = (TB, LOG, COUNTER, FIXED)


def run_one(
    limit: Limit, state: Any, now: float, cost: int, max_wait: float = 0.0
) -> tuple[float, Any]:
    wait, states = acquire((limit,), [state], now, cost, max_wait)
    return wait, states[0]


# --------------------------------------------------------------------------- Limit


def test_limit_derives_capacity_interval_and_tolerance():
    """A token bucket's capacity is its burst; interval and tolerance follow from the rate."""
    limit = Limit(algorithm=TB, amount=10, period=2, burst=4)
    assert (limit.capacity, limit.interval, limit.tolerance, limit.slack) == (4, 0.2, 0.8, 1e-6)
    assert isinstance(limit.period, float)
    assert Limit(algorithm=LOG, amount=5, period=1.0).capacity == 5
    assert str(limit) == "token_bucket 10/2s burst=4"


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        pytest.param(
            {"algorithm": "leaky", "amount": 1, "period": 1.0}, "algorithm", id="algorithm"
        ),
        pytest.param({"algorithm": TB, "amount": 0, "period": 1.0}, "amount", id="amount-zero"),
        pytest.param({"algorithm": TB, "amount": True, "period": 1.0}, "amount", id="amount-bool"),
        pytest.param({"algorithm": TB, "amount": 1, "period": 0.0}, "period", id="period-zero"),
        pytest.param({"algorithm": TB, "amount": 1, "period": math.inf}, "period", id="period-inf"),
        pytest.param({"algorithm": TB, "amount": 1, "period": "1s"}, "period", id="period-str"),
        pytest.param(
            {"algorithm": LOG, "amount": 1, "period": 1.0, "burst": 2}, "burst", id="burst-window"
        ),
        pytest.param(
            {"algorithm": TB, "amount": 1, "period": 1.0, "burst": 0}, "burst", id="burst-zero"
        ),
        pytest.param(
            {"algorithm": TB, "amount": 2, "period": 1.0, "initial": 3}, "initial", id="initial-big"
        ),
        pytest.param(
            {"algorithm": FIXED, "amount": 2, "period": 1.0, "initial": 1},
            "initial",
            id="initial-window",
        ),
    ],
)
def test_limit_rejects_bad_values(kwargs, path):
    """Every bad Limit field is named in the ConfigError."""
    with pytest.raises(ConfigError) as info:
        Limit(**kwargs)
    assert info.value.path == path


def test_decision_fast_builder_makes_a_real_frozen_decision():
    """The fast constructor gives an equal, frozen, truthy/falsy Decision."""
    made = decision(True, 0.0, 3, 5, 1.5)
    assert type(made) is Decision
    assert made == Decision(True, 0.0, 3, 5, 1.5)
    assert made
    assert not decision(False, 1.0, 0, 5, 1.0)
    with pytest.raises(AttributeError):
        made.allowed = False  # type: ignore[misc]
    assert hash(made) == hash(Decision(True, 0.0, 3, 5, 1.5))


@given(st.floats(0, 1e7), st.floats(0, 1e7))
def test_wait_until_never_arrives_early(now, later):
    """now + wait_until(now, at) >= at for any floats, and the wait is tight."""
    at = now + later
    wait = wait_until(now, at)
    assert now + wait >= at
    assert wait <= (at - now) + 4 * math.ulp(max(at, 1.0))


# --------------------------------------------------------------------------- token bucket


def test_token_bucket_burst_then_refill():
    """A full bucket gives its burst at once, then one token per interval."""
    limit = Limit(algorithm=TB, amount=10, period=1.0, burst=3)
    state = None
    for _ in range(3):
        wait, state = run_one(limit, state, 0.0, 1)
        assert wait == 0.0
    wait, _ = run_one(limit, state, 0.0, 1)
    assert wait == pytest.approx(-0.1)
    wait, state = run_one(limit, state, 0.1, 1)
    assert wait == 0.0
    assert status((limit,), [state], 0.1)[0] == 0
    assert status((limit,), [state], 0.25)[0] == 1  # 1.5 tokens: one whole one
    assert status((limit,), [state], 0.29)[0] == 1
    assert status((limit,), [state], 0.4)[:2] == (3, 3)


def test_token_bucket_cost_above_one_waits_for_all_its_tokens():
    """cost=3 on an empty bucket waits for three tokens."""
    limit = Limit(algorithm=TB, amount=2, period=1.0, burst=4)
    _, state = run_one(limit, None, 0.0, 4)
    wait, _ = run_one(limit, state, 0.0, 3)
    assert wait == pytest.approx(-1.5)
    assert run_one(limit, state, 1.5, 3)[0] == 0.0


def test_token_bucket_initial_fill_starts_refilling_at_first_sight():
    """initial=0: a new bucket is empty and refills from the first call on."""
    limit = Limit(algorithm=TB, amount=1, period=1.0, burst=5, initial=0)
    wait, state = run_one(limit, None, 10.0, 1)
    assert wait == pytest.approx(-1.0)
    assert state is not None  # materialised, so waiting is enough
    assert run_one(limit, state, 11.0, 1)[0] == 0.0
    assert token_bucket_check(limit, None, 0.0, 1) == (1.0, 5.0)


def test_token_bucket_forgets_a_full_bucket():
    """A bucket back to full needs no state (unless initial says otherwise)."""
    limit = Limit(algorithm=TB, amount=1, period=1.0)
    assert token_bucket_check(limit, 4.0, 5.0, 1) == (5.0, None)
    assert token_bucket_commit(limit, None, 5.0, 1) == 6.0


# --------------------------------------------------------------------------- sliding log


def test_sliding_log_exact_window_and_retry_after():
    """At most `amount` in any window; the oldest entry's expiry frees room."""
    limit = Limit(algorithm=LOG, amount=3, period=10.0)
    state = None
    for now in (0.0, 1.0, 2.0):
        wait, state = run_one(limit, state, now, 1)
        assert wait == 0.0
    wait, state = run_one(limit, state, 5.0, 1)
    assert wait == -5.0
    assert run_one(limit, state, 9.999, 1)[0] < 0
    assert run_one(limit, state, 10.0, 1)[0] == 0.0  # inclusive boundary
    wait, state = run_one(limit, state, 10.0, 2)
    assert wait == -2.0  # two units: the entries of 1.0 and 2.0 must leave


def test_sliding_log_merges_same_instant_and_prunes():
    """Same-instant entries merge; expired ones are pruned on check."""
    limit = Limit(algorithm=LOG, amount=5, period=1.0)
    _, log = run_one(limit, None, 0.0, 2)
    _, log = run_one(limit, log, 0.0, 2)
    assert list(log.entries) == [(0.0, 4)]
    at, log = sliding_log_check(limit, log, 1.0, 1)
    assert at == 1.0
    assert log.used == 0
    assert not log.entries
    assert repr(SlidingLog([(1.0, 2)])) == "SlidingLog([(1.0, 2)])"


# --------------------------------------------------------------------------- windows


def test_fixed_window_allows_double_bursts_at_the_edge():
    """Documented: a fixed window lets 2x the amount through across a boundary."""
    limit = Limit(algorithm=FIXED, amount=2, period=1.0)
    state = None
    for now in (0.0, 0.99, 1.0, 1.0):
        wait, state = run_one(limit, state, now, 1)
        assert wait == 0.0
    assert run_one(limit, state, 1.5, 1)[0] == -0.5


def test_sliding_counter_weights_the_previous_window():
    """The previous window counts in proportion to its overlap with the sliding window."""
    limit = Limit(algorithm=COUNTER, amount=4, period=1.0)
    state = None
    for _ in range(4):
        _, state = run_one(limit, state, 0.0, 1)
    # At 1.5 the previous window (4 calls) weighs 0.5: 2 + cost 1 <= 4.
    wait, state = run_one(limit, state, 1.5, 1)
    assert wait == 0.0
    assert run_one(limit, state, 1.5, 2)[0] == pytest.approx(-0.25)
    assert sliding_counter_check(limit, state, 5.0, 1) == (5.0, None)


# --------------------------------------------------------------------------- shared invariants


def limits_strategy(algorithms: tuple[str, ...] = ALL) -> st.SearchStrategy[Limit]:
    @st.composite
    def build(draw: st.DrawFn) -> Limit:
        algorithm = draw(st.sampled_from(algorithms))
        amount = draw(st.integers(1, 12))
        period = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 3.0, 10.0]))
        if algorithm != TB:
            return Limit(algorithm=algorithm, amount=amount, period=period)
        burst = draw(st.none() | st.integers(1, 12))
        capacity = amount if burst is None else burst
        initial = draw(st.none() | st.integers(0, capacity))
        return Limit(
            algorithm=algorithm, amount=amount, period=period, burst=burst, initial=initial
        )

    return build()


arrivals = st.lists(
    st.tuples(st.floats(0, 2.0, allow_nan=False), st.integers(1, 12), st.floats(0, 3.0)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(limits_strategy(), arrivals)
def test_waiting_exactly_retry_after_admits(limit, steps):
    """For every algorithm and state: a refused call that comes back after exactly
    retry_after (nobody else in between) is admitted, and a booked call's wait is
    the same retry_after a refusal would have reported."""
    state: Any = None
    now = 0.0
    for gap, cost, max_wait in steps:
        cost = min(cost, limit.capacity)
        now += gap
        probe = _copy(state)
        wait, new_state = run_one(limit, state, now, cost, max_wait)
        if wait < 0:
            retry_after = -wait
            assert retry_after > 0
            later = now + retry_after
            again, _ = run_one(limit, _copy(new_state), later, cost)
            assert again == 0.0, (limit, new_state, now, retry_after)
            state = new_state
        else:
            if wait > 0:  # booked: a plain refusal would say the same
                refused, _ = run_one(limit, probe, now, cost)
                assert refused == -wait
            state = new_state


def _copy(state: Any) -> Any:
    if isinstance(state, SlidingLog):
        return SlidingLog(list(state.entries))
    if isinstance(state, list):
        return [_copy(item) for item in state]
    return state


@settings(max_examples=200)
@given(limits_strategy(), arrivals)
def test_check_with_take_equals_check_then_commit(limit, steps):
    """check(take=True) is check followed by commit at now, for every algorithm."""
    algorithm = ALGORITHMS[limit.algorithm]
    left: Any = None
    right: Any = None
    now = 0.0
    for gap, cost, _ in steps:
        cost = min(cost, limit.capacity)
        now += gap
        at_l, left = algorithm.check(limit, left, now, cost, True)
        at_r, right = algorithm.check(limit, right, now, cost, False)
        assert at_l == at_r
        if at_r <= now:
            right = algorithm.commit(limit, right, now, cost)
        assert _same(left, right)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, SlidingLog) and isinstance(b, SlidingLog):
        return list(a.entries) == list(b.entries) and a.used == b.used
    return bool(a == b)


# --------------------------------------------------------------------------- bounds (hypothesis)


@dataclass
class Simulation:
    """Calls through one limit, with optional booking and cancellation; records
    when each admitted call actually starts."""

    limit: Limit
    state: Any = None
    starts: list[tuple[float, int]] = field(default_factory=list)

    def run(self, steps: list[tuple[float, int, float, bool]]) -> None:
        now = 0.0
        pending: list[tuple[float, int, bool]] = []
        for gap, cost, max_wait, cancel in steps:
            now += gap
            for start, units, cancelled in list(pending):
                if start <= now:
                    pending.remove((start, units, cancelled))
                    if not cancelled:
                        self.starts.append((start, units))
            cost = min(cost, self.limit.capacity)
            wait, self.state = run_one(self.limit, self.state, now, cost, max_wait)
            if wait == 0.0:
                self.starts.append((now, cost))
            elif wait > 0:
                if cancel:  # the caller gives up at once: its place goes back
                    (self.state,) = release((self.limit,), [self.state], now, now + wait, cost)
                pending.append((now + wait, cost, cancel))
        self.starts.extend((start, units) for start, units, cancelled in pending if not cancelled)
        self.starts.sort()


schedules = st.lists(
    st.tuples(
        st.floats(0, 1.0, allow_nan=False),
        st.integers(1, 12),
        st.sampled_from([0.0, 0.0, 0.3, 2.0, 30.0]),
        st.booleans(),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(limits_strategy((LOG,)), schedules)
def test_sliding_log_never_exceeds_its_limit_in_any_window(limit, steps):
    """Admitted units starting in any window [t, t + period) never exceed the amount,
    with bookings (max_wait) and cancelled bookings mixed in."""
    sim = Simulation(limit)
    sim.run(steps)
    for index, (start, _) in enumerate(sim.starts):
        # A booked caller starts at now + wait >= its booked time, possibly one ulp
        # later: windows are compared a nanosecond short.
        end = start + limit.period - 1e-9
        inside = sum(units for other, units in sim.starts[index:] if other < end)
        assert inside <= limit.amount, (start, sim.starts)


@settings(max_examples=400, deadline=None)
@given(limits_strategy((TB,)), schedules)
def test_token_bucket_never_exceeds_burst_plus_rate_times_t(limit, steps):
    """Over any interval [t1, t2], admitted units <= burst + rate * (t2 - t1)
    (the initial fill only lowers it), with bookings and cancellations mixed in."""
    sim = Simulation(limit)
    sim.run(steps)
    rate = limit.amount / limit.period
    starts = sim.starts
    for i, (t1, _) in enumerate(starts):
        total = 0
        for t2, units in starts[i:]:
            total += units
            # (the bucket forgives 1 µs of rounding: rate * 1e-6 units at most)
            assert total <= limit.capacity + rate * (t2 - t1 + 1e-6) + 1e-9, (t1, t2, starts)


@settings(max_examples=300, deadline=None)
@given(limits_strategy((TB, LOG, COUNTER, FIXED)), schedules)
@example(
    limit=Limit(algorithm="sliding_log", amount=2, period=3.0),
    steps=[
        (0.4257806118129356, 1, 0.0, False),
        (0.0, 1, 0.0, False),
        (0.45336116899027357, 1, 30.0, False),
        (1.0, 1, 2.0, False),
    ],
)
def test_bookings_are_first_in_first_out(limit, steps):
    """A booked call never starts before a call booked earlier."""
    state: Any = None
    now = 0.0
    last_start = -math.inf
    for gap, cost, max_wait, _ in steps:
        now += gap
        cost = min(cost, limit.capacity)
        wait, state = run_one(limit, state, now, cost, max_wait)
        if wait >= 0:
            # The caller's start is now + wait, a float sum: two bookings of the same
            # instant made at different times may land one rounding step apart.
            start = now + wait
            assert start >= last_start - 1e-9
            last_start = max(start, last_start)


# --------------------------------------------------------------------------- model-based


class Reference:
    """Brute force from the history of admitted calls: no incremental state."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.history: list[tuple[float, int]] = []  # admitted (time, cost)

    def margin(self, now: float, cost: int) -> float:
        """> 0 admit, < 0 refuse; |margin| tiny means float rounding may decide."""
        raise NotImplementedError

    def admit(self, now: float, cost: int) -> None:
        self.history.append((now, cost))


class TokenBucketReference(Reference):
    """Continuous tokens, replayed with exact fractions: a bucket holds ``initial``
    tokens when first seen (or ``burst``), gains ``rate`` per second up to ``burst``,
    and loses each admitted cost."""

    first: float | None = None

    def tokens(self, now: float) -> Fraction:
        limit = self.limit
        rate = Fraction(limit.amount) / Fraction(limit.period)
        capacity = Fraction(limit.capacity)
        if limit.initial is None:
            level, last = capacity, None
        else:
            assert self.first is not None
            level, last = Fraction(limit.initial), Fraction(self.first)
        for when, cost in self.history:
            t = Fraction(when)
            if last is not None:
                level = min(capacity, level + rate * (t - last))
            level -= cost
            last = t
        if last is not None:
            level = min(capacity, level + rate * (Fraction(now) - last))
        return level

    def margin(self, now: float, cost: int) -> float:
        if self.first is None:
            self.first = now
        return float(self.tokens(now) - cost)


class SlidingLogReference(Reference):
    def margin(self, now: float, cost: int) -> float:
        period = self.limit.period
        used = sum(units for when, units in self.history if now < when + period)
        return 0.5 if used + cost <= self.limit.amount else -0.5


class FixedWindowReference(Reference):
    """Windows chained from the first call; a window with no state left re-anchors."""

    def windows(self, now: float) -> tuple[float, int]:
        period = self.limit.period
        start: float | None = None
        count = 0
        for when, units in [*self.history, (now, 0)]:
            if start is None or when >= start + period:
                start, count = when, 0
            count += units
        assert start is not None
        return start, count

    def margin(self, now: float, cost: int) -> float:
        _, count = self.windows(now)
        return 0.5 if count + cost <= self.limit.amount else -0.5


class SlidingCounterReference(Reference):
    """Chained windows; estimate = previous count * overlap + current count."""

    def margin(self, now: float, cost: int) -> float:
        period = self.limit.period
        start: float | None = None
        counts: dict[int, int] = {}
        index = 0
        for when, units in [*self.history, (now, 0)]:
            if start is None:
                start, index, counts = when, 0, {}
            while when >= start + period:
                start, index = start + period, index + 1
                if not counts.get(index - 1) and not counts.get(index):
                    start, index, counts = when, 0, {}
                    break
            counts[index] = counts.get(index, 0) + units
        assert start is not None
        weight = (start + period - now) / period
        estimate = counts.get(index - 1, 0) * weight + counts.get(index, 0)
        return self.limit.amount - estimate - cost


REFERENCES: dict[str, Callable[[Limit], Reference]] = {
    TB: TokenBucketReference,
    LOG: SlidingLogReference,
    FIXED: FixedWindowReference,
    COUNTER: SlidingCounterReference,
}

model_steps = st.lists(
    st.tuples(
        st.floats(0, 1.2, allow_nan=False) | st.sampled_from([0.0, 0.25, 0.5, 1.0]),
        st.integers(1, 12),
    ),
    min_size=1,
    max_size=80,
)


@pytest.mark.parametrize("algorithm", ALL)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_algorithm_matches_brute_force_reference(algorithm, data):
    """Each algorithm admits exactly what its brute-force reference admits, except
    where the two sit within rounding of the boundary (then the reference follows)."""
    limit = data.draw(limits_strategy((algorithm,)))
    steps = data.draw(model_steps)
    reference = REFERENCES[algorithm](limit)
    state: Any = None
    now = 0.0
    close_calls = 0
    for gap, cost in steps:
        now += gap
        cost = min(cost, limit.capacity)
        wait, state = run_one(limit, state, now, cost)
        margin = reference.margin(now, cost)
        admitted = wait == 0.0
        if abs(margin) < 1e-6:
            close_calls += 1
        else:
            assert admitted == (margin >= 0), (now, cost, margin, reference.history)
        if admitted:
            reference.admit(now, cost)
    assert close_calls <= len(steps)


def test_several_limits_refuse_together_and_consume_from_none():
    """With two limits, a call refused by one consumes from neither."""
    per_second = Limit(algorithm=LOG, amount=2, period=1.0)
    per_minute = Limit(algorithm=FIXED, amount=3, period=60.0)
    limits = (per_second, per_minute)
    states: list[Any] = [None, None]
    for now in (0.0, 0.0):
        wait, states = acquire(limits, states, now, 1)
        assert wait == 0.0
    wait, states = acquire(limits, states, 0.5, 1)
    assert wait == -0.5  # the per-second log is full
    assert states[1] == (0.0, 2, 0)  # the per-minute window did not count it
    wait, states = acquire(limits, states, 1.0, 1)
    assert wait == 0.0
    wait, states = acquire(limits, states, 2.0, 1)
    assert wait == -58.0  # now the per-minute window refuses
    assert status(limits, states, 2.0) == (0, 3, 58.0)
    assert not states[0].entries  # and the log did not record it


def test_several_limits_book_at_the_latest_time():
    """A booking across limits starts when every limit has room."""
    fast = Limit(algorithm=TB, amount=1, period=1.0)
    slow = Limit(algorithm=TB, amount=1, period=5.0)
    states: list[Any] = [None, None]
    _, states = acquire((fast, slow), states, 0.0, 1)
    wait, states = acquire((fast, slow), states, 0.0, 1, max_wait=10.0)
    assert wait == 5.0
    states = release((fast, slow), states, 1.0, 5.0, 1)
    assert acquire((fast, slow), states, 1.0, 1)[0] == -4.0


def test_window_bookings_go_at_most_one_window_ahead():
    """A window limiter refuses a booking more than one window ahead (retry_after says when)."""
    limit = Limit(algorithm=FIXED, amount=2, period=1.0)
    wait, state = run_one(limit, None, 0.0, 2)
    wait, state = run_one(limit, state, 0.0, 2, max_wait=5.0)
    assert wait == 1.0  # the next window
    wait, state = run_one(limit, state, 0.0, 1, max_wait=5.0)
    assert wait == -2.0  # the window after next: not bookable now
    assert status((limit,), [state], 0.0) == (0, 2, 2.0)


def test_release_gives_back_a_booking_for_each_algorithm():
    """Cancelling a booking lets the next caller start earlier than it could without."""
    for algorithm in ALL:
        limit = Limit(algorithm=algorithm, amount=2, period=1.0)
        _, state = run_one(limit, None, 0.0, 2)
        wait, state = run_one(limit, state, 0.0, 1, max_wait=5.0)
        assert wait > 0, algorithm
        kept = _copy(state)
        state = ALGORITHMS[algorithm].release(limit, state, 0.1, 0.0 + wait, 1)
        after = run_one(limit, _copy(state), 0.1, 1, max_wait=5.0)[0]
        before = run_one(limit, _copy(kept), 0.1, 1, max_wait=5.0)[0]
        assert 0 < after <= abs(before), algorithm
        assert not _same(state, kept), algorithm
        assert ALGORITHMS[algorithm].release(limit, None, 0.0, 1.0, 1) is None


def test_a_refused_booking_leaves_no_entry_in_a_sliding_log():
    # A window limit that cannot book that far ahead refuses the call; the sliding
    # log (committed in place) must not have recorded it before that.
    from resilient._algorithms import Limit, acquire

    limits = [
        Limit(algorithm="sliding_log", amount=5, period=10.0),
        Limit(algorithm="fixed_window", amount=1, period=1.0),
    ]
    states: list[object] = [None, None]
    outcomes = []
    for _ in range(3):
        wait, states = acquire(limits, states, 0.0, 1, max_wait=5.0)
        outcomes.append(wait)
    assert outcomes[0] == 0.0
    assert outcomes[1] > 0  # booked into the next fixed window
    assert outcomes[2] < 0  # the fixed window cannot book two windows ahead: refused
    assert states[0].used == 2  # the refused call took nothing from the log
