"""Real gRPC servers on 127.0.0.1:0 for the gRPC adapter tests, sync and asyncio.

One scriptable echo service (generic handlers, bytes payloads) in every arity:

* ``Unary`` (unary-unary): ``b"echo:" + request``
* ``ServerStream`` (unary-stream): ``request + b"-1"``, ``request + b"-2"``
* ``ClientStream`` (stream-unary): the requests joined with ``b"|"``
* ``Bidi`` (stream-stream): each request upper-cased

A :class:`Script` says what the next calls do (fail with a code and trailers,
fail after the first message, block until cancelled) and records what the
server saw. :class:`Pair` runs a server and a channel of one flavour; its
``call`` is a coroutine in both flavours (sync calls run in a worker thread),
so one test body covers ``grpc`` and ``grpc.aio``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from resilient import remaining
from resilient.adapters.grpc import (
    AsyncClientInterceptor,
    AsyncServerInterceptor,
    ClientInterceptor,
    ServerInterceptor,
)

SERVICE = "test.Echo"
METHODS = {
    "unary_unary": "Unary",
    "unary_stream": "ServerStream",
    "stream_unary": "ClientStream",
    "stream_stream": "Bidi",
}
ARITIES = tuple(METHODS)
STREAM_RESPONSES = ("unary_stream", "stream_stream")
STREAM_REQUESTS = ("stream_unary", "stream_stream")


def path(arity: str) -> str:
    return f"/{SERVICE}/{METHODS[arity]}"


def expected(arity: str, payload: bytes = b"x", requests: tuple[bytes, ...] = (b"a", b"b")) -> Any:
    """What a successful call of *arity* answers."""
    if arity == "unary_unary":
        return b"echo:" + payload
    if arity == "unary_stream":
        return [payload + b"-1", payload + b"-2"]
    if arity == "stream_unary":
        return b"|".join(requests)
    return [r.upper() for r in requests]


# --------------------------------------------------------------------------- the script


@dataclass
class Step:
    """What one call does (``code=None``: answer normally)."""

    code: grpc.StatusCode | None = None
    details: str = "scripted"
    trailers: tuple[tuple[str, str], ...] = ()
    after_first: bool = False  # streaming responses: send one message, then fail
    block: bool = False  # wait until the call is cancelled (or 5 s)
    set_code: bool = False  # set the code and return normally instead of aborting
    pause: bool = False  # streaming responses: after the first message, wait for script.resume


@dataclass
class Script:
    """The plan of the next calls, and what the server saw. Thread-safe."""

    steps: deque[Step] = field(default_factory=deque)
    calls: Counter[str] = field(default_factory=Counter)
    requests: list[Any] = field(default_factory=list)
    time_left: list[float | None] = field(default_factory=list)
    published: list[float | None] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    entered: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_call: Callable[[Any], None] | None = None

    def fail(
        self,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        times: int = 1,
        *,
        pushback: str | None = None,
        **options: Any,
    ) -> Script:
        trailers = (("grpc-retry-pushback-ms", pushback),) if pushback is not None else ()
        for _ in range(times):
            self.steps.append(Step(code=code, trailers=trailers, **options))
        return self

    def block(self) -> Script:
        self.steps.append(Step(block=True))
        return self

    def begin(self, method: str, context: Any) -> Step | None:
        left = context.time_remaining()
        with self.lock:
            self.calls[method] += 1
            self.time_left.append(None if left is None or left > 1e6 else left)
            self.published.append(remaining())
            self.metadata.append(dict(context.invocation_metadata() or ()))
            step = self.steps.popleft() if self.steps else None
        if self.on_call is not None:
            self.on_call(context)
        return step

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# --------------------------------------------------------------------------- sync handlers


def _sync_end(step: Step, context: Any) -> None:
    if step.trailers:
        context.set_trailing_metadata(step.trailers)
    if step.set_code:
        context.set_code(step.code)
        context.set_details(step.details)
        return
    context.abort(step.code, step.details)


def _sync_block(script: Script, context: Any) -> None:
    done = threading.Event()
    context.add_callback(done.set)
    script.entered.set()
    done.wait(5.0)


def sync_handlers(script: Script) -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: Any) -> bytes | None:
        step = script.begin("Unary", context)
        script.requests.append(request)
        if step is not None:
            if step.block:
                _sync_block(script, context)
                return None
            if step.code is not None:
                _sync_end(step, context)
                if step.set_code:
                    return b"status-set"
        return b"echo:" + request

    def server_stream(request: bytes, context: Any) -> Iterator[bytes]:
        step = script.begin("ServerStream", context)
        script.requests.append(request)
        if step is not None and step.block:
            _sync_block(script, context)
            return
        if step is not None and step.code is not None and not step.after_first:
            _sync_end(step, context)
            return
        yield request + b"-1"
        if step is not None and step.code is not None:
            _sync_end(step, context)
            return
        if step is not None and step.pause:
            script.resume.wait(5.0)
        yield request + b"-2"

    def client_stream(requests: Iterator[bytes], context: Any) -> bytes | None:
        step = script.begin("ClientStream", context)
        received = list(requests)
        script.requests.append(received)
        if step is not None:
            if step.block:
                _sync_block(script, context)
                return None
            if step.code is not None:
                _sync_end(step, context)
                if step.set_code:
                    return b"status-set"
        return b"|".join(received)

    def bidi(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        step = script.begin("Bidi", context)
        if step is not None and step.block:
            _sync_block(script, context)
            return
        received = list(requests)  # all of them first: no write races with an early status
        script.requests.append(received)
        failing = step is not None and step.code is not None
        if failing and not step.after_first:  # type: ignore[union-attr]
            _sync_end(step, context)  # type: ignore[arg-type]
            return
        for index, request in enumerate(received):
            yield request.upper()
            if index == 0 and failing:
                _sync_end(step, context)  # type: ignore[arg-type]
                return

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


# --------------------------------------------------------------------------- aio handlers


async def _aio_end(step: Step, context: Any) -> None:
    if step.set_code:
        context.set_trailing_metadata(step.trailers)
        context.set_code(step.code)
        context.set_details(step.details)
        return
    await context.abort(step.code, step.details, step.trailers)


async def _aio_block(script: Script) -> None:
    script.entered.set()
    await asyncio.sleep(5.0)  # cancelled with the call


def aio_handlers(script: Script) -> grpc.GenericRpcHandler:
    async def unary(request: bytes, context: Any) -> bytes | None:
        step = script.begin("Unary", context)
        script.requests.append(request)
        if step is not None:
            if step.block:
                await _aio_block(script)
                return None
            if step.code is not None:
                await _aio_end(step, context)
                if step.set_code:
                    return b"status-set"
        return b"echo:" + request

    async def server_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        step = script.begin("ServerStream", context)
        script.requests.append(request)
        if step is not None and step.block:
            await _aio_block(script)
            return
        if step is not None and step.code is not None and not step.after_first:
            await _aio_end(step, context)
            return
        yield request + b"-1"
        if step is not None and step.code is not None:
            await _aio_end(step, context)
            return
        if step is not None and step.pause:
            await asyncio.to_thread(script.resume.wait, 5.0)
        yield request + b"-2"

    async def client_stream(requests: AsyncIterator[bytes], context: Any) -> bytes | None:
        step = script.begin("ClientStream", context)
        received = [request async for request in requests]
        script.requests.append(received)
        if step is not None:
            if step.block:
                await _aio_block(script)
                return None
            if step.code is not None:
                await _aio_end(step, context)
                if step.set_code:
                    return b"status-set"
        return b"|".join(received)

    async def bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        step = script.begin("Bidi", context)
        if step is not None and step.block:
            await _aio_block(script)
            return
        received = [request async for request in requests]  # all first: no write races
        script.requests.append(received)
        failing = step is not None and step.code is not None
        if failing and not step.after_first:  # type: ignore[union-attr]
            await _aio_end(step, context)  # type: ignore[arg-type]
            return
        for index, request in enumerate(received):
            yield request.upper()
            if index == 0 and failing:
                await _aio_end(step, context)  # type: ignore[arg-type]
                return

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


# --------------------------------------------------------------------------- a server and a client


@dataclass
class Spec:
    """Interceptor arguments, given to the flavour's class."""

    policies: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def spec(*policies: Any, **kwargs: Any) -> Spec:
    return Spec(policies, kwargs)


