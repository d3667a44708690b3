"""What the gRPC interceptors decide, shared by the ``grpc`` and ``grpc.aio`` drivers.

Nothing here performs I/O, sleeps or awaits: the four drivers (sync and asyncio,
client and server) ask this module which policy covers a method, what a status
code means, how long the next attempt may take and how to answer a rejection,
and then do the waiting themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import functools
import logging
import math
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
)
from contextvars import ContextVar
from typing import Any, Final, TypeAlias
from urllib.parse import unquote

import grpc

from ..._clock import Clock, remaining
from ..._errors import (
    ConfigError,
    RateLimitedError,
    RejectedError,
    TimeoutExceededError,
)
from ..._pipeline import Pipeline, Policy
from ..._retry import Retry
from ...backends.memory import MemoryStore
from ...observability._emit import add_event_context
from ...observability._events import Event

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "DEFAULT_RETRY_CODES",
    "PUSHBACK_KEY",
    "KeyFunc",
    "NotReplayableError",
    "RetryableStatusError",
    "StatusError",
    "metadata_key",
    "peer_key",
]

PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"
"""The trailing-metadata key of gRPC server pushback (gRFC A6), in milliseconds."""

DEFAULT_RETRY_CODES: Final = frozenset({grpc.StatusCode.UNAVAILABLE})
"""Status codes retried by default: only ``UNAVAILABLE`` (the request was not processed)."""

DEFAULT_FAILURE_CODES: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""Status codes that count as a failure of the service (what a circuit breaker sees).

Other non-OK codes (``NOT_FOUND``, ``INVALID_ARGUMENT``, ``PERMISSION_DENIED``,
``RESOURCE_EXHAUSTED``...) are answers about the request, not faults of the
service: the policies see a successful call and the caller still gets the error.
"""

KeyFunc: TypeAlias = Callable[[str, Any], Hashable | None]
"""Picks the rate-limit partition of a server call: ``key(method, context) -> key``."""

logger = logging.getLogger("resilient")

_NO_DEADLINE: Final = 1e9  # sync servers report ~9.2e18 s left when the call has no deadline


# --------------------------------------------------------------------------- errors


class StatusError(grpc.RpcError):  # type: ignore[misc]
    """A gRPC attempt ended with a status code counted as a failure.

    Raised *inside* an attempt so that the policies around it (circuit breaker,
    retry, bulkhead, fallback) see the failure; it is a ``grpc.RpcError``, so
    ``retry_on=grpc.RpcError``, ``record=grpc.RpcError`` or
    ``Fallback(on=grpc.RpcError)`` work as written. The caller never sees it:
    once the policies are done the interceptor hands back the original gRPC
    error, with the notes added by the policies (``"gave up after 3 attempts"``).

    Attributes:
        code: the ``grpc.StatusCode``.
        details: the status details.
        retry_after: the server's pushback in seconds (``grpc-retry-pushback-ms``),
            negative when the server asked not to retry, ``None`` without a hint.
        error: the gRPC error (or failed call) the caller will receive.

    A call whose request stream cannot be sent again carries ``retry_after=-1``
    whatever the server said, so that no retry policy tries it again.
    """

    def __init__(
        self, error: Any, code: Any, details: str | None, retry_after: float | None
    ) -> None:
        super().__init__(f"{getattr(code, 'name', code)}: {details or ''}".rstrip(": "))
        self.error = error
        self.code = code
        self.details = details
        self.retry_after = retry_after


class RetryableStatusError(StatusError, OSError):
    """A :class:`StatusError` whose code is retryable (``UNAVAILABLE`` by default).

    It is an ``OSError`` so that :class:`resilient.Retry` with its default
    ``retry_on=(OSError,)`` retries it, while other status failures are not
    retried; ``Retry`` reads the pushback from ``retry_after``.
    """


class NotReplayableError(RejectedError):
    """A policy asked for another attempt of a call whose request stream is spent.

    A request stream given as an iterator or generator is sent once; pass a
    re-iterable (a list or a tuple) to let a retry send it again.
    """

    default_reason = "not_replayable"


