"""Server hints: Retry-After, the IETF RateLimit fields and X-RateLimit-*."""

from __future__ import annotations

import email.utils

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient.adapters.httpx import parse_retry_after, server_hint
from resilient.adapters.httpx._hints import parse_ratelimit

NOW = 1_700_000_000.0


def hint(headers: dict[str, str] | list[tuple[str, str]], **kw: bool) -> float | None:
    return server_hint(httpx.Headers(headers), now=lambda: NOW, **kw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
        (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # already passed: now
        ("Sunday, 06-Nov-94 08:49:37 GMT", 0.0),  # RFC 850 form
        ("Tue Nov 14 22:14:20 2023", 60.0),  # asctime form (GMT): NOW + 60 s
        ("soon", None),
        ("-5", None),
        ("1e3", None),
        ("", None),
        ("12 seconds", None),
        ("٣", None),  # not an ASCII digit
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_wins_over_the_rate_limit_fields():
    headers = {
        "Retry-After": "3",
        "RateLimit": '"default";r=0;t=50',
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "70",
    }
    assert hint(headers) == 3.0
    assert hint(headers, retry_after=False) == 50.0


def test_two_retry_after_values_are_ignored():
    assert hint([("Retry-After", "3"), ("Retry-After", "4")]) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"default";r=0;t=30', 30.0),
        ('"burst";r=0;t=4, "daily";r=0;t=3600', 3600.0),
        ('"burst";r=5;t=4, "daily";r=0;t=60', 60.0),
        ("default;r=0;t=7", 7.0),  # a token as the policy name
        ('"default";r=3;t=30', None),  # quota left
        ('"default";t=30', None),
        ('"default";r=0;t=-1', None),
        ('"default";r=0;t=1.5', None),  # t is an integer
        ('"default";r=0;t=', None),  # malformed: ignored
        ('"default";r=0;t=30,', None),
        ('"unterminated;r=0;t=30', None),
    ],
)
def test_ratelimit_field(value, expected):
    assert hint({"RateLimit": value}) == expected


def test_an_exhausted_policy_without_a_reset_waits_for_its_window():
    headers = {
        "RateLimit": '"burst";r=0, "daily";r=9;t=100',
        "RateLimit-Policy": '"burst";q=10;w=60, "daily";q=1000;w=86400',
    }
    assert hint(headers) == 60.0
    assert hint({"RateLimit": '"burst";r=0'}) is None
    assert hint({"RateLimit": '"burst";r=0', "RateLimit-Policy": "bad;;"}) is None


def test_a_malformed_ratelimit_field_falls_back_to_the_legacy_fields():
    headers = {"RateLimit": "r=0;;t=3", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "8"}
    assert hint(headers) == 8.0


@pytest.mark.parametrize(
    ("headers", "throttled", "expected"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "20"}, False, 20.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 45)}, False, 45.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 45)}, False, 0.0),
        ({"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "20"}, True, None),
        ({"X-RateLimit-Reset": "20"}, False, None),
        ({"X-RateLimit-Reset": "20"}, True, 20.0),  # a 429 is exhausted by definition
        ({"RateLimit-Remaining": "0", "RateLimit-Reset": "11"}, False, 11.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW + 6) * 1000)}, False, 6.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "later"}, False, None),
        ({"X-RateLimit-Remaining": "none", "X-RateLimit-Reset": "5"}, False, None),
        ({"X-RateLimit-Remaining": "none", "X-RateLimit-Reset": "5"}, True, 5.0),  # ignored
    ],
)
def test_legacy_rate_limit_fields(headers, throttled, expected):
    assert hint(headers, throttled=throttled) == expected


def test_no_headers_no_hint():
    assert hint({}) is None


def test_parse_ratelimit_structured_fields():
    assert parse_ratelimit('"a";q=10;w=60;qu="requests", b;flag;x=?1;y=?0;z=-3;d=0.25') == [
        ("a", {"q": 10, "w": 60, "qu": "requests"}),
        ("b", {"flag": True, "x": True, "y": False, "z": -3, "d": 0.25}),
    ]
    assert parse_ratelimit('"q\\"uote";r=0') == [('q"uote', {"r": 0})]
    assert parse_ratelimit("") == []
    for bad in ['"a";Q=1', '"a" "b"', '"a\\x"', "a;=1", '"a";r=?2', "a,", '"\x01"', "@"]:
        with pytest.raises(ValueError):
            parse_ratelimit(bad)


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(
    retry_after=st.none() | header_text,
    ratelimit=st.none() | header_text,
    remaining=st.none() | header_text,
    reset=st.none() | header_text,
    throttled=st.booleans(),
)
def test_any_header_values_give_none_or_a_finite_non_negative_hint(
    retry_after, ratelimit, remaining, reset, throttled
):
    headers = {
        name: value
        for name, value in [
            ("Retry-After", retry_after),
            ("RateLimit", ratelimit),
            ("X-RateLimit-Remaining", remaining),
            ("X-RateLimit-Reset", reset),
        ]
        if value is not None
    }
    result = hint(headers, throttled=throttled)
    assert result is None or (result >= 0 and result != float("inf"))
