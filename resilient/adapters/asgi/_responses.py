"""What the middleware says: rate-limit header fields, ``Retry-After`` and problem bodies.

Pure functions and small precomputed objects; nothing here does I/O.

* ``RateLimit-Policy`` (static per limiter, computed once) and ``RateLimit``
  (per response) follow draft-ietf-httpapi-ratelimit-headers: one item per limit,
  ``"name";q=<quota>;w=<window s>`` and ``"name";r=<remaining>;t=<seconds>``.
  ``t`` is the decision's ``reset_after`` on an admitted request and the
  ``Retry-After`` value on a refused one, so ``Retry-After`` never points earlier
  than the end of the effective window.
* ``Retry-After`` is whole seconds rounded **up** (never an underestimate), and at
  least 1 on a refusal.
* Bodies are RFC 9457 ``application/problem+json``; a refused rate limit uses the
  draft's ``quota-exceeded`` problem type with ``violated-policies``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from math import ceil
from typing import Any, Final

from resilient._algorithms import Decision, Limit

__all__ = [
    "QUOTA_EXCEEDED",
    "LimitHeaders",
    "problem",
    "retry_after_value",
    "whole_seconds",
]

QUOTA_EXCEEDED: Final = "https://iana.org/assignments/http-problem-types#quota-exceeded"
_PROBLEM_JSON: Final = b"application/problem+json"
_LARGE: Final = 2.0**31
_TITLES: Final = {
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def whole_seconds(seconds: float) -> int:
    """*seconds* as a non-negative int, rounded up (``0.2`` -> 1, ``2.0`` -> 2)."""
    if not seconds > 0:  # also NaN
        return 0
    if seconds >= _LARGE:
        return 2**31 - 1
    return math.ceil(seconds)


def retry_after_value(seconds: float | None) -> int | None:
    """The ``Retry-After`` of a refusal: whole seconds rounded up, at least 1;
    ``None`` when the policy does not know."""
    if seconds is None:
        return None
    return max(whole_seconds(seconds), 1)


def _sf_string(text: str) -> str:
    """*text* as a structured-field String (printable ASCII; others replaced)."""
    safe = "".join(ch if " " <= ch <= "~" else "_" for ch in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


class LimitHeaders:
    """The header fields of one rate limiter, with everything static precomputed.

    Attributes:
        names: one quota-policy name per limit (the limiter's name, or
            ``"<name>-<window>s"`` when it has several limits).
        policy: the ``RateLimit-Policy`` field value (bytes).
    """

    __slots__ = (
        "_by_capacity",
        "_format",
        "_items",
        "_prefix",
        "_single",
        "names",
        "policy",
        "policy_field",
    )

    def __init__(self, name: str, limits: Sequence[Limit]) -> None:
        windows = [max(whole_seconds(limit.capacity * limit.interval), 1) for limit in limits]
        names: list[str] = []
        for index, window in enumerate(windows):
            label = name if len(limits) == 1 else f"{name}-{window}s"
            if label in names:
                label = f"{label}-{index}"
            names.append(label)
        self.names = tuple(names)
        items = [_sf_string(label) for label in names]
        self._items = tuple(items)
        self.policy = ", ".join(
            f"{item};q={limit.capacity};w={window}"
            for item, limit, window in zip(items, limits, windows, strict=True)
        ).encode()
        by_capacity: dict[int, int] = {}
        for index, limit in enumerate(limits):
            by_capacity.setdefault(limit.capacity, index)
        self._by_capacity = by_capacity
        self._single = items[0] if len(items) == 1 else None
        self._prefix = (items[0] + ";r=").encode() if len(items) == 1 else b""
        self._format = self._prefix.replace(b"%", b"%%") + b"%d;t=%d"
        self.policy_field = (b"ratelimit-policy", self.policy)

    def which(self, decision: Decision) -> int:
        """The index of the limit a decision reports on (matched by its capacity)."""
        return self._by_capacity.get(decision.limit, 0)

    def state(self, decision: Decision, retry_after: int | None) -> bytes:
        """The ``RateLimit`` item for *decision* (``retry_after``: on a refusal)."""
        if retry_after is None:
            reset = decision.reset_after
            reset_s = math.ceil(reset) if 0 < reset < _LARGE else whole_seconds(reset)
        else:
            reset_s = retry_after
        remaining = decision.remaining
        item = self._single or self._items[self._by_capacity.get(decision.limit, 0)]
        return f"{item};r={remaining if remaining > 0 else 0};t={reset_s}".encode()

    def state_field(self, decision: Decision) -> tuple[bytes, bytes]:
        """``(b"ratelimit", value)`` for an admitted *decision* (the hot path)."""
        reset = decision.reset_after
        remaining = decision.remaining
        if self._prefix and 0 < reset < 2147483648.0 and remaining >= 0:  # _LARGE
            return (b"ratelimit", self._format % (remaining, ceil(reset)))
        return (b"ratelimit", self.state(decision, None))

    def admitted_field(self, remaining: int, seconds: int) -> tuple[bytes, bytes]:
        """``(b"ratelimit", value)`` for an admission of a single limit, from its
        numbers (what ``state_field`` gives for a decision with them)."""
        return (b"ratelimit", self._format % (remaining, seconds))

    def violated(self, decision: Decision) -> str:
        """The name of the quota policy a refused *decision* violated."""
        return self.names[self.which(decision)]


def legacy_headers(decision: Decision, retry_after: int | None) -> list[tuple[bytes, bytes]]:
    """``X-RateLimit-Limit``/``-Remaining``/``-Reset`` (reset in delta seconds)."""
    reset = retry_after if retry_after is not None else whole_seconds(decision.reset_after)
    return [
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(max(int(decision.remaining), 0)).encode()),
        (b"x-ratelimit-reset", str(reset).encode()),
    ]


def problem(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    extra: dict[str, Any] | None = None,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of an RFC 9457 problem response."""
    document: dict[str, Any] = {
        "type": type_,
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if extra:
        document.update(extra)
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = [
        (b"content-type", _PROBLEM_JSON),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    return headers, body
