"""The simulation: replay a trace through a policy in virtual time.

Each row of the trace starts a task at its arrival time that awaits
``policy.acall(dependency)``. The simulated dependency waits (in virtual time)
for the latency of the row it answers with, then returns or raises what the row
says. Everything the policy does — retries and their backoff, timeouts, breaker
transitions, limiter and bulkhead waits — happens on the virtual loop, so an
hour of traffic replays in seconds, the same way every run. With a ``capacity``
the dependency also refuses attempts beyond the requests it is working on.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import math
import os
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._budget import RetryBudget
from .._circuit_breaker import CircuitBreaker
from .._clock import Clock
from .._errors import ConfigError, RejectedError, TimeoutExceededError
from .._fallback import Fallback
from .._pipeline import Pipeline, Policy, PolicyBase
from .._retry import TESTING, Retry
from ..observability._emit import Listener
from ..observability._events import (
    CallRejected,
    CircuitStateChanged,
    Event,
    RetryScheduled,
    TimeoutExceeded,
)
from ._loop import VirtualClock, new_loop
from ._trace import Trace, TraceRow

if TYPE_CHECKING:
    from ._report import Bucket, Summary

__all__ = [
    "AttemptRecord",
    "DependencyError",
    "DependencyStatusError",
    "DependencyTimeoutError",
    "Rejection",
    "RequestRecord",
    "SimulatedError",
    "SimulationResult",
    "StateChange",
    "simulate",
    "simulate_file",
]

PolicyFactory = Callable[[Clock, Sequence[Listener]], Policy]
"""Builds the policy to simulate from the simulation's clock and listeners."""


# -- what the simulated dependency raises ---------------------------------------------------


