"""What the metric listeners share: turning events into bounded label sets.

Both :class:`~resilient.observability.PrometheusListener` and
:class:`~resilient.observability.OpenTelemetryListener` subclass
:class:`MetricsListener`, which decides *what* to count and with which labels;
they only say *how* to record it. No third-party import happens here.

Labels are bounded by construction: ``policy`` (names come from code or policy
files), ``kind`` (a policy type), ``outcome`` (3 values), ``reason`` (a short
machine-readable string), circuit ``state`` (5 values) and, only when asked
for, ``key`` — capped to ``max_keys`` distinct values per policy, the rest
counted under ``"other"``.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from typing import Any

from ._events import (
    BackendFailed,
    BackendRecovered,
    CallFailed,
    CallRejected,
    CallSucceeded,
    CircuitStateChanged,
    ConcurrencyLimitChanged,
    Event,
    RetryScheduled,
    TimeoutExceeded,
)

__all__ = [
    "DURATION_BUCKETS",
    "OTHER_KEY",
    "STATES",
    "KeyLabels",
    "MetricsListener",
    "state_label",
]

DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Default latency buckets, in seconds (OpenTelemetry's HTTP duration advice)."""

STATES: tuple[str, ...] = ("closed", "open", "half_open", "forced_open", "disabled")
"""The circuit states every breaker gauge reports (1 for the current one, 0 otherwise)."""

OTHER_KEY = "other"
"""The ``key`` label of every key past a policy's first ``max_keys``."""

_KEY_LIMIT = 100


def state_label(state: object) -> str:
    """A circuit state as a label value: ``CircuitState.HALF_OPEN`` -> ``"half_open"``."""
    if isinstance(state, enum.Enum):
        value = state.value
        return value.lower() if isinstance(value, str) else state.name.lower()
    return str(state).lower()


class KeyLabels:
    """Bounded ``key`` label values: the first ``max_keys`` distinct keys of each
    policy keep their own value (their ``str``, at most 100 characters); later keys
    share :data:`OTHER_KEY`. A key never moves between series, so counters stay
    monotonic. Thread-safe."""

    __slots__ = ("_lock", "_seen", "max_keys")

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, policy: str, key: object) -> str:
        if key is None:
            return ""
        text = key if isinstance(key, str) else str(key)
        text = text[:_KEY_LIMIT]
        with self._lock:
            seen = self._seen.get(policy)
            if seen is None:
                seen = self._seen[policy] = set()
            if text in seen:
                return text
            if len(seen) < self.max_keys:
                seen.add(text)
                return text
        return OTHER_KEY

    def count(self, policy: str) -> int:
        """How many distinct keys of *policy* have their own label value."""
        with self._lock:
            return len(self._seen.get(policy, ()))


