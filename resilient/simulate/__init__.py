"""Replay traffic and failures through a policy in virtual time, to tune it before an incident.

::

    from resilient.simulate import scenario, simulate_file, render_text, write_chart

    result = simulate_file("policies.yaml", "payments", scenario("outage"))
    print(render_text(result))
    result.state_sequence()          # ['closed', 'open', 'half_open', ..., 'closed']
    result.summary().amplification   # attempts that reached the dependency per request
    write_chart(result, "outage.svg")

A trace (:func:`load_trace` for a recorded CSV or JSON file, :func:`scenario` for
a bundled one) gives each request's arrival time and the dependency's answer:
latency, outcome (``ok``, ``error``, ``timeout``, ``429``, ``5xx``) and headers
(``Retry-After``). Each request runs ``policy.acall(dependency)`` as a task on an
event loop whose clock is virtual (:class:`VirtualClock`), so retries, timeouts,
breaker transitions, limiter and bulkhead waits happen exactly as they would,
deterministically, in a fraction of the time. The command line is ``resilient
simulate FILE --policy NAME --scenario NAME|--trace FILE [--out chart.svg]``.
"""

from __future__ import annotations

from ._chart import render_svg, write_chart
from ._engine import (
    AttemptRecord,
    DependencyError,
    DependencyStatusError,
    DependencyTimeoutError,
    PolicyFactory,
    Rejection,
    RequestRecord,
    SimulatedError,
    SimulationResult,
    StateChange,
    simulate,
    simulate_file,
)
from ._loop import SimulationStalledError, VirtualClock
from ._report import BreakerSummary, Bucket, Summary, render_text
from ._scenarios import BUNDLED_POLICIES, SCENARIOS, Scenario, scenario
from ._trace import Trace, TraceError, TraceRow, load_trace

__all__ = [
    "AttemptRecord",
    "BreakerSummary",
    "BUNDLED_POLICIES",
    "Bucket",
    "DependencyError",
    "DependencyStatusError",
    "DependencyTimeoutError",
    "load_trace",
    "PolicyFactory",
    "Rejection",
    "render_svg",
    "render_text",
    "RequestRecord",
    "scenario",
    "Scenario",
    "SCENARIOS",
    "simulate",
    "simulate_file",
    "SimulatedError",
    "SimulationResult",
    "SimulationStalledError",
    "StateChange",
    "Summary",
    "Trace",
    "TraceError",
    "TraceRow",
    "VirtualClock",
    "write_chart",
]
