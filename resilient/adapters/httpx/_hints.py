"""Server hints: how long a response asks the client to wait.

Pure functions of the headers and an injected wall-clock ``now`` (seconds since
the epoch), so they are deterministic under test. Three sources, in order of
precedence:

1. ``Retry-After`` (RFC 9110 §10.2.3): delay-seconds (``120``) or an HTTP-date
   (``Wed, 21 Oct 2015 07:28:00 GMT``; a date in the past means "now").
2. The IETF ``RateLimit`` field (draft-ietf-httpapi-ratelimit-headers, a
   structured-field list such as ``"default";r=0;t=30``): the largest ``t`` of
   the quota policies whose remaining ``r`` is 0. An exhausted policy without a
   ``t`` waits for its window ``w`` from the ``RateLimit-Policy`` field
   (``"default";q=100;w=60``), the longest it can take to refill.
3. The older ``X-RateLimit-Remaining``/``X-RateLimit-Reset`` and
   ``RateLimit-Remaining``/``RateLimit-Reset`` pairs: the reset when nothing
   remains. A reset larger than 10^9 is a Unix timestamp (larger than 10^12,
   in milliseconds), anything else a delay in seconds.

A throttled response (HTTP 429) is exhausted by definition, so for it a reset
is read even when the remaining count is absent. Malformed values are ignored
(the next source is tried), as the draft requires; ``Retry-After`` always wins
over the rate-limit fields.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable
from datetime import UTC
from typing import Protocol

__all__ = ["parse_ratelimit", "parse_retry_after", "server_hint"]

_EPOCH_THRESHOLD = 1_000_000_000.0  # a "reset" above this is a Unix time (2001-09-09)
_EPOCH_MS_THRESHOLD = 1_000_000_000_000.0  # ... and above this, in milliseconds
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,3})?")

ParamValue = int | float | str | bool


class HeadersLike(Protocol):
    """What the parsers need from a headers object (``httpx.Headers`` fits)."""

    def get_list(self, key: str, split_commas: bool = False) -> list[str]: ...


def parse_retry_after(value: str, now: float) -> float | None:
    """Seconds to wait according to one ``Retry-After`` value, or ``None`` if malformed.

    *now* is the current wall-clock time (``time.time()``), used for HTTP-dates;
    a date that has already passed gives ``0.0``.
    """
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime form carries no zone; HTTP-dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _parse_value(text: str, i: int) -> tuple[ParamValue, int]:
    """One bare item (string, token, number or boolean) starting at *i*."""
    if i >= len(text):
        raise ValueError("missing value")
    char = text[i]
    if char == '"':
        out = []
        i += 1
        while i < len(text):
            char = text[i]
            if char == "\\":
                if i + 1 >= len(text) or text[i + 1] not in '"\\':
                    raise ValueError("bad escape")
                out.append(text[i + 1])
                i += 2
            elif char == '"':
                return "".join(out), i + 1
            elif not " " <= char <= "~":
                raise ValueError("bad character in string")
            else:
                out.append(char)
                i += 1
        raise ValueError("unterminated string")
    if char == "?":
        if text[i + 1 : i + 2] in ("0", "1"):
            return text[i + 1] == "1", i + 2
        raise ValueError("bad boolean")
    match = _NUMBER.match(text, i)
    if match:
        number = match.group()
        return (float(number) if "." in number else int(number)), match.end()
    match = _TOKEN.match(text, i)
    if match:
        return match.group(), match.end()
    raise ValueError("bad value")


def parse_ratelimit(value: str) -> list[tuple[ParamValue, dict[str, ParamValue]]]:
    """Parse a structured-field list of items with parameters (RFC 9651, the subset
    the RateLimit fields use): ``"default";r=0;t=30, "daily";r=5;t=3600``.

    Returns ``[(item, {param: value})]``; raises ``ValueError`` when malformed.
    """
    items: list[tuple[ParamValue, dict[str, ParamValue]]] = []
    text = value.strip(" \t")
    i = 0
    while text:
        item, i = _parse_value(text, i)
        params: dict[str, ParamValue] = {}
        while i < len(text) and text[i] == ";":
            i += 1
            while i < len(text) and text[i] == " ":
                i += 1
            match = _KEY.match(text, i)
            if not match:
                raise ValueError("bad parameter name")
            key, i = match.group(), match.end()
            if i < len(text) and text[i] == "=":
                params[key], i = _parse_value(text, i + 1)
            else:
                params[key] = True
        items.append((item, params))
        while i < len(text) and text[i] in " \t":
            i += 1
        if i == len(text):
            return items
        if text[i] != ",":
            raise ValueError("expected ',' between items")
        i += 1
        while i < len(text) and text[i] in " \t":
            i += 1
        if i == len(text):
            raise ValueError("trailing comma")
    return items


def _windows(values: list[str]) -> dict[ParamValue, int]:
    """The windows (``w``) of the ``RateLimit-Policy`` field's policies, by name."""
    if not values:
        return {}
    try:
        items = parse_ratelimit(", ".join(values))
    except ValueError:
        return {}
    out = {}
    for name, params in items:
        window = params.get("w")
        if type(window) is int and window >= 0:
            out[name] = window
    return out


