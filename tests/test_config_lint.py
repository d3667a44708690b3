"""Lint warnings across sections and routes, and worst-case estimates."""

from __future__ import annotations

import math
import textwrap

import pytest

from resilient.config import Estimate, LintWarning, load_config


def warnings_of(text: str) -> list[str]:
    registry = load_config(textwrap.dedent(text).lstrip("\n"), "yaml", env={})
    return [str(w) for w in registry.warnings]


def codes_of(text: str) -> list[str]:
    registry = load_config(textwrap.dedent(text).lstrip("\n"), "yaml", env={})
    return [w.code for w in registry.warnings]


def test_a_sound_policy_has_no_warnings():
    assert (
        warnings_of(
            """
            policies:
              api:
                timeout: {total: 10s, attempt: 2s}
                retry: {attempts: 3}
                circuit_breaker: {window: 60s, slow_call_duration: 1s, slow_call_rate: 0.5}
            """
        )
        == []
    )


def test_each_warning_with_its_line_and_text():
    assert warnings_of(
        """
        backends:
          spare: {url: "memory://"}
        bases:
          unused: {retry: 2}
        policies:
          nojitter:
            retry: {attempts: 3, backoff: {jitter: none}}
            circuit_breaker: {}
          storm:
            retry: 4
          outside:
            order: [circuit_breaker, retry]
            retry: 2
            circuit_breaker: {}
          timeouts:
            timeout: {total: 1s, attempt: 2s}
            retry: {attempts: 2, deadline: 5s, budget: {}}
            circuit_breaker: {window: 500ms, slow_call_duration: 3s, slow_call_rate: 0.5}
          inbound:
            retry: {attempts: 2, budget: {}}
        routes:
          httpx:
            - {policy: storm, methods: [GET, POST, PATCH]}
            - {policy: storm, methods: [GET]}
          asgi:
            - {policy: inbound}
        """
    ) == [
        "line 2: backends.spare: warning: no policy uses this backend [unused-backend]",
        "line 4: bases.unused: warning: no policy extends this base [unused-base]",
        "line 7: policies.nojitter.retry.backoff.jitter: warning: retries without jitter: "
        "clients that failed together retry together; use jitter: full [retry-without-jitter]",
        "line 10: policies.storm.retry: warning: retries with neither a circuit breaker inside "
        "them nor a budget: in an outage every call becomes 4 calls; add a circuit_breaker "
        "(inside the retry) or a retry budget [retry-without-budget]",
        "line 12: policies.outside.order: warning: the circuit breaker wraps the retry: it "
        "counts a whole retried call as one outcome and cannot stop the retries; put it inside "
        "(after retry in order) [breaker-outside-retry]",
        "line 13: policies.outside.retry: warning: retries with neither a circuit breaker "
        "inside them nor a budget: in an outage every call becomes 2 calls; add a "
        "circuit_breaker (inside the retry) or a retry budget [retry-without-budget]",
        "line 16: policies.timeouts.timeout.attempt: warning: the attempt timeout (2s) is not "
        "shorter than the total timeout (1s): a retry can never start "
        "[attempt-timeout-not-shorter]",
        "line 17: policies.timeouts.retry.deadline: warning: the retry deadline (5s) is longer "
        "than the total timeout (1s), which ends the call first [deadline-exceeds-timeout]",
        "line 18: policies.timeouts.circuit_breaker.window: warning: the breaker's window "
        "(500ms) is shorter than the timeout of its calls (2s): slow calls end after the window "
        "has moved on; use a window several times the timeout [window-shorter-than-timeout]",
        "line 18: policies.timeouts.circuit_breaker.slow_call_duration: warning: "
        "slow_call_duration (3s) is not shorter than the timeout (2s): calls time out before "
        "they count as slow [slow-call-unreachable]",
        "line 23: routes.httpx.0.methods: warning: policy 'storm' retries, and PATCH, POST "
        "requests are not idempotent: a retry may repeat a side effect. The httpx adapter "
        "retries them only on errors raised before sending, unless told otherwise; make sure "
        "the server de-duplicates (Idempotency-Key) [retry-non-idempotent]",
        "line 26: routes.asgi.0.policy: warning: policy 'inbound' has a retry, but the ASGI "
        "middleware never retries a request [asgi-retry-ignored]",
    ]


