"""Helpers for the ASGI middleware tests: a raw ASGI driver, small apps, and a real
uvicorn server on a free loopback port (in a thread, or as worker processes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- raw ASGI ------------------------------------------------------------------------------


def http_scope(
    path: str = "/",
    *,
    method: str = "GET",
    client: tuple[str, int] | None = ("198.51.100.7", 40000),
    headers: list[tuple[bytes, bytes]] | None = None,
    **extra: Any,
) -> Scope:
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers or [],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    scope.update(extra)
    return scope


class Exchange:
    """Drives one raw ASGI call and records what the app (or middleware) sent."""

    def __init__(self, body: bytes = b"", *, forbid_receive: bool = False) -> None:
        self.sent: list[Message] = []
        self.received = 0
        self._body = body
        self._forbid = forbid_receive

    async def receive(self) -> Message:
        if self._forbid:
            raise AssertionError("the request body was read")
        self.received += 1
        if self.received == 1:
            return {"type": "http.request", "body": self._body, "more_body": False}
        await asyncio.Event().wait()  # like a server: nothing more until disconnect
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def start(self) -> Message:
        starts = [m for m in self.sent if m["type"].endswith("response.start")]
        assert len(starts) == 1, self.sent
        return starts[0]

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.start.get("headers", [])}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"].endswith("body"))

    def json(self) -> Any:
        return json.loads(self.body)


async def call(app: Any, scope: Scope, **kwargs: Any) -> Exchange:
    exchange = Exchange(**kwargs)
    await app(scope, exchange.receive, exchange.send)
    return exchange


class Hello:
    """A raw ASGI app answering ``status`` with a short body; counts its calls."""

    def __init__(self, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.headers = headers or [(b"content-type", b"text/plain")]
        self.calls = 0
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"hello"})


# -- a real uvicorn server in a thread -----------------------------------------------------


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def serve(app: Any, *, lifespan: str = "auto") -> Iterator[str]:
    """Run *app* under uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL.

    Proxy headers are off: the middleware, not the server, decides whom to believe.
    """
    sock = free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,  # type: ignore[arg-type]
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# -- uvicorn worker processes --------------------------------------------------------------


@contextlib.contextmanager
def serve_workers(target: str, workers: int, env: dict[str, str]) -> Iterator[str]:
    """Run ``uvicorn --factory target`` with *workers* processes sharing one listening
    socket on a free loopback port; yields the base URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    environment = {**os.environ, **env}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), str(HERE), environment.get("PYTHONPATH", "")]
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--factory",
            "--fd",
            str(sock.fileno()),
            "--workers",
            str(workers),
            "--no-proxy-headers",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        pass_fds=[sock.fileno()],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck worker
            process.kill()
            process.wait(5)
        sock.close()


def worker_app() -> Any:
    """The app each worker process builds: one rate limit on the store named by
    ``ASGI_TEST_STORE`` (``ASGI_TEST_RATE``, per client), ``/health`` exempt, and the
    worker's pid on every response (``x-pid``, added outside the middleware)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route as StarletteRoute

    import resilient as rs
    from resilient.adapters.asgi import ResilienceMiddleware, Route

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[StarletteRoute("/", hello), StarletteRoute("/health", hello)])
    limiter = rs.SlidingWindow(
        os.environ.get("ASGI_TEST_RATE", "20/hour"),
        store=os.environ["ASGI_TEST_STORE"],
        name="fleet",
    )
    app.add_middleware(ResilienceMiddleware, limiter, routes=[Route(None, path="/health")])
    pid = str(os.getpid()).encode()

    async def with_pid(scope: Scope, receive: Any, send: Any) -> None:
        async def send_pid(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-pid", pid)]
            await send(message)

        await app(scope, receive, send_pid if scope["type"] == "http" else send)

    return with_pid


async def worker_pids(url: str, want: int, *, give_up: float = 60.0) -> set[str]:
    """Ask ``/health`` on fresh connections until *want* workers have answered."""
    import httpx

    seen: set[str] = set()
    deadline = time.monotonic() + give_up
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        while len(seen) < want:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(seen)} of {want} workers answered")
            answers = await asyncio.gather(*(client.get(url + "/health") for _ in range(8)))
            seen.update(a.headers["x-pid"] for a in answers)
    return seen


def tenant_key(scope: Scope) -> str | None:
    """A key function importable by path (``_asgi_support:tenant_key``)."""
    for name, value in scope.get("headers", ()):
        if name == b"x-tenant":
            return "tenant:" + value.decode()
    return None


async def until(predicate: Callable[[], bool], *, give_up: float = 5.0) -> None:
    """Yield to the loop until *predicate* holds (for ordering, never for time)."""
    deadline = time.monotonic() + give_up
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0)
