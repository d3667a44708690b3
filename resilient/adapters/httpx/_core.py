"""The decisions shared by both transports (no I/O here: the drivers do it).

Everything the sync and the async transport have in common lives in
:class:`TransportCore`: routing, the per-request *gate* (may this request be
retried at all?), the adapted retry policies and the chains of policies, the
classification of responses, server hints, pacing and deadline clamping. The
drivers in ``_transport.py`` only send, read, close and sleep.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import httpx

from ..._clock import SYSTEM_CLOCK, Clock, current_deadline, remaining
from ..._duration import to_seconds
from ..._errors import ConfigError, RateLimitedError, TimeoutExceededError
from ..._pipeline import Pipeline, Policy
from ..._retry import Retry
from ...observability._emit import Emitter, Listener, add_event_context
from ...observability._events import CallFailed, CallRejected, Event, RetryScheduled
from ._hints import server_hint

__all__ = [
    "FAILURE_STATUSES",
    "IDEMPOTENT_METHODS",
    "RETRY_ERRORS",
    "RETRY_STATUSES",
    "UNSENT_ERRORS",
    "FailedResponseError",
    "Route",
    "TransportConfig",
    "TransportCore",
]

IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
"""The methods RFC 9110 defines as idempotent: retried by default."""

RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
"""Statuses retried by default: throttled, bad gateway, unavailable, gateway timeout."""

FAILURE_STATUSES: Final = frozenset(range(500, 600))
"""Statuses that count as failures for the policies (a breaker's window) by default."""

RETRY_ERRORS: Final[tuple[type[Exception], ...]] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)
"""Transport errors retried by default (for requests whose method may be retried)."""

UNSENT_ERRORS: Final[tuple[type[Exception], ...]] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
"""Errors raised before any byte of the request left: safe to retry for any method."""

DRAIN_LIMIT: Final = 64 * 1024
"""A response about to be retried whose body is at most this long is read before it
is closed, so its connection goes back to the pool instead of being dropped."""

MAX_HOLD: Final = 300.0
"""The longest a server hint may hold a host when pacing (seconds)."""

MAX_HOSTS: Final = 1024
"""How many paced hosts are remembered (least recently held ones are forgotten)."""

# Gates: how far a given request may be retried.
NEVER, UNSENT, ALL = 0, 1, 2

Target: TypeAlias = "Policy | str | Sequence[Policy | str] | None"
"""What a route (or the transport's default) runs: a policy, a registry name, several
of them (outermost first), or ``None`` for none."""


class FailedResponseError(httpx.HTTPStatusError):
    """A response whose status counts as a failure (``failure_statuses``, 5xx by default).

    The transports raise it *inside* the pipeline so that a circuit breaker, a
    fallback or a bulkhead sees a failed HTTP exchange exactly like a transport
    error; it never reaches the caller, who gets the response itself. Use it in
    ``record=``/``ignore=``/``on=`` specs (it is an ``httpx.HTTPStatusError``).

    Attributes:
        response: the response (open: not read, not closed).
        request: the request.
        retry_after: the server's hint in seconds (``Retry-After``, rate-limit
            fields), or ``None``; a breaker with ``open_on_retry_after`` reads it.
    """

    def __init__(
        self, request: httpx.Request, response: httpx.Response, retry_after: float | None
    ) -> None:
        super().__init__(
            f"{request.method} {request.url.host}: HTTP {response.status_code}",
            request=request,
            response=response,
        )
        self.retry_after = retry_after


def _methods(value: object, name: str) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(name, value, "a collection of HTTP method names")
    out = set()
    for item in value:
        if not isinstance(item, str) or not item.isascii() or not item.isalpha():
            raise ConfigError(name, value, "a collection of HTTP method names")
        out.add(item.upper())
    return frozenset(out)


