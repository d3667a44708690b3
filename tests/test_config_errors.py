"""Every error a policy file can produce, as exact text (golden tests): each names the
file, line, dotted path, the bad value and what was expected; all come at once."""

from __future__ import annotations

import pickle
import textwrap

import pytest

from resilient import ConfigError
from resilient.config import load_config


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def errors_of(text: str, name: str = "policies.yaml", **kwargs: object) -> list[str]:
    with open(name, "w") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    with pytest.raises(ConfigError) as info:
        load_config(name, env=kwargs.pop("env", {}), **kwargs)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, ValueError)
    lines = [str(e) for e in err.errors]
    if len(lines) > 1:
        assert str(err).splitlines() == [f"{len(lines)} errors:", *(f"  {x}" for x in lines)]
    else:
        assert str(err) == lines[0]
    return lines


def test_all_errors_of_a_file_at_once_in_file_order():
    assert errors_of(
        """
        backends:
          shared: {url: "memory://", on_backend_error: explode}
        policies:
          payments:
            retry:
              atempts: 3
              backoff: {jitter: ful}
            timeout: 0
            rate_limit: {rate: 10 per fortnight, backend: redis}
          search:
            bulkhead: {max_concurrent: many}
        routes:
          httpx:
            - {policy: payment}
        """
    ) == [
        "policies.yaml:2: backends.shared.on_backend_error: expected one of 'raise', 'allow', "
        "'deny', 'local', got 'explode'",
        "policies.yaml:6: policies.payments.retry.atempts: unknown key; expected one of "
        "attempts, backoff, retry_on, deadline, max_retry_after, retry_rejected, budget "
        "(did you mean 'attempts'?)",
        "policies.yaml:7: policies.payments.retry.backoff.jitter: expected one of 'full', "
        "'equal', 'decorrelated', 'none' (did you mean 'full'?), got 'ful'",
        "policies.yaml:8: policies.payments.timeout.total: expected a duration greater than "
        "zero: seconds or a string such as '250ms', '30s', '5m', got 0",
        "policies.yaml:9: policies.payments.rate_limit.rate: expected a rate such as "
        "'100/second', '100/s', '10 per minute' or '5/s;100/min', got '10 per fortnight'",
        "policies.yaml:9: policies.payments.rate_limit.backend: expected a backend name "
        "(shared), got 'redis'",
        "policies.yaml:11: policies.search.bulkhead.max_concurrent: expected an integer >= 1, "
        "got 'many'",
        "policies.yaml:14: routes.httpx.0.policy: expected a policy (payments, search) "
        "(did you mean 'payments'?), got 'payment'",
    ]


def test_unknown_keys_list_the_known_ones():
    assert errors_of("polices: {}\nroutes: {httpx: [{policy: p, hots: x}]}\n") == [
        "policies.yaml:1: polices: unknown key; expected one of version, backends, budgets, "
        "defaults, bases, policies, routes (did you mean 'policies'?)",
        "policies.yaml:2: routes.httpx.0.hots: unknown key; expected one of policy, host, path, "
        "methods (did you mean 'host'?)",
        "policies.yaml:2: routes.httpx.0.policy: expected a policy (none defined), got 'p'",
    ]


def test_missing_required_key():
    assert errors_of("policies:\n  p:\n    rate_limit: {burst: 3}\n") == [
        "policies.yaml:3: policies.p.rate_limit.rate: missing required key; expected a rate "
        "such as '100/second', '100/s', '10 per minute' or '5/s;100/min'"
    ]


