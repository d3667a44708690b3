"""The dashboard page in a real headless browser (Debian's chromium, driven by Playwright)
against real uvicorn servers on 127.0.0.1: a breaker forced open shows as OPEN within a
second, a limiter's rejections appear, the page reconnects after the server restarts,
and the page is refused when the auth callable says no.

Set RESILIENT_DOCS_SCREENSHOT=1 to also refresh docs/img/dashboard.png."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware, Route

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PREFIX = "/_resilient"


def _missing(what: str) -> None:
    message = f"{what} (scripts/test installs it)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _missing("playwright is not installed")
    if not os.path.exists(CHROMIUM):
        _missing("Debian's chromium is not installed")
    with sync_playwright() as playwright:
        # Debian's chromium, never a browser downloaded by Playwright.
        found = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield found
        finally:
            found.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    found = context.new_page()
    found.errors = []  # page errors and console errors, for the tests to check
    found.on("pageerror", lambda exc: found.errors.append(str(exc)))
    found.on("console", lambda msg: found.errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield found
    finally:
        context.close()


class Server:
    """uvicorn on 127.0.0.1 in a thread; can be stopped and started again on its port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.app = app
        self.port = port or _free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, app: Any = None) -> Server:
        if app is not None:
            self.app = app
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1
        )
        server = self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert self.thread.is_alive(), "uvicorn stopped"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)  # waiting for a real server
        self.sock = sock
        return self

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(15)
            self.sock.close()
            self.server = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Server] = []

    def start(app: Any) -> Server:
        server = Server(app).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


async def hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    status = 500 if scope["path"].startswith("/fail") else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def protected(
    interval: float = 1.0, rate: str = "2/minute", **options: Any
) -> tuple[Any, rs.CircuitBreaker]:
    breaker = rs.CircuitBreaker(name="upstream", minimum_calls=4, window=rs.CountWindow(4))
    limiter = rs.TokenBucket(rate, name="per-client")
    app = ResilienceMiddleware(hello, limiter, breaker, dashboard=PREFIX, **options)
    app._dashboard.interval = interval
    return app, breaker


def until(page: Any, predicate: Any, seconds: float) -> None:
    """Poll the page (a real browser) until *predicate* holds; fail after *seconds*.
    (The page's CSP forbids eval, so Playwright's wait_for_function cannot poll it.)"""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the page did not get there in time"
        page.wait_for_timeout(50)


def card(name: str) -> str:
    return f'article.card[data-policy="{name}"]'


def test_a_breaker_forced_open_shows_as_open_within_a_second(page: Any, serve: Any) -> None:
    app, breaker = protected(interval=30.0, rate="100/s")  # only a state change sends news
    server = serve(app)
    page.goto(server.url + PREFIX + "/")
    page.wait_for_selector(card("upstream") + ' .state[data-state="closed"]', timeout=10_000)
    assert page.text_content("#connection") == "live"
    breaker.force_open()
    started = time.monotonic()
    page.wait_for_selector(card("upstream") + ' .state[data-state="forced_open"]', timeout=1_000)
    assert time.monotonic() - started < 1.0
    assert "OPEN" in page.text_content(card("upstream") + " .state")
    assert page.get_attribute(card("upstream"), "data-state") == "forced_open"
    assert "FORCED OPEN" in page.text_content("#changes")
    # A breaker opened by failures reads OPEN too, with its failure rate over the threshold.
    breaker.reset()
    for _ in range(4):
        httpx.get(server.url + "/fail", timeout=5)
    page.wait_for_selector(card("upstream") + ' .state[data-state="open"]', timeout=1_000)
    assert page.text_content(card("upstream") + " .state") == "OPEN"
    assert "100% / 50%" in page.text_content(card("upstream") + " .rows")
    assert page.errors == []


def test_a_limiters_rejections_appear(page: Any, serve: Any) -> None:
    app, _ = protected(interval=0.25)
    server = serve(app)
    page.goto(server.url + PREFIX + "/")
    page.wait_for_selector(card("per-client"), timeout=10_000)
    statuses = [httpx.get(server.url + "/", timeout=5).status_code for _ in range(10)]
    assert statuses.count(429) == 8
    rejected = card("per-client") + ' [data-metric="rejected"] b'
    until(page, lambda: page.text_content(rejected) not in ("0", "\u2013"), 5.0)
    assert float(page.text_content(rejected)) > 0
    assert page.is_visible(card("per-client") + ' [data-reason="rate_limited"]')
    key = card("per-client") + ' .key[data-key="ip:127.0.0.1"]'
    page.wait_for_selector(key, timeout=5_000)
    assert "0 / 2 left" in page.text_content(key)
    assert float(page.text_content("#summary .alert b")) > 0
    assert page.errors == []


