"""The server interceptor for ``grpc.server`` (sync)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import grpc

from ..._clock import SYSTEM_CLOCK, Clock, pop_deadline, push_deadline
from ..._pipeline import Policy
from ._core import (
    DEFAULT_FAILURE_CODES,
    Answered,
    Cancelled,
    HandlerFailed,
    KeyFunc,
    Plan,
    Rejection,
    Routes,
    ServerCore,
    compose,
    limited,
    peer_key,
    rejection_for,
)

__all__ = ["ServerInterceptor"]

Behaviour = Callable[..., Any]


def abort(context: Any, rejection: Rejection) -> NoReturn:
    """End the call with *rejection*'s status and trailers (raises, as grpc does)."""
    if rejection.trailers:
        context.set_trailing_metadata(rejection.trailers)
    context.abort(rejection.code, rejection.details)
    raise AssertionError("unreachable: context.abort() raises")  # pragma: no cover


def admit(core: ServerCore, plan: Plan, method: str, request: Any, context: Any) -> None:
    """Ask the method's rate limiters (keyed); abort with ``RESOURCE_EXHAUSTED`` if refused."""
    slot = plan.single
    if slot is not None:  # the common case: one limiter, per the interceptor's key
        key = core.key(method, context) if core.key is not None else None
        decision = slot.limiter.try_acquire(key, slot.cost)
        if not decision.allowed:
            abort(context, limited(slot, key, decision))
        return
    for slot, key, cost in core.asks(plan, method, request, context):
        decision = slot.limiter.try_acquire(key, cost)
        if not decision.allowed:
            abort(context, limited(slot, key, decision))


def unary_behaviour(core: ServerCore, plan: Plan, method: str, original: Behaviour) -> Behaviour:
    """A unary-response handler (unary-unary, stream-unary) run under *plan*."""

    def inner(request: Any, context: Any) -> Any:
        try:
            result = original(request, context)
        except Exception as exc:
            if core.gone(context):
                raise Cancelled(exc) from None
            if core.is_failure(context):
                raise
            return Answered(exc)  # abort(NOT_FOUND...): an answer, not a failure
        if core.failed_status(context):
            raise HandlerFailed(result)
        return result

    run = compose(plan.policies, inner, asynchronous=False) if plan.policies else None

    def behaviour(request: Any, context: Any) -> Any:
        if plan.limiters:
            admit(core, plan, method, request, context)
        seconds = core.deadline(context)
        token = push_deadline(core.clock, seconds, "grpc")[1] if seconds is not None else None
        try:
            if run is None:
                return original(request, context)
            result = run(request, context)
        except HandlerFailed as failed:
            return failed.result
        except Cancelled as signal:  # the client went away: no verdict
            if isinstance(signal.outcome, BaseException):
                raise signal.outcome from None
            return signal.outcome
        except Exception as exc:
            rejection = rejection_for(exc)
            if rejection is None:
                raise
            abort(context, rejection)
        finally:
            if token is not None:
                pop_deadline(token)
        if isinstance(result, Answered):
            raise result.exception
        return result

    return behaviour


def _relay(send: Callable[[Any], None], message: Any) -> None:
    if message is not None:  # the end of the stream: the caller sends the status
        send(message)


def stream_behaviour(core: ServerCore, plan: Plan, method: str, original: Behaviour) -> Behaviour:
    """A response-streaming handler run under *plan* for the whole stream.

    It uses grpc's non-blocking streaming behaviour (the handler is given a
    ``send`` callback), so the policies cover every message: a bulkhead slot
    is held, and a breaker judges the call, until the stream ends.
    """
    pushes = bool(getattr(original, "experimental_non_blocking", False))

    def drive(request: Any, context: Any, send: Callable[[Any], None]) -> Any:
        try:
            if pushes:
                original(request, context, lambda message: _relay(send, message))
            else:
                produced = original(request, context)
                try:
                    for message in produced:
                        send(message)
                        if core.gone(context):
                            raise Cancelled(None)
                finally:
                    close = getattr(produced, "close", None)
                    if callable(close):
                        close()
        except Exception as exc:
            if core.gone(context):
                raise Cancelled(exc) from None  # the client went away: not a failure
            if core.is_failure(context):
                raise
            return Answered(exc)
        if core.failed_status(context):
            raise HandlerFailed(None)
        return None

    run = compose(plan.policies, drive, asynchronous=False)

    def behaviour(request: Any, context: Any, send: Callable[[Any], None]) -> None:
        if plan.limiters:
            admit(core, plan, method, request, context)
        seconds = core.deadline(context)
        token = push_deadline(core.clock, seconds, "grpc")[1] if seconds is not None else None
        try:
            result = run(request, context, send)
        except HandlerFailed:
            result = None
        except Cancelled as signal:
            if isinstance(signal.outcome, BaseException):
                raise signal.outcome from None
            return
        except Exception as exc:
            rejection = rejection_for(exc)
            if rejection is None:
                raise
            abort(context, rejection)
        finally:
            if token is not None:
                pop_deadline(token)
        if isinstance(result, Answered):
            raise result.exception
        send(None)  # the stream ended: send the status

    behaviour.experimental_non_blocking = True  # type: ignore[attr-defined]
    return behaviour