def test_wrong_types():
    assert errors_of(
        """
        policies:
          p:
            description: 5
            retry: {retry_rejected: maybe, backoff: [1], retry_on: {a: 1}}
            circuit_breaker: 3
          q: [1]
        routes: {grpc: {}}
        """
    ) == [
        "policies.yaml:3: policies.p.description: expected a string, got 5",
        "policies.yaml:4: policies.p.retry.backoff: expected a mapping, got [1]",
        "policies.yaml:4: policies.p.retry.retry_on: expected an exception class by import "
        "path, such as 'TimeoutError' or 'httpx.TransportError', or a list of them, got "
        "{'a': 1}",
        "policies.yaml:4: policies.p.retry.retry_rejected: expected true or false, got 'maybe'",
        "policies.yaml:5: policies.p.circuit_breaker: expected a mapping, got 3",
        "policies.yaml:6: policies.q: expected a mapping, got [1]",
        "policies.yaml:7: routes.grpc: expected a list, got {}",
    ]


def test_cross_field_checks_are_reported_on_the_policy():
    assert errors_of(
        """
        policies:
          p:
            circuit_breaker: {window: {size: 5, seconds: 5}}
            rate_limit: {rate: 1/s, algorithm: fixed_window, burst: 3}
            timeout: {}
        """
    ) == [
        "policies.yaml:3: policies.p.circuit_breaker.window: expected exactly one of size "
        "(a count window) or seconds (a time window)",
        "policies.yaml:4: policies.p.rate_limit.burst: expected no burst for a fixed_window, got 3",
        "policies.yaml:5: policies.p.timeout: expected a total or an attempt timeout (or both)",
    ]


def test_an_inherited_order_is_checked_against_the_policy():
    assert errors_of(
        """
        bases:
          b: {order: [retry, retry, bulkhead], retry: 2}
        policies:
          p:
            extends: b
            timeout: 1s
        """
    ) == [
        "policies.yaml:4: policies.p.order: expected each configured step exactly once "
        "(retry listed twice; bulkhead is not configured; timeout missing), "
        "got ['retry', 'retry', 'bulkhead']"
    ]


def test_values_checked_by_the_policy_constructors():
    assert errors_of(
        """
        policies:
          p:
            retry: {backoff: {initial: 2s, maximum: 1s}}
            circuit_breaker: {open_for: 10s, max_open_for: 5s}
            rate_limit: {rate: 1/s;10/min, burst: 5}
            bulkhead: {max_queued: 3, max_wait: 0}
        """
    ) == [
        "policies.yaml:3: policies.p.retry.backoff.maximum: expected a duration >= initial "
        "(2.0s), got 1.0",
        "policies.yaml:4: policies.p.circuit_breaker.max_open_for: expected a duration >= "
        "open_for (10.0s), got 5.0",
        "policies.yaml:5: policies.p.rate_limit.burst: expected None when rate has several "
        "limits (each uses its amount), got 5",
        "policies.yaml:6: policies.p.bulkhead.max_wait: expected a duration > 0, or None for "
        "no limit, when max_queued > 0 (queued callers wait), got 0.0",
    ]


def test_environment_variables():
    assert errors_of(
        """
        policies:
          p:
            timeout: ${TIMEOUT}
            description: ${bad name}
            retry: "${RETRIES:-3}"
        """,
        env={"RETRIES": "x"},
    ) == [
        "policies.yaml:3: policies.p.timeout: the environment variable TIMEOUT is not set; "
        "expected it set, or a default as in ${TIMEOUT:-default}",
        "policies.yaml:4: policies.p.description: expected ${NAME} or ${NAME:-default}, with "
        "NAME made of letters, digits and _, got '${bad name}'",
        "policies.yaml:5: policies.p.retry.attempts: expected an integer >= 1, got 'x'",
    ]


def test_inheritance_errors():
    assert errors_of(
        """
        policies:
          a: {extends: b}
          b: {extends: a}
          c: {extends: [c]}
          d: {extends: nope}
          e: {extends: 5}
        """
    ) == [
        "policies.yaml:3: policies.b.extends: inheritance cycle: a -> b -> a",
        "policies.yaml:4: policies.c.extends: inheritance cycle: c -> c",
        "policies.yaml:5: policies.d.extends: expected a base or a policy (a, b, c, d, e), "
        "got 'nope'",
        "policies.yaml:6: policies.e.extends: expected a name, or a list of names, got 5",
    ]
    assert errors_of("bases:\n  p: {}\npolicies:\n  p: {}\n") == [
        "policies.yaml:4: policies.p: a base is also named 'p'; names must be unique across "
        "bases and policies"
    ]