def test_the_page_reconnects_after_the_server_restarts(page: Any, serve: Any) -> None:
    app, _ = protected(interval=0.25)
    server = serve(app)
    page.goto(server.url + PREFIX + "/")
    page.wait_for_selector(card("upstream"), timeout=10_000)
    page.wait_for_selector('#connection[data-status="live"]', timeout=5_000)
    server.stop()
    page.wait_for_selector('#connection[data-status="reconnecting"]', timeout=10_000)
    # The restarted process has other policies: the page shows them from the fresh
    # snapshot it gets on reconnecting.
    restarted = ResilienceMiddleware(
        hello, rs.Bulkhead(max_concurrent=3, name="after-restart"), dashboard=PREFIX
    )
    server.start(restarted)
    page.wait_for_selector(card("after-restart"), timeout=15_000)
    page.wait_for_selector('#connection[data-status="live"]', timeout=5_000)
    assert page.query_selector(card("upstream")) is None
    assert "0 / 3" in page.text_content(card("after-restart") + " .rows")


def test_planned_reconnects_keep_the_page_live(page: Any, serve: Any) -> None:
    app, _ = protected(interval=0.2)
    app._dashboard.max_stream = 0.5  # each stream ends after half a second
    server = serve(app)
    page.goto(server.url + PREFIX + "/")
    page.wait_for_selector('#connection[data-status="live"]', timeout=10_000)
    page.evaluate(
        """() => new MutationObserver(() => {
            (window.seen = window.seen || []).push(
                document.getElementById("connection").dataset.status);
        }).observe(document.getElementById("connection"), {attributes: true})"""
    )
    until(page, lambda: int(page.get_attribute("body", "data-snapshots") or 0) >= 4, 10.0)
    statuses = page.evaluate("window.seen || []")
    assert set(statuses) <= {"live"}, statuses
    assert page.errors == []


def session_only(scope: dict[str, Any]) -> bool:
    return b"session=ok" in dict(scope["headers"]).get(b"cookie", b"")


def test_the_page_is_refused_when_auth_says_no(browser: Any, page: Any, serve: Any) -> None:
    app, _ = protected(dashboard_auth=session_only)
    server = serve(app)
    response = page.goto(server.url + PREFIX + "/")
    assert response.status == 403
    assert "Access to the dashboard was refused." in page.content()
    assert page.query_selector("article.card") is None
    assert page.evaluate("fetch('events').then(r => r.status)") == 403
    # With the session cookie the same page works, live stream included.
    context = browser.new_context()
    context.add_cookies([{"name": "session", "value": "ok", "url": server.url}])
    allowed = context.new_page()
    try:
        assert allowed.goto(server.url + PREFIX + "/").status == 200
        allowed.wait_for_selector(card("upstream"), timeout=10_000)
        allowed.wait_for_selector('#connection[data-status="live"]', timeout=5_000)
    finally:
        context.close()


def demo_app() -> Any:
    """Policies like the demo's: a per-client limit, and a pipeline in front of a flaky
    route whose breaker opens and probes again."""
    payments = rs.Pipeline(
        rs.TokenBucket("40/s", burst=20, name="payments"),
        rs.Bulkhead(max_concurrent=8, max_queued=4, max_wait=0.1, name="payments"),
        rs.CircuitBreaker(
            name="payments", minimum_calls=10, window=rs.CountWindow(20), open_for=2.0
        ),
        name="payments",
    )
    search = rs.Pipeline(
        rs.SlidingWindow("30/s", name="search"),
        rs.CircuitBreaker(name="search", minimum_calls=10),
        name="search",
    )
    app = ResilienceMiddleware(
        hello,
        rs.TokenBucket("8/s", burst=8, name="per-client"),
        routes=[Route(payments, path="/fail*"), Route(search, path="/search*")],
        dashboard=PREFIX,
    )
    app._dashboard.interval = 0.5
    return app


def traffic(url: str, seconds: float, stop: threading.Event) -> None:
    """A few seconds of requests (bounded in count and time): searches, a flaky route,
    and bursts that go over the per-client limit."""
    with httpx.Client(base_url=url, timeout=5) as http:
        deadline = time.monotonic() + seconds
        for index in range(5_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            http.get("/search")
            http.get("/fail" if index % 3 == 0 else "/")
            if index % 40 == 0:
                for _ in range(12):
                    http.get("/")
            time.sleep(0.02)


def test_screenshot_of_the_demo(page: Any, serve: Any, tmp_path: Path) -> None:
    server = serve(demo_app())
    page.goto(server.url + PREFIX + "/")
    page.wait_for_selector(card("payments"), timeout=10_000)
    stop = threading.Event()
    worker = threading.Thread(target=traffic, args=(server.url, 10.0, stop), daemon=True)
    worker.start()
    try:
        page.wait_for_selector(card("payments") + ' .state[data-state="open"]', timeout=8_000)
        time.sleep(1.5)  # let the charts fill a little: a picture for the docs
        path = tmp_path / "dashboard.png"
        page.screenshot(path=str(path), full_page=True)
    finally:
        stop.set()
        worker.join(10)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert page.errors == []
    if os.environ.get("RESILIENT_DOCS_SCREENSHOT"):
        target = ROOT / "docs" / "img" / "dashboard.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
