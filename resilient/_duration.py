"""Durations and rates, parsed once at the API edge.

Durations: seconds as ``int``/``float``, a ``datetime.timedelta``, or a string
with a unit: ``"250ms"``, ``"1.5s"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"1d"``
(also ``"us"``, ``"sec"``, ``"min"``). A bare numeric string means seconds.

Rates: ``"100/second"``, ``"100/s"``, ``"10 per minute"``, ``"5/2 seconds"``,
several at once separated by ``;`` or ``,`` (``"5/s;100/min"``), or a tuple
``(amount, period)`` whose period is a duration. Short units are expanded and
the result is parsed with the ``limits`` notation parser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

from ._errors import ConfigError

__all__ = ["Duration", "Rate", "RateSpec", "parse_rates", "to_seconds"]

Duration: TypeAlias = "float | int | timedelta | str"
"""Anything :func:`to_seconds` accepts."""

RateSpec: TypeAlias = "str | tuple[int, Duration] | Rate | list[Rate] | tuple[Rate, ...]"
"""Anything :func:`parse_rates` accepts."""

_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zµ]*)\s*$")
_DURATION_EXPECTED = (
    "a non-negative number of seconds, a timedelta, or a string like '250ms', '30s', '5m', '1h'"
)


def to_seconds(
    value: object, *, name: str, allow_zero: bool = True, allow_none: bool = False
) -> float:
    """Convert *value* to seconds, or raise :class:`ConfigError` naming *name*.

    ``allow_none`` returns ``math.inf`` for ``None`` (meaning "no limit").
    """
    if value is None and allow_none:
        return math.inf
    seconds: float
    if isinstance(value, bool):
        raise ConfigError(name, value, _DURATION_EXPECTED)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        m = _DURATION_RE.match(value.lower())
        unit = m.group(2) if m else ""
        if m is None or (unit and unit not in _UNITS):
            raise ConfigError(name, value, _DURATION_EXPECTED)
        seconds = float(m.group(1)) * (_UNITS[unit] if unit else 1.0)
    else:
        raise ConfigError(name, value, _DURATION_EXPECTED)
    if math.isnan(seconds) or seconds < 0 or math.isinf(seconds):
        raise ConfigError(name, value, _DURATION_EXPECTED)
    if not allow_zero and seconds == 0:
        raise ConfigError(name, value, "a duration greater than zero")
    return seconds


@dataclass(frozen=True, slots=True)
class Rate:
    """``amount`` units per ``period`` seconds (e.g. ``Rate(100, 60.0)`` is 100/minute)."""

    amount: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount < 1:
            raise ConfigError("rate.amount", self.amount, "an int >= 1")
        if not self.period > 0 or math.isinf(self.period):
            raise ConfigError("rate.period", self.period, "a finite duration > 0")

    @property
    def per_second(self) -> float:
        return self.amount / self.period

    def __str__(self) -> str:
        return f"{self.amount}/{_fmt_period(self.period)}"


def _fmt_period(period: float) -> str:
    for unit, size in (("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0)):
        if period == size:
            return unit
        if period % size == 0 and period > size:
            return f"{int(period // size)} {unit}s"
    return f"{period:g} seconds"


_SHORT = {"s": "second", "sec": "second", "m": "minute", "min": "minute", "h": "hour"}
_SHORT.update({"d": "day", "hr": "hour", "secs": "seconds", "mins": "minutes"})
_RATE_UNIT_RE = re.compile(r"(?<=[0-9/\s])(secs|sec|s|mins|min|m|hr|h|d)\b", re.IGNORECASE)
_RATE_EXPECTED = (
    "a rate like '100/second', '100/s', '10 per minute', '5/s;100/min' or (amount, period)"
)


def parse_rates(value: object, *, name: str) -> tuple[Rate, ...]:
    """Parse one rate or several (``"5/s;100/min"``) into :class:`Rate` objects."""
    if isinstance(value, Rate):
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, Rate) for v in value):
        return tuple(value)
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], Rate):
        amount, period = value
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise ConfigError(f"{name}[0]", amount, "an int >= 1 (the amount per period)")
        return (Rate(amount, to_seconds(period, name=f"{name}[1]", allow_zero=False)),)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, value, _RATE_EXPECTED)
    return _parse_rate_string(value, name)


def _parse_rate_string(value: str, name: str) -> tuple[Rate, ...]:
    from limits import parse_many

    text = _RATE_UNIT_RE.sub(lambda m: _SHORT[m.group(1).lower()], value.strip())
    try:
        items = parse_many(text)
    except ValueError as exc:
        raise ConfigError(name, value, _RATE_EXPECTED) from exc
    rates = []
    for item in items:
        try:
            rates.append(Rate(int(item.amount), float(item.get_expiry())))
        except ConfigError as exc:
            raise ConfigError(name, value, _RATE_EXPECTED) from exc
    if not rates:
        raise ConfigError(name, value, _RATE_EXPECTED)
    return tuple(rates)


def describe(value: Any) -> str:
    """A short ``repr`` for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
