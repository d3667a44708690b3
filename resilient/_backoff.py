"""Backoff: how long to wait before the next attempt.

``Backoff.exponential(initial, maximum, multiplier, jitter)`` computes the
*n*-th delay (``n`` = 1 after the first failed attempt) as
``base = min(maximum, initial * multiplier ** (n - 1))`` and then applies the
jitter:

* ``"full"`` (default): uniform in ``[0, base]`` — spreads a fleet best.
* ``"equal"``: uniform in ``[base / 2, base]`` — never shorter than half.
* ``"decorrelated"``: uniform in ``[initial, 3 * previous]``, capped by ``maximum``.
* ``"none"``: exactly ``base``.

The random source is a parameter (``rng``, returning floats in ``[0, 1)``), so
tests and simulations are deterministic. ``maximum`` caps every delay.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from ._duration import to_seconds
from ._errors import ConfigError

__all__ = ["Backoff", "BackoffFunction", "Jitter"]

Jitter: TypeAlias = Literal["full", "equal", "decorrelated", "none"]
BackoffFunction: TypeAlias = Callable[[int], float]
"""A custom backoff: the 1-based retry number in, the delay in seconds out."""

_JITTERS = ("full", "equal", "decorrelated", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Delays between attempts (see the module docs for the formulas).

    Build one with :meth:`exponential`, :meth:`constant` or :meth:`linear`.
    """

    initial: float = 0.1
    maximum: float = 10.0
    multiplier: float = 2.0
    jitter: Jitter = "full"
    increment: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "initial", to_seconds(self.initial, name="backoff.initial"))
        object.__setattr__(self, "maximum", to_seconds(self.maximum, name="backoff.maximum"))
        object.__setattr__(self, "increment", to_seconds(self.increment, name="backoff.increment"))
        if (
            isinstance(self.multiplier, bool)
            or not isinstance(self.multiplier, int | float)
            or not math.isfinite(self.multiplier)
            or self.multiplier < 1
        ):
            raise ConfigError("backoff.multiplier", self.multiplier, "a finite number >= 1")
        if self.jitter not in _JITTERS:
            raise ConfigError("backoff.jitter", self.jitter, f"one of {', '.join(_JITTERS)}")
        if self.maximum < self.initial:
            raise ConfigError(
                "backoff.maximum", self.maximum, f"a duration >= initial ({self.initial}s)"
            )

    @classmethod
    def exponential(
        cls,
        initial: float | str = 0.1,
        maximum: float | str = 10.0,
        multiplier: float = 2.0,
        jitter: Jitter = "full",
    ) -> Backoff:
        """``initial * multiplier ** (n - 1)``, capped by ``maximum``, with *jitter*."""
        return cls(initial=initial, maximum=maximum, multiplier=multiplier, jitter=jitter)  # type: ignore[arg-type]

    @classmethod
    def constant(cls, delay: float | str, jitter: Jitter = "none") -> Backoff:
        """The same *delay* every time (optionally jittered)."""
        seconds = to_seconds(delay, name="backoff.delay")
        return cls(initial=seconds, maximum=seconds, multiplier=1.0, jitter=jitter)

    @classmethod
    def linear(
        cls,
        initial: float | str = 0.1,
        increment: float | str = 0.1,
        maximum: float | str = 10.0,
        jitter: Jitter = "none",
    ) -> Backoff:
        """``initial + increment * (n - 1)``, capped by ``maximum``."""
        return cls(
            initial=initial,  # type: ignore[arg-type]
            increment=increment,  # type: ignore[arg-type]
            maximum=maximum,  # type: ignore[arg-type]
            multiplier=1.0,
            jitter=jitter,
        )

    def base(self, retry: int) -> float:
        """The un-jittered delay before retry number *retry* (1-based)."""
        n = max(retry, 1) - 1
        if self.increment:
            value = self.initial + self.increment * n
        else:
            try:
                value = self.initial * self.multiplier**n
            except OverflowError:
                value = math.inf
        return min(value, self.maximum)

    def delay(
        self,
        retry: int,
        previous: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """The delay before retry number *retry*; *previous* feeds ``"decorrelated"``."""
        jitter = self.jitter
        if jitter == "decorrelated":
            low = self.initial
            high = max(low, 3.0 * (previous if previous is not None else low))
            return min(self.maximum, low + rng() * (high - low))
        base = self.base(retry)
        if jitter == "full":
            return rng() * base
        if jitter == "equal":
            return base / 2 + rng() * base / 2
        return base
