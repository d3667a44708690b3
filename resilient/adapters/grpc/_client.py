"""The client interceptor for ``grpc`` channels (sync)."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc

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

__all__ = ["ClientInterceptor"]


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """Call details with a new timeout (the shape ``grpc.intercept_channel`` expects)."""


def _requests(request: Any, stream: bool) -> Any:
    """What one attempt sends: a fresh iterator over a re-iterable request stream
    (sync grpc needs an iterator), or the request itself."""
    return iter(request) if stream and replayable(request) else request


def _with_timeout(details: Any, timeout: float | None) -> _CallDetails:
    return _CallDetails(
        details.method,
        timeout,
        getattr(details, "metadata", None),
        getattr(details, "credentials", None),
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


class _Completed(grpc.Call, grpc.Future):  # type: ignore[misc]
    """A unary outcome a policy supplied instead of the call (e.g. a ``Fallback`` value)."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def initial_metadata(self) -> Any:
        return None

    def trailing_metadata(self) -> Any:
        return None

    def code(self) -> Any:
        return grpc.StatusCode.OK

    def details(self) -> Any:
        return None

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> Any:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def result(self, timeout: Any = None) -> Any:
        return self._response

    def exception(self, timeout: Any = None) -> Any:
        return None

    def traceback(self, timeout: Any = None) -> Any:
        return None

    def add_done_callback(self, fn: Any) -> None:
        fn(self)


