"""``snapshot()``: every policy's state and statistics as plain, versioned JSON data.

The shape is documented in ``docs/dashboard.md`` and versioned by
``"version"`` (:data:`SNAPSHOT_VERSION`): fields may be added within a version,
never renamed or removed. Reading the state never changes it, except that a
breaker whose ``open_for`` has passed reports (and moves to) HALF_OPEN, as its
``state`` property does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .._algorithms import ALGORITHMS, status
from .._errors import ConfigError
from .._pipeline import Pipeline, Policy, PolicyBase

if TYPE_CHECKING:
    from ._live import LiveStats

__all__ = ["SNAPSHOT_FORMAT", "SNAPSHOT_VERSION", "policy_items", "snapshot", "steps_of"]

SNAPSHOT_FORMAT = "resilient.snapshot"
"""The ``"format"`` field of every snapshot."""

SNAPSHOT_VERSION = 1
"""The ``"version"`` field: bumped only when a field is renamed, removed or changes meaning."""

DEFAULT_TOP_KEYS = 5
_SCAN_KEYS = 1000  # most recently used keys looked at per limiter for the busiest ones
_KEY_TEXT = 100

Source = Any
"""A registry, a mapping of names to policies, an iterable of policies, one policy, or a
callable returning one of those."""


def snapshot(
    source: Source,
    *,
    live: LiveStats | None = None,
    top_keys: int = DEFAULT_TOP_KEYS,
    history: bool | int = False,
) -> dict[str, Any]:
    """The state and statistics of every policy of *source*, as JSON-ready data.

    Args:
        source: a :class:`~resilient.Registry`, a mapping of names to policies, an
            iterable of policies (each under its ``name``), one policy, or a
            callable returning one of these (called each time).
        live: a :class:`LiveStats` listening to those policies: adds each
            policy's ``rates`` (events per second); ``None``: ``"rates": null``.
        top_keys: per keyed rate limiter, how many of the busiest keys to list
            (the keys with the fewest units left; 0: none).
        history: with *live*, add each policy's per-second ``history``: ``True``
            for all the seconds kept, or a number of seconds.

    Returns:
        ``{"format": "resilient.snapshot", "version": 1, "time": <unix time>,
        "generated_at": <ISO 8601 UTC>, "source": <file or None>, "policies": [...]}``;
        see the dashboard docs for every field.
    """
    if isinstance(top_keys, bool) or not isinstance(top_keys, int) or top_keys < 0:
        raise ConfigError("top_keys", top_keys, "an int >= 0")
    wall = time.time()
    policies: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for name, policy in policy_items(source):
        count = seen[name] = seen.get(name, 0) + 1
        entry = _policy(name if count == 1 else f"{name}#{count}", policy, top_keys)
        kinds = [step["kind"] for step in entry["steps"]]
        entry["rates"] = live.rates(name, kinds) if live is not None else None
        if live is not None:
            key_rates = live.key_rates(name)
            for key in entry["keys"]:
                key["rejected"] = key_rates.get(key["key"], 0.0)
            if history:
                seconds = None if history is True else int(history)
                entry["history"] = live.history(name, kinds, seconds)
        policies.append(entry)
    found = getattr(source, "source", None)
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "time": round(wall, 3),
        "generated_at": dt.datetime.fromtimestamp(wall, dt.UTC).isoformat(timespec="milliseconds"),
        "source": found if isinstance(found, str) else None,
        "policies": policies,
    }


# -- what a source holds ---------------------------------------------------------------------


def _is_policy(value: object) -> bool:
    """``isinstance(value, Policy)``, without the protocol check's cost for our policies."""
    return isinstance(value, PolicyBase | Policy)  # the cheap check first


def policy_items(source: Source) -> list[tuple[str, Policy]]:
    """``(name, policy)`` for every policy of *source* (see :func:`snapshot`)."""
    if not _is_policy(source) and callable(source):
        source = source()
    if _is_policy(source):
        return [(_name(source), source)]
    if isinstance(source, Mapping):
        items = []
        for name, policy in list(source.items()):
            if not _is_policy(policy):
                raise ConfigError(f"policies[{name!r}]", policy, "a policy")
            items.append((str(name), policy))
        return items
    if isinstance(source, Iterable) and not isinstance(source, str | bytes):
        items = []
        for index, policy in enumerate(source):
            if not _is_policy(policy):
                raise ConfigError(f"policies[{index}]", policy, "a policy")
            items.append((_name(policy), policy))
        return items
    raise ConfigError("source", source, "a Registry, a mapping of names to policies, or policies")