class SimulatedError(Exception):
    """A failure of the simulated dependency (the base of the classes below).

    Attributes:
        outcome: the trace's outcome (``"error"``, ``"timeout"``, ``"503"``...).
        status: the HTTP status, or ``None``.
        retry_after: the row's ``Retry-After`` in seconds, or ``None``; read by
            ``Retry`` (and by breakers with ``open_on_retry_after``) as a server hint.
    """

    def __init__(
        self, message: str, *, outcome: str, status: int | None, retry_after: float | None
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.retry_after = retry_after


class DependencyError(SimulatedError, ConnectionError):
    """Outcome ``error``: a failed exchange (a ``ConnectionError``, so retried by default)."""


class DependencyTimeoutError(SimulatedError, TimeoutError):
    """Outcome ``timeout``: no answer, the caller's connection gave up (a ``TimeoutError``)."""


class DependencyStatusError(SimulatedError, ConnectionError):
    """Outcome ``429`` or ``5xx``: the dependency answered with a failure status."""


_BASES: dict[str, type[SimulatedError]] = {
    "error": DependencyError,
    "timeout": DependencyTimeoutError,
    "status": DependencyStatusError,
}


# -- what the simulation records --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as its caller saw it.

    ``outcome`` is ``"ok"`` (the dependency's answer), ``"fallback"`` (a substitute),
    ``"failed"`` (the dependency's failure reached the caller; ``detail`` is its
    outcome, e.g. ``"error"`` or ``"503"``), ``"timed_out"`` (a ``Timeout`` of the
    policy; ``detail`` names it) or ``"rejected"`` (``detail`` is the reason, e.g.
    ``"circuit_open"``).
    """

    index: int
    arrival: float
    end: float
    outcome: str
    detail: str
    attempts: int

    @property
    def latency(self) -> float:
        return self.end - self.arrival


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt that reached the dependency: the request it served, the trace row
    that answered it (its own for a first attempt), and the outcome: the row's, or
    ``"cancelled"`` when a timeout of the policy gave up on it first."""

    request: int
    row: int
    start: float
    end: float
    outcome: str


@dataclass(frozen=True, slots=True)
class StateChange:
    """A circuit breaker's transition (from its ``CircuitStateChanged`` event)."""

    at: float
    breaker: str
    old: str
    new: str
    why: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """A policy refused a call or an attempt (a ``CallRejected`` event)."""

    at: float
    policy: str
    reason: str


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Everything a simulation recorded. :meth:`summary` and :meth:`timeline` digest it.

    Attributes:
        trace: the trace that was replayed.
        policy: the name of the simulated policy.
        seed: the seed of the policies' jitter.
        requests: one record per trace row, in trace order.
        attempts: every attempt that reached the dependency, in the order they ended.
        state_changes: every breaker transition, in order.
        breakers: ``(name, initial state)`` of each breaker in the pipeline.
        rejections: every refusal by a policy (calls and attempts).
        retries: the time of every retry scheduled.
        timeouts: ``(time, policy)`` of every timeout that fired.
        end: the virtual time when the last request ended.
        notes: remarks about the run (exception classes adopted...).
    """

    trace: Trace
    policy: str
    seed: int
    requests: tuple[RequestRecord, ...]
    attempts: tuple[AttemptRecord, ...]
    state_changes: tuple[StateChange, ...]
    breakers: tuple[tuple[str, str], ...]
    rejections: tuple[Rejection, ...]
    retries: tuple[float, ...]
    timeouts: tuple[tuple[float, str], ...]
    end: float
    peak_in_flight: int
    notes: tuple[str, ...] = ()

    @property
    def span(self) -> float:
        """The simulated time covered: the last arrival or the last end, whichever is later."""
        return max(self.end, self.trace.duration)

    @property
    def amplification(self) -> float:
        """Attempts that reached the dependency per request (1.0: no extra load)."""
        return len(self.attempts) / len(self.requests) if self.requests else 0.0

    def state_sequence(self, breaker: str | None = None) -> list[str]:
        """The states a breaker went through, its initial state first
        (``["closed", "open", "half_open", "closed"]``). ``None``: the first breaker."""
        if not self.breakers:
            return []
        name, initial = self.breakers[0] if breaker is None else self._breaker(breaker)
        return [initial] + [c.new for c in self.state_changes if c.breaker == name]

    def _breaker(self, name: str) -> tuple[str, str]:
        for item in self.breakers:
            if item[0] == name:
                return item
        raise KeyError(name)

    def summary(self) -> Summary:
        """The totals (a :class:`~resilient.simulate.Summary`)."""
        from ._report import summarize

        return summarize(self)

    def timeline(self, bucket: float | None = None) -> list[Bucket]:
        """Per-bucket counts (a list of :class:`~resilient.simulate.Bucket`); *bucket* in
        seconds, ``None``: about 60 buckets of a round width."""
        from ._report import timeline

        return timeline(self, bucket)


# -- the run ----------------------------------------------------------------------------------


class _Recorder:
    """Collects the events the simulation reports; replaces the built-in logging."""

    call_events = False
    logs_events = True

    def __init__(self) -> None:
        self.state_changes: list[StateChange] = []
        self.rejections: list[Rejection] = []
        self.retries: list[float] = []
        self.timeouts: list[tuple[float, str]] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            self.state_changes.append(
                StateChange(event.at, event.policy, _state(event.old), _state(event.new), event.why)
            )
        elif isinstance(event, CallRejected):
            reason = event.reason
            if event.attributes.get("observe_only"):
                reason += " (observe only)"
            self.rejections.append(Rejection(event.at, event.policy, reason))
        elif isinstance(event, RetryScheduled):
            self.retries.append(event.at)
        elif isinstance(event, TimeoutExceeded):
            self.timeouts.append((event.at, event.policy))


def _state(value: object) -> str:
    inner = getattr(value, "value", value)
    return str(inner).lower()


def _flatten(policy: Policy) -> list[Policy]:
    if isinstance(policy, Pipeline):
        out: list[Policy] = []
        for inner in policy.policies:
            out.extend(_flatten(inner))
        return out
    return [policy]


def _check(policies: list[Policy], clock: VirtualClock) -> None:
    """Refuse policies the simulation cannot drive: on another clock, or keeping their
    state in a shared store (Redis reads its own time, and would be changed for real)."""
    from ..backends.memory import MemoryStore

    for policy in policies:
        if isinstance(policy, Fallback):
            continue  # the only policy that never reads the time
        if isinstance(policy, PolicyBase) and policy.clock is not clock:
            raise ConfigError(
                f"policy {policy.name!r}",
                policy,
                "every policy built with the simulation's clock (clock=clock)",
            )
        store = getattr(policy, "store", None)
        config = getattr(policy, "config", None)
        budget = getattr(config, "budget", None)
        if (store is not None and not isinstance(store, MemoryStore)) or (
            budget is not None and type(budget) is not RetryBudget
        ):
            raise ConfigError(
                f"policy {getattr(policy, 'name', policy)!r}",
                store if store is not None else budget,
                "state kept in memory: a simulation cannot use a shared store "
                "(simulate a copy of the policy without its backend)",
            )


def _seed(policies: list[Policy], seed: int) -> None:
    """Give every random draw of the policies (jitter, shedding) one seeded source."""
    draw = random.Random(seed).random
    for policy in policies:
        config = getattr(policy, "config", None)
        if dataclasses.is_dataclass(config) and not isinstance(config, type):
            names = {f.name for f in dataclasses.fields(config) if f.init}
            if "rng" in names:
                policy.config = dataclasses.replace(config, rng=draw)  # type: ignore[attr-defined]


def _spec_classes(spec: object) -> tuple[type[BaseException], ...] | None:
    """The exception classes of a retry_on/record spec, or None for a predicate."""
    if isinstance(spec, tuple):
        return tuple(c for c in spec if isinstance(c, type) and issubclass(c, BaseException))
    resolve = getattr(spec, "resolve", None)  # classes named in a policy file
    if callable(resolve):
        found = resolve()
        if isinstance(found, tuple):
            return found
    return None


def _adopt(policies: list[Policy]) -> tuple[dict[str, type[SimulatedError]], list[str]]:
    """The failure classes to raise: the default ones, made to also be the classes a
    retry retries (``retry_on``) or a breaker records (``record``), when those do not
    match them already, so a policy written for httpx or gRPC errors treats simulated
    failures as it would treat real ones."""
    wanted: list[type[BaseException]] = []
    for policy in policies:
        if isinstance(policy, Retry):
            classes = _spec_classes(policy.config.retry_on)
        elif isinstance(policy, CircuitBreaker):
            classes = _spec_classes(policy.config.record)
        else:
            continue
        if classes and not any(issubclass(base, classes) for base in _BASES.values()):
            wanted.extend(c for c in classes if issubclass(c, Exception) and c not in wanted)
    if not wanted:
        return dict(_BASES), []
    adopted: dict[str, type[SimulatedError]] = {}
    notes: list[str] = []
    used: list[str] = []
    for key, base in _BASES.items():
        bases: tuple[type[BaseException], ...] = (base,)
        for extra in wanted:
            if issubclass(base, extra):
                continue
            try:
                type("_Probe", (*bases, extra), {})
            except TypeError:
                continue
            bases = (*bases, extra)
            name = f"{extra.__module__}.{extra.__qualname__}"
            if name not in used:
                used.append(name)
        adopted[key] = base if len(bases) == 1 else type(base.__name__, bases, {})
    if used:
        notes.append("simulated failures are also " + ", ".join(used) + " (as the policy expects)")
    return adopted, notes


class _Run:
    def __init__(
        self, trace: Trace, policy: Policy, clock: VirtualClock, capacity: int | None
    ) -> None:
        self.trace = trace
        self.policy = policy
        self.clock = clock
        self.times = [row.time for row in trace.rows]
        self.requests: list[RequestRecord | None] = [None] * len(trace.rows)
        self.attempts: list[AttemptRecord] = []
        self.capacity = capacity
        self.busy = 0  # requests the dependency is working on
        self.peak = 0
        self.classes: dict[str, type[SimulatedError]] = dict(_BASES)

    def release(self) -> None:
        self.busy -= 1

    def row_at(self, now: float) -> int:
        return max(bisect.bisect_right(self.times, now) - 1, 0)

    def failure(self, row: TraceRow) -> SimulatedError:
        outcome = row.outcome
        kind = outcome if outcome in ("error", "timeout") else "status"
        message = {
            "error": "the dependency failed",
            "timeout": f"no answer from the dependency after {row.latency:g}s",
        }.get(outcome, f"the dependency answered HTTP {outcome}")
        return self.classes[kind](
            message, outcome=outcome, status=row.status, retry_after=row.retry_after
        )

    async def request(self, index: int) -> None:
        clock = self.clock
        rows = self.trace.rows
        arrival = clock.now
        count = 0

        async def dependency() -> object:
            nonlocal count
            answer = index if count == 0 else self.row_at(clock.now)
            row = rows[answer]
            count += 1
            start = clock.now
            if self.capacity is not None and self.busy >= self.capacity:
                self.attempts.append(AttemptRecord(index, answer, start, start, "overloaded"))
                raise self.classes["status"](
                    f"the dependency is at its capacity ({self.capacity} calls in progress)",
                    outcome="overloaded",
                    status=503,
                    retry_after=None,
                )
            # The dependency works on the request for its whole latency, even when the
            # caller gives up on it sooner: abandoned work still takes its capacity.
            self.busy += 1
            self.peak = max(self.peak, self.busy)
            asyncio.get_running_loop().call_later(row.latency, self.release)
            outcome = "cancelled"
            try:
                await asyncio.sleep(row.latency)
                outcome = row.outcome
            finally:
                self.attempts.append(AttemptRecord(index, answer, start, clock.now, outcome))
            if row.failed:
                raise self.failure(row)
            return _ANSWER

        outcome, detail = "ok", ""
        try:
            result = await self.policy.acall(dependency)
        except ConfigError:
            raise  # a broken policy (an exception class that cannot be imported): stop
        except RejectedError as exc:
            outcome, detail = "rejected", exc.reason
        except TimeoutExceededError as exc:
            outcome, detail = "timed_out", exc.policy
        except SimulatedError as exc:
            outcome, detail = "failed", exc.outcome
        except Exception as exc:  # anything else a policy raised
            outcome, detail = "failed", type(exc).__name__
        else:
            if result is not _ANSWER:
                outcome = "fallback"
        self.requests[index] = RequestRecord(index, arrival, clock.now, outcome, detail, count)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        tasks = []
        for index, row in enumerate(self.trace.rows):
            if row.time > self.clock.now:
                arrived = loop.create_future()
                loop.call_at(row.time, arrived.set_result, None)
                await arrived
            tasks.append(loop.create_task(self.request(index)))
        await asyncio.gather(*tasks)


_ANSWER = object()  # what the simulated dependency returns on success


def simulate(
    trace: Trace,
    policy: PolicyFactory,
    *,
    name: str | None = None,
    seed: int = 0,
    capacity: int | None = None,
) -> SimulationResult:
    """Replay *trace* through the policy *policy* builds, in virtual time.

    Args:
        trace: the requests and the dependency's answers (:func:`load_trace`,
            :func:`scenario`).
        policy: a callable ``(clock, listeners) -> policy`` that builds the policy (a
            :class:`~resilient.Pipeline` or any single policy) with the simulation's
            clock and listeners, e.g. ``lambda clock, listeners: Pipeline(
            Retry(clock=clock, listeners=listeners), ...)``. Every policy inside must
            use that clock.
        name: the name reported for the policy (default: its ``name``).
        seed: seeds every random draw of the policies (backoff jitter, shedding), so a
            run is reproducible: the same trace, policy and seed give the same result.
        capacity: the most requests the dependency works on at once; an attempt beyond
            it is refused at once (``overloaded``, a 503). Work that a timeout abandoned
            still takes its place until its latency has passed. ``None``: no limit (the
            dependency answers as the trace says, however many calls it gets).

    Returns:
        A :class:`SimulationResult`.
    """
    if not isinstance(trace, Trace):
        raise ConfigError("trace", trace, "a Trace (load_trace() or scenario())")
    clock = VirtualClock()
    recorder = _Recorder()
    built = policy(clock, [recorder])
    if not isinstance(built, Policy):
        raise ConfigError("policy", built, "the factory to return a policy")
    return _execute(trace, built, clock, recorder, name=name, seed=seed, capacity=capacity)


def _run_loop(run: _Run, clock: VirtualClock) -> None:
    """Run the simulation on its own virtual loop (in a thread if this one runs a loop)."""

    def go() -> None:
        with asyncio.Runner(loop_factory=lambda: new_loop(clock)) as runner:
            runner.run(run.main())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        go()
        return
    failure: list[BaseException] = []

    def worker() -> None:
        try:
            go()
        except BaseException as exc:  # handed back to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=worker, name="resilient-simulate")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _execute(
    trace: Trace,
    policy: Policy,
    clock: VirtualClock,
    recorder: _Recorder,
    *,
    name: str | None,
    seed: int,
    capacity: int | None,
    warnings: tuple[str, ...] = (),
) -> SimulationResult:
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
    ):
        raise ConfigError("capacity", capacity, "an int >= 1, or None for no limit")
    policies = _flatten(policy)
    _check(policies, clock)
    _seed(policies, seed)
    run = _Run(trace, policy, clock, capacity)
    run.classes, notes = _adopt(policies)
    breakers = tuple((p.name, _state(p.state)) for p in policies if isinstance(p, CircuitBreaker))
    if TESTING.enabled:
        notes.append("resilient.testing.set_testing() is on: retries skip their delays")
    _run_loop(run, clock)
    requests = tuple(r for r in run.requests if r is not None)
    return SimulationResult(
        trace=trace,
        policy=name or str(getattr(policy, "name", "policy")),
        seed=seed,
        requests=requests,
        attempts=tuple(run.attempts),
        state_changes=tuple(recorder.state_changes),
        breakers=breakers,
        rejections=tuple(recorder.rejections),
        retries=tuple(recorder.retries),
        timeouts=tuple(recorder.timeouts),
        end=max((r.end for r in requests), default=0.0),
        peak_in_flight=run.peak,
        notes=(*warnings, *notes),
    )


def simulate_file(
    source: str | os.PathLike[str],
    policy: str | None,
    trace: Trace,
    *,
    seed: int = 0,
    capacity: int | None = None,
    format: str | None = None,
    env: dict[str, str] | None = None,
) -> SimulationResult:
    """Replay *trace* through the policy named *policy* in the policy file *source*.

    The file (a path, or the text of one) is loaded with the simulation's clock
    (``load_config(source, format, env=env, clock=...)``); *policy* may be ``None``
    when the file has exactly one policy. *seed* and *capacity* are as for
    :func:`simulate`. The file's lint warnings about the policy become the result's
    first notes. Raises :class:`~resilient.ConfigError` for a bad file or an unknown name.
    """
    from ..config import load_config

    clock = VirtualClock()
    recorder = _Recorder()
    registry = load_config(source, format, env=env, clock=clock, listeners=[recorder])
    names = list(registry)
    where = "the policy file" if isinstance(source, str) and "\n" in source else str(source)
    if policy is None:
        if len(names) != 1:
            raise ConfigError(
                "policy", expected=f"a policy name: {where} has {', '.join(names) or 'none'}"
            )
        policy = names[0]
    if policy not in registry:
        raise ConfigError("policy", policy, f"one of the policies of {where}: {', '.join(names)}")
    prefix = f"policies.{policy}."
    warnings = tuple(
        f"{w.message} [{w.code}]" for w in registry.warnings if w.path.startswith(prefix)
    )
    return _execute(
        trace,
        registry[policy],
        clock,
        recorder,
        name=policy,
        seed=seed,
        capacity=capacity,
        warnings=warnings,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100) of sorted *values*, nearest rank (0 for none)."""
    if not values:
        return 0.0
    rank = max(math.ceil(q / 100.0 * len(values)), 1)
    return values[min(rank, len(values)) - 1]