def _exhausted_reset(headers: HeadersLike) -> float | None:
    """The wait the IETF ``RateLimit`` field implies: the largest ``t`` among the
    policies with nothing remaining (``r=0``), or their window without a ``t``."""
    values = headers.get_list("ratelimit")
    if not values:
        return None
    try:
        items = parse_ratelimit(", ".join(values))
    except ValueError:
        return None
    waits = []
    windows: dict[ParamValue, int] | None = None
    for name, params in items:
        remaining, reset = params.get("r"), params.get("t")
        if type(remaining) is not int or remaining > 0:
            continue
        if reset is None:
            if windows is None:
                windows = _windows(headers.get_list("ratelimit-policy"))
            reset = windows.get(name)
        if type(reset) is int and reset >= 0:
            waits.append(float(reset))
    return max(waits) if waits else None


def _number(values: list[str]) -> float | None:
    if len(values) != 1:
        return None
    text = values[0].strip()
    if not _SECONDS.fullmatch(text):
        return None
    return float(text)


def _legacy_reset(headers: HeadersLike, now: float, throttled: bool) -> float | None:
    for prefix in ("x-ratelimit-", "ratelimit-"):
        reset = _number(headers.get_list(prefix + "reset"))
        if reset is None:
            continue
        remaining = _number(headers.get_list(prefix + "remaining"))
        if remaining is None and not throttled:
            continue
        if remaining is not None and remaining > 0:
            continue
        if reset > _EPOCH_MS_THRESHOLD:
            reset /= 1000.0
        return max(0.0, reset - now) if reset > _EPOCH_THRESHOLD else reset
    return None


def server_hint(
    headers: HeadersLike,
    *,
    now: Callable[[], float],
    throttled: bool = False,
    retry_after: bool = True,
) -> float | None:
    """The seconds a response asks the client to wait, or ``None`` for no (valid) hint.

    Args:
        headers: the response headers (``httpx.Headers``).
        now: the wall clock, ``time.time`` in production; read only for HTTP-dates
            and Unix-time resets.
        throttled: the response was a 429, so a rate-limit reset applies even when
            the remaining count is absent.
        retry_after: read ``Retry-After`` (default); false reads only the
            rate-limit fields (an exhausted quota on a successful response).
    """
    if retry_after:
        values = headers.get_list("retry-after")
        if len(values) == 1:
            hint = parse_retry_after(values[0], now())
            if hint is not None and math.isfinite(hint):
                return hint
    hint = _exhausted_reset(headers)
    if hint is not None:
        return hint
    return _legacy_reset(headers, now(), throttled)