def test_an_inherited_bad_value_is_reported_once_where_it_is_written():
    assert errors_of(
        """
        defaults:
          circuit_breaker: {failure_rate: 2}
        bases:
          b:
            retry: {attempts: 0}
        policies:
          p: {extends: b, circuit_breaker: {}}
          q: {extends: b, circuit_breaker: {}}
        """
    ) == [
        "policies.yaml:2: defaults.circuit_breaker.failure_rate: expected a fraction in (0, 1], "
        "e.g. 0.5 for 50%, got 2",
        "policies.yaml:5: bases.b.retry.attempts: expected an integer >= 1, got 0",
    ]


def test_defaults_hold_only_sections():
    assert errors_of("defaults:\n  order: [retry]\n  extends: x\n") == [
        "policies.yaml:2: defaults.order: not allowed in defaults; expected defaults for the "
        "sections (fallback, rate_limit, bulkhead, adaptive_concurrency, timeout, retry, "
        "throttle, circuit_breaker)",
        "policies.yaml:3: defaults.extends: not allowed in defaults; expected defaults for the "
        "sections (fallback, rate_limit, bulkhead, adaptive_concurrency, timeout, retry, "
        "throttle, circuit_breaker)",
    ]


def test_a_failure_mode_needs_a_backend_that_has_them():
    assert errors_of(
        """
        backends: {m: {url: "memory://"}}
        policies:
          p: {rate_limit: {rate: 1/s, on_backend_error: allow}}
        """
    ) == [
        "policies.yaml:3: policies.p.rate_limit.on_backend_error: expected null without a "
        "backend (it says what to do when the backend fails), got 'allow'"
    ]
    assert errors_of(
        """
        backends: {m: {url: "memory://"}}
        policies:
          p: {rate_limit: {rate: 1/s, backend: m, on_backend_error: allow}}
        """
    ) == [
        "policies.yaml:3: policies.p.rate_limit.on_backend_error: expected null, as backend 'm' "
        "has no failure modes, got 'allow'"
    ]


def test_route_values():
    assert errors_of(
        """
        policies: {p: {}}
        routes:
          httpx: [{policy: p, methods: ["GE T"]}]
          asgi: [{policy: p, key: "header:"}]
          grpc: [{policy: p, side: both}]
        """
    ) == [
        "policies.yaml:3: routes.httpx.0.methods: expected an HTTP method such as 'GET', or a "
        "list of them, got ['GE T']",
        "policies.yaml:4: routes.asgi.0.key: expected 'client', 'global', 'path', 'user', "
        "'header:<Name>' or a callable by import path such as 'myapp.keys:tenant', got 'header:'",
        "policies.yaml:5: routes.grpc.0.side: expected one of 'client', 'server', got 'both'",
    ]


def test_import_paths_are_checked_at_load_when_asked():
    assert errors_of(
        """
        policies:
          p:
            retry:
              retry_on: [nosuchmodule.Error, json.NoSuchError, json.dumps, NotABuiltin]
            fallback: {handler: "nosuch:thing"}
        """,
        resolve_imports=True,
    ) == [
        "policies.yaml:4: policies.p.retry.retry_on.0: cannot import 'nosuchmodule.Error' "
        "(ModuleNotFoundError: No module named 'nosuchmodule'); expected an exception class, "
        "got 'nosuchmodule.Error'",
        "policies.yaml:4: policies.p.retry.retry_on.1: cannot import 'json.NoSuchError' "
        "(AttributeError: module 'json' has no attribute 'NoSuchError'); expected an exception "
        "class, got 'json.NoSuchError'",
        "policies.yaml:4: policies.p.retry.retry_on.2: expected an exception class, "
        "got 'json.dumps'",
        "policies.yaml:4: policies.p.retry.retry_on.3: 'NotABuiltin' is not a builtin name; use "
        "an import path such as 'package.module.Name'; expected an exception class, "
        "got 'NotABuiltin'",
        "policies.yaml:5: policies.p.fallback.handler: cannot import 'nosuch:thing' "
        "(ModuleNotFoundError: No module named 'nosuch'); expected a callable, "
        "got 'nosuch:thing'",
    ]