class Cancelled(BaseException):
    """An attempt ended with ``CANCELLED``: policies release it without counting it.

    Raised inside the attempt (a ``BaseException``, like a cancellation, so no
    policy counts it as a failure or retries it) and unwrapped by the driver.
    """

    def __init__(self, outcome: Any) -> None:
        super().__init__("the call was cancelled")
        self.outcome = outcome


def copy_notes(source: BaseException, target: BaseException) -> None:
    """Copy the notes policies added to *source* (e.g. "gave up after 3 attempts")."""
    for note in getattr(source, "__notes__", ()):
        try:
            target.add_note(note)
        except (AttributeError, TypeError):  # pragma: no cover - exotic error objects
            return


# --------------------------------------------------------------------------- metadata


def parse_pushback(metadata: Iterable[Any] | None) -> float | None:
    """The server's pushback in seconds, from trailing metadata.

    Per gRFC A6 a value ``>= 0`` means "retry after exactly this delay", and a
    negative or unparseable value means "do not retry" (returned as ``-1.0``).
    ``None`` when there is no pushback.
    """
    if not metadata:
        return None
    for item in metadata:
        key, value = item[0], item[1]
        if key != PUSHBACK_KEY:
            continue
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        text = str(value).strip()
        if not text.lstrip("-").isdigit():
            return -1.0
        millis = int(text)
        return -1.0 if millis < 0 else millis / 1000.0
    return None


def pushback_metadata(retry_after: float | None) -> tuple[tuple[str, str], ...]:
    """The trailing metadata a server sends to say when to retry (none if unknown).

    Milliseconds are rounded up, so the hint is never an underestimate; an
    infinite ``retry_after`` (a request that can never be admitted) asks the
    client not to retry at all.
    """
    if retry_after is None or math.isnan(retry_after):
        return ()
    if math.isinf(retry_after):
        return ((PUSHBACK_KEY, "-1"),)
    return ((PUSHBACK_KEY, str(max(math.ceil(retry_after * 1000.0), 0))),)


def method_name(method: str | bytes) -> str:
    """``"/pkg.Service/Method"`` (str), whichever type the channel used."""
    return method.decode("utf-8", "replace") if isinstance(method, bytes) else method


# --------------------------------------------------------------------------- routing

_NOT_FOUND: Any = object()


def _items(value: object, path: str) -> tuple[Policy | str, ...]:
    """A route's value as its items: policies and registry names, outermost first."""
    if value is None:
        return ()
    if isinstance(value, str | Policy):
        value = (value,)
    if not isinstance(value, list | tuple):
        raise ConfigError(
            path, value, "a policy, a registry name, a list of them, or None (no policy)"
        )
    for index, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise ConfigError(f"{path}[{index}]", item, "a non-empty registry name")
        elif not isinstance(item, Policy):
            raise ConfigError(
                f"{path}[{index}]", item, "a policy with call() and acall(), or a registry name"
            )
    return tuple(value)


class Target:
    """What one route runs: policies and registry names, outermost first.

    Names are looked up in the registry on every call, so a registry that
    reloads a policy is followed; the policy built from the same objects is
    reused.
    """

    __slots__ = ("built", "items", "named", "path", "static")

    def __init__(self, value: object, path: str) -> None:
        self.items = _items(value, path)
        self.path = path
        self.named = any(isinstance(item, str) for item in self.items)
        self.static: Policy | None = None if self.named else _one(self.items)
        self.built: tuple[tuple[int, ...], Policy | None] | None = None

    def policy(self, registry: Mapping[str, Any] | None) -> Policy | None:
        if not self.named:
            return self.static
        if registry is None:
            raise ConfigError(self.path, self.items, "policies (names need registry=)")
        resolved = []
        for item in self.items:
            if isinstance(item, str):
                try:
                    found = registry[item]
                except KeyError:
                    raise ConfigError(
                        self.path, item, f"a name in the registry ({', '.join(registry)})"
                    ) from None
                resolved.append(found)
            else:
                resolved.append(item)
        ids = tuple(id(item) for item in resolved)
        built = self.built
        if built is not None and built[0] == ids:
            return built[1]
        policy = _one(tuple(resolved))
        self.built = (ids, policy)
        return policy


