"""Warnings about policies that are valid but likely wrong, and what a policy can cost.

The warnings look across sections and routes (a single constructor cannot see
them): a retry without jitter, a retry with neither a breaker inside it nor a
budget, an attempt timeout not shorter than the total, a breaker's time window
shorter than the timeout of the calls it judges, a slow-call threshold no call
can reach, retries on non-idempotent routes, and so on.

The estimate bounds what one call through a policy can cost: its worst-case
latency (timeouts, tries, backoff delays, queueing) and its load amplification
(calls reaching the dependency per call made).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from .._backoff import Backoff
from ._schema import ConfigDocument, PolicySettings, RetryBudgetSettings, RetrySettings
from ._validate import Locator

__all__ = ["Estimate", "LintWarning", "estimate", "lint"]

_NON_IDEMPOTENT = {"POST", "PATCH", "CONNECT"}
_Warn: TypeAlias = Callable[[str, tuple[str, ...], str], None]


@dataclass(frozen=True, slots=True)
class LintWarning:
    """A policy that is valid but probably not what was meant.

    Attributes:
        code: a stable identifier, such as ``"retry-without-jitter"``.
        message: what is wrong and what to do about it.
        path: the dotted path it is about.
        file: the policy file, if any.
        line: the line in that file, when known.
    """

    code: str
    message: str
    path: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        return f"{where}{self.path}: warning: {self.message} [{self.code}]"


@dataclass(frozen=True, slots=True)
class Estimate:
    """What one call through a policy can cost, at worst.

    Attributes:
        latency: seconds a call can take, tries, backoff and queueing included
            (``math.inf`` when nothing bounds it). Server hints are not counted.
        latency_with_hints: the same when every retry waits the longest server hint
            (``Retry-After``) the retry accepts (``max_retry_after``).
        amplification: calls reaching the dependency per call made, at worst.
        budgeted_amplification: the same over time when the retry has a budget
            (``1 + ratio``, plus the budget's minimum rate), else ``None``.
    """

    latency: float
    latency_with_hints: float
    amplification: float
    budgeted_amplification: float | None = None

    def __str__(self) -> str:
        text = f"worst-case latency {_seconds(self.latency)}"
        if self.latency_with_hints != self.latency:
            text += f" ({_seconds(self.latency_with_hints)} with Retry-After hints)"
        text += f", load amplification x{self.amplification:g}"
        if self.budgeted_amplification is not None:
            text += f" (x{self.budgeted_amplification:g} over time, with the budget)"
        return text


def _seconds(value: float) -> str:
    if math.isinf(value):
        return "unbounded"
    if value < 1:
        return f"{value * 1000:.4g}ms"
    if value < 120:
        return f"{value:.4g}s"
    return f"{value / 60:.4g}min"


def _delays(retry: RetrySettings) -> tuple[float, float]:
    """The longest total sleep of a retry: by its backoff, and when every retry waits the
    longest server hint instead (a hint replaces the computed delay)."""
    b = retry.backoff
    backoff = Backoff(
        initial=b.initial,
        maximum=b.maximum,
        multiplier=b.multiplier,
        jitter=b.jitter,
        increment=b.increment,
    )
    plain = hinted = 0.0
    last = -1.0
    for n in range(1, retry.attempts):
        if b.jitter == "decorrelated":
            delay = min(b.maximum, b.initial * 3.0 ** min(n, 1000))
        else:
            delay = backoff.base(n)
        if delay == last:  # the delays stay the same from here on
            left = retry.attempts - n
            return plain + left * delay, hinted + left * max(delay, retry.max_retry_after)
        plain += delay
        hinted += max(delay, retry.max_retry_after)
        last = delay
    return plain, hinted


def estimate(
    policy: PolicySettings, budgets: Mapping[str, RetryBudgetSettings] | None = None
) -> Estimate:
    """Bound the latency and load amplification of one call through *policy* (*budgets*:
    the file's shared budgets, which a retry may name)."""
    latency = hinted = math.inf
    amplification = 1.0
    budgeted: float | None = None
    # Innermost first: each step bounds or multiplies what the steps inside it cost.
    # Timeouts are taken to interrupt the call (async, or I/O clamped by an adapter).
    for step in reversed(policy.steps()):
        if step in ("timeout", "attempt_timeout"):
            assert policy.timeout is not None
            bound = policy.timeout.total if step == "timeout" else policy.timeout.attempt
            assert bound is not None
            latency, hinted = min(latency, bound), min(hinted, bound)
        elif step == "retry":
            retry = policy.retry
            assert retry is not None
            sleep, sleep_hinted = _delays(retry)
            one, one_hinted = latency, hinted
            latency = retry.attempts * one + sleep
            hinted = retry.attempts * one_hinted + sleep_hinted
            if retry.deadline is not None:
                # No sleep runs past the deadline, but a try started before it may.
                latency = min(latency, retry.deadline + one)
                hinted = min(hinted, retry.deadline + one_hinted)
            amplification *= retry.attempts
            budget = retry.budget
            if isinstance(budget, str):
                budget = (budgets or {}).get(budget)
            if budget is not None:
                budgeted = 1 + budget.ratio
        elif step in ("bulkhead", "adaptive_concurrency"):
            slots = policy.bulkhead if step == "bulkhead" else policy.adaptive_concurrency
            assert slots is not None
            if slots.max_queued:
                wait = math.inf if slots.max_wait is None else slots.max_wait
                latency, hinted = latency + wait, hinted + wait
        elif step == "rate_limit":
            assert policy.rate_limit is not None
            latency += policy.rate_limit.max_wait
            hinted += policy.rate_limit.max_wait
    return Estimate(latency, hinted, amplification, budgeted)


def lint(document: ConfigDocument, locator: Locator) -> list[LintWarning]:
    """The warnings for *document*, in file order."""
    found: list[LintWarning] = []

    def warn(code: str, path: tuple[str, ...], message: str) -> None:
        at = locator.written_at(path)
        line = locator.lines.find(at) if at != path else locator.lines.find(path)
        found.append(LintWarning(code, message, ".".join(path), locator.file, line))

    for name, policy in document.policies.items():
        _lint_policy(name, policy, warn)
    _lint_routes(document, warn)
    used_bases = _used_bases(document)
    for base in document.bases:
        if base not in used_bases:
            warn("unused-base", ("bases", base), "no policy extends this base")
    used_backends = {
        p.rate_limit.backend for p in document.policies.values() if p.rate_limit is not None
    }
    used_backends.update(
        p.circuit_breaker.backend
        for p in document.policies.values()
        if p.circuit_breaker is not None
    )
    used_backends.update(budget.backend for budget in document.budgets.values())
    used_budgets = set()
    for p in document.policies.values():
        budget = p.retry.budget if p.retry is not None else None
        if isinstance(budget, str):
            used_budgets.add(budget)
        elif budget is not None:
            used_backends.add(budget.backend)
    for budget_name in document.budgets:
        if budget_name not in used_budgets:
            warn("unused-budget", ("budgets", budget_name), "no retry names this budget")
    for backend in document.backends:
        if backend not in used_backends:
            warn("unused-backend", ("backends", backend), "no policy uses this backend")
    found.sort(key=lambda w: (w.line is None, w.line or 0))
    return found


def _lint_policy(name: str, policy: PolicySettings, warn: _Warn) -> None:
    at = ("policies", name)
    steps = policy.steps()
    retry, timeout, breaker = policy.retry, policy.timeout, policy.circuit_breaker
    if retry is not None and retry.attempts > 1:
        if retry.backoff.jitter == "none":
            warn(
                "retry-without-jitter",
                (*at, "retry", "backoff", "jitter"),
                "retries without jitter: clients that failed together retry together; "
                "use jitter: full",
            )
        breaker_inside = breaker is not None and steps.index("circuit_breaker") > steps.index(
            "retry"
        )
        if retry.budget is None and not breaker_inside:
            warn(
                "retry-without-budget",
                (*at, "retry"),
                f"retries with neither a circuit breaker inside them nor a budget: in an "
                f"outage every call becomes {retry.attempts} calls; add a circuit_breaker "
                f"(inside the retry) or a retry budget",
            )
        if breaker is not None and not breaker_inside:
            warn(
                "breaker-outside-retry",
                (*at, "order"),
                "the circuit breaker wraps the retry: it counts a whole retried call as one "
                "outcome and cannot stop the retries; put it inside (after retry in order)",
            )
    total = timeout.total if timeout is not None else None
    attempt = timeout.attempt if timeout is not None else None
    if total is not None and attempt is not None and attempt >= total:
        warn(
            "attempt-timeout-not-shorter",
            (*at, "timeout", "attempt"),
            f"the attempt timeout ({_seconds(attempt)}) is not shorter than the "
            f"total timeout ({_seconds(total)}): a retry can never start",
        )
    if breaker is not None and timeout is not None:
        bound = timeout.attempt if timeout.attempt is not None else timeout.total
        assert bound is not None
        window = breaker.window
        if window.seconds is not None and window.seconds < bound:
            warn(
                "window-shorter-than-timeout",
                (*at, "circuit_breaker", "window"),
                f"the breaker's window ({_seconds(window.seconds)}) is shorter than the "
                f"timeout of its calls ({_seconds(bound)}): slow calls end after the window "
                f"has moved on; use a window several times the timeout",
            )
        if breaker.slow_call_duration >= bound and breaker.slow_call_rate < 1:
            warn(
                "slow-call-unreachable",
                (*at, "circuit_breaker", "slow_call_duration"),
                f"slow_call_duration ({_seconds(breaker.slow_call_duration)}) is not shorter "
                f"than the timeout ({_seconds(bound)}): calls time out before they count as slow",
            )
    deadline = retry.deadline if retry is not None else None
    if deadline is not None and total is not None and deadline > total:
        warn(
            "deadline-exceeds-timeout",
            (*at, "retry", "deadline"),
            f"the retry deadline ({_seconds(deadline)}) is longer than the total "
            f"timeout ({_seconds(total)}), which ends the call first",
        )


def _lint_routes(document: ConfigDocument, warn: _Warn) -> None:
    for index, route in enumerate(document.routes.httpx):
        policy = document.policies.get(route.policy)
        if policy is None or policy.retry is None or policy.retry.attempts < 2:
            continue
        unsafe = sorted(_NON_IDEMPOTENT.intersection(route.methods))
        if unsafe:
            warn(
                "retry-non-idempotent",
                ("routes", "httpx", str(index), "methods"),
                f"policy {route.policy!r} retries, and {', '.join(unsafe)} requests are not "
                f"idempotent: a retry may repeat a side effect. The httpx adapter retries them "
                f"only on errors raised before sending, unless told otherwise; make sure the "
                f"server de-duplicates (Idempotency-Key)",
            )
    for index, asgi_route in enumerate(document.routes.asgi):
        policy = document.policies.get(asgi_route.policy)
        if policy is not None and policy.retry is not None:
            warn(
                "asgi-retry-ignored",
                ("routes", "asgi", str(index), "policy"),
                f"policy {asgi_route.policy!r} has a retry, but the ASGI middleware never "
                f"retries a request",
            )


def _used_bases(document: ConfigDocument) -> set[str]:
    # A base is used when a policy extends it, directly or through other bases.
    used: set[str] = set()
    todo = [name for p in document.policies.values() for name in (p.extends or ())]
    while todo:
        name = todo.pop()
        if name in used or name not in document.bases:
            continue
        used.add(name)
        parents = document.bases[name].get("extends")
        todo.extend([parents] if isinstance(parents, str) else parents or [])
    return used
