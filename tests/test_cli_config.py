"""``resilient check``, ``show`` and ``schema``: as a subprocess (the way CI runs them) and
through ``main()``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resilient._cli import main
from resilient.config import json_schema

GOOD = """
backends:
  shared: {url: "redis://:s3cret@cache.internal:6379/0?password=x&db=1"}
policies:
  payments:
    description: card payments
    timeout: {total: 5s, attempt: 1s}
    retry: {attempts: 3, retry_on: [ConnectionError, json.JSONDecodeError]}
    circuit_breaker: {window: 60s}
  search:
    rate_limit: {rate: 10/s, backend: shared}
    bulkhead: {max_concurrent: 4, max_queued: 2, max_wait: 100ms}
"""

BAD = """
policies:
  payments:
    retry: {atempts: 3}
    timeout: 0
routes:
  httpx:
    - {policy: paymnets}
"""


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.yaml").write_text(textwrap.dedent(GOOD).lstrip())
    (tmp_path / "bad.yaml").write_text(textwrap.dedent(BAD).lstrip())
    (tmp_path / "warn.toml").write_text("[policies.p]\nretry = 3\n")
    return tmp_path


@pytest.fixture(autouse=True)
def _redis_scheme(monkeypatch):
    # The examples name redis:// backends; building one needs no server (until used).
    from resilient import backends
    from resilient.backends.memory import MemoryStore

    if "redis" not in backends.store_schemes():
        monkeypatch.setitem(backends._SCHEMES, "redis", lambda url, **options: MemoryStore())


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        "from resilient import backends\n"
        "from resilient.backends.memory import MemoryStore\n"
        "if 'redis' not in backends.store_schemes():\n"
        "    backends.register_store('redis', lambda url, **options: MemoryStore())\n"
        "from resilient._cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


BAD_LINES = [
    "bad.yaml:3: policies.payments.retry.atempts: unknown key; expected one of attempts, "
    "backoff, retry_on, deadline, max_retry_after, retry_rejected, budget "
    "(did you mean 'attempts'?)",
    "bad.yaml:4: policies.payments.timeout.total: expected a duration greater than zero: "
    "seconds or a string such as '250ms', '30s', '5m', got 0",
    "bad.yaml:7: routes.httpx.0.policy: expected a policy (payments) "
    "(did you mean 'payments'?), got 'paymnets'",
]


def test_check_as_a_subprocess(files):
    good = subprocess.run(
        [sys.executable, "-m", "resilient", "check", "warn.toml"],
        capture_output=True,
        text=True,
        cwd=files,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines() == [
        "warn.toml:2: policies.p.retry: warning: retries with neither a circuit breaker inside "
        "them nor a budget: in an outage every call becomes 3 calls; add a circuit_breaker "
        "(inside the retry) or a retry budget [retry-without-budget]",
        "warn.toml: ok (1 policy, 1 warning)",
        "  p: worst-case latency unbounded, load amplification x3",
    ]
    assert good.stderr == ""
    bad = subprocess.run(
        [sys.executable, "-m", "resilient", "check", "bad.yaml", "warn.toml"],
        capture_output=True,
        text=True,
        cwd=files,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stdout.splitlines()[:3] == BAD_LINES
    assert bad.stdout.splitlines()[4] == "warn.toml: ok (1 policy, 1 warning)"


def test_check_good_file_with_redis_backend_as_a_subprocess(files):
    result = run("check", "good.yaml", cwd=files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "good.yaml: ok (2 policies)",
        "  payments: worst-case latency 3.3s (5s with Retry-After hints), load amplification x3",
        "  search: worst-case latency unbounded, load amplification x1",
    ]
    assert "s3cret" not in result.stdout + result.stderr


def test_check_strict_quiet_and_imports(files, capsys):
    assert main(["check", "--quiet", "warn.toml"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # only the warning
    assert main(["check", "--strict", "warn.toml"]) == 1
    capsys.readouterr()
    (files / "imports.yaml").write_text("policies:\n  p: {fallback: {on: nosuch.Error}}\n")
    assert main(["check", "imports.yaml"]) == 1
    assert capsys.readouterr().out.startswith(
        "imports.yaml:2: policies.p.fallback.on: cannot import 'nosuch.Error'"
    )
    assert main(["check", "--no-imports", "imports.yaml"]) == 0
    assert main(["check", "missing.yaml"]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "missing.yaml: cannot read the file (No such file or directory)"
    )


def test_check_prints_one_error_per_line(files, capsys):
    assert main(["check", "bad.yaml"]) == 1
    assert capsys.readouterr().out.splitlines() == BAD_LINES


def test_show_prints_the_resolved_pipelines_with_secrets_redacted(files, capsys):
    assert main(["show", "good.yaml"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert out.splitlines() == [
        "backends:",
        "  shared: redis://:***@cache.internal:6379/0?password=***&db=1",
        "",
        "policy payments: card payments",
        "  1. timeout          total 5s",
        "  2. retry            3 attempts, exponential backoff 100ms x2 up to 10s, full jitter; "
        "on ConnectionError, json.JSONDecodeError; Retry-After up to 60s",
        "  3. circuit_breaker  opens at 50% failures or 100% slow calls (> 60s) of the calls of "
        "the last 60s, after 20 calls; open 30s; 5 probes; records Exception",
        "  4. attempt_timeout  each attempt 1s",
        "  worst-case latency 3.3s (5s with Retry-After hints), load amplification x3",
        "",
        "policy search",
        "  1. rate_limit  token_bucket 10/s; backend shared "
        "(redis://:***@cache.internal:6379/0?password=***&db=1)",
        "  2. bulkhead    4 in flight, 2 queued (wait 100ms)",
        "  worst-case latency unbounded, load amplification x1",
    ]
    assert main(["show", "good.yaml", "--policy", "search"]) == 0
    assert capsys.readouterr().out.startswith("policy search\n")


def test_show_json(files, capsys):
    assert main(["show", "good.yaml", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["backends"]["shared"]["url"] == (
        "redis://:***@cache.internal:6379/0?password=***&db=1"
    )
    payments = data["policies"]["payments"]
    assert payments["order"] == ["timeout", "retry", "circuit_breaker", "attempt_timeout"]
    assert payments["retry"]["retry_on"] == ["ConnectionError", "json.JSONDecodeError"]
    assert payments["estimate"] == {
        "latency": pytest.approx(3.3),
        "latency_with_hints": 5.0,
        "amplification": 3.0,
        "budgeted_amplification": None,
    }
    assert data["warnings"] == []
    assert main(["show", "good.yaml", "--json", "--policy", "search"]) == 0
    assert list(json.loads(capsys.readouterr().out)["policies"]) == ["search"]


def test_show_errors(files, capsys):
    assert main(["show", "bad.yaml"]) == 1
    assert capsys.readouterr().out.splitlines() == BAD_LINES
    assert main(["show", "good.yaml", "--policy", "nope"]) == 1
    assert capsys.readouterr().out == (
        "good.yaml: no policy named 'nope'; the policies are: payments, search\n"
    )


def test_show_routes_and_warnings(files, capsys):
    (files / "routes.yaml").write_text(
        textwrap.dedent(
            """
            policies: {a: {retry: 2, circuit_breaker: {}}, b: {}}
            routes:
              httpx: [{policy: a, host: "*.x.org", path: /v1, methods: [GET]}]
              asgi: [{policy: b, path: "/api/*", key: client}]
              grpc: [{policy: b, service: shop.Orders, side: server}]
            bases: {unused: {}}
            """
        )
    )
    assert main(["show", "routes.yaml"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-6:] == [
        "routes:",
        "  httpx GET *.x.org/v1 -> a",
        "  asgi  * /api/* per client -> b",
        "  grpc  shop.Orders/* (server) -> b",
        "",
        "warning: bases.unused: no policy extends this base [unused-base]",
    ]


def test_schema_command(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_the_examples_pass_check(capsys):
    folder = Path(__file__).parent.parent / "examples"
    examples = sorted(str(p) for p in folder.iterdir() if p.suffix in (".yaml", ".toml", ".json"))
    assert main(["check", "--strict", *examples]) == 0
    out = capsys.readouterr().out
    assert "warning" not in out
