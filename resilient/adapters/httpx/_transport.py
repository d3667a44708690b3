"""The two transports: thin drivers around :class:`TransportCore`.

They differ only where I/O happens (send, read, close, sleep): ``def`` and
``handle_request`` on one side, ``async def`` and ``handle_async_request`` on
the other. Every decision is the core's.
"""

from __future__ import annotations

import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, ClassVar, Generic, TypeVar

import httpx

from ..._clock import Clock
from ..._pipeline import Policy
from ..._retry import Retry
from ...observability._emit import Listener
from ._core import (
    CURRENT,
    FAILURE_STATUSES,
    IDEMPOTENT_METHODS,
    RETRY_ERRORS,
    RETRY_STATUSES,
    Exchange,
    FailedResponseError,
    Route,
    TransportConfig,
    TransportCore,
)

__all__ = ["AsyncResilientTransport", "ResilientTransport"]

InnerT = TypeVar("InnerT")


class _ResilientBase(Generic[InnerT]):
    """The constructor and the settings both transports share."""

    _asynchronous: ClassVar[bool] = False
    config: TransportConfig
    """The validated HTTP settings."""
    transport: InnerT
    """The wrapped transport."""

    def __init__(
        self,
        *policies: Policy | str,
        transport: InnerT | None = None,
        routes: Iterable[Route] = (),
        registry: Mapping[str, Policy] | None = None,
        retry_methods: Collection[str] = IDEMPOTENT_METHODS,
        retry_statuses: Collection[int] = RETRY_STATUSES,
        failure_statuses: Collection[int] = FAILURE_STATUSES,
        retry_errors: tuple[type[BaseException], ...] = RETRY_ERRORS,
        retry_unsent: bool = True,
        idempotency_key: bool | Callable[[], str] = False,
        buffer_body: int = 64 * 1024,
        pace: bool = False,
        max_pace_wait: float | str = 30.0,
        now: Callable[[], float] = time.time,
        clock: Clock | None = None,
        name: str | None = None,
        listeners: Sequence[Listener] | None = None,
    ) -> None:
        self.config = TransportConfig(
            retry_methods=retry_methods,
            retry_statuses=retry_statuses,
            failure_statuses=failure_statuses,
            retry_errors=retry_errors,
            retry_unsent=retry_unsent,
            idempotency_key=idempotency_key,
            buffer_body=buffer_body,
            pace=pace,
            max_pace_wait=max_pace_wait,  # type: ignore[arg-type]
            now=now,
        )
        self.transport = transport if transport is not None else self._default_transport()
        self._core = TransportCore(
            policies,
            routes=routes,
            registry=registry,
            config=self.config,
            clock=clock,
            name=name,
            listeners=listeners,
            attempt=self._attempt,
            retry_step=self._retry_step,
            asynchronous=self._asynchronous,
        )

    @property
    def name(self) -> str:
        """The name used on the transport's own events and rejections (``"httpx"``)."""
        return self._core.name

    @property
    def routes(self) -> tuple[Route, ...]:
        """The routes, in the order they are tried."""
        return self._core.routes

    def _default_transport(self) -> InnerT:
        raise NotImplementedError  # pragma: no cover

    def _attempt(self, request: httpx.Request) -> Any:
        raise NotImplementedError  # pragma: no cover

    @staticmethod
    def _retry_step(
        retry: Retry, inner: Callable[..., Any], core: TransportCore, request: httpx.Request
    ) -> Any:
        raise NotImplementedError  # pragma: no cover

    def _exchange(self, request: httpx.Request) -> Exchange:
        exchange = CURRENT.get()
        if exchange is None or exchange.request is not request:
            # A policy ran the attempt outside our context (another thread?):
            # classify it on its own, without retries.
            exchange = self._core.begin(request)
        return exchange

    def __repr__(self) -> str:
        return f"{type(self).__name__}(transport={self.transport!r}, name={self.name!r})"