def test_import_paths_are_otherwise_resolved_when_first_needed():
    with open("policies.yaml", "w") as f:
        f.write("policies:\n  p:\n    retry:\n      retry_on: [json.NoSuchError]\n")
    registry = load_config("policies.yaml")  # no import yet
    assert registry["p"].call(lambda: 1) == 1  # nor on success
    with pytest.raises(ConfigError) as info:
        registry["p"].call(_fail)
    assert str(info.value) == (
        "policies.yaml:4: policies.p.retry.retry_on: cannot import 'json.NoSuchError' "
        "(AttributeError: module 'json' has no attribute 'NoSuchError'); expected an exception "
        "class, got 'json.NoSuchError'"
    )
    assert isinstance(info.value.__cause__, RuntimeError)  # the failure being classified


def _fail() -> None:
    raise RuntimeError("the original failure")


def test_a_bare_name_must_be_a_builtin_even_without_imports():
    assert errors_of("policies:\n  p:\n    fallback: {on: Nope}\n") == [
        "policies.yaml:3: policies.p.fallback.on: 'Nope' is not a builtin name; use an import "
        "path such as 'package.module.Name'; expected an exception class, got 'Nope'"
    ]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "policies.yaml",
            "policies:\n  p: [\n",
            "policies.yaml:3: invalid YAML: did not find expected node content",
        ),
        (
            "policies.yaml",
            "policies:\n  p: {}\n  p: {}\n",
            "policies.yaml:3: policies.p: duplicate key (it is already set above)",
        ),
        (
            "policies.yaml",
            "a: &x [*x]\n",
            "policies.yaml:1: a.0: a YAML alias refers to itself",
        ),
        (
            "policies.toml",
            "[policies.p]\nretry = \n",
            "policies.toml:2: invalid TOML: Invalid value",
        ),
        (
            "policies.json",
            '{\n  "policies": {\n    "p": {},\n  }\n}',
            "policies.json:4: invalid JSON: Expecting property name enclosed in double quotes",
        ),
        (
            "policies.yaml",
            "- 1\n- 2\n",
            "policies.yaml: expected a mapping at the top level (backends, budgets, defaults, "
            "bases, policies, routes), got [1, 2]",
        ),
        (
            "policies.yaml",
            "policies:\n  1: {}\n",
            "policies.yaml:2: policies.1: expected a string key, got 1",
        ),
        (
            "policies.txt",
            "policies: {}\n",
            "policies.txt: cannot tell the format from the file name; expected a name ending in "
            ".yaml, .yml, .toml or .json, or format='yaml', 'toml' or 'json'",
        ),
    ],
)
def test_syntax_and_shape_errors(name, text, expected):
    assert errors_of(text, name) == [expected]


@pytest.mark.parametrize("name", ["missing.yaml", "policies", "conf/policies.conf"])
def test_a_missing_file(name):
    with pytest.raises(ConfigError) as info:
        load_config(name)
    assert str(info.value) == f"{name}: cannot read the file (No such file or directory)"
    assert info.value.file == name