class _ResponseStream(grpc.Call, grpc.Future):  # type: ignore[misc]
    """The caller's side of a response-streaming call run under policies.

    The policies run when the caller first needs the call (its first ``next()``
    or a status accessor), not when the stub is called: an attempt lasts until
    the first response message (or the status, if the stream ends sooner), so a
    retry happens only before any message reached the caller. After that the
    messages, and any later error, come from the final attempt's call as they
    would without the interceptor.
    """

    def __init__(self, run: Callable[[_ResponseStream], Any]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._started = False
        self._call: Any = None
        self._current: Any = None  # the attempt in flight (for cancel())
        self._first: Any = NOTHING
        self._error: BaseException | None = None
        self._fallback: Iterator[Any] | None = None
        self._cancelled = False
        self._callbacks: list[Any] = []

    # -- running the policies

    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            try:
                result = self._run(self)
            except StatusError as exc:
                copy_notes(exc, exc.error)
                self._call = exc.error
            except Cancelled as signal:
                self._call = signal.outcome
            except Exception as exc:  # a rejection: the caller gets it from next()
                self._error = exc
            else:
                if isinstance(result, Started):
                    self._call, self._first = result.call, result.first
                else:  # a policy answered with messages of its own (e.g. a Fallback)
                    self._fallback = iter(result)
            self._started = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._attach(callback)

    def _attach(self, callback: Any) -> None:
        call = self._call
        if call is None or not call.add_callback(callback):
            callback()

    def attempt_started(self, call: Any) -> None:
        self._current = call
        if self._cancelled:
            call.cancel()

    # -- iteration

    def __iter__(self) -> _ResponseStream:
        return self

    def __next__(self) -> Any:
        if not self._started:
            self._start()
        first = self._first
        if first is not NOTHING:
            self._first = NOTHING
            return first
        if self._call is not None:
            return next(self._call)
        if self._fallback is not None:
            return next(self._fallback)
        assert self._error is not None
        raise self._error

    def next(self) -> Any:
        return self.__next__()

    # -- grpc.RpcContext / grpc.Call

    def is_active(self) -> bool:
        if not self._started:
            return not self._cancelled
        return self._call is not None and bool(self._call.is_active())

    def time_remaining(self) -> Any:
        call = self._call if self._started else self._current
        return call.time_remaining() if call is not None else None

    def cancel(self) -> bool:
        self._cancelled = True
        call = self._call if self._started else self._current
        if call is not None:
            return bool(call.cancel())
        return not self._started

    def add_callback(self, callback: Any) -> bool:
        if not self._started:
            with self._lock:
                if not self._started:
                    self._callbacks.append(callback)
                    return True
        call = self._call
        return call is not None and bool(call.add_callback(callback))

    def _status(self, name: str) -> Any:
        self._start()
        if self._call is None:
            return None
        return getattr(self._call, name)()

    def initial_metadata(self) -> Any:
        return self._status("initial_metadata")

    def trailing_metadata(self) -> Any:
        return self._status("trailing_metadata")

    def code(self) -> Any:
        self._start()
        if self._call is None:
            return grpc.StatusCode.OK if self._error is None else None
        return self._call.code()

    def details(self) -> Any:
        self._start()
        if self._call is None:
            return None if self._error is None else str(self._error)
        return self._call.details()

    def debug_error_string(self) -> Any:
        return self._status("debug_error_string")

    # -- grpc.Future

    def cancelled(self) -> bool:
        if self._started and self._call is not None:
            return bool(self._call.cancelled())
        return self._cancelled

    def running(self) -> bool:
        return not self.done()

    def done(self) -> bool:
        if not self._started:
            return False
        return self._call is None or bool(self._call.done())

    def result(self, timeout: Any = None) -> Any:
        self._start()
        if self._call is None:
            if self._error is not None:
                raise self._error
            return None
        return self._call.result(timeout)

    def exception(self, timeout: Any = None) -> Any:
        self._start()
        if self._call is None:
            return self._error
        return self._call.exception(timeout)

    def traceback(self, timeout: Any = None) -> Any:
        self._start()
        if self._call is None:
            return self._error.__traceback__ if self._error is not None else None
        return self._call.traceback(timeout)

    def add_done_callback(self, fn: Any) -> None:
        if self._started and self._call is not None:
            self._call.add_done_callback(lambda _: fn(self))
        elif self._started:
            fn(self)
        else:
            self.add_callback(lambda: fn(self))


class ClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Run the calls of a ``grpc`` channel under resilience policies.

    ::

        interceptor = ClientInterceptor(rs.Retry(4), rs.CircuitBreaker(name="inventory"))
        channel = grpc.intercept_channel(grpc.insecure_channel(target), interceptor)

    Each call runs through the policies (outermost first); every *attempt* is
    one real RPC. An attempt that ends with a failure code raises a
    :class:`StatusError` inside the policies — a :class:`RetryableStatusError`
    (an ``OSError``, so ``Retry``'s defaults retry it) for ``retry_codes`` — and
    the caller gets the original ``grpc.RpcError`` back, as without the
    interceptor. The server's ``grpc-retry-pushback-ms`` becomes the error's
    ``retry_after``, which ``Retry`` uses instead of its backoff (a negative
    pushback: no retry). ``CANCELLED`` is never counted as a failure.

    Each attempt's timeout is the smaller of the call's own ``timeout`` (what
    is left of it) and the budget published by the policies around the
    attempt (``resilient.remaining()``, from a ``Timeout`` or a retry deadline).

    Streaming responses are retried only before their first message arrives;
    request streams only when given as a re-iterable (a list or a tuple), not
    as an iterator or generator. Response-streaming calls start when the caller
    first iterates them; ``future()`` calls wait for their outcome inside the
    interceptor (the policies need it).

    The library's rejections (:class:`resilient.CircuitOpenError`,
    :class:`resilient.RateLimitedError`...) reach the caller as they are.

    Args:
        *policies: the policies for every call (outermost first), unless a route
            matches; registry names may stand for policies.
        routes: method pattern -> policy, registry name, list of them, or
            ``None`` (no policy). Patterns: ``"pkg.Service/Method"``,
            ``"pkg.Service"`` (every method), globs, ``"*"``; the most specific
            wins. Any ``Mapping`` works.
        registry: where names are looked up, on every call (a
            :class:`~resilient.config.Registry` follows its reloads).
        retry_codes: status codes worth another attempt (default ``UNAVAILABLE``).
        failure_codes: status codes that count as failures (default
            ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``INTERNAL``, ``UNKNOWN``,
            ``DATA_LOSS``); retry codes always count.
        clock: measures the call's own timeout (default: the system clock).
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

    # -- unary responses

    def _unary(
        self, chain: ClientChain, continuation: Any, details: Any, request: Any, stream: bool
    ) -> Any:
        core = self._core
        call = CallState(
            details,
            core.clock,
            _with_timeout,
            chain.annotated,
            replayable(request) if stream else True,
        )

        def attempt() -> Any:
            outcome = continuation(call.next_details(), _requests(request, stream))
            call.outcome = outcome
            code = outcome.code()  # waits for a future() outcome
            if code is grpc.StatusCode.OK:
                return outcome
            verdict = core.judge(outcome, code, call)
            if verdict is None:
                return outcome  # an answer (NOT_FOUND...): grpc raises it for the caller
            raise verdict

        try:
            result = chain.run(attempt)
        except StatusError as exc:
            copy_notes(exc, exc.error)
            return exc.error
        except Cancelled as signal:
            return signal.outcome
        finally:
            if call.method_token is not None:
                call.leave()
        if result is call.outcome:
            return result
        return _Completed(result)  # a policy answered instead (a Fallback)

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Run a unary-unary call under the method's policies."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return continuation(client_call_details, request)
        return self._unary(chain, continuation, client_call_details, request, False)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Run a stream-unary call; retried only if the requests can be replayed."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return continuation(client_call_details, request_iterator)
        return self._unary(chain, continuation, client_call_details, request_iterator, True)

    # -- streaming responses

    def _stream(
        self, chain: ClientChain, continuation: Any, details: Any, request: Any, stream: bool
    ) -> _ResponseStream:
        core = self._core
        call = CallState(
            details,
            core.clock,
            _with_timeout,
            chain.annotated,
            replayable(request) if stream else True,
        )

        def run(responses: _ResponseStream) -> Any:
            def attempt() -> Started:
                rpc = continuation(call.next_details(), _requests(request, stream))
                responses.attempt_started(rpc)  # cancels it at once if the caller did
                try:
                    first = next(rpc)
                except StopIteration:
                    return Started(rpc, NOTHING)
                except grpc.RpcError:
                    code = rpc.code()
                    verdict = core.judge(rpc, code, call)
                    if verdict is None:
                        return Started(rpc, NOTHING)  # the caller's next() raises it
                    raise verdict from None
                return Started(rpc, first)

            try:
                return chain.run(attempt)
            finally:
                if call.method_token is not None:
                    call.leave()

        return _ResponseStream(run)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Run a unary-stream call; retried only before its first response message."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return continuation(client_call_details, request)
        return self._stream(chain, continuation, client_call_details, request, False)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Run a stream-stream call; retried only before its first response message,
        and only if the requests can be replayed."""
        chain = self._core.chain(client_call_details.method)
        if chain is None:
            return continuation(client_call_details, request_iterator)
        return self._stream(chain, continuation, client_call_details, request_iterator, True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._core.routes!r})"
