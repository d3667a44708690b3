"""``OpenTelemetryListener``: events as OpenTelemetry metrics (``opentelemetry-api``).

opentelemetry is imported when the listener is constructed, never before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._metrics import DURATION_BUCKETS, STATES, MetricsListener

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

__all__ = ["OpenTelemetryListener"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("resilient-middleware")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


class OpenTelemetryListener(MetricsListener):
    """Record the same metrics as :class:`PrometheusListener` through OpenTelemetry
    (names shown with the default namespace; attributes as the Prometheus labels):

    ================================  =====================  ================================
    instrument                        type (unit)            attributes
    ================================  =====================  ================================
    ``resilient.calls``               counter (``{call}``)   policy, kind, outcome [, key]
    ``resilient.call.duration``       histogram (``s``)      policy, kind, outcome
    ``resilient.retries``             counter (``{retry}``)  policy
    ``resilient.rejections``          counter (``{call}``)   policy, kind, reason [, key]
    ``resilient.timeouts``            counter (``{call}``)   policy
    ``resilient.circuit.state``       observable gauge       policy, state [, key]
    ``resilient.circuit.transitions`` counter                policy, from_state, to_state
    ``resilient.backend.errors``      counter                policy, mode
    ``resilient.backend.degraded``    observable gauge       policy
    ``resilient.concurrency.limit``   observable gauge       policy
    ================================  =====================  ================================

    Exported to Prometheus by OpenTelemetry's exporter, these become the same
    series as :class:`PrometheusListener`'s (``resilient_calls_total``,
    ``resilient_call_duration_seconds``...), so one dashboard serves both.

    Args:
        meter: the ``Meter`` to create the instruments on. Default: one named
            ``"resilient"`` from *meter_provider*.
        meter_provider: the ``MeterProvider`` to get that meter from (default:
            the global one, a no-op until the application installs an SDK).
        namespace: the instrument name prefix (default ``"resilient"``).
        buckets: advisory latency histogram boundaries in seconds.
        per_key, max_keys: see :class:`MetricsListener`.

    Raises:
        ModuleNotFoundError: opentelemetry-api is not installed
            (``pip install resilient-middleware[otel]``).
    """

    def __init__(
        self,
        meter: Meter | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        namespace: str = "resilient",
        buckets: Sequence[float] = DURATION_BUCKETS,
        per_key: bool = False,
        max_keys: int = 100,
    ) -> None:
        super().__init__(per_key=per_key, max_keys=max_keys)
        try:
            from opentelemetry import metrics
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the env
            exc.add_note(
                "OpenTelemetryListener needs opentelemetry-api: "
                "pip install 'resilient-middleware[otel]'"
            )
            raise
        if meter is not None and meter_provider is not None:
            from .._errors import ConfigError

            raise ConfigError("meter_provider", meter_provider, "either meter= or meter_provider=")
        if meter is None:
            meter = metrics.get_meter("resilient", _version(), meter_provider=meter_provider)
        self.meter = meter
        self.namespace = namespace
        self._observation = metrics.Observation
        prefix = f"{namespace}." if namespace else ""
        self.calls = meter.create_counter(
            f"{prefix}calls", "{call}", "Calls through a policy, by outcome."
        )
        self.call_duration = meter.create_histogram(
            f"{prefix}call.duration",
            "s",
            "Duration of calls through a policy, by outcome.",
            explicit_bucket_boundaries_advisory=list(buckets),
        )
        self.retries = meter.create_counter(
            f"{prefix}retries", "{retry}", "Retries scheduled after a failed attempt."
        )
        self.rejections = meter.create_counter(
            f"{prefix}rejections", "{call}", "Calls a policy refused without running them."
        )
        self.timeouts = meter.create_counter(
            f"{prefix}timeouts", "{call}", "Calls that ran past a Timeout's budget."
        )
        self.circuit_transitions = meter.create_counter(
            f"{prefix}circuit.transitions", "{transition}", "Circuit breaker state changes."
        )
        self.backend_errors = meter.create_counter(
            f"{prefix}backend.errors", "{error}", "Failures of the shared-state backend."
        )
        self.circuit_state = meter.create_observable_gauge(
            f"{prefix}circuit.state",
            [self._observe_states],
            "",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
        )
        self.backend_degraded = meter.create_observable_gauge(
            f"{prefix}backend.degraded",
            [self._observe_backends],
            "",
            "1 while a policy's shared-state backend is failing, 0 once it recovered.",
        )
        self.concurrency_limit = meter.create_observable_gauge(
            f"{prefix}concurrency.limit",
            [self._observe_limits],
            "{slot}",
            "The current slots of an adaptive concurrency limit.",
        )
        # Attribute dicts cached by their values (bounded like the labels).
        self._attrs: dict[tuple[str, ...], dict[str, str]] = {}

    def _call_attrs(self, policy: str, kind: str, outcome: str, key: str | None) -> dict[str, str]:
        cache_key = (policy, kind, outcome) if key is None else (policy, kind, outcome, key)
        attrs = self._attrs.get(cache_key)
        if attrs is None:
            attrs = {"policy": policy, "kind": kind, "outcome": outcome}
            if key is not None:
                attrs["key"] = key
            self._attrs[cache_key] = attrs
        return attrs

    def _record_call(
        self, policy: str, kind: str, outcome: str, key: str | None, duration: float | None
    ) -> None:
        self.calls.add(1, self._call_attrs(policy, kind, outcome, key))
        if duration is not None:
            self.call_duration.record(duration, self._call_attrs(policy, kind, outcome, None))

    def _record_retry(self, policy: str) -> None:
        self.retries.add(1, {"policy": policy})

    def _record_rejection(self, policy: str, kind: str, reason: str, key: str | None) -> None:
        attrs = {"policy": policy, "kind": kind, "reason": reason}
        if key is not None:
            attrs["key"] = key
        self.rejections.add(1, attrs)

    def _record_timeout(self, policy: str) -> None:
        self.timeouts.add(1, {"policy": policy})

    def _record_transition(self, policy: str, old: str, new: str) -> None:
        self.circuit_transitions.add(1, {"policy": policy, "from_state": old, "to_state": new})

    def _record_backend_error(self, policy: str, mode: str) -> None:
        self.backend_errors.add(1, {"policy": policy, "mode": mode})

    def _observe_states(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            states = list(self.states.items())
        observation = self._observation
        out: list[Any] = []
        for (policy, key), current in states:
            for name in dict.fromkeys((*STATES, current)):
                attrs = {"policy": policy, "state": name}
                if self.per_key:
                    attrs["key"] = key
                out.append(observation(1 if name == current else 0, attrs))
        return out

    def _observe_backends(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            degraded = list(self.degraded.items())
        observation = self._observation
        return [observation(value, {"policy": policy}) for policy, value in degraded]

    def _observe_limits(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            limits = list(self.limits.items())
        observation = self._observation
        return [observation(value, {"policy": policy}) for policy, value in limits]

    def __repr__(self) -> str:
        return f"OpenTelemetryListener(namespace={self.namespace!r}, per_key={self.per_key!r})"