def _name(policy: object) -> str:
    name = getattr(policy, "name", None)
    return name if isinstance(name, str) and name else type(policy).__name__


def steps_of(policy: object) -> Iterator[Any]:
    """The policies inside *policy*, outermost first: pipelines (nested ones too) are
    opened, and a registry's live policy is resolved to its current pipeline."""
    if getattr(policy, "kind", None) == "live":
        registry = getattr(policy, "_registry", None)
        name = getattr(policy, "name", None)
        if isinstance(registry, Mapping) and name in registry:
            policy = registry[name]
    if isinstance(policy, Pipeline):
        for inner in policy.policies:
            yield from steps_of(inner)
        return
    yield policy


# -- one policy ------------------------------------------------------------------------------


def _policy(name: str, policy: Policy, top_keys: int) -> dict[str, Any]:
    steps = [_step(step, top_keys) for step in steps_of(policy)]
    keys: list[dict[str, Any]] = []
    state: str | None = None
    for step in steps:
        found = step.get("state")
        if isinstance(found, str) and (state is None or _SEVERITY[found] > _SEVERITY[state]):
            state = found
        busiest = step.get("keys")
        if isinstance(busiest, dict):
            for key in busiest["busiest"]:
                keys.append({"step": step["kind"], **key})
    keys.sort(key=_pressure)
    return {
        "name": name,
        "kind": getattr(policy, "kind", "policy"),
        "state": state,
        "steps": steps,
        "keys": keys[:top_keys],
    }


_SEVERITY = {"disabled": 0, "closed": 1, "half_open": 2, "open": 3, "forced_open": 4}


