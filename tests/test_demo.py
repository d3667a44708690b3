"""`resilient demo`: the core sections on simulated time and the end-to-end tour."""

from __future__ import annotations

import re

from resilient._demo import run_demo


def collect(**kwargs: object) -> str:
    lines: list[str] = []
    assert run_demo(lines.append, **kwargs) == 0  # type: ignore[arg-type]
    return "\n".join(lines)


def test_core_sections_tell_the_same_story_every_run():
    first = collect(tour=False)
    assert first == collect(tour=False)  # seeded failures, seeded jitter, fake clocks
    assert "fallback (ServiceUnavailableError)" in first
    # The breaker opens during the outage, probes, re-opens, and finally closes.
    breaker = first.split("Circuit breaker on simulated time")[1].split("Rate limiter")[0]
    states = re.findall(r"\| (closed|open|half_open)\s+\|", breaker)
    assert states[0] == "closed"
    assert "open" in states
    assert "half_open" in states
    assert states[-1] == "closed"
    assert "rejected, retry after" in breaker
    limiter = first.split("Rate limiter on simulated time")[1]
    assert limiter.count("rejected, retry after 0.20s") == 3
    assert "allowed at t=0.60s" in limiter


def test_tour_over_loopback_in_memory():
    out = collect()
    assert "End-to-end over loopback HTTP (state in memory)" in out
    assert "closed -> open" in out  # the outage opened the breaker
    assert "half_open -> closed" in out  # and the recovery closed it
    assert re.search(r"12 x 200 in \d+ms", out)  # the client's limiter paced its burst
    assert re.search(r"\d+ x 429", out)  # the plain client met the server's limit
    assert 'RateLimit: "upstream-burst"' in out
    assert "requests reached the upstream app" in out


def test_tour_with_state_in_redis(redis_url):
    out = collect(redis_url=redis_url)
    assert f"the upstream's limit in Redis at {redis_url}" in out
    assert re.search(r"\d+ x 429", out)