def _one(items: tuple[Any, ...]) -> Policy | None:
    if not items:
        return None
    return items[0] if len(items) == 1 else Pipeline(*items)


def _kind(pattern: str) -> int:
    """0 exact method, 1 whole service, 2 other glob, 3 everything."""
    if pattern == "*":
        return 3
    if "/" not in pattern or pattern.endswith("/*"):
        service = pattern.removesuffix("/*")
        if not any(c in service for c in "*?["):
            return 1
    return 2 if any(c in pattern for c in "*?[") else 0


class Routes:
    """Which policy covers a method: a route pattern, else the default policies.

    Patterns are written without the leading slash: ``"pkg.Service/Method"``
    (one method), ``"pkg.Service"`` or ``"pkg.Service/*"`` (every method of a
    service), any other glob (``"pkg.*/Get*"``) and ``"*"`` (everything). The
    most specific pattern wins (method, then service, then globs in mapping
    order, then ``"*"``); a method no pattern matches gets the default.

    A value is a policy, a registry name, a list of them (a pipeline,
    outermost first), or ``None`` (no policy: the call passes through
    untouched). Which pattern matches a method is decided once per method;
    the value is read from the mapping, and names from the registry, on
    every call, so a reloaded registry is followed.
    """

    __slots__ = ("_default", "_matched", "_patterns", "_registry", "_routes", "_targets", "fixed")

    def __init__(
        self,
        default: tuple[Any, ...],
        routes: Mapping[str, Any] | None,
        registry: Mapping[str, Any] | None = None,
    ) -> None:
        if routes is not None and not isinstance(routes, Mapping):
            raise ConfigError("routes", routes, "a mapping of method patterns to policies")
        if registry is not None and not isinstance(registry, Mapping):
            raise ConfigError("registry", registry, "a Registry or a mapping of names to policies")
        self._registry = registry
        self._default = Target(list(default), "policies")
        if self._default.named and registry is None:
            raise ConfigError("policies", default, "policies (names need registry=)")
        self._routes = routes
        self.fixed = self._default.static if routes is None else None
        """The one policy of every method when nothing is looked up per call (else ``None``)."""
        patterns: list[tuple[int, int, str, str]] = []
        self._targets: dict[str, tuple[object, Target]] = {}
        for order, key in enumerate(routes or ()):
            if not isinstance(key, str) or not key.strip("/"):
                raise ConfigError("routes", key, "method patterns such as 'pkg.Service/Method'")
            value = routes[key]  # type: ignore[index]
            target = Target(value, f"routes[{key!r}]")
            if target.named and registry is None:
                raise ConfigError(f"routes[{key!r}]", value, "policies (names need registry=)")
            self._targets[key] = (value, target)
            normal = key.lstrip("/")
            patterns.append((_kind(normal), order, normal, key))
        patterns.sort()
        self._patterns = tuple(patterns)
        self._matched: dict[str | bytes, str | None] = {}

    def __repr__(self) -> str:
        routes = list(self._routes) if self._routes is not None else None
        return f"default={self._default.items!r}, routes={routes!r}"

    def given(self) -> Iterator[tuple[str, Policy]]:
        """The policies given directly (not by name), with where they were given."""
        targets = [self._default, *(target for _, target in self._targets.values())]
        for target in targets:
            for item in target.items:
                if not isinstance(item, str):
                    for inner in flatten(item):
                        yield target.path, inner

    def _match(self, method: str) -> str | None:
        name = method.lstrip("/")
        service = name.rpartition("/")[0]
        for kind, _, pattern, key in self._patterns:
            if kind == 0 and pattern == name:
                return key
            if kind == 1 and pattern.removesuffix("/*") == service:
                return key
            if kind >= 2 and fnmatch.fnmatchcase(name, pattern):
                return key
        return None

    def policy(self, method: str | bytes) -> Policy | None:
        """The policy for *method* (``None``: pass the call through)."""
        if self._routes is None:
            return self._default.policy(self._registry)
        key = self._matched.get(method, _NOT_FOUND)
        if key is _NOT_FOUND:
            key = self._match(method_name(method))
            if len(self._matched) < 10_000:  # bounded: method names come from the wire
                self._matched[method] = key
        if key is None:
            return self._default.policy(self._registry)
        value = self._routes.get(key)
        known = self._targets.get(key)
        if known is None or known[0] is not value:
            known = (value, Target(value, f"routes[{key!r}]"))
            self._targets[key] = known
        return known[1].policy(self._registry)