def test_an_inherited_problem_points_at_the_line_that_wrote_it():
    registry = load_config(
        "bases:\n  b:\n    retry: {attempts: 3, backoff: {jitter: none}}\n"
        "    circuit_breaker: {}\npolicies:\n  p: {extends: b}\n",
        "yaml",
    )
    (warning,) = registry.warnings
    assert isinstance(warning, LintWarning)
    assert (warning.path, warning.line, warning.file) == (
        "policies.p.retry.backoff.jitter",
        3,
        None,
    )


def test_a_base_used_through_another_base_is_used():
    assert codes_of("bases:\n  a: {}\n  b: {extends: a}\npolicies:\n  p: {extends: b}\n") == []


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{}", Estimate(math.inf, math.inf, 1.0)),
        ("{timeout: 2s}", Estimate(2.0, 2.0, 1.0)),
        # 3 tries of 1s, backoff 0.1 + 0.2 (full jitter's upper bound), hints up to 60s each
        (
            "{timeout: {attempt: 1s}, retry: 3, circuit_breaker: {}}",
            Estimate(3.3, 123.0, 3.0),
        ),
        (
            "{timeout: {total: 5s, attempt: 1s}, retry: {attempts: 3, max_retry_after: 0},"
            " circuit_breaker: {}}",
            Estimate(3.3, 3.3, 3.0),
        ),
        # the total timeout caps everything; the budget caps amplification over time
        (
            "{timeout: {total: 2s, attempt: 1s}, retry: {attempts: 5, budget: {ratio: 0.1}}}",
            Estimate(2.0, 2.0, 5.0, 1.1),
        ),
        # a deadline stops sleeping, but a try started before it may run to its timeout
        (
            "{timeout: {attempt: 1s}, retry: {attempts: 10, deadline: 4s, max_retry_after: 0},"
            " circuit_breaker: {}}",
            Estimate(5.0, 5.0, 10.0),
        ),
        # decorrelated jitter: up to 3x the previous delay, capped by maximum
        (
            "{timeout: {attempt: 1s}, retry: {attempts: 4, max_retry_after: 0,"
            " backoff: {initial: 1s, maximum: 5s, jitter: decorrelated}}, circuit_breaker: {}}",
            Estimate(4.0 + 3.0 + 5.0 + 5.0, 4.0 + 3.0 + 5.0 + 5.0, 4.0),
        ),
        # constant backoff, many attempts: no need to add them one by one
        (
            "{timeout: {attempt: 1s}, retry: {attempts: 1000000, max_retry_after: 0,"
            " backoff: {initial: 1s, maximum: 1s}}, circuit_breaker: {}}",
            Estimate(1e6 + 999999.0, 1e6 + 999999.0, 1e6),
        ),
        # queueing adds its waits
        (
            "{timeout: 1s, bulkhead: {max_queued: 1, max_wait: 2s}, rate_limit: "
            "{rate: 1/s, max_wait: 500ms}}",
            Estimate(3.5, 3.5, 1.0),
        ),
        (
            "{timeout: 1s, bulkhead: {max_queued: 1, max_wait: null}}",
            Estimate(math.inf, math.inf, 1.0),
        ),
    ],
)
def test_estimates(policy, expected):
    registry = load_config(f"policies:\n  p: {policy}\n", "yaml")
    found = registry.estimate("p")
    assert found.latency == pytest.approx(expected.latency)
    assert found.latency_with_hints == pytest.approx(expected.latency_with_hints)
    assert found.amplification == expected.amplification
    assert found.budgeted_amplification == expected.budgeted_amplification


def test_estimate_text():
    registry = load_config(
        "policies:\n  p: {timeout: {total: 5s, attempt: 1s}, retry: {attempts: 3, "
        "budget: {}}, circuit_breaker: {}}\n  q: {}\n  r: {timeout: 50ms}\n",
        "yaml",
    )
    assert str(registry.estimate("p")) == (
        "worst-case latency 3.3s (5s with Retry-After hints), load amplification x3 "
        "(x1.2 over time, with the budget)"
    )
    assert str(registry.estimate("q")) == "worst-case latency unbounded, load amplification x1"
    assert str(registry.estimate("r")) == "worst-case latency 50ms, load amplification x1"
    with pytest.raises(KeyError):
        registry.estimate("nope")
