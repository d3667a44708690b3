"""The exception tree and its structured attributes."""

from __future__ import annotations

import pickle

import pytest

import resilient as rs


def test_tree():
    assert issubclass(rs.ConfigError, rs.ResilienceError)
    assert issubclass(rs.ConfigError, ValueError)
    for cls in (rs.CircuitOpenError, rs.RateLimitedError, rs.BulkheadFullError):
        assert issubclass(cls, rs.RejectedError)
    assert issubclass(rs.RejectedError, rs.ResilienceError)
    assert issubclass(rs.TimeoutExceededError, TimeoutError)
    assert issubclass(rs.TimeoutExceededError, rs.ResilienceError)
    assert issubclass(rs.BackendError, rs.ResilienceError)


def test_rejected_message_from_attributes():
    err = rs.RateLimitedError("api", key="1.2.3.4", retry_after=0.5)
    assert err.reason == "rate_limited"
    assert str(err) == "'api' rejected the call (rate_limited), key='1.2.3.4', retry after 0.500s"
    assert rs.CircuitOpenError("db").reason == "circuit_open"
    assert rs.BulkheadFullError("b", reason="queue_timeout").reason == "queue_timeout"


@pytest.mark.parametrize(
    "err",
    [
        rs.CircuitOpenError("db", retry_after=2.0),
        rs.TimeoutExceededError("t", 1.5),
        rs.BackendError("redis://localhost", "ping", "refused"),
        rs.ConfigError("attempts", -1, "an int >= 1"),
    ],
)
def test_errors_pickle(err):
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)


def test_config_error_with_file_and_line():
    err = rs.ConfigError("policies.x.retry.attempts", -1, "an int >= 1", file="p.yaml", line=7)
    assert str(err) == "p.yaml:7: policies.x.retry.attempts: expected an int >= 1, got -1"


def test_config_error_combine_reports_all():
    a = rs.ConfigError("a", 1, "x", file="f.toml")
    b = rs.ConfigError("b", 2, "y", file="f.toml")
    both = rs.ConfigError.combine([a, b])
    assert both.errors == (a, b)
    assert str(both).splitlines() == [
        "2 errors:",
        "  f.toml: a: expected x, got 1",
        "  f.toml: b: expected y, got 2",
    ]
    assert rs.ConfigError.combine([a]) is a
    with pytest.raises(ValueError, match="at least one"):
        rs.ConfigError.combine([])


def test_fast_rejection_equals_the_constructed_one():
    """new_error (the hot paths' builder, which skips __init__) makes the same error."""
    from resilient._errors import new_error

    made = rs.RateLimitedError("api", key="k", reason="rate_limited", retry_after=0.25)
    fast = new_error(rs.RateLimitedError, "api", "k", "rate_limited", 0.25)
    assert type(fast) is rs.RateLimitedError
    assert fast.args == made.args == ("api", "k", "rate_limited", 0.25)
    assert (str(fast), repr(fast)) == (str(made), repr(made))
    back = pickle.loads(pickle.dumps(fast))
    assert back.args == ("api", "k", "rate_limited", 0.25)


def test_rejected_attributes_can_be_reassigned():
    """The attributes live in args but stay assignable, as plain attributes were."""
    err = rs.CircuitOpenError("db")
    err.retry_after = 3.0
    err.key = "tenant"
    err.reason = "forced_open"
    err.policy = "primary"
    assert str(err) == "'primary' rejected the call (forced_open), key='tenant', retry after 3.000s"
    assert err.args == ("primary", "tenant", "forced_open", 3.0)