def flatten(policy: Policy | None) -> list[Policy]:
    """The policies inside *policy*, outermost first, pipelines unpacked."""
    if policy is None:
        return []
    if isinstance(policy, Pipeline):
        return [inner for item in policy.policies for inner in flatten(item)]
    return [policy]


def compose(
    policies: Iterable[Policy], inner: Callable[..., Any], asynchronous: bool
) -> Callable[..., Any]:
    """``policies[0].call(partial(policies[1].call, ... inner), *args)`` as one callable.

    The same nesting as a :class:`~resilient.Pipeline` (outermost first), built
    once instead of on every call. With ``asynchronous`` it chains ``acall``.
    """
    run = inner
    for policy in reversed(list(policies)):
        run = functools.partial(policy.acall if asynchronous else policy.call, run)
    return run


def invoke(fn: Callable[[], Any]) -> Any:
    """The innermost step of a client chain: run the attempt (or start its coroutine)."""
    return fn()


# --------------------------------------------------------------------------- client


def replayable(requests: object) -> bool:
    """Whether a request stream can be sent again: a re-iterable, not an iterator."""
    return not isinstance(requests, Iterator | AsyncIterator)


def _codes(value: Iterable[Any], name: str) -> frozenset[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(name, value, "grpc.StatusCode values")
    codes = frozenset(value)
    for code in codes:
        if not isinstance(code, grpc.StatusCode):
            raise ConfigError(name, code, "grpc.StatusCode values")
        if code in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            raise ConfigError(name, code, "failure codes (not OK, and not CANCELLED)")
    return codes


CURRENT: ContextVar[str | None] = ContextVar("resilient_grpc_method", default=None)
"""The full method name of the failing client call whose retries run in this context."""


def _event_context(event: Event) -> dict[str, Any] | None:
    """Events emitted while a call fails carry its service and method."""
    method = CURRENT.get()
    if method is None:
        return None
    service, _, name = method.lstrip("/").rpartition("/")
    return {"service": service, "method": name}


add_event_context(_event_context)


class _Annotate:
    """A listener, first in line on the adapted retries, that adds the call's
    ``service``, ``method`` and status ``code`` (or ``error``) to their events."""

    call_events = False

    def __call__(self, event: Event) -> None:
        method = CURRENT.get()
        if method is None:
            return
        attributes = event.attributes
        service, _, name = method.lstrip("/").rpartition("/")
        attributes.setdefault("service", service)
        attributes.setdefault("method", name)
        cause = getattr(event, "cause", None) or getattr(event, "exception", None)
        if isinstance(cause, StatusError):
            attributes.setdefault("code", getattr(cause.code, "name", str(cause.code)))
        elif cause is not None:
            attributes.setdefault("error", type(cause).__name__)


_ANNOTATE = _Annotate()


def adapt_retry(retry: Retry) -> Retry:
    """A copy of *retry* for gRPC calls.

    It keeps every setting, the clock, the name and the listeners (and shares
    the retry budget); its events carry the call's service, method and code,
    and a server hint longer than the time left before a deadline (the
    call's own timeout, a ``Timeout`` around it, the retry's ``deadline``)
    ends the retries at once instead of sleeping past it.
    """
    cfg = retry.config
    user_after = cfg.retry_after

    def retry_after(outcome: object) -> float | None:
        hint = user_after(outcome)
        if hint is not None and hint > 0:
            left = remaining()
            if left is not None and hint > left:
                return -1.0  # the next attempt could only start after the deadline
        return hint

    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.init}
    settings["retry_after"] = retry_after
    return Retry(
        **settings,
        name=retry.name,
        clock=retry.clock,
        listeners=(_ANNOTATE, *retry._emitter.local),
    )


