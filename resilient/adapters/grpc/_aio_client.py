"""The client interceptor for ``grpc.aio`` channels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, overload

import grpc
import grpc.aio

from ..._clock import SYSTEM_CLOCK, Clock
from ..._pipeline import Policy
from ._core import (
    DEFAULT_FAILURE_CODES,
    DEFAULT_RETRY_CODES,
    NOTHING,
    CallState,
    Cancelled,
    ClientChain,
    ClientCore,
    Routes,
    Started,
    StatusError,
    copy_notes,
    replayable,
)

__all__ = ["AsyncClientInterceptor"]

_FIRST: Any = object()  # a one-shot stream delivered its first message
_ENDED: Any = object()  # ... or ended (or was dropped) before any

_BACKGROUND: set[asyncio.Task[Any]] = set()


def _with_timeout(details: Any, timeout: float | None) -> Any:
    return grpc.aio.ClientCallDetails(
        details.method,
        timeout,
        getattr(details, "metadata", None),
        getattr(details, "credentials", None),
        getattr(details, "wait_for_ready", None),
    )


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _forget(task: asyncio.Task[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: the caller learns the outcome from the call itself


async def _resume(first: Any, responses: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not NOTHING:
        yield first
    async for message in responses:
        yield message


async def _messages(result: Any) -> AsyncIterator[Any]:
    """Messages a policy supplied instead of the call (e.g. a ``Fallback``)."""
    if hasattr(result, "__aiter__"):
        async for message in result:
            yield message
    else:
        for message in result:
            yield message


async def _watched(rpc: Any, verdict: asyncio.Future[Any]) -> AsyncIterator[Any]:
    """Read a one-shot stream for the caller, telling the policies when it started."""
    responses = rpc.__aiter__()
    try:
        first = await responses.__anext__()
    except StopAsyncIteration:
        _settle(verdict, _ENDED)
        return
    except grpc.aio.AioRpcError as error:
        _settle(verdict, error)
        raise
    except BaseException:
        _settle(verdict, _ENDED)
        raise
    _settle(verdict, _FIRST)
    yield first
    async for message in responses:
        yield message


# One grpc.aio interceptor per arity. Each binds its method to the shared
# interceptor's at creation (no extra coroutine per call); the class methods
# only satisfy grpc's abstract base classes.


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, owner: AsyncClientInterceptor) -> None:
        setattr(self, "intercept_unary_unary", owner.intercept_unary_unary)  # noqa: B010 - shadows the class method

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - replaced in __init__


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, owner: AsyncClientInterceptor) -> None:
        setattr(self, "intercept_unary_stream", owner.intercept_unary_stream)  # noqa: B010 - shadows the class method

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - replaced in __init__


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, owner: AsyncClientInterceptor) -> None:
        setattr(self, "intercept_stream_unary", owner.intercept_stream_unary)  # noqa: B010 - shadows the class method

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - replaced in __init__


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, owner: AsyncClientInterceptor) -> None:
        setattr(self, "intercept_stream_stream", owner.intercept_stream_stream)  # noqa: B010 - shadows the class method

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        raise NotImplementedError  # pragma: no cover - replaced in __init__


class AsyncClientInterceptor(Sequence[Any]):
    """Run the calls of a ``grpc.aio`` channel under resilience policies.

    ::

        interceptor = AsyncClientInterceptor(rs.Retry(4), rs.CircuitBreaker(name="inventory"))
        channel = grpc.aio.insecure_channel(target, interceptors=interceptor)
        # with other interceptors: interceptors=[*interceptor, other]

    A ``grpc.aio`` channel files each interceptor under one kind of call only
    (grpc/grpc#31442), so this object is a sequence of four interceptors, one
    per arity, sharing one set of policies: pass it as ``interceptors`` or
    unpack it. (Putting it whole inside a list makes grpc raise ``ValueError``
    rather than leave streaming calls unguarded.)

    The same semantics as :class:`ClientInterceptor`, with the policies'
    ``acall``: every attempt is one real RPC; failure codes are raised inside
    the policies as :class:`StatusError` (:class:`RetryableStatusError` for
    ``retry_codes``), the caller gets the original ``grpc.aio.AioRpcError``;
    pushback feeds ``Retry``; ``CANCELLED`` and cancelling the call are never
    failures; each attempt's timeout comes from the call's own timeout and
    ``resilient.remaining()``.

    grpc.aio runs interceptors as soon as the call is made, so attempts start
    eagerly. Streaming responses are retried only before their first message.
    A request stream given as a re-iterable (a list or a tuple) is retried; an
    iterator, an async generator or ``call.write()`` is sent once: the call is
    handed to the caller as soon as it starts, and the policies keep watching
    it in the background until its first response (or its end).

    Args:
        *policies, routes, registry, retry_codes, failure_codes, clock: as for
            :class:`ClientInterceptor`.
    """

    def __init__(
        self,
        *policies: Policy | str,
        routes: Mapping[str, Any] | None = None,
        registry: Mapping[str, Any] | None = None,
        retry_codes: Any = DEFAULT_RETRY_CODES,
        failure_codes: Any = DEFAULT_FAILURE_CODES,
        clock: Clock | None = None,
    ) -> None:
        self._core = ClientCore(
            Routes(policies, routes, registry),
            retry_codes,
            failure_codes,
            clock or SYSTEM_CLOCK,
        )
        self._arities: tuple[Any, ...] = (
            _UnaryUnary(self),
            _UnaryStream(self),
            _StreamUnary(self),
            _StreamStream(self),
        )

    # -- a sequence of one interceptor per arity

    def __len__(self) -> int:
        return len(self._arities)

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self._arities[index]

    def _verdict(self, error: Any, call: CallState) -> BaseException | None:
        return self._core.judge(error, error.code(), call)

    # -- calls whose request can be sent again: every attempt runs in the interceptor

    async def _unary(
        self, chain: ClientChain, continuation: Any, call: CallState, request: Any
    ) -> Any:
        async def attempt() -> Any:
            rpc = await continuation(call.next_details(), request)
            try:
                await rpc
            except grpc.aio.AioRpcError as error:
                verdict = self._verdict(error, call)
                if verdict is not None:
                    raise verdict from None
            except asyncio.CancelledError:
                call.failing()
                raise
            return rpc  # done: awaiting it again gives the response (or the answer's error)

        try:
            return await chain.arun(attempt)
        except StatusError as exc:
            copy_notes(exc, exc.error)
            raise exc.error from None
        except Cancelled as signal:
            raise signal.outcome from None
        finally:
            if call.method_token is not None:
                call.leave()

    async def _stream(
        self, chain: ClientChain, continuation: Any, call: CallState, request: Any
    ) -> Any:
        async def attempt() -> Any:
            rpc = await continuation(call.next_details(), request)
            responses = rpc.__aiter__()
            try:
                first = await responses.__anext__()
            except StopAsyncIteration:
                return Started(responses, NOTHING)
            except grpc.aio.AioRpcError as error:
                verdict = self._verdict(error, call)
                if verdict is not None:
                    raise verdict from None
                return Started(responses, NOTHING, error)  # an answer (NOT_FOUND...)
            except asyncio.CancelledError:
                call.failing()
                raise
            return Started(responses, first)

        try:
            result = await chain.arun(attempt)
        except StatusError as exc:
            copy_notes(exc, exc.error)
            raise exc.error from None
        except Cancelled as signal:
            raise signal.outcome from None
        finally:
            if call.method_token is not None:
                call.leave()
        if not isinstance(result, Started):  # a policy answered instead (a Fallback)
            return _messages(result)
        if result.error is not None:
            raise result.error
        return _resume(result.first, result.call)

    # -- one-shot request streams: hand the call over at once, judge it in the background

    async def _one_shot(
        self,
        chain: ClientChain,
        continuation: Any,
        call: CallState,
        requests: Any,
        streaming: bool,
    ) -> Any:
        loop = asyncio.get_running_loop()
        started: asyncio.Future[Any] = loop.create_future()
        verdict: asyncio.Future[Any] = loop.create_future()

        async def judge_status(rpc: Any) -> Any:
            code = await rpc.code()
            if code is grpc.StatusCode.OK:
                return rpc
            error = grpc.aio.AioRpcError(
                code,
                await rpc.initial_metadata(),
                await rpc.trailing_metadata(),
                await rpc.details(),
            )
            outcome = self._verdict(error, call)
            if outcome is not None:
                raise outcome
            return rpc

        async def attempt() -> Any:
            rpc = await continuation(call.next_details(), requests)
            started.set_result(rpc)
            if not streaming:
                try:
                    await rpc
                except grpc.aio.AioRpcError as error:
                    outcome = self._verdict(error, call)
                    if outcome is not None:
                        raise outcome from None
                return rpc
            rpc.add_done_callback(lambda _: _settle(verdict, _ENDED))
            seen = await verdict
            if seen is _FIRST:
                return rpc
            if isinstance(seen, grpc.aio.AioRpcError):
                outcome = self._verdict(seen, call)
                if outcome is not None:
                    raise outcome
                return rpc
            return await judge_status(rpc)

        task = asyncio.ensure_future(chain.arun(attempt))
        _BACKGROUND.add(task)
        task.add_done_callback(_forget)
        try:
            await asyncio.wait((started, task), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        if not started.done():  # refused (or answered by a policy) before any RPC started
            result = task.result()
            return _messages(result) if streaming else result
        rpc = started.result()
        return _watched(rpc, verdict) if streaming else rpc

    # -- the four arities

    def _call(self, chain: ClientChain, details: Any, requests: Any = None) -> CallState:
        again = True if requests is None else replayable(requests)
        return CallState(details, self._core.clock, _with_timeout, chain.annotated, again)

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Run a unary-unary call under the method's policies."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return await continuation(client_call_details, request)
        call = self._call(chain, client_call_details)
        return await self._unary(chain, continuation, call, request)

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Run a unary-stream call; retried only before its first response message."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return await continuation(client_call_details, request)
        call = self._call(chain, client_call_details)
        return await self._stream(chain, continuation, call, request)

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Run a stream-unary call; retried only if the requests can be replayed."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return await continuation(client_call_details, request_iterator)
        call = self._call(chain, client_call_details, request_iterator)
        if call.replayable:
            return await self._unary(chain, continuation, call, request_iterator)
        return await self._one_shot(chain, continuation, call, request_iterator, False)

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Run a stream-stream call; retried only before its first response message,
        and only if the requests can be replayed."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return await continuation(client_call_details, request_iterator)
        call = self._call(chain, client_call_details, request_iterator)
        if call.replayable:
            return await self._stream(chain, continuation, call, request_iterator)
        return await self._one_shot(chain, continuation, call, request_iterator, True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.routes!r})"
