"""Simulation: replay an outage through two policies and compare what they do to the dependency."""

from __future__ import annotations

import tempfile
from pathlib import Path

# --8<-- [start:file]
from resilient.simulate import render_text, scenario, simulate_file, write_chart

POLICIES = """
policies:
  naive:
    retry: {attempts: 4, backoff: {initial: 100ms, maximum: 1s}}
  guarded:
    timeout: {total: 5s, attempt: 1s}
    retry:
      attempts: 3
      backoff: {initial: 100ms, maximum: 1s}
      budget: {ratio: 0.2, min_per_second: 2}
    circuit_breaker: {window: 10s, minimum_calls: 20, open_for: 10s, half_open_calls: 3}
"""

outage = scenario("outage", seed=7)  # 5 minutes at 20 requests/s; down from 60 s to 150 s
naive = simulate_file(POLICIES, "naive", outage)
guarded = simulate_file(POLICIES, "guarded", outage)

print(f"naive:   x{naive.amplification:.2f} the load on the dependency")
print(f"guarded: x{guarded.amplification:.2f}, breaker {guarded.state_sequence()[:4]}...")
print(render_text(guarded))
# --8<-- [end:file]

assert naive.amplification > 1.8  # every failed call tried four times
assert guarded.amplification < 1.0  # the breaker kept most calls off the dead dependency
assert guarded.state_sequence()[:3] == ["closed", "open", "half_open"]
assert guarded.state_sequence()[-1] == "closed"

# --8<-- [start:custom]
import resilient as rs
from resilient.simulate import load_trace, simulate

trace = load_trace(
    [  # or load_trace("incident.csv"), with the columns time,latency,outcome,headers
        {"time": 0.0, "latency": 0.05, "outcome": "ok"},
        {"time": 0.5, "latency": 0.01, "outcome": 503, "headers": {"Retry-After": "2"}},
        {"time": 1.0, "latency": 30.0, "outcome": "timeout"},
        {"time": 2.0, "latency": 0.05, "outcome": "ok"},
    ]
)


def build(clock, listeners):
    # Every policy takes the simulation's clock; the listeners record what happens.
    return rs.Pipeline(
        rs.Retry(attempts=2, backoff=rs.Backoff.constant(0.5), clock=clock, listeners=listeners),
        rs.Timeout(1.0, clock=clock, listeners=listeners),  # each attempt
    )


result = simulate(trace, build)
for request in result.requests:
    print(
        f"{request.arrival}: {request.outcome} after {request.latency:.2f}s, "
        f"{request.attempts} attempt(s)"
    )
# 0.0: ok after 0.05s, 1 attempt(s)
# 0.5: ok after 2.06s, 2 attempt(s)   the 503 asked for 2 s; at 2.51 the 2.0 row answers
# 1.0: ok after 1.55s, 2 attempt(s)   no answer: cut at 1 s, retried 0.5 s later
# 2.0: ok after 0.05s, 1 attempt(s)
# --8<-- [end:custom]

assert [(r.outcome, round(r.latency, 2), r.attempts) for r in result.requests] == [
    ("ok", 0.05, 1),
    ("ok", 2.06, 2),
    ("ok", 1.55, 2),
    ("ok", 0.05, 1),
]
with tempfile.TemporaryDirectory() as tmp:
    chart = write_chart(guarded, Path(tmp) / "outage.svg")
    assert chart.stat().st_size > 1000