class ClientChain:
    """The policies of one route, ready to run client calls.

    Pipelines are flattened and each :class:`~resilient.Retry` is replaced by
    an adapted copy (:func:`adapt_retry`); ``run(attempt)`` and
    ``arun(attempt)`` run an attempt function through them.
    """

    __slots__ = ("annotated", "arun", "run")

    def __init__(self, policy: Policy) -> None:
        items = [adapt_retry(item) if isinstance(item, Retry) else item for item in flatten(policy)]
        self.annotated = any(isinstance(item, Retry) for item in items)
        self.run: Callable[[Callable[[], Any]], Any] = compose(items, invoke, False)
        self.arun: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]] = compose(
            items, invoke, True
        )


class ClientCore:
    """The client decisions: which chain runs a call, what a status means."""

    __slots__ = ("chains", "clock", "failure_codes", "fixed", "retry_codes", "routes")

    def __init__(
        self,
        routes: Routes,
        retry_codes: Iterable[Any],
        failure_codes: Iterable[Any],
        clock: Clock,
    ) -> None:
        self.routes = routes
        self.retry_codes = _codes(retry_codes, "retry_codes")
        self.failure_codes = _codes(failure_codes, "failure_codes") | self.retry_codes
        self.clock = clock
        self.chains: dict[int, tuple[Policy, ClientChain]] = {}
        self.fixed: ClientChain | None = None
        if routes.fixed is not None:
            self.fixed = ClientChain(routes.fixed)

    def chain(self, method: str | bytes) -> ClientChain | None:
        """The chain that runs a call of *method* (``None``: pass it through)."""
        if self.fixed is not None:
            return self.fixed
        policy = self.routes.policy(method)
        if policy is None:
            return None
        cached = self.chains.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        chain = ClientChain(policy)
        if len(self.chains) > 1_000:
            self.chains.clear()
        self.chains[id(policy)] = (policy, chain)
        return chain

    def judge(self, error: Any, code: Any, call: CallState) -> BaseException | None:
        """What a finished attempt with a non-OK *code* means to the policies.

        ``None``: an answer, not a failure (the attempt returns it). Otherwise the
        exception to raise inside the attempt: :class:`Cancelled` for
        ``CANCELLED``, :class:`RetryableStatusError` for a retryable code on a
        call that can be sent again, :class:`StatusError` for other failures.
        """
        if code is grpc.StatusCode.CANCELLED:
            return Cancelled(error)
        if code not in self.failure_codes:
            return None
        call.failing()
        try:
            trailing = error.trailing_metadata()
        except Exception:  # a failed outcome without metadata
            trailing = None
        try:
            details = error.details()
        except Exception:
            details = None
        hint = parse_pushback(trailing)
        if not call.replayable:
            return StatusError(error, code, details, -1.0)  # sent once: never again
        if code in self.retry_codes:
            left = call.own_left()
            if left is not None and (left <= 0 or (hint is not None and hint > left)):
                hint = -1.0  # the next attempt could only start after the call's deadline
            return RetryableStatusError(error, code, details, hint)
        return StatusError(error, code, details, hint)


class Started:
    """What a response-streaming attempt ends with: its call (or response iterator),
    the first message (``NOTHING`` if none) and, for an answer, its error."""

    __slots__ = ("call", "error", "first")

    def __init__(self, call: Any, first: Any, error: BaseException | None = None) -> None:
        self.call = call
        self.first = first
        self.error = error


NOTHING: Any = object()
"""No message (a stream that ended, or failed, before its first one)."""


