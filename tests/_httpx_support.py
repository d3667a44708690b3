"""Helpers for the httpx adapter tests: a small ASGI app, a uvicorn server in a
thread on a free loopback port, and a runner for sync and async clients.

The app (pure ASGI, no framework) answers:

* ``/ok``                          200 "ok"
* ``/status/{code}``               that status; ``?retry_after=`` sets the header,
                                   ``?size=`` the body length
* ``/flaky/{key}``                 ``?fail=N&status=503&retry_after=&size=``: the
                                   first N requests for *key* fail, then 200
* ``/slow``                        ``?seconds=`` then 200
* ``/echo``                        200, JSON of the method, body length and the
                                   ``Idempotency-Key`` header

Every request is counted per path in ``app.counts``; its body and
``Idempotency-Key`` are kept in ``app.bodies`` and ``app.keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class App:
    """The test service (see the module docs)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.bodies: dict[str, list[bytes]] = {}
        self.keys: dict[str, list[str | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path: str = scope["path"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.counts[path] += 1
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.bodies.setdefault(path, []).append(body)
        self.keys.setdefault(path, []).append(headers.get("idempotency-key"))
        status, extra, content = 200, {}, b"ok"
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        elif path.startswith("/flaky/"):
            if self.counts[path] <= int(query.get("fail", "1")):
                status = int(query.get("status", "503"))
            content = f"attempt {self.counts[path]}".encode()
        elif path == "/slow":
            await asyncio.sleep(float(query.get("seconds", "1")))
        elif path == "/echo":
            content = json.dumps(
                {
                    "method": scope["method"],
                    "length": len(body),
                    "key": headers.get("idempotency-key"),
                }
            ).encode()
        if status != 200 and "retry_after" in query:
            extra["retry-after"] = query["retry_after"]
        if "size" in query:
            content = b"x" * int(query["size"])
        raw = [(b"content-length", str(len(content)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": content})


class Server:
    """A running uvicorn server: ``url`` is its base URL."""

    def __init__(self, app: App, server: uvicorn.Server, port: int) -> None:
        self.app = app
        self.server = server
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serve(app: App) -> Iterator[Server]:
    """Run *app* on 127.0.0.1 with a free port in a background thread."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(app, server, port)
    finally:
        server.should_exit = True
        server.force_exit = True  # do not wait for requests the tests abandoned
        thread.join(10)


def closed_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Flavour:
    """Sends requests through a sync ``httpx.Client`` or an ``httpx.AsyncClient``
    (on a fresh event loop), so one test body checks both transports."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.is_async = name == "async"

    def transport(self, *policies: Any, **kwargs: Any) -> Any:
        from resilient.adapters.httpx import AsyncResilientTransport, ResilientTransport

        cls = AsyncResilientTransport if self.is_async else ResilientTransport
        return cls(*policies, **kwargs)

    def send(
        self, transport: Any, method: str, url: str, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request; the response is read (or, with *stream*, left to the caller
        unread, with the client closed)."""
        if not self.is_async:
            with httpx.Client(transport=transport) as client:
                request = client.build_request(method, url, **kwargs)
                return client.send(request, stream=stream)

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport) as client:
                request = client.build_request(method, url, **kwargs)
                return await client.send(request, stream=stream)

        return asyncio.run(go())

    def __repr__(self) -> str:
        return self.name