def _checked(response: object) -> httpx.Response:
    if not isinstance(response, httpx.Response):
        msg = (
            f"the policies returned {type(response).__name__}, not an httpx.Response "
            "(a Fallback around an httpx transport must give a Response)"
        )
        raise TypeError(msg)
    return response


# -- sync -------------------------------------------------------------------------------------


class _Rest(httpx.SyncByteStream):
    """A streamed body too large to buffer: the chunks already read, then the rest."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], original: httpx.SyncByteStream):
        self._head, self._rest, self._original = head, rest, original

    def __iter__(self) -> Iterator[bytes]:
        yield from self._head
        yield from self._rest

    def close(self) -> None:
        self._original.close()


def _buffer(request: httpx.Request, limit: int) -> None:
    """Read a streamed body into memory if it fits in *limit* bytes (then it can be
    replayed); otherwise keep what was read in front of the rest of the stream."""
    stream = request.stream
    if not isinstance(stream, httpx.SyncByteStream):
        return
    head: list[bytes] = []
    size = 0
    rest = iter(stream)
    for chunk in rest:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            request.stream = _Rest(head, rest, stream)
            return
    stream.close()
    request.stream = httpx.ByteStream(b"".join(head))


def _drain(response: httpx.Response) -> None:
    """Read a small body and release the connection; the response keeps the bytes."""
    stream = response.stream
    if not isinstance(stream, httpx.SyncByteStream):
        return
    try:
        body = b"".join(stream)
    finally:
        stream.close()
    response.stream = httpx.ByteStream(body)


def _unwrap(
    fn: Callable[[httpx.Request], httpx.Response], request: httpx.Request
) -> httpx.Response:
    try:
        return fn(request)
    except FailedResponseError as exc:  # the retry decides on the response itself
        return exc.response


class ResilientTransport(_ResilientBase[httpx.BaseTransport], httpx.BaseTransport):
    """An ``httpx`` transport that sends every request through resilience policies.

    ``httpx.Client(transport=ResilientTransport(rs.Retry(3), breaker))``. See the
    package documentation for the semantics; the arguments are:

    Args:
        *policies: the default policies, outermost first (a :class:`Pipeline`
            counts as its policies), or names from *registry*. None: requests
            still get the HTTP handling (failure classification, deadline
            clamping, pacing) but no retries.
        transport: the inner transport (default ``httpx.HTTPTransport()``).
        routes: :class:`Route` objects tried in order; the first match decides.
        registry: named policies (a ``Registry`` or any mapping), looked up per
            request so that a reloaded registry takes effect.
        retry_methods: methods retried on errors and statuses (default the
            idempotent ones: GET HEAD PUT DELETE OPTIONS TRACE).
        retry_statuses: statuses retried (default 429 502 503 504).
        failure_statuses: statuses that count as failures for the policies
            (default 500-599).
        retry_errors: transport errors retried (default connect, read and write
            errors and timeouts, and a server that closed the connection).
        retry_unsent: also retry, for any method, errors raised before the
            request was sent (connect errors and timeouts) (default True).
        idempotency_key: add an ``Idempotency-Key`` header (a UUID4, or the value
            of a callable) to non-idempotent requests that lack one; it stays the
            same across the attempts of a request (default False).
        buffer_body: read a streamed request body of at most this many bytes into
            memory so it can be retried (default 64 KiB; 0: never).
        pace: hold a host after it answered 429/503 with a hint, or reported an
            exhausted quota: later requests to it wait until the hint passes
            (default False).
        max_pace_wait: the longest such a wait; beyond it (or beyond a
            deadline) the request fails at once with :class:`RateLimitedError`.
        now: the wall clock, for HTTP-dates and Unix-time resets (``time.time``).
        clock: the clock pacing waits on (the system clock by default).
        name: the name on the transport's own events and rejections ("httpx").
        listeners: listeners for the transport's own events.
    """

    def _default_transport(self) -> httpx.BaseTransport:
        return httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the policies; return the last real response."""
        core = self._core
        exchange = core.begin(request)
        limit = core.wants_buffer(exchange)
        if limit:
            _buffer(request, limit)
        chain = core.chain(exchange)
        token = CURRENT.set(exchange)
        try:
            response = chain(request)
        except FailedResponseError as exc:
            response = exc.response
        finally:
            CURRENT.reset(token)
            request.extensions = exchange.extensions
        return _checked(response)

    def _attempt(self, request: httpx.Request) -> httpx.Response:
        core = self._core
        exchange = self._exchange(request)
        wait = core.pace_wait(exchange)
        if wait:
            core.clock.sleep(wait)
        clamp = core.clamp(exchange)
        try:
            response = self.transport.handle_request(request)
            if core.should_drain(exchange, response):
                _drain(response)
        except httpx.TimeoutException as exc:
            core.timed_out(clamp, exc)
            raise
        return core.outcome(exchange, response)

    @staticmethod
    def _retry_step(
        retry: Retry, inner: Callable[..., Any], core: TransportCore, request: httpx.Request
    ) -> httpx.Response:
        response = retry.call(_unwrap, inner, request)
        if core.is_failure(response):
            raise core.failed(request, response)  # seen as a failure by the outer policies
        return response

    def close(self) -> None:
        self.transport.close()


