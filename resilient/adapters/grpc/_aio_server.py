"""The server interceptor for ``grpc.aio.server``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import grpc
import grpc.aio

from ..._clock import SYSTEM_CLOCK, Clock, pop_deadline, push_deadline
from ..._pipeline import Policy
from ._core import (
    DEFAULT_FAILURE_CODES,
    Answered,
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
from ._server import Behaviour, _Wrapped, admit, original_behaviour, rebuild, unary_behaviour

__all__ = ["AsyncServerInterceptor"]

logger = logging.getLogger("resilient")


async def abort(context: Any, rejection: Rejection) -> NoReturn:
    """End the call with *rejection*'s status and trailers (raises, as grpc.aio does)."""
    await context.abort(rejection.code, rejection.details, rejection.trailers)
    raise AssertionError("unreachable: context.abort() raises")  # pragma: no cover


async def aadmit(core: ServerCore, plan: Plan, method: str, request: Any, context: Any) -> None:
    """Ask the method's rate limiters (their async form when they have one)."""
    slot = plan.single
    if slot is not None:  # the common case: one limiter, per the interceptor's key
        key = core.key(method, context) if core.key is not None else None
        if slot.is_async:
            decision = await slot.limiter.atry_acquire(key, slot.cost)
        else:
            decision = slot.limiter.try_acquire(key, slot.cost)
        if not decision.allowed:
            await abort(context, limited(slot, key, decision))
        return
    for slot, key, cost in core.asks(plan, method, request, context):
        if slot.is_async:
            decision = await slot.limiter.atry_acquire(key, cost)
        else:
            decision = slot.limiter.try_acquire(key, cost)
        if not decision.allowed:
            await abort(context, limited(slot, key, decision))


def _is_async(behaviour: Any) -> bool:
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


def _guard_only(core: ServerCore, plan: Plan, method: str, original: Behaviour) -> Behaviour:
    """A sync streaming handler on an asyncio server: rate limits only."""

    def behaviour(request: Any, context: Any) -> Iterator[Any]:
        # A generator: grpc.aio calls it on the event loop but iterates it in its
        # thread pool, where the sync context may block on abort().
        if plan.limiters:
            admit(core, plan, method, request, context)
        yield from original(request, context)

    return behaviour


def async_behaviour(
    core: ServerCore, plan: Plan, method: str, original: Behaviour, streaming: bool
) -> Behaviour:
    """An ``async`` handler run under *plan* (a stream until its last message)."""

    async def inner(request: Any, context: Any) -> Any:
        try:
            if streaming:
                produced = original(request, context)
                if hasattr(produced, "__aiter__"):
                    async for message in produced:
                        await context.write(message)
                    result = None
                else:  # a coroutine that writes with context.write()
                    result = await produced
            else:
                result = await original(request, context)
        except Exception as exc:
            if core.is_failure(context):
                raise
            return Answered(exc)
        if core.failed_status(context):
            raise HandlerFailed(result)
        return result

    run = compose(plan.policies, inner, asynchronous=True)

    async def behaviour(request: Any, context: Any) -> Any:
        if plan.limiters:
            await aadmit(core, plan, method, request, context)
        seconds = core.deadline(context)
        token = push_deadline(core.clock, seconds, "grpc")[1] if seconds is not None else None
        try:
            result = await run(request, context)
        except HandlerFailed as failed:
            return failed.result
        except Exception as exc:
            rejection = rejection_for(exc)
            if rejection is None:
                raise
            await abort(context, rejection)
        finally:
            if token is not None:
                pop_deadline(token)
        if isinstance(result, Answered):
            raise result.exception
        return result

    return behaviour


class AsyncServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Guard the methods of a ``grpc.aio.server`` with resilience policies.

    ::

        guard = AsyncServerInterceptor(rs.TokenBucket("100/s"), rs.Bulkhead(max_concurrent=32))
        server = grpc.aio.server(interceptors=[guard])

    The same answers as :class:`ServerInterceptor` (``RESOURCE_EXHAUSTED`` for
    rate limits, ``UNAVAILABLE`` for other rejections, both with
    ``grpc-retry-pushback-ms``; ``DEADLINE_EXCEEDED`` for a ``Timeout``, which
    here cancels the handler), with the policies' ``acall`` and the limiters'
    ``atry_acquire`` when they have one. Streaming handlers (async generators,
    or coroutines writing with ``context.write()``) stay under the policies
    until their last message.

    Sync handlers served by a ``grpc.aio`` server (run in its thread pool) get
    the sync driver: unary responses under every policy; streaming responses
    under the rate limiters only.

    Args:
        *policies, routes, registry, key, failure_codes, propagate_deadline, clock:
            as for :class:`ServerInterceptor`.
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

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """Wrap the method's handler with its policies (or pass it through)."""
        handler = await continuation(handler_call_details)
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
        streaming = bool(handler.response_streaming)
        if _is_async(original):
            behaviour = async_behaviour(self._core, plan, method, original, streaming)
        elif streaming:
            if plan.policies:
                logger.warning(
                    "resilient: %s is a sync streaming handler on a grpc.aio server; "
                    "only its rate limits apply",
                    method,
                )
            behaviour = _guard_only(self._core, plan, method, original)
        else:
            behaviour = unary_behaviour(self._core, plan, method, original)
        wrapped = rebuild(handler, behaviour)
        if len(self._cache) < 10_000:
            self._cache[method] = _Wrapped(handler, plan, wrapped)
        return wrapped

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.routes!r})"