class CallState:
    """One intercepted client call: its details, its own timeout and its attempts.

    The call's ``timeout`` covers all its attempts (measured from when the call
    was made): each attempt's gRPC timeout is what is left of it, or less when
    a deadline published by the policies around the attempt is nearer
    (``resilient.remaining()``: a :class:`resilient.Timeout`, a retry's
    ``deadline``).
    """

    __slots__ = (
        "annotated",
        "attempts",
        "clock",
        "deadline_at",
        "details",
        "make_details",
        "method_token",
        "outcome",
        "replayable",
    )

    def __init__(
        self,
        details: Any,
        clock: Clock,
        make_details: Callable[[Any, float | None], Any],
        annotated: bool,
        replayable: bool = True,
    ) -> None:
        self.details = details
        self.clock = clock
        self.make_details = make_details
        self.annotated = annotated
        self.replayable = replayable
        self.attempts = 0
        self.outcome: Any = None
        self.method_token: Any = None
        timeout = details.timeout
        self.deadline_at: float | None = (
            clock.monotonic() + float(timeout) if timeout is not None else None
        )

    @property
    def method(self) -> str:
        return method_name(self.details.method)

    def own_left(self) -> float | None:
        """Seconds left of the call's own timeout (``None``: it has none)."""
        if self.deadline_at is None:
            return None
        return self.deadline_at - self.clock.monotonic()

    def failing(self) -> None:
        """An attempt is failing: name the call for the retries' events."""
        if self.annotated and self.method_token is None:
            self.method_token = CURRENT.set(self.method)

    def leave(self) -> None:
        """Undo :meth:`failing` (in the context it was done in)."""
        token, self.method_token = self.method_token, None
        if token is not None:
            with contextlib.suppress(ValueError):  # set in a background task's own context
                CURRENT.reset(token)

    def next_details(self) -> Any:
        """The call details for the next attempt, its timeout the time left.

        Raises :class:`NotReplayableError` when the request stream was already
        sent and another attempt is asked for.
        """
        self.attempts += 1
        if self.attempts > 1 and not self.replayable:
            raise NotReplayableError(
                "grpc",
                key=self.method,
                reason="not_replayable: the request stream was already sent; pass a list or "
                "tuple to allow retries",
            )
        left = remaining()
        if self.deadline_at is not None:
            if left is None and self.attempts == 1:
                return self.details  # the caller's own timeout stands
            own = self.deadline_at - self.clock.monotonic()
            left = own if left is None else min(own, left)
        elif left is None:
            return self.details
        return self.make_details(self.details, max(left, 0.0))


# --------------------------------------------------------------------------- server


_PEERS: dict[str, str] = {}  # peer -> address: a connection's calls share its peer string


def _address(peer: str) -> str:
    scheme, _, address = peer.partition(":")
    if scheme == "ipv4":
        return address.rpartition(":")[0] or address
    if scheme == "ipv6":
        address = unquote(address)
        host = address.rpartition(":")[0] if "]" in address else address
        return host.strip("[]") or address
    return peer


def peer_key(method: str, context: Any) -> Hashable | None:
    """The client's address (without its port), the default rate-limit key.

    ``"ipv4:10.0.0.7:51234"`` gives ``"10.0.0.7"``, ``"ipv6:[::1]:51234"`` gives
    ``"::1"``; other peers (``"unix:/run/app.sock"``) are used whole. Behind a
    proxy every request has the proxy's address: key on metadata set by the
    proxy instead (:func:`metadata_key`).
    """
    peer = context.peer()
    if not isinstance(peer, str):
        return None
    address = _PEERS.get(peer)
    if address is None:
        if len(_PEERS) >= 4096:
            _PEERS.clear()
        address = _PEERS[peer] = _address(peer)
    return address


def metadata_key(name: str, fallback: KeyFunc | None = peer_key) -> KeyFunc:
    """A key function reading invocation metadata *name* (e.g. ``"x-api-key"``).

    Requests without it are keyed by *fallback* (the client address by default;
    ``None``: they share one partition).
    """
    if not isinstance(name, str) or not name:
        raise ConfigError("name", name, "a metadata key such as 'x-api-key'")
    wanted = name.lower()

    def key(method: str, context: Any) -> Hashable | None:
        for item in context.invocation_metadata() or ():
            if item[0] == wanted:
                return item[1]  # type: ignore[no-any-return]
        return fallback(method, context) if fallback is not None else None

    key.__qualname__ = key.__name__ = f"metadata_key({name!r})"
    return key