def test_a_bad_format_argument():
    with pytest.raises(ConfigError) as info:
        load_config("policies: {}", "ini")
    assert str(info.value) == (
        "format: expected 'yaml', 'toml', 'json' or None (from the file name), got 'ini'"
    )


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        (
            "toml",
            """
            [backends.shared]
            url = "memory://"

            [policies.api.retry]
            attempts = 0
            backoff.jiter = "full"

            [[routes.httpx]]
            policy = "api"

            [[routes.httpx]]
            policy = "nope"
            """,
            [
                "policies.toml:5: policies.api.retry.attempts: expected an integer >= 1, got 0",
                "policies.toml:6: policies.api.retry.backoff.jiter: unknown key; expected one of "
                "initial, maximum, multiplier, jitter, increment (did you mean 'jitter'?)",
                "policies.toml:12: routes.httpx.1.policy: expected a policy (api), got 'nope'",
            ],
        ),
        (
            "json",
            """
            {
              "policies": {
                "api": {
                  "retry": {
                    "attempts": 0,
                    "backoff": {"jitter": "ful"}
                  },
                  "order": ["retry", 3]
                }
              },
              "routes": {"grpc": [{"policy": "api"}, {"policy": "zz"}]}
            }
            """,
            [
                "policies.json:5: policies.api.retry.attempts: expected an integer >= 1, got 0",
                "policies.json:6: policies.api.retry.backoff.jitter: expected one of 'full', "
                "'equal', 'decorrelated', 'none' (did you mean 'full'?), got 'ful'",
                "policies.json:8: policies.api.order.1: expected one of 'fallback', 'rate_limit', "
                "'bulkhead', 'adaptive_concurrency', 'timeout', 'retry', 'throttle', "
                "'circuit_breaker', 'attempt_timeout', got 3",
                "policies.json:11: routes.grpc.1.policy: expected a policy (api), got 'zz'",
            ],
        ),
    ],
)
def test_toml_and_json_errors_have_lines(fmt, text, expected):
    assert errors_of(text, f"policies.{fmt}") == expected


def test_text_sources_give_lines_without_a_file():
    with pytest.raises(ConfigError) as info:
        load_config("policies:\n  p:\n    retry: 0\n", "yaml")
    err = info.value
    assert str(err) == "line 3: policies.p.retry.attempts: expected an integer >= 1, got 0"
    assert (err.file, err.line, err.path, err.value) == (None, 3, "policies.p.retry.attempts", 0)
    assert err.expected == "an integer >= 1"


def test_errors_carry_their_parts_and_pickle():
    with open("policies.yaml", "w") as f:
        f.write("policies:\n  p:\n    retry: {atempts: 1, attempts: 0}\n")
    with pytest.raises(ConfigError) as info:
        load_config("policies.yaml")
    bad, unknown = info.value.errors
    assert (unknown.file, unknown.line, unknown.path) == (
        "policies.yaml",
        3,
        "policies.p.retry.atempts",
    )
    assert (bad.path, bad.value, bad.expected) == (
        "policies.p.retry.attempts",
        0,
        "an integer >= 1",
    )
    for err in (unknown, bad):
        back = pickle.loads(pickle.dumps(err))
        assert str(back) == str(err)
        assert (back.path, back.line, back.file) == (err.path, err.line, err.file)


def test_long_values_are_shortened():
    (line,) = errors_of("policies:\n  p:\n    description: [" + "1, " * 100 + "1]\n")
    assert line.startswith("policies.yaml:3: policies.p.description: expected a string, got [1, ")
    assert line.endswith("...")
    assert len(line) < 160


def test_backend_errors():
    assert errors_of(
        """
        backends:
          a: {url: "nosuch://x"}
          b: {url: "memory://?max_keys=x"}
          c: {url: "memory://", prefix: app}
        """
    ) == [
        "policies.yaml:2: backends.a.url: expected a URL with a known scheme: "
        + ", ".join(__import__("resilient.backends").backends.store_schemes())
        + ", got 'nosuch://x'",
        "policies.yaml:3: backends.b.url: expected max_keys to be an int >= 1, "
        "got 'memory://?max_keys=x'",
        "policies.yaml:4: backends.c: this store does not take prefix, got 'memory://'",
    ]
    assert errors_of("backends:\n  d: {prefix: app}\n  e: {url: localhost}\n") == [
        "policies.yaml:2: backends.d.url: missing required key; expected a store URL such as "
        "'memory://' or 'redis://host:6379/0'",
        "policies.yaml:3: backends.e.url: expected a store URL such as 'memory://' or "
        "'redis://host:6379/0', got 'localhost'",
    ]