def rebuild(handler: Any, behaviour: Behaviour) -> Any:
    """A method handler like *handler* whose behaviour is *behaviour*."""
    factory = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return factory(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def original_behaviour(handler: Any) -> Behaviour:
    """The behaviour function of a method handler, whatever its arity."""
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary  # type: ignore[no-any-return]
    return handler.unary_stream if handler.response_streaming else handler.unary_unary  # type: ignore[no-any-return]


class _Wrapped:
    """A cached wrapped handler, valid while the handler and the plan are the same."""

    __slots__ = ("handler", "plan", "wrapped")

    def __init__(self, handler: Any, plan: Plan, wrapped: Any) -> None:
        self.handler = handler
        self.plan = plan
        self.wrapped = wrapped


class ServerInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Guard the methods of a ``grpc.server`` with resilience policies.

    ::

        guard = ServerInterceptor(rs.TokenBucket("100/s"), rs.Bulkhead(max_concurrent=32))
        server = grpc.server(pool, interceptors=[guard])

    For each call, the method's rate limiters are asked first, keyed by
    ``key`` (by default the client's address): a refusal answers
    ``RESOURCE_EXHAUSTED``. The other policies then run around the handler: an
    open breaker, a full bulkhead or another rejection answers ``UNAVAILABLE``,
    and a ``Timeout`` that ran out answers ``DEADLINE_EXCEEDED``. Rejections
    carry ``grpc-retry-pushback-ms`` when the policy knows when to come back,
    and the handler is not called. Streaming responses stay under the
    policies until the stream ends.

    A handler that raises, or that ends the call with one of ``failure_codes``,
    is a failure (what a breaker counts); a handler that aborts with an answer
    (``NOT_FOUND``, ``INVALID_ARGUMENT``...) is not. A call whose client went
    away is never counted.

    The client's deadline is published (``resilient.remaining()``) while the
    handler runs, so calls it makes through a :class:`ClientInterceptor` get
    no more time than the client gave this one.

    A sync ``Timeout`` cannot stop a running handler: it answers
    ``DEADLINE_EXCEEDED`` when the handler returns too late.

    Args:
        *policies: the policies for every method, unless a route matches;
            registry names may stand for policies.
        routes: method pattern -> policy, registry name, list of them, or
            ``None`` (no policy), as for the client interceptors.
        registry: where names are looked up, on every call.
        key: ``key(method, context) -> key`` partitions the rate limiters
            (default :func:`peer_key`: per client address; :func:`metadata_key`
            reads a header); ``None``: one shared limit.
        failure_codes: status codes a handler may set that count as failures.
        propagate_deadline: publish the client's deadline for nested calls.
        clock: the clock deadlines are published on (default: the system clock).
    """

    def __init__(
        self,
        *policies: Policy | str,
        routes: Mapping[str, Any] | None = None,
        registry: Mapping[str, Any] | None = None,
        key: KeyFunc | None = peer_key,
        failure_codes: Any = DEFAULT_FAILURE_CODES,
        propagate_deadline: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self._core = ServerCore(
            Routes(policies, routes, registry),
            key,
            failure_codes,
            propagate_deadline,
            clock or SYSTEM_CLOCK,
        )
        self._cache: dict[str, _Wrapped] = {}

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """Wrap the method's handler with its policies (or pass it through)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        plan = self._core.plan(method)
        if plan is None:
            return handler
        cached = self._cache.get(method)
        if cached is not None and cached.handler is handler and cached.plan is plan:
            return cached.wrapped
        original = original_behaviour(handler)
        if handler.response_streaming:
            behaviour = stream_behaviour(self._core, plan, method, original)
        else:
            behaviour = unary_behaviour(self._core, plan, method, original)
        wrapped = rebuild(handler, behaviour)
        if len(self._cache) < 10_000:
            self._cache[method] = _Wrapped(handler, plan, wrapped)
        return wrapped

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.routes!r})"