def _step(policy: Any, top_keys: int) -> dict[str, Any]:
    kind = getattr(policy, "kind", None)
    out: dict[str, Any] = {
        "kind": kind if isinstance(kind, str) else "policy",
        "name": _name(policy),
        "type": type(policy).__name__,
    }
    try:
        out.update(_details(policy, top_keys))
    except Exception as exc:  # a custom policy's stats() must not break the view
        out["error"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def _details(policy: Any, top_keys: int) -> dict[str, Any]:
    from .._bulkhead import Bulkhead
    from .._circuit_breaker import CircuitBreaker
    from .._rate_limit import _RateLimiter
    from .._retry import Retry
    from .._timeout import Timeout

    if isinstance(policy, CircuitBreaker):
        return _breaker(policy)
    if isinstance(policy, _RateLimiter):
        return _limiter(policy, top_keys)
    if isinstance(policy, Bulkhead):
        stats = policy.stats()
        return {**_plain_fields(stats), "max_wait": policy.config.max_wait}
    if isinstance(policy, Retry):
        return _retry(policy)
    if isinstance(policy, Timeout):
        return {"seconds": policy.seconds}
    stats_fn = getattr(policy, "stats", None)
    if callable(stats_fn):  # adaptive concurrency, throttle, wrappers of other libraries
        stats = stats_fn()
        if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
            return _plain_fields(stats)
    state = getattr(policy, "state", None)
    if isinstance(state, enum.Enum):
        return {"state": _plain(state)}
    return {}


def _breaker(breaker: Any) -> dict[str, Any]:
    stats = breaker.stats()
    config = breaker.config
    now = breaker.clock.monotonic()
    return {
        "state": _plain(stats.state),
        "time_in_state": _round(max(0.0, now - stats.since)),
        "calls": stats.calls,
        "failed_calls": stats.failed_calls,
        "slow_calls": stats.slow_calls,
        "failure_rate": _round(stats.failure_rate),
        "failure_rate_threshold": config.failure_rate,
        "slow_call_rate": _round(stats.slow_call_rate),
        "slow_call_rate_threshold": config.slow_call_rate,
        "slow_call_duration": config.slow_call_duration,
        "minimum_calls": config.effective_minimum_calls,
        "window": _window(config.window),
        "consecutive_failures": stats.consecutive_failures,
        "rejected": stats.rejected,
        "retry_after": _round(stats.retry_after),
        "probes_in_flight": stats.probes_in_flight,
        "half_open_calls": config.half_open_calls,
        "open_for": config.open_for,
        "observe_only": config.observe_only,
    }


def _window(window: Any) -> str:
    size = getattr(window, "size", None)
    if isinstance(size, int):
        return f"last {size} calls"
    seconds = getattr(window, "seconds", None)
    if isinstance(seconds, int | float):
        return f"last {seconds:g} s"
    return repr(window)


def _retry(retry: Any) -> dict[str, Any]:
    from .._budget import RetryBudget

    config = retry.config
    out: dict[str, Any] = {"attempts": config.attempts, "deadline": config.deadline}
    budget = config.budget
    if budget is not None:
        described: dict[str, Any] = {"name": getattr(budget, "name", None)}
        if isinstance(budget, RetryBudget):  # the Redis one answers from its last reply
            described.update(_plain_fields(budget.stats()))
        out["budget"] = described
    return out


def _limiter(limiter: Any, top_keys: int) -> dict[str, Any]:
    from ..backends.memory import MemoryStore

    config = limiter.config
    out: dict[str, Any] = {
        "rate": [str(rate) for rate in config.rates],
        "limits": [str(limit) for limit in limiter.limits],
        "max_wait": config.max_wait,
        "store": "memory"
        if isinstance(limiter.store, MemoryStore)
        else type(limiter.store).__name__,
        "remaining": None,
        "limit": min(limit.capacity for limit in limiter.limits),
        "retry_after": None,
        "reset_after": None,
        "own_key_used": None,
        "keys": None,
    }
    table = getattr(limiter, "_table", None)
    own = getattr(limiter, "_skey", None)
    if table is None or not isinstance(own, str):
        return out  # a shared store: reading it would be a round trip per view
    pinned, tracked, busiest = _scan(table, own, limiter._prefix, top_keys)
    out.update(pinned)
    out["keys"] = {
        "tracked": tracked,
        "in_store": len(table.keys),
        "max": table.keys.max_keys,
        "busiest": busiest,
    }
    return out


def _scan(
    table: Any, own: str, prefix: str, top_keys: int
) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """The limiter's own key, how many other live keys it holds (among those looked
    at), and the busiest of them.

    Reads the in-memory table under its lock without moving anything in its LRU order;
    looks at the most recently used ``_SCAN_KEYS`` keys at most, so the lock is held
    for a bounded time whatever the number of keys.
    """
    lock = table._lock
    limits = table.limits
    single = table._single
    now = table._now()
    found: list[dict[str, Any]] = []
    with lock:
        entry = table._pinned.get(own)
        if entry is None:
            entry = table._data.get(own)
            if entry is not None and now >= entry.expires_at:
                entry = None
        pinned = _status(limits, single, None if entry is None else entry.value, now)
        pinned["own_key_used"] = entry is not None and entry.value is not None
        tracked = 0
        scanned = 0
        data = table._data
        for key in reversed(data):
            if scanned >= _SCAN_KEYS:
                break
            scanned += 1
            if not isinstance(key, str) or not key.startswith(prefix) or key == own:
                continue
            item = data[key]
            if now >= item.expires_at or item.value is None:
                continue
            tracked += 1
            if top_keys:
                state = _status(limits, single, item.value, now)
                found.append({"key": key[len(prefix) :][:_KEY_TEXT], **state})
    found.sort(key=_pressure)
    return pinned, tracked, found[:top_keys]


def _status(limits: Any, single: bool, value: Any, now: float) -> dict[str, Any]:
    """Remaining units, limit, retry-after and reset-after of one key's state, for a call
    of cost 1, consuming nothing (the table's lock held)."""
    states = [value] if single else (value or [None] * len(limits))
    at = now
    kept = []
    for limit, state in zip(limits, states, strict=True):
        when, state = ALGORITHMS[limit.algorithm].check(limit, state, now, 1, False)
        kept.append(state)
        at = max(at, when)
    remaining, capacity, reset_after = status(limits, kept, now)
    return {
        "remaining": remaining,
        "limit": capacity,
        "retry_after": _round(at - now) if at > now else 0.0,
        "reset_after": _round(reset_after),
    }


def _pressure(key: dict[str, Any]) -> tuple[float, float]:
    """Sort order of busy keys: the fewest units left first, then the longest wait."""
    limit = key.get("limit") or 1
    return (key.get("remaining", 0) / limit, -(key.get("retry_after") or 0.0))


# -- plain values ----------------------------------------------------------------------------


def _plain_fields(stats: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(stats, f.name)) for f in dataclasses.fields(stats)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        inner = value.value
        return inner.lower() if isinstance(inner, str) else value.name.lower()
    if isinstance(value, float):
        return _round(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    return repr(value)[:200]


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    if math.isinf(value) or math.isnan(value):
        return None
    return round(value, 4)