def is_limiter(policy: object) -> bool:
    """A rate limiter: asked with ``try_acquire(key, cost)`` before the handler."""
    return callable(getattr(policy, "try_acquire", None)) and hasattr(policy, "limits")


class LimiterSlot:
    """How a server asks one rate limiter.

    A limiter built with its own ``key`` keeps it: a fixed value makes one limit
    for every client; a callable gets the handler's arguments (the request, or
    the request iterator, and the context). A limiter without a key counts per
    the interceptor's ``key`` (by default the client address).
    """

    __slots__ = ("cost", "cost_fn", "fixed", "is_async", "key_fn", "limiter")

    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        self.key_fn: Callable[..., Hashable] | None = getattr(limiter, "_key_fn", None)
        self.fixed = self.key_fn is None and getattr(limiter, "_key", None) is not None
        self.cost_fn: Callable[..., int] | None = getattr(limiter, "_cost_fn", None)
        cost = getattr(limiter, "_cost", 1)
        self.cost = cost if isinstance(cost, int) and not isinstance(cost, bool) else 1
        self.is_async = callable(getattr(limiter, "atry_acquire", None)) and not isinstance(
            getattr(limiter, "store", None), MemoryStore
        )
        """Asked with ``await atry_acquire`` on asyncio servers (an in-memory limiter
        decides without I/O: its sync ``try_acquire`` is cheaper)."""

    def own_key(self) -> bool:
        return self.fixed or self.key_fn is not None


class Plan:
    """What guards one server method: rate limiters first (keyed), then the rest.

    A :class:`~resilient.Retry` is left out: a server never runs a handler twice
    (one given directly is refused when the interceptor is built; one from a
    registry is skipped with a warning).
    """

    __slots__ = ("by_key", "limiters", "policies", "single")

    def __init__(self, policy: Policy | None) -> None:
        items = flatten(policy)
        if any(isinstance(item, Retry) for item in items):
            logger.warning(
                "resilient: %r holds a Retry; gRPC server interceptors skip it (a handler "
                "is never run twice)",
                policy,
            )
            items = [item for item in items if not isinstance(item, Retry)]
        self.limiters = tuple(LimiterSlot(item) for item in items if is_limiter(item))
        self.by_key = any(not slot.own_key() for slot in self.limiters)
        only = self.limiters[0] if len(self.limiters) == 1 else None
        self.single = only if only is not None and not only.own_key() and not only.cost_fn else None
        """The only limiter, when it counts per the interceptor's key at a fixed cost."""
        self.policies: tuple[Policy, ...] = tuple(item for item in items if not is_limiter(item))
        """The other policies, outermost first, run around the handler."""


class Rejection:
    """How a server answers a refused or timed-out call."""

    __slots__ = ("code", "details", "trailers")

    def __init__(self, code: Any, details: str, trailers: tuple[tuple[str, str], ...]) -> None:
        self.code = code
        self.details = details
        self.trailers = trailers


def rejection_for(exc: BaseException) -> Rejection | None:
    """The status for one of the library's errors, or ``None`` for anything else.

    A rate limit answers ``RESOURCE_EXHAUSTED``; an open breaker, a full
    bulkhead and other rejections ``UNAVAILABLE`` (both with the pushback
    trailer when the error knows when to come back); a timeout
    ``DEADLINE_EXCEEDED``.
    """
    if isinstance(exc, RateLimitedError):
        return Rejection(
            grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), pushback_metadata(exc.retry_after)
        )
    if isinstance(exc, RejectedError):
        return Rejection(grpc.StatusCode.UNAVAILABLE, str(exc), pushback_metadata(exc.retry_after))
    if isinstance(exc, TimeoutExceededError):
        return Rejection(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc), ())
    return None