class Pair:
    """A server and a channel to it, in one flavour (``"sync"`` or ``"aio"``)."""

    def __init__(
        self,
        flavour: str,
        script: Script,
        client: Spec | None = None,
        server: Spec | None = None,
    ) -> None:
        self.flavour = flavour
        self.script = script
        self.client_spec = client
        self.server_spec = server
        self.server: Any = None
        self.channel: Any = None
        self.raw_channel: Any = None
        self.address = ""

    # -- lifecycle

    async def __aenter__(self) -> Pair:
        if self.flavour == "sync":
            interceptors = []
            if self.server_spec is not None:
                s = self.server_spec
                interceptors.append(ServerInterceptor(*s.policies, **s.kwargs))
            self.server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=8), interceptors=interceptors
            )
            self.server.add_generic_rpc_handlers((sync_handlers(self.script),))
            port = self.server.add_insecure_port("127.0.0.1:0")
            self.server.start()
            self.address = f"127.0.0.1:{port}"
            self.raw_channel = grpc.insecure_channel(self.address)
            self.channel = self.raw_channel
            if self.client_spec is not None:
                c = self.client_spec
                self.channel = grpc.intercept_channel(
                    self.raw_channel, ClientInterceptor(*c.policies, **c.kwargs)
                )
        else:
            interceptors = []
            if self.server_spec is not None:
                s = self.server_spec
                interceptors.append(AsyncServerInterceptor(*s.policies, **s.kwargs))
            self.server = grpc.aio.server(interceptors=interceptors)
            self.server.add_generic_rpc_handlers((aio_handlers(self.script),))
            port = self.server.add_insecure_port("127.0.0.1:0")
            await self.server.start()
            self.address = f"127.0.0.1:{port}"
            client = []
            if self.client_spec is not None:
                c = self.client_spec
                client.extend(AsyncClientInterceptor(*c.policies, **c.kwargs))
            self.channel = grpc.aio.insecure_channel(self.address, interceptors=client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.flavour == "sync":
            self.raw_channel.close()
            self.server.stop(None)
        else:
            await self.channel.close()
            await self.server.stop(None)

    # -- calls

    def multicallable(self, arity: str) -> Any:
        return getattr(self.channel, arity)(path(arity))

    async def call(
        self,
        arity: str,
        payload: bytes = b"x",
        *,
        requests: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the gRPC call's own timeout
        metadata: tuple[tuple[str, str], ...] | None = None,
    ) -> Any:
        """Make one call and return its answer (bytes, or the list of streamed messages)."""
        method = self.multicallable(arity)
        if requests is None:
            requests = [b"a", b"b"]
        argument = requests if arity in STREAM_REQUESTS else payload
        if self.flavour == "sync":
            if arity in STREAM_REQUESTS and isinstance(argument, list) and not self.client_spec:
                argument = iter(argument)  # sync grpc needs an iterator (the interceptor doesn't)

            def run() -> Any:
                result = method(argument, timeout=timeout, metadata=metadata)
                return list(result) if arity in STREAM_RESPONSES else result

            return await asyncio.to_thread(run)
        call = method(argument, timeout=timeout, metadata=metadata)
        if arity in STREAM_RESPONSES:
            return [message async for message in call]
        return await call

    async def sync_or_aio(self, fn: Callable[[], Any], afn: Callable[[], Awaitable[Any]]) -> Any:
        if self.flavour == "sync":
            return await asyncio.to_thread(fn)
        return await afn()


# --------------------------------------------------------------------------- policy doubles


class Recorder:
    """A policy that records how each call ended: ``"ok"``, ``"failure"`` (an
    ``Exception``) or ``"cancelled"`` (any other ``BaseException``)."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.errors: list[BaseException] = []

    def _record(self, exc: BaseException | None) -> None:
        if exc is None:
            self.outcomes.append("ok")
        else:
            self.errors.append(exc)
            self.outcomes.append("failure" if isinstance(exc, Exception) else "cancelled")

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._record(exc)
            raise
        self._record(None)
        return result

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._record(exc)
            raise
        self._record(None)
        return result


class Refuse:
    """A policy that refuses every call with *error* (it never calls the function)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.refused = 0

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.refused += 1
        raise self.error

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.refused += 1
        raise self.error


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float | None = None
    remaining: int = 0
    limit: int = 0
    reset_after: float = 0.0


class CountingLimiter:
    """A rate-limiter double: *allow* calls per key, then refusals with *retry_after*."""

    limits = ()

    def __init__(self, allow: int, retry_after: float | None = 1.5, name: str = "limiter") -> None:
        self.allow = allow
        self.retry_after = retry_after
        self.name = name
        self.used: Counter[Any] = Counter()
        self.keys: list[Any] = []

    def try_acquire(self, key: Any = None, cost: int = 1) -> Decision:
        self.keys.append(key)
        if self.used[key] + cost > self.allow:
            return Decision(False, self.retry_after, 0, self.allow)
        self.used[key] += cost
        return Decision(True, None, self.allow - self.used[key], self.allow)

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)


class AsyncCountingLimiter(CountingLimiter):
    """The same, with an ``atry_acquire`` that the asyncio server must prefer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.async_calls = 0

    async def atry_acquire(self, key: Any = None, cost: int = 1) -> Decision:
        self.async_calls += 1
        return self.try_acquire(key, cost)