def _statuses(value: object, name: str) -> frozenset[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(name, value, "a collection of HTTP status codes (100-599)")
    out = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
            raise ConfigError(name, value, "a collection of HTTP status codes (100-599)")
        out.add(item)
    return frozenset(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportConfig:
    """The validated HTTP settings of a resilient transport (see its docs)."""

    retry_methods: Collection[str] = IDEMPOTENT_METHODS
    retry_statuses: Collection[int] = RETRY_STATUSES
    failure_statuses: Collection[int] = FAILURE_STATUSES
    retry_errors: tuple[type[BaseException], ...] = RETRY_ERRORS
    retry_unsent: bool = True
    idempotency_key: bool | Callable[[], str] = False
    buffer_body: int = 64 * 1024
    pace: bool = False
    max_pace_wait: float = 30.0
    now: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        put("retry_methods", _methods(self.retry_methods, "retry_methods"))
        put("retry_statuses", _statuses(self.retry_statuses, "retry_statuses"))
        put("failure_statuses", _statuses(self.failure_statuses, "failure_statuses"))
        errors = self.retry_errors
        if isinstance(errors, type):
            errors = (errors,)
        if not isinstance(errors, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in errors
        ):
            raise ConfigError("retry_errors", self.retry_errors, "a tuple of exception types")
        put("retry_errors", errors)
        if not isinstance(self.retry_unsent, bool):
            raise ConfigError("retry_unsent", self.retry_unsent, "True or False")
        key = self.idempotency_key
        if not isinstance(key, bool) and not callable(key):
            raise ConfigError(
                "idempotency_key", key, "True, False, or a callable returning a fresh key"
            )
        body = self.buffer_body
        if isinstance(body, bool) or not isinstance(body, int) or body < 0:
            raise ConfigError("buffer_body", body, "a size in bytes >= 0 (0: never buffer)")
        if not isinstance(self.pace, bool):
            raise ConfigError("pace", self.pace, "True or False")
        put("max_pace_wait", to_seconds(self.max_pace_wait, name="max_pace_wait"))
        if not callable(self.now):
            raise ConfigError("now", self.now, "a wall clock: a callable returning epoch seconds")

    def new_key(self) -> str:
        """A fresh ``Idempotency-Key`` value."""
        key = self.idempotency_key
        return key() if callable(key) else str(uuid.uuid4())


def _host_pattern(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "/" in value or value.strip() != value:
        raise ConfigError("Route.host", value, "a host name, '*.suffix' or 'host:port'")
    return value.lower()


def _path_prefix(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError("Route.path", value, "a path prefix starting with '/'")
    return value.rstrip("/") or "/"


@dataclass(frozen=True, slots=True)
class Route:
    """Send matching requests through their own policies.

    ``Route("payments", host="pay.example.com", path="/v2", methods=["POST"])``
    runs the registry's ``"payments"`` pipeline for POSTs to that host under
    ``/v2``. The transport tries its routes in order and uses the first match;
    a request no route matches runs the transport's default policies.

    Args:
        policy: a policy, a registry name, a sequence of them (outermost first),
            or ``None`` (no policy: the request goes straight through).
        host: ``"api.example.com"`` (exact, case-insensitive), ``"*.example.com"``
            (any subdomain, not the apex) or ``"api.example.com:8443"`` (with the
            port); ``None`` matches every host.
        path: a path prefix matched on segment boundaries (``"/v2"`` matches
            ``/v2`` and ``/v2/users``, not ``/v20``); ``None`` matches every path.
        methods: HTTP methods (``None``: all).
    """

    policy: Target
    host: str | None = None
    path: str | None = None
    methods: Collection[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", _host_pattern(self.host))
        object.__setattr__(self, "path", _path_prefix(self.path))
        if self.methods is not None:
            object.__setattr__(self, "methods", _methods(self.methods, "Route.methods"))
        _target_items(self.policy, "Route.policy")

    def matches(self, host: str, host_port: str, path: str, method: str) -> bool:
        """Whether a request (lower-case host, ``host:port``, path, method) matches."""
        if self.methods is not None and method not in self.methods:
            return False
        pattern = self.host
        if pattern is not None:
            if pattern.startswith("*."):
                if not host.endswith(pattern[1:]):
                    return False
            elif pattern != (host_port if ":" in pattern else host):
                return False
        prefix = self.path
        if prefix is not None and prefix != "/" and path != prefix:
            return path.startswith(prefix + "/")
        return True


def _target_items(target: object, name: str) -> tuple[Policy | str, ...]:
    if target is None:
        return ()
    if isinstance(target, str | Policy):
        target = (target,)
    if not isinstance(target, Sequence):
        raise ConfigError(name, target, "a policy, a registry name, a sequence of them, or None")
    for item in target:
        if not isinstance(item, str | Policy):
            raise ConfigError(name, item, "a policy (with call() and acall()) or a registry name")
    return tuple(target)


def _flatten(policy: Policy) -> Iterator[Policy]:
    if isinstance(policy, Pipeline):
        for inner in policy.policies:
            yield from _flatten(inner)
    else:
        yield policy


# -- per-request state ------------------------------------------------------------------------


def host_key(url: httpx.URL) -> str:
    """The host of *url*, with its port when one is given (``api.example.com:8443``)."""
    port = url.port
    return url.host if port is None else f"{url.host}:{port}"


class Exchange:
    """One request's journey through the transport (shared by its attempts)."""

    __slots__ = ("_host", "extensions", "gate", "method", "plan", "request", "status")

    def __init__(self, request: httpx.Request, plan: Plan, host: str | None = None) -> None:
        self.request = request
        self.method = request.method
        self.plan = plan
        self.extensions = request.extensions
        self.gate = NEVER
        self.status: int | None = None
        self._host = host

    @property
    def host(self) -> str:
        """The request's host key (computed when first needed: pacing, events)."""
        host = self._host
        if host is None:
            host = self._host = host_key(self.request.url)
        return host


CURRENT: ContextVar[Exchange | None] = ContextVar("resilient_httpx_exchange", default=None)
"""The exchange being sent in this thread / task (read by the attempt and by events)."""


def _event_context(event: Event) -> dict[str, Any] | None:
    """Every policy's events during a request carry its method and host, and a failure
    because of a response its status (never the URL)."""
    exchange = CURRENT.get()
    if exchange is None:
        return None
    found: dict[str, Any] = {"method": exchange.method, "host": exchange.host}
    failure = getattr(event, "exception", None)
    if isinstance(failure, FailedResponseError):
        found["status"] = failure.response.status_code
    return found


add_event_context(_event_context)


class _Annotate:
    """A listener, first in line on the adapted retries, that adds the request's
    method, host and last status to their events (never the URL)."""

    call_events = False

    def __call__(self, event: Event) -> None:
        exchange = CURRENT.get()
        if exchange is None:
            return
        attributes = event.attributes
        attributes.setdefault("method", exchange.method)
        attributes.setdefault("host", exchange.host)
        status = exchange.status
        if isinstance(event, RetryScheduled):
            if isinstance(event.result, httpx.Response):
                status = event.result.status_code
            elif event.cause is not None:
                status = None
                attributes.setdefault("error", type(event.cause).__name__)
        elif isinstance(event, CallFailed) and event.exception is not None:
            status = None  # a retry gives up on a result (a status) or an error
            attributes.setdefault("error", type(event.exception).__name__)
        if status is not None:
            attributes.setdefault("status", status)


_ANNOTATE = _Annotate()


# -- pacing: hold a host after the server asked for a pause -----------------------------------


class _Holds:
    """Per-host "do not send before" times on the policy clock (bounded, thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, host: str, seconds: float) -> None:
        until = self._clock.monotonic() + min(seconds, MAX_HOLD)
        with self._lock:
            if until > self._until.get(host, -math.inf):
                self._until[host] = until
                self._until.move_to_end(host)
                while len(self._until) > MAX_HOSTS:
                    self._until.popitem(last=False)

    def wait(self, host: str) -> float:
        until = self._until.get(host)
        if until is None:
            return 0.0
        left = until - self._clock.monotonic()
        if left > 0:
            return left
        with self._lock:
            if self._until.get(host) == until:
                del self._until[host]
        return 0.0


# -- plans: the policies a target resolves to, and their chains -------------------------------


class Plan:
    """The resolved policies of one target, with a chain per gate (built lazily)."""

    __slots__ = ("chains", "has_retry", "policies", "source")

    def __init__(self, source: tuple[Policy, ...]) -> None:
        self.source = source
        self.policies = tuple(p for policy in source for p in _flatten(policy))
        self.has_retry = any(isinstance(p, Retry) for p in self.policies)
        self.chains: dict[int, Callable[[httpx.Request], Any]] = {}


class _TargetSlot:
    __slots__ = ("items", "named", "plan")

    def __init__(self, items: tuple[Policy | str, ...]) -> None:
        self.items = items
        self.named = any(isinstance(item, str) for item in items)
        self.plan: Plan | None = None


def _expired() -> bool:
    left = remaining()
    return left is not None and left <= 0


class TransportCore:
    """What both transports decide, sans I/O.

    The driver passes its *attempt* (send one request through the inner transport)
    and whether it is async; chains are built with ``call`` or ``acall``
    accordingly, and each ``Retry`` in them is replaced by an HTTP-aware copy.
    """

    def __init__(
        self,
        policies: tuple[Policy | str, ...],
        *,
        routes: Iterable[Route],
        registry: Mapping[str, Policy] | None,
        config: TransportConfig,
        clock: Clock | None,
        name: str | None,
        listeners: Sequence[Listener] | None,
        attempt: Callable[[httpx.Request], Any],
        retry_step: Callable[..., Any],
        asynchronous: bool,
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigError("clock", clock, "an object with monotonic(), sleep() and asleep()")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError("name", name, "a non-empty string")
        if registry is not None and not isinstance(registry, Mapping):
            raise ConfigError("registry", registry, "a mapping of names to policies (a Registry)")
        routes = tuple(routes)
        for route in routes:
            if not isinstance(route, Route):
                raise ConfigError("routes", route, "Route(...) objects")
        self.config = config
        self.clock = clock or SYSTEM_CLOCK
        self.name = name or "httpx"
        self.registry = registry
        self.routes = routes
        self._emitter = Emitter(listeners)
        self._attempt = attempt
        self._retry_step = retry_step
        self._asynchronous = asynchronous
        self._holds = _Holds(self.clock) if config.pace else None
        self._default = _TargetSlot(_target_items(policies, "policies"))
        self._routes = [
            (route, _TargetSlot(_target_items(route.policy, "Route.policy"))) for route in routes
        ]
        for slot in (self._default, *(s for _, s in self._routes)):
            for item in slot.items:
                if isinstance(item, str) and (registry is None or item not in registry):
                    where = (
                        "a registry= holding it" if registry is None else "a name in the registry"
                    )
                    raise ConfigError("policies", item, where)

    # -- routing and gates ------------------------------------------------------------------

    def begin(self, request: httpx.Request) -> Exchange:
        """Route *request* and start its exchange (no I/O)."""
        slot = self._default
        key = None
        if self._routes:
            url = request.url
            host = url.host
            port = url.port
            key = host if port is None else f"{host}:{port}"
            method, path = request.method, url.path
            for route, route_slot in self._routes:
                if route.matches(host, key, path, method):
                    slot = route_slot
                    break
        exchange = Exchange(request, self._plan(slot), key)
        if (
            self.config.idempotency_key
            and request.method not in IDEMPOTENT_METHODS
            and "idempotency-key" not in request.headers
        ):
            request.headers["Idempotency-Key"] = self.config.new_key()
        return exchange

    def _plan(self, slot: _TargetSlot) -> Plan:
        plan = slot.plan
        if not slot.named:
            if plan is None:
                plan = slot.plan = Plan(slot.items)  # type: ignore[arg-type]
            return plan
        registry = self.registry
        assert registry is not None
        try:
            source = tuple(registry[item] if isinstance(item, str) else item for item in slot.items)
        except KeyError as exc:  # a reload removed it
            raise ConfigError("policies", exc.args[0], "a name in the registry") from None
        if (
            plan is None
            or len(plan.source) != len(source)
            or any(a is not b for a, b in zip(plan.source, source, strict=True))
        ):
            plan = slot.plan = Plan(source)  # a reloaded registry gives new policies
        return plan

    def wants_buffer(self, exchange: Exchange) -> int:
        """The buffering limit for a streamed body that should be made replayable (0: no)."""
        limit = self.config.buffer_body
        if (
            not limit
            or not exchange.plan.has_retry
            or replayable(exchange.request)
            or not (exchange.method in self.config.retry_methods or self.config.retry_unsent)
        ):
            return 0
        length = exchange.request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return 0
        return limit

    def chain(self, exchange: Exchange) -> Callable[[httpx.Request], Any]:
        """The chain of policies for the exchange, its gate decided now: all
        retries, only unsent errors (a non-idempotent method), or none (no retry
        policy, or a body that cannot be replayed)."""
        plan = exchange.plan
        gate = NEVER
        if plan.has_retry and replayable(exchange.request):
            config = self.config
            if exchange.method in config.retry_methods:
                gate = ALL
            elif config.retry_unsent:
                gate = UNSENT
        exchange.gate = gate
        chain = plan.chains.get(gate)
        if chain is None:
            chain = plan.chains[gate] = self._build(plan.policies, gate)
        return chain

    # -- chains ----------------------------------------------------------------------------

    def _build(self, policies: tuple[Policy, ...], gate: int) -> Callable[[httpx.Request], Any]:
        fn: Callable[[httpx.Request], Any] = self._attempt
        for policy in reversed(policies):
            if isinstance(policy, Retry):
                fn = functools.partial(self._retry_step, self.adapt(policy, gate), fn, self)
            else:
                # Each policy is called with the request as its argument, so a key
                # function (per-host limiter) can read it.
                run: Callable[..., Any] = policy.acall if self._asynchronous else policy.call
                fn = functools.partial(run, fn)
        return fn

    def adapt(self, retry: Retry, gate: int) -> Retry:
        """An HTTP-aware copy of *retry* for requests of the given gate.

        It keeps the user's attempts, backoff, deadline, caps, clock, name and
        listeners; what is retried becomes: the transport's ``retry_errors`` and
        ``retry_statuses`` (or what the user's own ``retry_on``/``retry_if``
        accept) when the request may be fully retried, only unsent errors for a
        non-idempotent method, nothing for a body that cannot be replayed. Server
        hints come from the response headers; a hint longer than the time left
        before a deadline ends the retries at once.
        """
        cfg = retry.config
        errors = self.config.retry_errors
        statuses = self.config.retry_statuses
        user_on, user_if, user_after = cfg.retry_on, cfg.retry_if, cfg.retry_after

        def user_retries(exc: BaseException) -> bool:
            if isinstance(user_on, tuple):
                return isinstance(exc, user_on)
            return bool(user_on(exc))

        def retry_on(exc: BaseException) -> bool:
            if gate == ALL:
                return (isinstance(exc, errors) or user_retries(exc)) and not _expired()
            if gate == UNSENT:
                return isinstance(exc, errors) and isinstance(exc, UNSENT_ERRORS) and not _expired()
            return False

        def retry_if(result: Any) -> bool:
            if gate != ALL:
                return False
            if isinstance(result, httpx.Response) and result.status_code in statuses:
                return not _expired()
            return user_if is not None and bool(user_if(result)) and not _expired()

        def retry_after(outcome: object) -> float | None:
            hint = None
            if isinstance(outcome, httpx.Response):
                hint = self.hint(outcome)
            if hint is None:
                hint = user_after(outcome)
            if hint is not None and hint > 0:
                left = remaining()
                if left is not None and hint > left:
                    return -1.0  # waiting would pass the deadline: stop now
            return hint

        settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
        settings.update(retry_on=retry_on, retry_if=retry_if, retry_after=retry_after)
        return Retry(
            **settings,
            name=retry.name,
            clock=retry.clock,
            listeners=(_ANNOTATE, *retry._emitter.local),
        )

    # -- before an attempt ------------------------------------------------------------------

    def pace_wait(self, exchange: Exchange) -> float:
        """Seconds to wait before sending to a held host (0: go). Raises
        :class:`RateLimitedError` when the wait is longer than ``max_pace_wait`` or
        than the time left before a deadline."""
        holds = self._holds
        if holds is None:
            return 0.0
        wait = holds.wait(exchange.host)
        if wait <= 0:
            return 0.0
        left = remaining()
        if wait > self.config.max_pace_wait or (left is not None and wait > left):
            self._emitter.emit(
                CallRejected(
                    policy=self.name,
                    kind="httpx",
                    at=self.clock.monotonic(),
                    reason="rate_limited",
                    key=exchange.host,
                    retry_after=wait,
                    attributes={"method": exchange.method, "host": exchange.host},
                )
            )
            raise RateLimitedError(self.name, key=exchange.host, retry_after=wait)
        return wait

    def clamp(self, exchange: Exchange) -> tuple[Any, frozenset[str]]:
        """Clamp the request's I/O timeouts to the time left before the nearest
        published deadline. Returns that deadline and the phases it now bounds."""
        deadline = current_deadline()
        if deadline is None:
            return _NO_CLAMP
        left, binding = math.inf, None
        while deadline is not None:
            this = deadline.at - deadline.clock.monotonic()
            if this < left:
                left, binding = this, deadline
            deadline = deadline.parent
        assert binding is not None
        if left <= 0:
            raise TimeoutExceededError(binding.policy, binding.budget)
        original = exchange.extensions.get("timeout")
        timeouts: Mapping[str, Any] = original if isinstance(original, Mapping) else {}
        clamped: dict[str, float | None] = {}
        bound = []
        for phase in ("connect", "read", "write", "pool"):
            value = timeouts.get(phase)
            if value is None or value > left:
                clamped[phase] = left
                bound.append(phase)
            else:
                clamped[phase] = value
        exchange.request.extensions = {**exchange.extensions, "timeout": clamped}
        return binding, frozenset(bound)

    @staticmethod
    def timed_out(clamp: tuple[Any, frozenset[str]], exc: httpx.TimeoutException) -> None:
        """If *exc* is the I/O timeout a deadline imposed, raise that deadline's
        :class:`TimeoutExceededError` instead (the same error an async Timeout raises)."""
        deadline, phases = clamp
        if deadline is None:
            return
        phase = _PHASES.get(type(exc))
        if phase is not None and phase in phases:
            raise TimeoutExceededError(deadline.policy, deadline.budget) from exc

    # -- after an attempt -------------------------------------------------------------------

    def should_drain(self, exchange: Exchange, response: httpx.Response) -> bool:
        """Whether to read a small body now, so a retry can reuse the connection."""
        if exchange.gate != ALL or response.status_code not in self.config.retry_statuses:
            return False
        length = response.headers.get("content-length")
        return length is not None and length.isdigit() and int(length) <= DRAIN_LIMIT

    def outcome(self, exchange: Exchange, response: httpx.Response) -> httpx.Response:
        """Classify a response: record pacing hints, raise :class:`FailedResponseError`
        for a failure status, return it otherwise."""
        status = response.status_code
        exchange.status = status
        if self._holds is not None:
            self._record_hold(exchange, response)
        if status in self.config.failure_statuses:
            raise self.failed(exchange.request, response)
        return response

    def failed(self, request: httpx.Request, response: httpx.Response) -> FailedResponseError:
        """The exception that carries a failed *response* through the pipeline."""
        return FailedResponseError(request, response, self.hint(response))

    def hint(self, response: httpx.Response) -> float | None:
        """The server's hint for *response* in seconds, or ``None``."""
        return server_hint(
            response.headers, now=self.config.now, throttled=response.status_code == 429
        )

    def _record_hold(self, exchange: Exchange, response: httpx.Response) -> None:
        status = response.status_code
        if status in (429, 503):
            hint = self.hint(response)
        elif _QUOTA_HEADERS.intersection(response.headers.keys()):
            hint = server_hint(response.headers, now=self.config.now, retry_after=False)
        else:
            return
        if hint is not None and hint > 0:
            assert self._holds is not None
            self._holds.hold(exchange.host, hint)

    def is_failure(self, response: object) -> bool:
        """Whether *response* (a retry's final result) has a failure status."""
        return (
            isinstance(response, httpx.Response)
            and response.status_code in self.config.failure_statuses
        )


_PHASES: dict[type[BaseException], str] = {
    httpx.ConnectTimeout: "connect",
    httpx.ReadTimeout: "read",
    httpx.WriteTimeout: "write",
    httpx.PoolTimeout: "pool",
}
_NO_CLAMP: tuple[Any, frozenset[str]] = (None, frozenset())
_QUOTA_HEADERS = frozenset({"ratelimit", "x-ratelimit-remaining", "ratelimit-remaining"})


def replayable(request: httpx.Request) -> bool:
    """Whether the request body can be sent again: it is held in memory."""
    return isinstance(request.stream, httpx.ByteStream)
