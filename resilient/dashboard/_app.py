"""``DashboardApp``: the dashboard page, its JSON snapshot and its live stream, as
one pure ASGI app (no web framework).

Routes, under the app's ``path`` prefix:

* ``{path}/``: the page (HTML, CSS and JS shipped in this package; no CDN);
* ``{path}/snapshot``: the JSON snapshot (``?history=all`` adds the per-second history,
  ``?history=N`` its last N seconds);
* ``{path}/events``: Server-Sent Events: a ``snapshot`` event on connect (with
  history), then an ``update`` event every ``interval`` seconds and at once after
  a circuit state change.

**Viewers never slow the app.** The policies only feed a :class:`LiveStats`
(a few integer updates under a short lock). One ticker task per app builds each
frame once, serialises it once, and offers the same bytes to every viewer's
bounded queue without waiting: a viewer whose queue is full loses its oldest
frame (frames are whole states, so the newest one is all it needs), and one that
has not taken a frame for ``max_lag`` ticks is dropped; its connection ends as
soon as its socket moves again, and its browser reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any, Final
from urllib.parse import parse_qs

from .._errors import ConfigError
from ._live import LiveStats
from ._snapshot import (
    DEFAULT_TOP_KEYS,
    SNAPSHOT_FORMAT,
    SNAPSHOT_VERSION,
    Source,
    policy_items,
    snapshot,
    steps_of,
)

__all__ = ["Auth", "DashboardApp", "RemoteSnapshot"]

logger = logging.getLogger("resilient")

Scope = Any
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

Auth = Callable[[Any], "bool | Awaitable[bool]"]
"""Decides whether a request may see the dashboard: called with the ASGI scope;
returns (or resolves to) a bool."""

_STATIC: Final = {
    "": ("index.html", b"text/html; charset=utf-8"),
    "dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
_CSP: Final = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON: Final = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_RETRY_MS: Final = 1000
_RECONNECT: Final = b"event: reconnect\ndata: {}\n\n"
_RECENT: Final = 5  # seconds of history in each update
_MIN_GAP: Final = 0.05  # seconds between two frames when state changes come in a burst

_cache: dict[str, bytes] = {}


def _asset(name: str) -> bytes:
    found = _cache.get(name)
    if found is None:
        found = _cache[name] = (
            resources.files("resilient.dashboard").joinpath("static", name).read_bytes()
        )
    return found


class RemoteSnapshot:
    """Reads the JSON snapshot of another process over HTTP (``resilient top URL``,
    ``resilient dashboard URL``).

    Args:
        url: the snapshot URL (``.../_resilient/snapshot``) or the dashboard's
            (``.../_resilient``; ``/snapshot`` is added).
        headers: extra request headers (``{"Authorization": "Basic ..."}``).
        timeout: seconds per request.
    """

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5.0
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError("url", url, "an http:// or https:// URL")
        base = url.split("?", 1)[0].rstrip("/")
        self.url = base if base.endswith(("/snapshot", ".json")) else base + "/snapshot"
        self.headers = dict(headers or {})
        self.timeout = timeout

    def fetch(self, history: bool | int = False) -> dict[str, Any]:
        """The snapshot (blocking). Raises ``OSError`` (unreachable, HTTP error) or
        ``ValueError`` (not a snapshot of a version this code reads)."""
        import urllib.request

        url = self.url
        if history:
            url += "?history=" + ("all" if history is True else str(int(history)))
        request = urllib.request.Request(
            url, headers={"Accept": "application/json", **self.headers}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read(32 * 1024 * 1024)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
            msg = f"{self.url} did not answer with a resilient snapshot"
            raise ValueError(msg)
        if data.get("version") != SNAPSHOT_VERSION:
            msg = (
                f"{self.url} answered snapshot version {data.get('version')!r}; "
                f"this resilient reads version {SNAPSHOT_VERSION}"
            )
            raise ValueError(msg)
        return data

    def __repr__(self) -> str:
        return f"RemoteSnapshot({self.url!r})"


class _Viewer:
    """One connected page: a bounded queue of frames (the oldest is dropped when full)."""

    __slots__ = ("closed", "dropped", "frames", "lag", "wake")

    def __init__(self, size: int) -> None:
        self.frames: deque[bytes] = deque(maxlen=size)
        self.wake = asyncio.Event()
        self.dropped = 0  # frames lost because the viewer was slow
        self.lag = 0  # frames offered since the viewer last took one
        self.closed = False

    def offer(self, frame: bytes) -> None:
        """Queue *frame* without waiting (event-loop thread)."""
        if len(self.frames) == self.frames.maxlen:
            self.dropped += 1
        self.frames.append(frame)
        self.lag += 1
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class _Hub:
    """Builds one frame per tick and offers it to every viewer (one task per app)."""

    def __init__(self, app: DashboardApp) -> None:
        self.app = app
        self.viewers: set[_Viewer] = set()
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.kicked: asyncio.Event | None = None
        self.ticks = 0
        self.dropped_viewers = 0

    def join(self, viewer: _Viewer) -> None:
        self.viewers.add(viewer)
        task = self.task
        if task is None or task.done():
            self.loop = asyncio.get_running_loop()
            self.kicked = asyncio.Event()
            self.task = self.loop.create_task(self._run(), name="resilient-dashboard")

    def leave(self, viewer: _Viewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers and self.kicked is not None:
            self.kicked.set()  # let the ticker notice and stop

    def kick(self, change: object = None) -> None:
        """A state changed: send a frame now (called from any thread)."""
        loop, kicked, task = self.loop, self.kicked, self.task
        if loop is None or kicked is None or task is None or task.done():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(kicked.set)

    async def _run(self) -> None:
        app = self.app
        kicked = self.kicked
        assert kicked is not None
        try:
            while self.viewers:
                kicked.clear()
                frame = await app._frame(history=False)
                self.ticks += 1
                for viewer in list(self.viewers):
                    viewer.offer(frame)
                    if viewer.lag > app.max_lag:  # stuck: stop feeding it
                        self.viewers.discard(viewer)
                        self.dropped_viewers += 1
                        viewer.close()
                if not self.viewers:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(app.interval):
                        await kicked.wait()
                await asyncio.sleep(_MIN_GAP)
        finally:
            self.task = None


class DashboardApp:
    """The live dashboard as an ASGI app: mount it anywhere, or let
    ``ResilienceMiddleware(..., dashboard="/_resilient")`` serve it.

    Args:
        source: what to show: a :class:`~resilient.Registry`, a mapping of names to
            policies, policies, a callable returning one of those (read on each
            frame), or the URL of another process's snapshot (``http://...``).
        path: the prefix the app answers under (``""``: the root; ``"/_resilient"``).
        auth: called with each request's ASGI scope; a false answer (or an
            exception) refuses it with 403. ``None``: everyone who can reach it.
        live: the :class:`LiveStats` that computes rates; ``None``: one is made and
            added to the policies' listeners (a remote source has its own).
        interval: seconds between two frames of the live stream (default 1).
        top_keys: the busiest keys listed per keyed rate limiter (default 5).
        max_viewers: live-stream connections at once; more are refused with 503.
        queue_size: frames queued per viewer before the oldest is dropped.
        max_lag: ticks a viewer may go without taking a frame before it is dropped.
        max_stream: seconds one live-stream response lasts; the page is then asked to
            reconnect at once (and gets a fresh snapshot). A server that stops waits
            for open responses to end, so this is the longest an open page delays it.
        title: the page's title.
    """

    def __init__(
        self,
        source: Source,
        *,
        path: str = "",
        auth: Auth | None = None,
        live: LiveStats | None = None,
        interval: float = 1.0,
        top_keys: int = DEFAULT_TOP_KEYS,
        max_viewers: int = 100,
        queue_size: int = 4,
        max_lag: int = 30,
        max_stream: float = 30.0,
        title: str = "resilient",
    ) -> None:
        if not isinstance(path, str) or (path and (not path.startswith("/") or path == "/")):
            raise ConfigError("dashboard", path, "a path such as '/_resilient'")
        if auth is not None and not callable(auth):
            raise ConfigError("dashboard_auth", auth, "a callable(scope) -> bool")
        for name, seconds in (("interval", interval), ("max_stream", max_stream)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise ConfigError(name, seconds, "a number of seconds > 0")
        for name, value in (
            ("max_viewers", max_viewers),
            ("queue_size", queue_size),
            ("max_lag", max_lag),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, value, "an int >= 1")
        self.path = path.rstrip("/")
        self.auth = auth
        self.interval = float(interval)
        self.top_keys = top_keys
        self.max_viewers = max_viewers
        self.queue_size = queue_size
        self.max_lag = max_lag
        self.max_stream = float(max_stream)
        self.title = title
        self.remote: RemoteSnapshot | None = None
        if isinstance(source, str):
            self.remote = RemoteSnapshot(source)
            self.source: Source = None
            self.live: LiveStats | None = None
        else:
            policy_items(source)  # a bad source fails here, not on the first request
            self.source = source
            self.live = live if live is not None else LiveStats()
            self.attach()
        self.hub = _Hub(self)
        if self.live is not None:
            self.live.watch(self.hub.kick)
        self.connections = 0
        self._last_changes = time.time()

    # -- frames ----------------------------------------------------------------------------

    def attach(self) -> None:
        """Make sure the live listener hears every policy shown (after a reload, new
        policy objects)."""
        live = self.live
        if live is not None:
            for _, policy in policy_items(self.source):
                live.attach(steps_of(policy))

    def snapshot(self, *, history: bool | int = False) -> dict[str, Any]:
        """The snapshot as the JSON endpoint serves it (blocking for a remote source)."""
        if self.remote is not None:
            return self.remote.fetch(history=history)
        self.attach()
        return snapshot(self.source, live=self.live, top_keys=self.top_keys, history=history)

    def _snapshot_body(self, history: bool | int) -> tuple[int, bytes]:
        data = self._read(history)
        if self.live is not None:
            data["changes"] = [c.as_dict() for c in self.live.changes()]
        status = 502 if "error" in data else 200
        return status, json.dumps(data, separators=(",", ":"), allow_nan=False).encode()

    def _read(self, history: bool | int) -> dict[str, Any]:
        """The snapshot, or an error report in its place (blocking)."""
        try:
            return self.snapshot(history=history)
        except (OSError, ValueError) as exc:
            if self.remote is None:
                raise
            return {
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "time": round(time.time(), 3),
                "error": f"{self.remote.url}: {exc}",
                "policies": None,
            }

    async def _frame(self, *, history: bool) -> bytes:
        # Built in a worker thread: a remote source is I/O, and reading a large registry
        # takes a while; the event loop keeps serving the app meanwhile.
        return await asyncio.to_thread(self._build_frame, history)

    def _build_frame(self, history: bool) -> bytes:
        """One event of the live stream: the snapshot, serialised once (blocking)."""
        try:
            # The first frame carries the whole history; the next ones, the last few
            # seconds (enough to fill the gap of a skipped frame).
            data = self._read(True if history else _RECENT)
        except Exception as exc:
            logger.exception("resilient: the dashboard could not read the policies")
            data = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "error": str(exc)}
        data["title"] = self.title
        if self.live is not None:  # (a remote snapshot brings its own)
            now = time.time()
            data["changes"] = [
                c.as_dict() for c in self.live.changes(None if history else self._last_changes)
            ]
            if not history:
                self._last_changes = now
        event = b"snapshot" if history else b"update"
        payload = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
        return b"event: " + event + b"\ndata: " + payload + b"\n\n"

    # -- ASGI ------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        """Whether a request path is one of the dashboard's."""
        prefix = self.path
        return path == prefix or path.startswith(prefix + "/") if prefix else True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root):
            path = path[len(root) :]
        if not self.handles(path):
            await _problem(send, 404, "Not found.")
            return
        if not await self._allowed(scope):
            await _problem(send, 403, "Access to the dashboard was refused.")
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _problem(send, 405, "Only GET.", [(b"allow", b"GET, HEAD")])
            return
        rest = path[len(self.path) :]
        if rest == "":
            location = (root + self.path + "/").encode()
            await _respond(send, 308, b"text/plain", b"", [(b"location", location)])
            return
        rest = rest[1:]
        if rest == "events":
            await self._events(scope, receive, send)
        elif rest == "snapshot":
            query = parse_qs(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            )
            status, body = await asyncio.to_thread(
                self._snapshot_body, _history_param(query.get("history"))
            )
            await _respond(send, status, b"application/json", body, head=scope["method"] == "HEAD")
        elif rest in _STATIC:
            name, content_type = _STATIC[rest]
            extra = [(b"content-security-policy", _CSP)] if rest == "" else []
            await _respond(
                send, 200, content_type, _asset(name), extra, head=scope["method"] == "HEAD"
            )
        else:
            await _problem(send, 404, "Not found.")

    async def _allowed(self, scope: Scope) -> bool:
        auth = self.auth
        if auth is None:
            return True
        try:
            verdict = auth(scope)
            if inspect.isawaitable(verdict):
                verdict = await verdict
        except Exception:
            logger.exception("resilient: the dashboard's auth callable raised; access refused")
            return False
        return verdict is True

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.connections >= self.max_viewers:
            await _problem(send, 503, "Too many dashboard viewers.", [(b"retry-after", b"5")])
            return
        self.connections += 1
        viewer = _Viewer(self.queue_size)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),
                        *_COMMON,
                    ],
                }
            )
            # A fresh, whole snapshot first, and how soon to come back after a drop.
            first = b"retry: %d\n\n" % _RETRY_MS + await self._frame(history=True)
            await send({"type": "http.response.body", "body": first, "more_body": True})
            self.hub.join(viewer)
            writer = asyncio.ensure_future(_write(viewer, send))
            gone = asyncio.ensure_future(_disconnected(receive))
            timer = asyncio.ensure_future(asyncio.sleep(self.max_stream))
            try:
                await asyncio.wait({writer, gone, timer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.hub.leave(viewer)
                for task in (writer, gone, timer):
                    task.cancel()
                await asyncio.gather(writer, gone, timer, return_exceptions=True)
            if gone.cancelled():  # the viewer is still there
                # Dropped as too slow, or the stream's time is up: end it cleanly; the page
                # comes back at once (or after the retry delay) for a fresh snapshot.
                last = b"" if viewer.closed else _RECONNECT
                with contextlib.suppress(OSError, RuntimeError):
                    await send({"type": "http.response.body", "body": last, "more_body": False})
        finally:
            self.hub.leave(viewer)
            self.connections -= 1

    def __repr__(self) -> str:
        what = self.remote.url if self.remote is not None else type(self.source).__name__
        return f"DashboardApp({what!r}, path={self.path!r})"


def _history_param(values: list[str] | None) -> bool | int:
    """``?history`` / ``?history=all``: every second kept; ``?history=N``: the last N."""
    if values is None:
        return False
    value = values[-1].strip().lower()
    if value in ("", "all", "true", "yes"):
        return True
    return int(value) if value.isdigit() else False


async def _write(viewer: _Viewer, send: Send) -> None:
    while True:
        await viewer.wake.wait()
        viewer.wake.clear()
        while viewer.frames and not viewer.closed:
            frame = viewer.frames.popleft()
            viewer.lag = 0
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        if viewer.closed:
            return


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *_COMMON,
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _problem(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    from http import HTTPStatus

    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
    ).encode()
    await _respond(send, status, b"application/problem+json", body, extra)