def limited(slot: LimiterSlot, key: Hashable | None, decision: Any) -> Rejection:
    """The answer to a request a rate limiter refused."""
    limiter = slot.limiter
    retry_after = getattr(decision, "retry_after", None)
    name = getattr(limiter, "name", "rate_limit")
    if key is None and slot.fixed:
        key = getattr(limiter, "_key", None)
    error = RateLimitedError(name, key=key, retry_after=retry_after)
    return Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error), pushback_metadata(retry_after))


class ServerCore:
    """The server decisions: routes to plans, keys, classification of handler outcomes."""

    __slots__ = ("clock", "failure_codes", "key", "plans", "propagate_deadline", "routes")

    def __init__(
        self,
        routes: Routes,
        key: KeyFunc | None,
        failure_codes: Iterable[Any],
        propagate_deadline: bool,
        clock: Clock,
    ) -> None:
        if key is not None and not callable(key):
            raise ConfigError("key", key, "a callable(method, context) -> key, or None")
        for where, policy in routes.given():
            if isinstance(policy, Retry):
                raise ConfigError(
                    where, policy, "inbound policies only: a server never runs a handler twice"
                )
        self.routes = routes
        self.key = key
        self.failure_codes = _codes(failure_codes, "failure_codes")
        self.propagate_deadline = bool(propagate_deadline)
        self.clock = clock
        self.plans: dict[int, tuple[Policy, Plan]] = {}

    def plan(self, method: str | bytes) -> Plan | None:
        """The plan for *method*, or ``None`` when no policy covers it."""
        policy = self.routes.policy(method)
        if policy is None:
            return None
        cached = self.plans.get(id(policy))
        if cached is not None and cached[0] is policy:
            return cached[1]
        plan = Plan(policy)
        if len(self.plans) > 1_000:
            self.plans.clear()
        self.plans[id(policy)] = (policy, plan)
        return plan

    def key_for(self, method: str, context: Any) -> Hashable | None:
        return self.key(method, context) if self.key is not None else None

    def asks(
        self, plan: Plan, method: str, request: Any, context: Any
    ) -> list[tuple[LimiterSlot, Hashable | None, int]]:
        """Each limiter of *plan* with the key and cost to ask it for."""
        key = self.key(method, context) if plan.by_key and self.key is not None else None
        asks = []
        for slot in plan.limiters:
            if slot.key_fn is not None:
                slot_key = slot.key_fn(request, context)
            else:
                slot_key = None if slot.fixed else key
            cost = slot.cost_fn(request, context) if slot.cost_fn is not None else slot.cost
            asks.append((slot, slot_key, cost))
        return asks

    def deadline(self, context: Any) -> float | None:
        """Seconds the client gave this call, to publish for nested outgoing calls."""
        if not self.propagate_deadline:
            return None
        left = context.time_remaining()
        if left is None or left >= _NO_DEADLINE:
            return None
        return float(left)

    @staticmethod
    def gone(context: Any) -> bool:
        """Whether the client went away (cancelled, or its deadline passed): a
        handler that fails then gives no verdict, like a cancelled call."""
        is_active = getattr(context, "is_active", None)
        return callable(is_active) and not is_active()

    def is_failure(self, context: Any) -> bool:
        """Whether a handler that raised ended the call with a failure code.

        A handler that aborted with an answer (``NOT_FOUND``...) did not fail;
        one that raised without setting a code ends with ``UNKNOWN``, a failure.
        """
        code = _code(context)
        return code is None or code in self.failure_codes

    def failed_status(self, context: Any) -> bool:
        """Whether a handler that returned normally set a failure code."""
        code = _code(context)
        return code is not None and code in self.failure_codes


def _code(context: Any) -> Any:
    """The status code a handler set (``None``: none, or a context that cannot tell)."""
    try:
        return context.code()
    except AttributeError:  # grpc.aio's context for sync handlers has no code()
        return None


class HandlerFailed(Exception):  # noqa: N818 - raised inside the policies only
    """A handler returned after setting a failure status code (``context.set_code``)."""

    def __init__(self, result: Any) -> None:
        super().__init__("the handler set a failure status code")
        self.result = result


class Answered:
    """A handler's exception that is an answer (``abort(NOT_FOUND)``), re-raised later."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