# -- async ------------------------------------------------------------------------------------


class _ARest(httpx.AsyncByteStream):
    """The async twin of :class:`_Rest`."""

    def __init__(
        self, head: list[bytes], rest: AsyncIterator[bytes], original: httpx.AsyncByteStream
    ):
        self._head, self._rest, self._original = head, rest, original

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            yield chunk
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        await self._original.aclose()


async def _abuffer(request: httpx.Request, limit: int) -> None:
    stream = request.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        return
    head: list[bytes] = []
    size = 0
    rest = aiter(stream)
    async for chunk in rest:
        head.append(chunk)
        size += len(chunk)
        if size > limit:
            request.stream = _ARest(head, rest, stream)
            return
    await stream.aclose()
    request.stream = httpx.ByteStream(b"".join(head))


async def _adrain(response: httpx.Response) -> None:
    stream = response.stream
    if not isinstance(stream, httpx.AsyncByteStream):
        return
    try:
        body = b"".join([chunk async for chunk in stream])
    finally:
        await stream.aclose()
    response.stream = httpx.ByteStream(body)


async def _aunwrap(fn: Callable[[httpx.Request], Any], request: httpx.Request) -> httpx.Response:
    try:
        response: httpx.Response = await fn(request)
    except FailedResponseError as exc:
        return exc.response
    return response


class AsyncResilientTransport(_ResilientBase[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """The async twin of :class:`ResilientTransport`, for ``httpx.AsyncClient``.

    Same arguments; the inner transport defaults to ``httpx.AsyncHTTPTransport()``.
    Waits go through the clock's ``asleep`` (anyio), so it runs under asyncio and trio.
    """

    _asynchronous = True

    def _default_transport(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the policies; return the last real response."""
        core = self._core
        exchange = core.begin(request)
        limit = core.wants_buffer(exchange)
        if limit:
            await _abuffer(request, limit)
        chain = core.chain(exchange)
        token = CURRENT.set(exchange)
        try:
            response = await chain(request)
        except FailedResponseError as exc:
            response = exc.response
        finally:
            CURRENT.reset(token)
            request.extensions = exchange.extensions
        return _checked(response)

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        core = self._core
        exchange = self._exchange(request)
        wait = core.pace_wait(exchange)
        if wait:
            await core.clock.asleep(wait)
        clamp = core.clamp(exchange)
        try:
            response = await self.transport.handle_async_request(request)
            if core.should_drain(exchange, response):
                await _adrain(response)
        except httpx.TimeoutException as exc:
            core.timed_out(clamp, exc)
            raise
        return core.outcome(exchange, response)

    @staticmethod
    async def _retry_step(
        retry: Retry, inner: Callable[..., Any], core: TransportCore, request: httpx.Request
    ) -> httpx.Response:
        response = await retry.acall(_aunwrap, inner, request)
        if core.is_failure(response):
            raise core.failed(request, response)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()
