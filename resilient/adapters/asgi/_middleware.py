"""``ResilienceMiddleware``: the ASGI driver. Decisions live in the helpers
(``_keys``, ``_plan``, ``_responses``); this module only moves messages."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Final, Literal, NamedTuple

from resilient._algorithms import Decision
from resilient._duration import to_seconds
from resilient._errors import (
    BackendError,
    ConfigError,
    RateLimitedError,
    RejectedError,
    TimeoutExceededError,
)
from resilient._pipeline import Policy

from ._keys import KeySpec, TrustedProxies, key_function
from ._plan import LimiterSlot, Plan, Route, RouteTable, as_route
from ._responses import (
    QUOTA_EXCEEDED,
    legacy_headers,
    problem,
    retry_after_value,
)
from ._types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FailedResponseError", "ResilienceMiddleware"]

Headers = list[tuple[bytes, bytes]]

logger = logging.getLogger("resilient")

_START: Final = "http.response.start"
_REFUSED: Final[Headers] = []  # sentinel: the limiters answered already
_RATELIMIT_POLICY: Final = b"ratelimit-policy"
_RATELIMIT: Final = b"ratelimit"
_RETRY_AFTER: Final = b"retry-after"


class _Hot(NamedTuple):
    """What the hot path of :meth:`ResilienceMiddleware.__call__` reads per request."""

    reporter: Callable[[str, int], Any] | None
    """``report(host, cost)``: the RateLimit field (or True) of a one-step admission,
    else ``None`` (see ``_RateLimiter._reporter``)."""
    keyed: Callable[[str, int], Decision]
    """``try_acquire(key, cost)`` in one call: everything else."""
    cost: int
    slot: LimiterSlot
    policy_field: tuple[bytes, bytes]


def _admitted(remaining: int, seconds: int) -> bool:
    """The hot path's rendering of an admission when no header fields are sent."""
    return True


class FailedResponseError(Exception):
    """The app answered with a failure status (5xx by default).

    The middleware raises it *inside* its policies once the app has returned, so
    a circuit breaker counts the response as a failure (and a breaker with
    ``open_on_retry_after`` reads the app's ``Retry-After``). It never leaves the
    middleware: the client already has the app's response. If you narrow a
    breaker's ``record=``, include this class.

    Attributes:
        status: the response status.
        retry_after: the response's ``Retry-After`` in seconds, or ``None``.
    """

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"the app answered HTTP {status}")
        self.status = status
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status, self.retry_after))


def _retry_after_header(headers: Iterable[tuple[bytes, bytes]]) -> float | None:
    for name, value in headers:
        if name.lower() == _RETRY_AFTER:
            text = value.strip()
            return float(text) if text.isdigit() else None
    return None


class _Exchange:
    """One request through the policies: what the app has sent so far.

    Lives for one request only, never on the middleware.
    """

    __slots__ = (
        "app_error",
        "extra",
        "failed",
        "failure",
        "retry_after",
        "send_",
        "started",
        "status",
    )

    def __init__(
        self,
        send: Send,
        extra: Headers | None,
        failure: Callable[[int], bool],
    ) -> None:
        self.send_ = send
        self.extra = extra
        self.failure = failure
        self.started = False
        self.status = 0
        self.app_error: BaseException | None = None
        self.failed: FailedResponseError | None = None
        self.retry_after: float | None = None

    def send(self, message: Message) -> Awaitable[None]:
        """The app's ``send`` (it returns the server's awaitable, adding nothing to await)."""
        if message["type"] == _START:
            self.started = True
            status = self.status = message["status"]
            extra = self.extra
            if extra:
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            if self.failure(status):
                self.retry_after = _retry_after_header(message.get("headers", ()))
        return self.send_(message)

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        """The call the policies wrap: the app, then the verdict on its response."""
        try:
            await app(scope, receive, self.send)
        except BaseException as exc:
            self.app_error = exc
            raise
        status = self.status
        if not status or self.failure(status):  # no response at all: the server sends 500
            failed = self.failed = FailedResponseError(status or 500, self.retry_after)
            raise failed


def _failure_predicate(value: object) -> Callable[[int], bool]:
    if callable(value):
        return value
    if isinstance(value, Container) and not isinstance(value, str | bytes):
        return value.__contains__
    raise ConfigError(
        "failure_statuses", value, "a collection of status codes or a predicate(status) -> bool"
    )


