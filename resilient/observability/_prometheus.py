"""``PrometheusListener``: events as ``prometheus_client`` metrics.

prometheus_client is imported when the listener is constructed, never before;
nothing is registered unless a listener is constructed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._metrics import DURATION_BUCKETS, STATES, MetricsListener

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["PrometheusListener"]


class PrometheusListener(MetricsListener):
    """Count calls, retries, rejections and timeouts, time calls and follow circuit
    states in Prometheus metrics (names shown with the default namespace):

    ========================================  =========  ===================================
    metric                                    type       labels
    ========================================  =========  ===================================
    ``resilient_calls_total``                 counter    policy, kind, outcome [, key]
    ``resilient_call_duration_seconds``       histogram  policy, kind, outcome
    ``resilient_retries_total``               counter    policy
    ``resilient_rejections_total``            counter    policy, kind, reason [, key]
    ``resilient_timeouts_total``              counter    policy
    ``resilient_circuit_state``               gauge      policy, state [, key]
    ``resilient_circuit_transitions_total``   counter    policy, from_state, to_state
    ``resilient_backend_errors_total``        counter    policy, mode
    ``resilient_backend_degraded``            gauge      policy
    ``resilient_concurrency_limit``           gauge      policy
    ========================================  =========  ===================================

    ``outcome`` is ``success``, ``failure`` or ``rejected``. ``circuit_state`` is a
    state set: one series per state, 1 for the current one. ``key`` exists only with
    ``per_key=True`` and holds at most ``max_keys`` distinct values per policy, then
    ``"other"``.

    Metrics are opt-in: they exist only once a listener is constructed and
    registered with :func:`~resilient.observability.set_listeners` (or a policy's
    ``listeners=``). Construct one listener per registry and reuse it.

    Args:
        registry: the ``CollectorRegistry`` (default: prometheus_client's global one).
        namespace: the metric name prefix (default ``"resilient"``).
        buckets: latency histogram buckets in seconds.
        per_key, max_keys: see :class:`MetricsListener`.

    Raises:
        ModuleNotFoundError: prometheus-client is not installed
            (``pip install resilient-middleware[prometheus]``).
        ConfigError: these metric names are already registered in *registry*.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        namespace: str = "resilient",
        *,
        buckets: Sequence[float] = DURATION_BUCKETS,
        per_key: bool = False,
        max_keys: int = 100,
    ) -> None:
        super().__init__(per_key=per_key, max_keys=max_keys)
        try:
            import prometheus_client as prom
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the env
            exc.add_note(
                "PrometheusListener needs prometheus-client: "
                "pip install 'resilient-middleware[prometheus]'"
            )
            raise
        self.registry = prom.REGISTRY if registry is None else registry
        self.namespace = namespace
        key = ("key",) if per_key else ()
        created: list[Any] = []

        def make(cls: Any, name: str, doc: str, labels: tuple[str, ...], **kw: Any) -> Any:
            try:
                metric = cls(name, doc, labels, namespace=namespace, registry=self.registry, **kw)
            except ValueError as exc:
                for done in created:
                    self.registry.unregister(done)
                from .._errors import ConfigError

                raise ConfigError(
                    "registry",
                    self.registry,
                    f"a registry without {namespace}_{name} "
                    f"(one PrometheusListener per registry and namespace): {exc}",
                ) from exc
            created.append(metric)
            return metric

        self.calls = make(
            prom.Counter,
            "calls",
            "Calls through a policy, by outcome (success, failure, rejected).",
            ("policy", "kind", "outcome", *key),
        )
        self.call_duration = make(
            prom.Histogram,
            "call_duration_seconds",
            "Duration of calls through a policy, by outcome, in seconds.",
            ("policy", "kind", "outcome"),
            buckets=tuple(buckets),
        )
        self.retries = make(
            prom.Counter, "retries", "Retries scheduled after a failed attempt.", ("policy",)
        )
        self.rejections = make(
            prom.Counter,
            "rejections",
            "Calls a policy refused without running them, by reason.",
            ("policy", "kind", "reason", *key),
        )
        self.timeouts = make(
            prom.Counter, "timeouts", "Calls that ran past a Timeout's budget.", ("policy",)
        )
        self.circuit_state = make(
            prom.Gauge,
            "circuit_state",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            ("policy", "state", *key),
        )
        self.circuit_transitions = make(
            prom.Counter,
            "circuit_transitions",
            "Circuit breaker state changes.",
            ("policy", "from_state", "to_state"),
        )
        self.backend_errors = make(
            prom.Counter,
            "backend_errors",
            "Failures of the shared-state backend, by what the policy did (on_backend_error).",
            ("policy", "mode"),
        )
        self.backend_degraded = make(
            prom.Gauge,
            "backend_degraded",
            "1 while a policy's shared-state backend is failing, 0 once it recovered.",
            ("policy",),
        )
        self.concurrency_limit = make(
            prom.Gauge,
            "concurrency_limit",
            "The current slots of an adaptive concurrency limit.",
            ("policy",),
        )
        # Label children cached by their label values (bounded like the labels).
        self._counters: dict[tuple[str, ...], Any] = {}
        self._histograms: dict[tuple[str, ...], Any] = {}

    def _record_call(
        self, policy: str, kind: str, outcome: str, key: str | None, duration: float | None
    ) -> None:
        labels = (policy, kind, outcome) if key is None else (policy, kind, outcome, key)
        counter = self._counters.get(labels)
        if counter is None:
            counter = self._counters[labels] = self.calls.labels(*labels)
        counter.inc()
        if duration is not None:
            timing = labels[:3]
            histogram = self._histograms.get(timing)
            if histogram is None:
                histogram = self._histograms[timing] = self.call_duration.labels(*timing)
            histogram.observe(duration)

    def _record_retry(self, policy: str) -> None:
        self.retries.labels(policy).inc()

    def _record_rejection(self, policy: str, kind: str, reason: str, key: str | None) -> None:
        labels = (policy, kind, reason) if key is None else (policy, kind, reason, key)
        self.rejections.labels(*labels).inc()

    def _record_timeout(self, policy: str) -> None:
        self.timeouts.labels(policy).inc()

    def _record_transition(self, policy: str, old: str, new: str) -> None:
        self.circuit_transitions.labels(policy, old, new).inc()

    def _record_state(self, policy: str, key: str | None, state: str, previous: str | None) -> None:
        extra = () if key is None else (key,)
        names = dict.fromkeys((*STATES, state, previous or state))
        for name in names:
            self.circuit_state.labels(policy, name, *extra).set(1 if name == state else 0)

    def _record_backend_error(self, policy: str, mode: str) -> None:
        self.backend_errors.labels(policy, mode).inc()

    def _record_backend_degraded(self, policy: str, degraded: int) -> None:
        self.backend_degraded.labels(policy).set(degraded)

    def _record_limit(self, policy: str, limit: int) -> None:
        self.concurrency_limit.labels(policy).set(limit)

    def __repr__(self) -> str:
        return f"PrometheusListener(namespace={self.namespace!r}, per_key={self.per_key!r})"