class MetricsListener:
    """Dispatches events to the ``_record_*`` methods of a metrics backend.

    Args:
        per_key: add a ``key`` label to the call, rejection and circuit-state
            metrics (default False: keys are aggregated away).
        max_keys: with ``per_key``, how many distinct keys per policy get their own
            label value before the rest share ``"other"`` (default 100).
    """

    call_events = True

    def __init__(self, *, per_key: bool = False, max_keys: int = 100) -> None:
        if not isinstance(per_key, bool):
            from .._errors import ConfigError

            raise ConfigError("per_key", per_key, "True or False")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            from .._errors import ConfigError

            raise ConfigError("max_keys", max_keys, "an int >= 1")
        self.per_key = per_key
        self.max_keys = max_keys
        self._keys: KeyLabels | None = KeyLabels(max_keys) if per_key else None
        self._lock = threading.Lock()
        # (policy, key label or "") -> current circuit state; bounded like the keys.
        self.states: dict[tuple[str, str], str] = {}
        # policy -> 1 while its backend is failing, 0 once it recovered.
        self.degraded: dict[str, int] = {}
        # policy -> the current slots of its adaptive concurrency limit.
        self.limits: dict[str, int] = {}
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            CallSucceeded: self._on_succeeded,
            CallFailed: self._on_failed,
            RetryScheduled: self._on_retry,
            CallRejected: self._on_rejected,
            TimeoutExceeded: self._on_timeout,
            CircuitStateChanged: self._on_state,
            BackendFailed: self._on_backend_failed,
            BackendRecovered: self._on_backend_recovered,
            ConcurrencyLimitChanged: self._on_limit,
        }

    # -- recording, implemented by each backend ------------------------------------

    def _record_call(
        self, policy: str, kind: str, outcome: str, key: str | None, duration: float | None
    ) -> None:
        raise NotImplementedError  # pragma: no cover

    def _record_retry(self, policy: str) -> None:
        raise NotImplementedError  # pragma: no cover

    def _record_rejection(self, policy: str, kind: str, reason: str, key: str | None) -> None:
        raise NotImplementedError  # pragma: no cover

    def _record_timeout(self, policy: str) -> None:
        raise NotImplementedError  # pragma: no cover

    def _record_transition(self, policy: str, old: str, new: str) -> None:
        raise NotImplementedError  # pragma: no cover

    def _record_state(self, policy: str, key: str | None, state: str, previous: str | None) -> None:
        """Called under the listener's lock after ``states`` changed."""

    def _record_backend_error(self, policy: str, mode: str) -> None:
        raise NotImplementedError  # pragma: no cover

    def _record_backend_degraded(self, policy: str, degraded: int) -> None:
        """Called under the listener's lock after ``degraded`` changed."""

    def _record_limit(self, policy: str, limit: int) -> None:
        """Called under the listener's lock after ``limits`` changed."""

    # -- dispatch ----------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            handler = self._resolve(type(event))
        handler(event)

    def _resolve(self, kind: type[Event]) -> Callable[[Any], None]:
        handler = next(
            (self._handlers[base] for base in kind.__mro__[1:] if base in self._handlers),
            _ignore,
        )
        self._handlers[kind] = handler
        return handler

    def _key(self, event: Event) -> str | None:
        keys = self._keys
        return None if keys is None else keys(event.policy, event.key)

    def _on_succeeded(self, event: CallSucceeded) -> None:
        self._record_call(event.policy, event.kind, "success", self._key(event), event.duration)

    def _on_failed(self, event: CallFailed) -> None:
        self._record_call(event.policy, event.kind, "failure", self._key(event), event.duration)

    def _on_retry(self, event: RetryScheduled) -> None:
        self._record_retry(event.policy)

    def _on_rejected(self, event: CallRejected) -> None:
        key = self._key(event)
        if not event.attributes.get("observe_only"):
            # An observe-only (shadow) policy lets the call run: it is counted by its outcome.
            self._record_call(event.policy, event.kind, "rejected", key, None)
        self._record_rejection(event.policy, event.kind, str(event.reason), key)

    def _on_timeout(self, event: TimeoutExceeded) -> None:
        self._record_timeout(event.policy)

    def _on_state(self, event: CircuitStateChanged) -> None:
        old, new = state_label(event.old), state_label(event.new)
        self._record_transition(event.policy, old, new)
        if self._keys is None:
            if event.key is not None:
                return  # one gauge per policy cannot follow many keyed circuits
            key = None
        else:
            key = self._keys(event.policy, event.key)
            if key == OTHER_KEY:
                return  # the state of "other" would mean nothing
        with self._lock:
            previous = self.states.get((event.policy, key or ""))
            self.states[(event.policy, key or "")] = new
            self._record_state(event.policy, key, new, previous)

    def _on_backend_failed(self, event: BackendFailed) -> None:
        self._record_backend_error(event.policy, str(event.mode))
        with self._lock:
            self.degraded[event.policy] = 1
            self._record_backend_degraded(event.policy, 1)

    def _on_backend_recovered(self, event: BackendRecovered) -> None:
        with self._lock:
            self.degraded[event.policy] = 0
            self._record_backend_degraded(event.policy, 0)

    def _on_limit(self, event: ConcurrencyLimitChanged) -> None:
        with self._lock:
            self.limits[event.policy] = event.new
            self._record_limit(event.policy, event.new)


def _ignore(event: Event) -> None:
    """Events a metrics listener has no instrument for."""
