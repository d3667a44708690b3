"""The dashboard app: the JSON snapshot endpoint (auth allowed and refused), the page's
files, routing beside the protected app, the Server-Sent Events stream (framing, a fresh
snapshot on connect, bounded per-viewer queues: a viewer that never reads is skipped and
dropped while the app's requests never wait), the remote source and the standalone
command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_support import free_socket, serve

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware
from resilient.dashboard import DashboardApp, LiveStats
from resilient.dashboard._app import _Viewer

PREFIX = "/_resilient"


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status = 500 if scope["path"] == "/fail" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"app:" + scope["path"].encode()})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 1234)),
        base_url="http://testserver",
    )


def protected(**options: Any) -> tuple[ResilienceMiddleware, rs.CircuitBreaker, rs.TokenBucket]:
    breaker = rs.CircuitBreaker(name="upstream", minimum_calls=2, window=rs.CountWindow(2))
    limiter = rs.TokenBucket("2/minute", name="per-client")
    app = ResilienceMiddleware(hello, limiter, breaker, dashboard=PREFIX, **options)
    return app, breaker, limiter


# -- the JSON endpoint and auth ----------------------------------------------------------


async def test_snapshot_endpoint_shows_the_middlewares_policies_with_rates() -> None:
    app, _breaker, _ = protected()
    async with client(app) as http:
        assert (await http.get("/fail")).status_code == 500
        assert (await http.get("/fail")).status_code == 500
        assert (await http.get("/")).status_code == 429  # two per minute: the third is refused
        response = await http.get(PREFIX + "/snapshot")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    assert (data["format"], data["version"]) == ("resilient.snapshot", 1)
    names = [p["name"] for p in data["policies"]]
    assert names == ["per-client", "upstream"]
    upstream = data["policies"][1]
    assert upstream["state"] == "open"
    assert upstream["rates"]["calls"] > 0
    assert upstream["rates"]["failures"] > 0
    per_client = data["policies"][0]
    assert per_client["rates"]["rejections"] == {"rate_limited": pytest.approx(1.0, rel=0.5)}
    assert per_client["keys"][0]["key"] == "ip:127.0.0.1"
    assert per_client["keys"][0]["remaining"] == 0
    assert "history" not in upstream
    assert data["changes"][-1]["new"] == "open"


async def test_the_dashboard_is_outside_the_policies_it_shows() -> None:
    app, breaker, limiter = protected()
    breaker.force_open()
    async with client(app) as http:
        assert (await http.get("/x")).status_code == 503
        for _ in range(5):
            assert (await http.get(PREFIX + "/snapshot")).status_code == 200
            assert (await http.get(PREFIX + "/")).status_code == 200
    # The one app request took a token, the dashboard's requests none.
    assert limiter.try_acquire("ip:127.0.0.1").remaining == 0
    assert breaker.stats().rejected == 1


async def test_history_on_request() -> None:
    app, _, _ = protected()
    async with client(app) as http:
        data = (await http.get(PREFIX + "/snapshot?history")).json()
        assert len(data["policies"][0]["history"]["calls"]) == 60
        data = (await http.get(PREFIX + "/snapshot?history=5")).json()
        assert len(data["policies"][0]["history"]["calls"]) == 5


def allow_token(scope: Any) -> bool:
    return dict(scope["headers"]).get(b"authorization") == b"Bearer ok"


async def allow_async(scope: Any) -> bool:
    await asyncio.sleep(0)
    return allow_token(scope)


def broken(scope: Any) -> bool:
    raise RuntimeError("auth backend down")


@pytest.mark.parametrize("auth", [allow_token, allow_async], ids=["sync", "async"])
async def test_auth_allows_and_refuses(auth: Callable[[Any], bool | Awaitable[bool]]) -> None:
    app, _, _ = protected(dashboard_auth=auth)
    async with client(app) as http:
        for path in ("/snapshot", "/", "/dashboard.js", "/events", ""):
            refused = await http.get(PREFIX + path)
            assert refused.status_code == 403, path
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["detail"] == "Access to the dashboard was refused."
        bad = await http.get(PREFIX + "/snapshot", headers={"authorization": "Bearer no"})
        assert bad.status_code == 403
        good = await http.get(PREFIX + "/snapshot", headers={"authorization": "Bearer ok"})
        assert good.status_code == 200
        assert good.json()["version"] == 1
        # The app itself is not behind the dashboard's auth.
        assert (await http.get("/")).status_code == 200


async def test_a_raising_auth_refuses(caplog: pytest.LogCaptureFixture) -> None:
    app, _, _ = protected(dashboard_auth=broken)
    async with client(app) as http:
        assert (await http.get(PREFIX + "/snapshot")).status_code == 403
    assert "auth callable raised" in caplog.text


async def test_truthy_but_not_true_is_a_refusal() -> None:
    app, _, _ = protected(dashboard_auth=lambda scope: "yes")
    async with client(app) as http:
        assert (await http.get(PREFIX + "/snapshot")).status_code == 403


# -- the page's files and routing --------------------------------------------------------


async def test_page_files_ship_in_the_package_and_load_nothing_from_elsewhere() -> None:
    app, _, _ = protected()
    async with client(app) as http:
        redirect = await http.get(PREFIX)
        assert redirect.status_code == 308
        assert redirect.headers["location"] == PREFIX + "/"
        page = await http.get(PREFIX + "/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "connect-src 'self'" in csp
        html = page.text
        assert 'src="dashboard.js"' in html
        assert 'href="dashboard.css"' in html
        script = await http.get(PREFIX + "/dashboard.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert 'new EventSource("events")' in script.text
        style = await http.get(PREFIX + "/dashboard.css")
        assert style.headers["content-type"].startswith("text/css")
        for text in (html, script.text, style.text):
            assert "http://" not in text
            assert "https://" not in text
            assert "//cdn" not in text
        head = await http.head(PREFIX + "/dashboard.js")
        assert head.status_code == 200
        assert head.content == b""
        assert (await http.get(PREFIX + "/nope")).status_code == 404
        posted = await http.post(PREFIX + "/snapshot")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET, HEAD"
        # Paths that only start like the prefix belong to the app.
        assert (await http.get(PREFIX + "x")).text == "app:" + PREFIX + "x"


async def test_off_by_default() -> None:
    app = ResilienceMiddleware(hello, rs.TokenBucket("5/s"))
    async with client(app) as http:
        response = await http.get(PREFIX + "/snapshot")
    assert response.text == "app:" + PREFIX + "/snapshot"


async def test_mounted_in_a_starlette_app() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/ops", app=DashboardApp([rs.CircuitBreaker(name="db")]))])
    async with client(app) as http:
        assert (await http.get("/ops/")).text.startswith("<!doctype html>")
        data = (await http.get("/ops/snapshot")).json()
        assert [p["name"] for p in data["policies"]] == ["db"]
        assert (await http.get("/ops/dashboard.css")).status_code == 200


def test_bad_options() -> None:
    for path in ("_resilient", "/"):
        with pytest.raises(rs.ConfigError):
            ResilienceMiddleware(hello, dashboard=path)
    with pytest.raises(rs.ConfigError):
        ResilienceMiddleware(hello, dashboard=PREFIX, dashboard_auth="yes")  # type: ignore[arg-type]
    with pytest.raises(rs.ConfigError):
        DashboardApp([], interval=0)
    with pytest.raises(rs.ConfigError):
        DashboardApp(42)
    with pytest.raises(rs.ConfigError):
        DashboardApp("ftp://example/")


def test_the_package_data_is_in_the_wheel() -> None:
    from importlib import resources

    static = resources.files("resilient.dashboard").joinpath("static")
    assert {p.name for p in static.iterdir()} >= {"index.html", "dashboard.js", "dashboard.css"}


# -- the live stream, driven as raw ASGI --------------------------------------------------


class Stream:
    """One SSE viewer: receive() never returns until disconnect(); send() records chunks,
    or blocks forever once *stuck* is set (a viewer that stopped reading)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.start: dict[str, Any] | None = None
        self.gone = asyncio.Event()
        self.stuck = False
        self.sends = 0
        self.arrived = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sends += 1
        if self.stuck:
            await asyncio.Event().wait()  # never returns: the socket stopped moving
        if message["type"] == "http.response.start":
            self.start = message
        else:
            self.chunks.append(message.get("body", b""))
            self.arrived.set()

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        text = b"".join(self.chunks).decode()
        out = []
        for block in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in fields:
                out.append((fields["event"], json.loads(fields["data"])))
        return out

    async def wait_for(self, count: int, give_up: float = 5.0) -> None:
        deadline = time.monotonic() + give_up
        while len(self.events()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.events())} events, wanted {count}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), deadline - time.monotonic())


def scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }


async def test_stream_framing_and_a_fresh_snapshot_on_connect() -> None:
    breaker = rs.CircuitBreaker(name="db")
    app = DashboardApp([breaker], interval=30)
    stream = Stream()
    task = asyncio.create_task(app(scope("/events"), stream.receive, stream.send))
    await stream.wait_for(1)
    assert stream.start is not None
    headers = dict(stream.start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-store"
    first = stream.chunks[0]
    assert first.startswith(b"retry: 1000\n\nevent: snapshot\ndata: {")
    assert first.endswith(b"}\n\n")
    assert first.count(b"\n") == 5  # retry, blank, event, data, blank: the JSON is one line
    kind, data = stream.events()[0]
    assert kind == "snapshot"
    assert data["version"] == 1
    assert len(data["policies"][0]["history"]["calls"]) == 60
    # The ticker sent its first update; a state change sends the next one at once,
    # long before the 30 s interval.
    await stream.wait_for(2)
    breaker.force_open()
    await stream.wait_for(3, give_up=2.0)
    kind, data = stream.events()[2]
    assert kind == "update"
    assert data["policies"][0]["state"] == "forced_open"
    assert [c["new"] for c in data["changes"]] == ["forced_open"]
    assert len(data["policies"][0]["history"]["calls"]) == 5
    stream.gone.set()
    await asyncio.wait_for(task, 5)
    assert app.connections == 0
    await asyncio.sleep(0.1)
    assert app.hub.task is None  # no viewer: no ticker


async def test_a_viewer_that_never_reads_is_skipped_then_dropped_and_the_app_never_waits() -> None:
    breaker = rs.CircuitBreaker(name="upstream")
    app = ResilienceMiddleware(hello, breaker, dashboard=PREFIX)
    dashboard = app._dashboard
    dashboard.interval = 0.01
    dashboard.max_lag = 20
    slow, fast = Stream(), Stream()
    slow_task = asyncio.create_task(app(scope(PREFIX + "/events"), slow.receive, slow.send))
    fast_task = asyncio.create_task(app(scope(PREFIX + "/events"), fast.receive, fast.send))
    await slow.wait_for(1)
    slow.stuck = True  # from now on its socket never drains
    await fast.wait_for(1)
    deadline = time.monotonic() + 5
    while len(dashboard.hub.viewers) < 2:  # each joins once its first frame is sent
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    viewers = list(dashboard.hub.viewers)
    # While it is stuck, the app's requests go through at full speed.
    async with client(app) as http:
        started = time.monotonic()
        for _ in range(50):
            assert (await asyncio.wait_for(http.get("/"), 1.0)).status_code == 200
        assert time.monotonic() - started < 5
    await fast.wait_for(30)
    deadline = time.monotonic() + 5
    while dashboard.hub.dropped_viewers < 1:
        assert time.monotonic() < deadline, "the stuck viewer was never dropped"
        await asyncio.sleep(0.01)
    stuck = next(v for v in viewers if v.closed)
    assert stuck.dropped > 0  # frames were skipped before it was dropped
    assert len(stuck.frames) <= dashboard.queue_size
    assert len(dashboard.hub.viewers) == 1  # the fast viewer is still fed
    before = len(fast.events())
    await fast.wait_for(before + 5)
    fast.gone.set()
    slow.gone.set()
    await asyncio.wait_for(fast_task, 5)
    slow_task.cancel()  # its send never returns (a real socket would be closed by the server)
    await asyncio.gather(slow_task, return_exceptions=True)


async def test_each_stream_ends_after_max_stream_asking_the_page_back() -> None:
    app = DashboardApp([rs.Timeout(1.0)], interval=30, max_stream=0.2)
    stream = Stream()
    started = time.monotonic()
    await asyncio.wait_for(app(scope("/events"), stream.receive, stream.send), 5)
    assert 0.2 <= time.monotonic() - started < 3
    assert [kind for kind, _ in stream.events()] == ["snapshot", "update", "reconnect"]
    assert stream.chunks[-1] == b"event: reconnect\ndata: {}\n\n"
    assert app.connections == 0
    assert not app.hub.viewers


async def test_reading_slow_policies_does_not_block_the_event_loop() -> None:
    breaker = rs.CircuitBreaker(name="db")
    reads = 0

    def slow_source() -> list[Any]:  # a huge registry, say
        nonlocal reads
        reads += 1
        time.sleep(0.3)
        return [breaker]

    app = DashboardApp(slow_source, interval=0.01)
    stream = Stream()
    task = asyncio.create_task(app(scope("/events"), stream.receive, stream.send))
    worst = 0.0
    last = started = time.monotonic()
    while len(stream.events()) < 3:  # the first frame and two updates: ~1 s of reading
        await asyncio.sleep(0.01)
        now = time.monotonic()
        worst = max(worst, now - last)
        last = now
        assert now - started < 10, f"{len(stream.events())} frames after {reads} reads"
    assert worst < 0.2  # the loop kept running while the frames were built
    stream.gone.set()
    await asyncio.wait_for(task, 5)


def test_viewer_queue_is_bounded_and_keeps_the_newest() -> None:
    viewer = _Viewer(3)
    for index in range(10):
        viewer.offer(b"%d" % index)
    assert list(viewer.frames) == [b"7", b"8", b"9"]
    assert viewer.dropped == 7
    assert viewer.lag == 10


async def test_too_many_viewers_are_refused() -> None:
    app = DashboardApp([rs.Timeout(1.0)], max_viewers=1, interval=30)
    first = Stream()
    task = asyncio.create_task(app(scope("/events"), first.receive, first.send))
    await first.wait_for(1)
    async with client(app) as http:
        refused = await http.get("/events")
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    first.gone.set()
    await asyncio.wait_for(task, 5)


def test_a_socket_that_never_reads_does_not_slow_a_real_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("resilient.dashboard._app._MIN_GAP", 0.001)
    # Many policies make big frames, so that the sockets' buffers fill in a moment.
    many = {f"p{i}": rs.CircuitBreaker(name=f"p{i}") for i in range(150)}
    app = ResilienceMiddleware(
        hello, rs.Bulkhead(max_concurrent=4), registry=many, dashboard=PREFIX
    )
    dashboard = app._dashboard
    dashboard.interval = 0.001
    dashboard.max_lag = 10
    with serve(app) as url:
        port = int(url.rsplit(":", 1)[1])
        sockets = []
        for _ in range(3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(5)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {PREFIX}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sockets.append(sock)  # never read from
        try:
            deadline = time.monotonic() + 10
            while dashboard.hub.dropped_viewers < 3:  # their buffers fill, then they go
                assert time.monotonic() < deadline, dashboard.hub.dropped_viewers
                with httpx.Client(base_url=url, timeout=2) as http:
                    assert http.get("/").status_code == 200
            with httpx.Client(base_url=url, timeout=2) as http:
                started = time.monotonic()
                for _ in range(100):
                    assert http.get("/").status_code == 200
                assert time.monotonic() - started < 10
                assert http.get(PREFIX + "/snapshot").status_code == 200
        finally:
            for sock in sockets:
                sock.close()


# -- another process's snapshot, and the standalone command --------------------------------


async def test_a_remote_source_shows_another_process() -> None:
    upstream, breaker, _ = protected()
    breaker.force_open()
    with serve(upstream) as url:
        proxy = DashboardApp(url + PREFIX)
        async with client(proxy) as http:
            data = (await http.get("/snapshot")).json()
        assert [p["state"] for p in data["policies"]] == [None, "forced_open"]
    async with client(proxy) as http:  # the process is gone
        response = await http.get("/snapshot")
    assert response.status_code == 502
    assert url in response.json()["error"]


def test_a_remote_url_that_is_not_a_snapshot() -> None:
    from resilient.dashboard import RemoteSnapshot

    with serve(hello) as url:
        remote = RemoteSnapshot(url + "/page")
        assert remote.url == url + "/page/snapshot"
        with pytest.raises(ValueError, match="did not answer with a resilient snapshot"):
            remote.fetch()
    assert RemoteSnapshot(url + "/x/snapshot?history=all").url == url + "/x/snapshot"


def test_standalone_dashboard_command(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_text('[policies.api]\nrate_limit = { rate = "5/s" }\n')
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "resilient", "dashboard", str(path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == f"resilient dashboard for {path}: http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.05)  # waiting for a real server to listen
        assert page.status_code == 200
        assert "dashboard.js" in page.text
        data = httpx.get(f"http://127.0.0.1:{port}/snapshot", timeout=2).json()
        assert [p["name"] for p in data["policies"]] == ["api"]
        assert data["source"] == str(path)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_live_stats_given_by_the_caller_are_used() -> None:
    live = LiveStats()
    breaker = rs.CircuitBreaker(name="db")
    app = DashboardApp({"db": breaker}, live=live)
    assert app.live is live
    assert live in breaker._emitter.local
