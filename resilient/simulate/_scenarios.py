"""The bundled scenarios: synthetic traces generated from a seed.

Each is five minutes of traffic (Poisson arrivals, 20 requests a second by
default) against a dependency whose behaviour changes in phases. The same seed
gives the same trace on every platform and Python version: the generator draws
only ``random.Random(seed).random()`` and shapes the draws itself.

``outage``
    healthy for a minute, then every request fails fast (connection refused)
    for 90 s, then healthy again.
``brownout``
    latency creeps up from 40 ms to about 3 s over two minutes, a growing share
    of requests get no answer at all (30 s hangs), then it recovers.
``rate-limited``
    the dependency enforces a quota of 15 requests a second for three minutes:
    requests beyond it in each second are answered 429 with ``Retry-After``.
``flapping``
    the dependency fails 70% of requests for 10 s out of every 30 s.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._errors import ConfigError
from ._trace import Trace, TraceRow

__all__ = ["BUNDLED_POLICIES", "SCENARIOS", "Scenario", "scenario"]

BUNDLED_POLICIES = Path(__file__).with_name("policies.toml")
"""The policy file ``resilient simulate`` uses without one: ``naive``, ``guarded``, ``patient``."""

DURATION = 300.0
DEFAULT_RATE = 20.0
HEALTHY_LATENCY = 0.040  # median seconds
HANG = 30.0  # how long a request that gets no answer waits for it (a socket timeout)


class _Draw:
    """Deterministic draws built on ``Random.random()`` alone."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed).random

    def uniform(self) -> float:
        return self._random()

    def gap(self, rate: float) -> float:
        """The time to the next Poisson arrival."""
        return -math.log(1.0 - self._random()) / rate

    def latency(self, median: float, spread: float = 0.35) -> float:
        """A log-normal latency around *median* (Box-Muller on two draws)."""
        u1, u2 = self._random(), self._random()
        z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)
        return round(median * math.exp(spread * z), 6)


def _arrivals(draw: _Draw, rate: float, duration: float = DURATION) -> list[float]:
    times: list[float] = []
    now = draw.gap(rate)
    while now < duration:
        times.append(round(now, 6))
        now += draw.gap(rate)
    return times


def _ok(time: float, draw: _Draw, median: float = HEALTHY_LATENCY) -> TraceRow:
    return TraceRow(time=time, latency=draw.latency(median))


def _outage(seed: int, rate: float) -> Trace:
    draw = _Draw(seed)
    rows = []
    for t in _arrivals(draw, rate):
        if 60.0 <= t < 150.0:
            rows.append(TraceRow(time=t, latency=draw.latency(0.005), outcome="error"))
        elif draw.uniform() < 0.005:
            rows.append(TraceRow(time=t, latency=draw.latency(HEALTHY_LATENCY), outcome="error"))
        else:
            rows.append(_ok(t, draw))
    return Trace(
        tuple(rows),
        name="outage",
        description="healthy; from 60 s every request fails fast for 90 s; healthy again",
        phases=((0.0, "healthy"), (60.0, "outage"), (150.0, "recovered")),
    )


def _brownout(seed: int, rate: float) -> Trace:
    draw = _Draw(seed)
    rows = []
    for t in _arrivals(draw, rate):
        if t < 60.0 or t >= 240.0:
            rows.append(_ok(t, draw))
            continue
        # Severity rises from 0 to 1 over 60-180 s, then falls back to 0 by 240 s.
        severity = (t - 60.0) / 120.0 if t < 180.0 else (240.0 - t) / 60.0
        median = HEALTHY_LATENCY * math.exp(severity * math.log(3.0 / HEALTHY_LATENCY))
        if draw.uniform() < 0.4 * severity:
            rows.append(TraceRow(time=t, latency=HANG, outcome="timeout"))
        else:
            rows.append(_ok(t, draw, median))
    return Trace(
        tuple(rows),
        name="brownout",
        description="latency creeps up to ~3 s and requests start hanging, then it recovers",
        phases=((0.0, "healthy"), (60.0, "degrading"), (180.0, "recovering"), (240.0, "healthy")),
    )


QUOTA = 15  # requests a second, during the rate-limited phase


def _rate_limited(seed: int, rate: float) -> Trace:
    draw = _Draw(seed)
    rows = []
    second, used = -1, 0
    for t in _arrivals(draw, rate):
        if not 60.0 <= t < 240.0:
            rows.append(_ok(t, draw))
            continue
        if int(t) != second:
            second, used = int(t), 0
        used += 1
        if used <= QUOTA:
            rows.append(_ok(t, draw))
        else:
            wait = max(1, math.ceil(second + 1 - t))
            rows.append(
                TraceRow(
                    time=t,
                    latency=draw.latency(0.010),
                    outcome="429",
                    status=429,
                    retry_after=float(wait),
                    headers={"retry-after": str(wait)},
                )
            )
    return Trace(
        tuple(rows),
        name="rate-limited",
        description=f"a quota of {QUOTA}/s from 60 s to 240 s: the excess gets 429 + Retry-After",
        phases=((0.0, "healthy"), (60.0, f"quota {QUOTA}/s"), (240.0, "healthy")),
    )


def _flapping(seed: int, rate: float) -> Trace:
    draw = _Draw(seed)
    rows = []
    for t in _arrivals(draw, rate):
        failing = t % 30.0 >= 20.0
        if failing and draw.uniform() < 0.7:
            rows.append(TraceRow(time=t, latency=draw.latency(0.020), outcome="503", status=503))
        else:
            rows.append(_ok(t, draw))
    phases = tuple(
        (float(start + offset), label)
        for start in range(0, int(DURATION), 30)
        for offset, label in ((0, "healthy"), (20, "failing"))
    )
    return Trace(
        tuple(rows),
        name="flapping",
        description="the dependency fails 70% of requests (503) for 10 s out of every 30 s",
        phases=phases,
    )


@dataclass(frozen=True, slots=True)
class Scenario:
    """A bundled scenario: its name, what happens, and its generator."""

    name: str
    description: str
    build: Callable[[int, float], Trace]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("outage", "healthy, a 90 s full outage from 60 s, recovery", _outage),
        Scenario("brownout", "latency creeps up to ~3 s with hangs, then recovers", _brownout),
        Scenario(
            "rate-limited", f"a {QUOTA}/s quota answered with 429 + Retry-After", _rate_limited
        ),
        Scenario("flapping", "70% of requests fail for 10 s out of every 30 s", _flapping),
    )
}


def scenario(name: str, *, seed: int = 0, rate: float = DEFAULT_RATE) -> Trace:
    """The trace of the bundled scenario *name* (``"outage"``, ``"brownout"``,
    ``"rate-limited"`` or ``"flapping"``), generated from *seed* at *rate* requests a
    second (five minutes of traffic)."""
    found = SCENARIOS.get(name)
    if found is None:
        raise ConfigError("scenario", name, f"one of {', '.join(SCENARIOS)}")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 10_000:
        raise ConfigError("rate", rate, "requests per second, > 0 and <= 10000")
    return found.build(seed, float(rate))
