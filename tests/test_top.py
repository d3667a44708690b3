"""``resilient top``: one frame (--once) for a policy file and for a running process's
snapshot URL (a real uvicorn server on loopback), as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from _asgi_support import serve

import resilient as rs
from resilient.adapters.asgi import ResilienceMiddleware
from resilient.dashboard._top import render

POLICIES = """
[policies.payments]
timeout = { total = "2s" }
rate_limit = { rate = "10/s", burst = 20 }
bulkhead = { max_concurrent = 8 }

[policies.payments.circuit_breaker]
failure_rate = 0.5
minimum_calls = 10
window = 20

[policies.search.retry]
attempts = 2
"""


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilient", "top", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies.toml"
    path.write_text(POLICIES)
    return path


def test_once_prints_one_frame_of_a_policy_file(policy_file: Path) -> None:
    result = top("--once", str(policy_file))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"resilient top  {policy_file}")
    assert "2 policies, 0 open" in lines[0]
    header = lines[2].split()
    assert header == [
        "POLICY",
        "STATE",
        "FOR",
        "CALLS/S",
        "REJ/S",
        "RETRY/S",
        "FAIL",
        "SLOW",
        "DETAILS",
    ]
    payments = next(line for line in lines if line.startswith("payments"))
    assert "CLOSED" in payments
    assert "0%/50%" in payments
    assert "limit 20/20 left" in payments
    assert "bulkhead 0/8" in payments
    assert any(line.startswith("search") for line in lines)
    assert "\x1b[" not in result.stdout  # no terminal codes when not a terminal


def test_once_json_and_policy_filter(policy_file: Path) -> None:
    result = top("--once", "--json", str(policy_file))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["format"], data["version"]) == ("resilient.snapshot", 1)
    assert [p["name"] for p in data["policies"]] == ["payments", "search"]
    result = top("--once", "--policy", "search", str(policy_file))
    assert "payments" not in result.stdout
    assert "1 policies" in result.stdout.splitlines()[0]


def test_a_bad_file_fails_with_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[policies.x.retry]\nattempts = 0\n")
    result = top("--once", str(path))
    assert result.returncode == 1
    assert "policies.x.retry.attempts" in result.stderr


async def ok(scope: Any, receive: Any, send: Any) -> None:
    status = 500 if scope["path"] == "/fail" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_once_reads_a_running_process_over_http() -> None:
    breaker = rs.CircuitBreaker(name="upstream", minimum_calls=2, window=rs.CountWindow(2))
    limiter = rs.TokenBucket("1/minute", burst=2, name="per-client")
    app = ResilienceMiddleware(
        ok,
        limiter,
        breaker,
        dashboard="/_resilient",
        dashboard_auth=lambda scope: dict(scope["headers"]).get(b"x-token") == b"s3cret",
    )
    with serve(app) as url:
        for path in ("/fail", "/fail", "/", "/"):
            httpx.get(url + path, timeout=5)
        result = top("--once", url + "/_resilient", "--header", "X-Token: s3cret")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert "2 policies, 1 open" in lines[0]
        upstream = next(line for line in lines if line.startswith("upstream"))
        assert "OPEN" in upstream
        assert "100%/50%" in upstream
        client = next(line for line in lines if line.startswith("per-client"))
        assert "rate_limited" in client
        assert any(line.startswith("  └ ip:127.0.0.1") for line in lines)
        # The snapshot URL itself works too; without the header the process refuses.
        direct = top(
            "--once", "--json", url + "/_resilient/snapshot", "--header", "X-Token: s3cret"
        )
        assert direct.returncode == 0
        refused = top("--once", url + "/_resilient")
        assert refused.returncode == 1
        assert "403" in refused.stdout


def test_an_unreachable_url_fails_once() -> None:
    from _asgi_support import free_socket

    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    result = top("--once", f"http://127.0.0.1:{port}/_resilient")
    assert result.returncode == 1
    assert f"http://127.0.0.1:{port}/_resilient" in result.stdout


def test_render_marks_states_in_colour_and_lists_keys() -> None:
    data = {
        "time": 0,
        "policies": [
            {
                "name": "db",
                "state": "open",
                "steps": [
                    {
                        "kind": "circuit_breaker",
                        "state": "open",
                        "time_in_state": 75.0,
                        "failure_rate": 0.6,
                        "failure_rate_threshold": 0.5,
                        "slow_call_rate": 0.0,
                        "slow_call_rate_threshold": 1.0,
                        "retry_after": 12.5,
                    }
                ],
                "keys": [
                    {
                        "key": "tenant:a",
                        "remaining": 0,
                        "limit": 5,
                        "retry_after": 2.0,
                        "rejected": 1.5,
                    }
                ],
                "rates": {
                    "calls": 12.0,
                    "rejected": 3.5,
                    "retries": 0.25,
                    "rejections": {"circuit_open": 3.5},
                },
            }
        ],
    }
    text = render(data, source="x", colour=True, width=200)
    assert "\x1b[1;31mOPEN" in text
    assert "1m15s" in text
    assert "probe in 12s" in text
    assert "circuit_open 3.5/s" in text
    assert "  └ tenant:a" in text
    assert "0/5 left, retry in 2.0s" in text
    narrow = render(data, source="x", width=60).splitlines()
    assert len(narrow[0]) <= 60
    assert narrow[3].endswith("…")  # the details are cut to the width
    assert render({"policies": []}).endswith("no policies\n")