class ResilienceMiddleware:
    """Protect an ASGI app (FastAPI, Starlette, Litestar, any ASGI 3 app) with
    inbound policies: rate limits per client, a bulkhead, a circuit breaker on the
    app's failures, and a timeout.

    ::

        app.add_middleware(
            ResilienceMiddleware,
            rs.TokenBucket("20/s", burst=40),            # per client address
            rs.Bulkhead(max_concurrent=100, max_queued=50, max_wait="100ms"),
            rs.CircuitBreaker(failure_rate=0.5, open_for="10s"),
            rs.Timeout("5s"),
            trusted_proxies=["10.0.0.0/8"],
        )

    **Order.** Rate limiters are asked first, before anything else runs; the
    other policies then wrap the app in the order given, outermost first. Rate
    limiters are asked one after the other and the first refusal answers (those
    before it have counted the request): give one limiter several rates
    (``"10/s;500/min"``) to have them decide together.

    **Answers.** A refused rate limit answers 429, a full bulkhead or an open
    breaker 503 (both with ``Retry-After`` in whole seconds, rounded up;
    ``default_retry_after`` when the policy cannot know), a timeout before the
    response started 504, all with an
    RFC 9457 ``application/problem+json`` body. The app is not called and the
    request body is not read. Responses of rate-limited requests, admitted or
    refused, carry the IETF ``RateLimit-Policy`` and ``RateLimit`` fields (and
    ``X-RateLimit-*`` with ``legacy_headers=True``). Once the app has started its
    response, nothing is altered: a failure after that propagates as it would
    without the middleware.

    **Keys.** A rate limiter built without a ``key`` counts per client address
    (``key="client"``); the address is the connection's peer, or the forwarded
    client when the peer is one of ``trusted_proxies``. Other keys: ``"global"``
    (one limit for everyone), ``"user"`` (``scope["user"]``, from an
    authentication middleware outside this one), ``"header:X-API-Key"`` (the
    header's value, hashed), ``"path"``, ``"module:function"`` or a callable
    ``(scope) -> str | None``. A key that finds nothing (no header, anonymous)
    falls back to the client address. A limiter built with its own fixed key is
    one limit for every client; its key callable receives the scope.

    **Failures.** A breaker counts an exception from the app, and a response whose
    status is in ``failure_statuses`` (5xx by default), which reaches it as
    :class:`FailedResponseError`.

    **Other scopes.** Lifespan passes through; websocket connections pass through
    unless ``websocket=True``, which applies the rate limiters (only) to the
    handshake and refuses with 429 where the server supports denial responses,
    or closes with code 1008 otherwise.

    Args:
        app: the ASGI app to protect.
        *policies: the default policies (for requests no route matches):
            policies, registry names or pipelines. A ``Retry`` or ``Fallback`` is
            refused: the middleware never retries a request.
        registry: a :class:`~resilient.config.Registry` (or any mapping of names to
            policies) for names in ``policies`` and routes; looked up on each
            request, so a reload takes effect. Its ASGI routes are used when
            ``routes`` is not given.
        routes: :class:`Route` objects (or mappings with the same fields); the
            first match wins.
        key: what rate limiters without their own key count per (see above).
        trusted_proxies: addresses or networks of the proxies in front of the app
            whose forwarding header is believed (``"*"``: any peer).
        proxy_header: the forwarding header they set: ``"x-forwarded-for"`` or
            ``"forwarded"``. The other one is ignored.
        ipv6_prefix: IPv6 clients are counted per this prefix (default /64).
        failure_statuses: statuses a breaker counts as failures: a collection or a
            predicate (default 500-599).
        rate_limit_headers: send the IETF fields (default ``True``).
        legacy_headers: also send ``X-RateLimit-Limit/-Remaining/-Reset``.
        websocket: apply the rate limiters to websocket handshakes.
        default_retry_after: the ``Retry-After`` of a 503 whose policy cannot say
            when capacity returns (a full bulkhead, a breaker's probes all taken, a
            store that failed): 1 s by default, so clients back off a little;
            ``None`` leaves the field out.
        dashboard: serve the live dashboard under this path (``"/_resilient"``):
            the page, its JSON snapshot (``/_resilient/snapshot``) and its live
            stream, outside the policies. Off by default.
        dashboard_auth: called with each dashboard request's scope; a false answer
            refuses it with 403 (default: anyone who can reach the app).
    """

    def __init__(
        self,
        app: ASGIApp,
        *policies: Policy | str,
        registry: Mapping[str, Any] | None = None,
        routes: Iterable[Route | Mapping[str, Any]] | None = None,
        key: KeySpec = "client",
        trusted_proxies: Iterable[str] = (),
        proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
        ipv6_prefix: int = 64,
        failure_statuses: Container[int] | Callable[[int], bool] = range(500, 600),
        rate_limit_headers: bool = True,
        legacy_headers: bool = False,
        websocket: bool = False,
        default_retry_after: float | None = 1.0,
        dashboard: str | None = None,
        dashboard_auth: Callable[[Scope], bool | Awaitable[bool]] | None = None,
    ) -> None:
        if not callable(app):
            raise ConfigError("app", app, "an ASGI application")
        self.app = app
        self.proxies = TrustedProxies(trusted_proxies, header=proxy_header, ipv6_prefix=ipv6_prefix)
        self._direct = not self.proxies.enabled
        self._failure = _failure_predicate(failure_statuses)
        self._headers = bool(rate_limit_headers)
        self._legacy = bool(legacy_headers)
        self._collect = self._headers or self._legacy
        self._plain = self._headers and not self._legacy
        self._websocket = bool(websocket)
        if default_retry_after is None:
            self._unknown: int | None = None
        else:
            seconds = to_seconds(default_retry_after, name="default_retry_after")
            self._unknown = retry_after_value(seconds)
        self._policies = tuple(policies)
        self._key_fn = key_function(key, path="key")
        self._registry = registry
        self._file_routes: Any = None  # the registry's routes in use (to notice a reload)
        if routes is None and registry is not None:
            routes = self._file_routes = _registry_routes(registry)
        self._table = self._build(routes)
        self._default = self._table.default()
        self._dynamic = self._table.routed or registry is not None
        self._dashboard: Any = None
        if dashboard is not None:
            from resilient.dashboard._mount import middleware_dashboard

            self._dashboard = middleware_dashboard(self, dashboard, dashboard_auth)
        self._hot = self._hot_path()

    def _hot_path(self) -> _Hot | None:
        """What the commonest setup needs per request, or ``None`` when it is another.

        That setup: one plan for every request (no routes, no registry, no
        dashboard), one in-memory rate limiter counting per client address (read
        from the connection: no trusted proxies), no other policy, and the IETF
        fields or none at all.
        """
        plan = self._default
        if self._dynamic or self._dashboard is not None or plan is None or not self._direct:
            return None
        single = plan.single
        if single is None or single.keyed is None or not plan.by_address or plan.guard:
            return None
        if self._legacy:
            return None
        fields = single.headers
        reporter: Callable[[str, int], Any] | None = None
        make = getattr(single.limiter, "_reporter", None)
        if make is not None and len(single.limiter.limits) == 1:
            # An admission that takes one step comes back as the ready RateLimit
            # field (the same object while the numbers repeat), or as True without headers.
            render = fields.admitted_field if self._headers else _admitted
            reporter = make("ip:", render)
        return _Hot(reporter, single.keyed, single.cost, single, fields.policy_field)

    def _build(self, routes: Iterable[Route | Mapping[str, Any]] | None) -> RouteTable:
        route_list = [as_route(item) for item in (routes or ())]
        return RouteTable(self._policies, route_list, self._registry, self._key_fn)

    # -- routing -------------------------------------------------------------------------

    def _plan(self, scope: Scope, method: str) -> Plan | None:
        table = self._table
        if self._file_routes is not None:
            routes = _registry_routes(self._registry)
            if routes is not self._file_routes:
                table = self._reload(routes)
        return table.match(method, scope["path"]) if table.routed else table.default()

    def _reload(self, routes: Any) -> RouteTable:
        """The registry was reloaded with other routes: route by them from now on."""
        try:
            table = self._build(routes)
        except ConfigError:
            logger.exception("resilient: the reloaded ASGI routes are unusable; keeping the old")
            self._file_routes = routes  # do not try again on every request
            return self._table
        self._table, self._file_routes = table, routes
        return table

    def _key(self, plan: Plan, scope: Scope) -> str:
        fn = plan.key
        if fn is not None:
            found = fn(scope)
            if found is not None:
                return found
        if self._direct:  # no proxies: the peer, as the server gives it
            peer = scope.get("client")
            host: str | None = peer[0] if peer else None
            if host and ":" not in host:
                return "ip:" + host
        client = self.proxies.client(scope)
        return "ip:" + (client or "unknown")

    # -- the ASGI entry point --------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self._hot
        if hot is not None and scope["type"] == "http":  # see _hot_path()
            peer = scope.get("client")
            host: str | None = peer[0] if peer else None
            if host and ":" not in host:  # IPv4 (IPv6 is counted per prefix: below)
                reporter, keyed, cost, slot, policy_field = hot
                if reporter is not None:
                    field = reporter(host, cost)  # the key "ip:<host>", admitted at once
                    if field is not None:
                        if field is True:
                            await self.app(scope, receive, send)
                        else:
                            adding = partial(_send_adding_two, send, policy_field, field)
                            await self.app(scope, receive, adding)
                        return
                decision = keyed("ip:" + host, cost)
                if not decision.allowed:
                    await self._too_many(send, [(slot, decision)], http=True)
                elif self._headers:
                    fields = slot.headers
                    state = fields.state_field(decision)
                    adding = partial(_send_adding_two, send, fields.policy_field, state)
                    await self.app(scope, receive, adding)
                else:
                    await self.app(scope, receive, send)
                return
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket" and self._websocket:
                await self._websocket_call(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        dashboard = self._dashboard
        if dashboard is not None and dashboard.handles(scope["path"]):
            await dashboard(scope, receive, send)  # never behind the policies it shows
            return
        plan = self._plan(scope, scope["method"]) if self._dynamic else self._default
        if plan is None:
            await self.app(scope, receive, send)
            return
        extra: Headers | None = None
        single = plan.single
        if single is not None:  # one in-memory limiter: the common case, decided in line
            key: str | None
            if plan.by_address and self._direct:
                peer = scope.get("client")
                host = peer[0] if peer else None
                key = "ip:" + host if host and ":" not in host else self._key(plan, scope)
            else:
                key = self._key(plan, scope) if plan.needs_key else None
            one_call = single.keyed
            if one_call is not None and type(key) is str:
                decision = one_call(key, single.cost)  # try_acquire(key, cost), one call
            else:
                decision = single.limiter.try_acquire(key, single.cost)
            if not decision.allowed:
                await self._too_many(send, [(single, decision)], http=True)
                return
            if self._plain:
                fields = single.headers
                if plan.guard is None:  # the hot path: two fields added to the app's start
                    state = fields.state_field(decision)
                    adding = partial(_send_adding_two, send, fields.policy_field, state)
                    await self.app(scope, receive, adding)
                    return
                extra = [fields.policy_field, fields.state_field(decision)]
            elif self._collect:
                extra = self._fields([(single, decision)], None)
        elif plan.limiters:
            extra = await self._limit(plan, scope, send, http=True)
            if extra is _REFUSED:
                return
        guard = plan.guard
        if guard is None:
            await self.app(scope, receive, send if extra is None else _adding(send, extra))
            return
        exchange = _Exchange(send, extra, self._failure)
        try:
            await guard.acall(exchange.run, self.app, scope, receive)
        except FailedResponseError as exc:
            if exc is not exchange.failed:
                raise
        except RejectedError as exc:
            if exc is exchange.app_error or exchange.started:
                raise
            await self._refuse(send, exc, extra)
        except TimeoutExceededError as exc:
            if exc is exchange.app_error or exchange.started:
                raise
            await self._timed_out(send, exc, extra)
        except BackendError as exc:  # a policy's shared state is unreachable (mode "raise")
            if exc is exchange.app_error or exchange.started:
                raise
            detail = "A policy could not be checked."
            await self._answer(send, 503, detail, self._unknown, extra or [], http=True)

    # -- rate limits -----------------------------------------------------------------------

    async def _limit(self, plan: Plan, scope: Scope, send: Send, *, http: bool) -> Headers | None:
        """Ask every limiter; on a refusal answer 429 and return ``_REFUSED``, else
        return the header fields to add to the response (``None``: none)."""
        key: str | None = self._key(plan, scope) if plan.needs_key else None
        decided: list[tuple[LimiterSlot, Decision]] = []
        for slot in plan.limiters:
            if slot.key_fn is not None:
                slot_key: Any = slot.key_fn(scope)
            else:
                slot_key = None if slot.fixed else key
            cost = slot.cost if slot.cost_fn is None else slot.cost_fn(scope)
            try:
                if slot.local:  # in memory: no I/O, no coroutine needed
                    decision = slot.limiter.try_acquire(slot_key, cost)
                else:
                    decision = await slot.limiter.atry_acquire(slot_key, cost)
            except BackendError:
                fields = self._fields(decided, None)
                detail = "The rate limit could not be checked."
                await self._answer(send, 503, detail, self._unknown, fields, http=http)
                return _REFUSED
            decided.append((slot, decision))
            if not decision.allowed:
                await self._too_many(send, decided, http=http)
                return _REFUSED
        return self._fields(decided, None) if self._collect else None

    async def _too_many(
        self, send: Send, decided: list[tuple[LimiterSlot, Decision]], *, http: bool
    ) -> None:
        """Answer 429 for the last of *decided*, which refused."""
        slot, decision = decided[-1]
        retry = retry_after_value(decision.retry_after)
        await self._answer(
            send,
            429,
            f"Too many requests; retry in {retry} s.",
            retry,
            self._fields(decided, retry),
            http=http,
            type_=QUOTA_EXCEEDED,
            extra={"violated-policies": [slot.headers.violated(decision)]},
        )

    def _fields(self, decided: list[tuple[LimiterSlot, Decision]], retry: int | None) -> Headers:
        """The rate-limit header fields for these decisions (*retry*: the last one refused)."""
        if not decided or not self._collect:
            return []
        fields: Headers = []
        if len(decided) == 1:
            slot, tightest = decided[0]
            if self._headers:
                fields.append(slot.headers.policy_field)
                fields.append((_RATELIMIT, slot.headers.state(tightest, retry)))
        else:
            last = len(decided) - 1
            states = [
                slot.headers.state(decision, retry if i == last else None)
                for i, (slot, decision) in enumerate(decided)
            ]
            tightest = (
                decided[-1][1]
                if retry is not None
                else min((decision for _, decision in decided), key=lambda d: d.remaining)
            )
            if self._headers:
                policies = b", ".join(slot.headers.policy for slot, _ in decided)
                fields.append((_RATELIMIT_POLICY, policies))
                fields.append((_RATELIMIT, b", ".join(states)))
        if self._legacy:
            fields.extend(legacy_headers(tightest, retry))
        return fields

    # -- answers ---------------------------------------------------------------------------

    async def _refuse(self, send: Send, exc: RejectedError, extra: Headers | None) -> None:
        retry = retry_after_value(exc.retry_after)
        if retry is None:
            retry = self._unknown
        if isinstance(exc, RateLimitedError):
            status, detail = 429, "Too many requests."
        elif exc.reason in ("bulkhead_full", "bulkhead_timeout"):
            status, detail = 503, "The service is at capacity."
        else:
            status, detail = 503, "The service is temporarily unavailable."
        if retry is not None:
            detail = f"{detail[:-1]}; retry in {retry} s."
        await self._answer(send, status, detail, retry, extra or [], http=True)

    async def _timed_out(
        self, send: Send, exc: TimeoutExceededError, extra: Headers | None
    ) -> None:
        detail = f"The request took longer than {exc.budget:g} s."
        await self._answer(send, 504, detail, None, extra or [], http=True)

    async def _answer(
        self,
        send: Send,
        status: int,
        detail: str,
        retry: int | None,
        fields: Headers,
        *,
        http: bool,
        type_: str = "about:blank",
        extra: dict[str, Any] | None = None,
    ) -> None:
        headers, body = problem(status, detail, type_=type_, extra=extra)
        if retry is not None:
            headers.append((_RETRY_AFTER, str(retry).encode()))
        headers.extend(fields)
        prefix = "http" if http else "websocket.http"
        await send({"type": f"{prefix}.response.start", "status": status, "headers": headers})
        await send({"type": f"{prefix}.response.body", "body": body})

    # -- websockets ------------------------------------------------------------------------

    async def _websocket_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self._plan(scope, "GET")
        if plan is None or not plan.limiters:
            await self.app(scope, receive, send)
            return
        denial = "websocket.http.response" in (scope.get("extensions") or {})
        extra = await self._limit(plan, scope, send if denial else _discard, http=False)
        if extra is not _REFUSED:
            await self.app(scope, receive, send)
            return
        if not denial:
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})

    def __repr__(self) -> str:
        return f"ResilienceMiddleware(app={self.app!r})"


def _adding(send: Send, extra: Headers) -> Send:
    """*send*, adding *extra* header fields to the response start.

    A plain function returning the server's awaitable: no coroutine of its own.
    """

    def send_adding(message: Message) -> Awaitable[None]:
        if message["type"] == _START:
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        return send(message)

    return send_adding


def _send_adding_two(
    send: Send, first: tuple[bytes, bytes], second: tuple[bytes, bytes], message: Message
) -> Awaitable[None]:
    """*send*, adding two header fields to the response start (bound with ``partial``:
    cheaper per request than a closure)."""
    if message["type"] == _START:
        started = dict(message)  # the app's own message and list stay as they were
        started["headers"] = [*message.get("headers", ()), first, second]
        return send(started)
    return send(message)


async def _discard(message: Message) -> None:
    return None


def _registry_routes(registry: object) -> Sequence[Any] | None:
    """A registry's ASGI routes (``registry.routes.asgi``), or ``None``."""
    routes = getattr(registry, "routes", None)
    asgi = getattr(routes, "asgi", None)
    return asgi if isinstance(asgi, Sequence) else None
