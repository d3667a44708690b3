"""The exceptions raised by resilient.

Every exception the library raises on its own account derives from
:class:`ResilienceError`::

    ResilienceError
    ├── ConfigError            (also ValueError)   bad argument or policy file
    ├── RejectedError                              a policy said "no" before calling
    │   ├── CircuitOpenError                       the breaker is open / probes are taken
    │   ├── RateLimitedError                       a rate limiter has no capacity
    │   └── BulkheadFullError                      too many calls in flight / queued
    ├── TimeoutExceededError   (also TimeoutError) a Timeout policy's own deadline passed
    └── BackendError                               the shared-state backend failed

Messages are derived from the structured attributes, so code can inspect
``err.retry_after`` or ``err.path`` instead of parsing text.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, cast

__all__ = [
    "BackendError",
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "RateLimitedError",
    "RejectedError",
    "ResilienceError",
    "TimeoutExceededError",
]

_MISSING: Any = object()
_R = TypeVar("_R", bound="RejectedError")


class ResilienceError(Exception):
    """Base class of every exception raised by resilient itself."""


class ConfigError(ResilienceError, ValueError):
    """An argument or a policy-file value is invalid.

    Attributes:
        path: the argument name or the dotted path in a policy file
            (``"policies.payments.retry.attempts"``).
        value: the offending value (``None`` if there was none, e.g. a missing key).
        expected: what would have been accepted.
        file: the policy file, when the value came from one.
        line: the line in that file, when the format tells it.
        errors: every error found at once (a file is validated whole); a single
            error lists only itself.
    """

    path: str
    value: Any
    expected: str
    file: str | None
    line: int | None
    errors: tuple[ConfigError, ...]

    def __init__(
        self,
        path: str,
        value: Any = _MISSING,
        expected: str = "",
        *,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path = path
        self.value = None if value is _MISSING else value
        self._has_value = value is not _MISSING
        self.expected = expected
        self.file = file
        self.line = line
        self.errors = (self,)
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        got = f", got {self.value!r}" if self._has_value else ""
        expected = f"expected {self.expected}" if self.expected else "invalid"
        return f"{where}{self.path}: {expected}{got}"

    @classmethod
    def combine(cls, errors: list[ConfigError] | tuple[ConfigError, ...]) -> ConfigError:
        """One error that reports all of *errors* (one per line), keeping each in ``.errors``."""
        if not errors:
            msg = "ConfigError.combine() needs at least one error"
            raise ValueError(msg)
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        combined = cls(
            first.path,
            first.value if first._has_value else _MISSING,
            first.expected,
            file=first.file,
            line=first.line,
        )
        combined.errors = tuple(errors)
        lines = [f"{len(errors)} errors:"] + [f"  {e._describe()}" for e in errors]
        combined.args = ("\n".join(lines),)
        return combined

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else self._describe()

    def __reduce__(self) -> tuple[Any, ...]:
        value = self.value if self._has_value else _MISSING
        return (_rebuild_config, (self.path, value, self.expected, self.file, self.line))


def _rebuild_config(
    path: str, value: Any, expected: str, file: str | None, line: int | None
) -> ConfigError:
    return ConfigError(path, value, expected, file=file, line=line)


class RejectedError(ResilienceError):
    """A policy refused the call without running it.

    Retry never retries a ``RejectedError`` unless told to; a ``Fallback`` can
    catch it.

    Attributes:
        policy: the name of the policy that refused.
        key: the partition key (rate limiter / keyed policy), if any.
        reason: a short machine-readable reason (``"circuit_open"``, ``"rate_limited"``...).
        retry_after: seconds after which the same call may be admitted, or ``None``
            if unknown. Never an underestimate.

    The four attributes are kept in ``args`` (``(policy, key, reason, retry_after)``)
    and the message is built only when printed: a rejection is raised on the hot path
    of an overloaded service and is usually caught without being looked at, so
    building one must cost no more than building a bare exception.
    """

    default_reason = "rejected"
    args: tuple[Any, ...]

    def __init__(
        self,
        policy: str,
        *,
        key: Any = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.args = (policy, key, reason or self.default_reason, retry_after)

    def _set(self, index: int, value: Any) -> None:
        args = list(self.args)
        args[index] = value
        self.args = tuple(args)

    @property
    def policy(self) -> str:
        """The name of the policy that refused."""
        return self.args[0]  # type: ignore[no-any-return]

    @policy.setter
    def policy(self, value: str) -> None:
        self._set(0, value)

    @property
    def key(self) -> Any:
        """The partition key (rate limiter / keyed policy), if any."""
        return self.args[1]

    @key.setter
    def key(self, value: Any) -> None:
        self._set(1, value)

    @property
    def reason(self) -> str:
        """A short machine-readable reason (``"circuit_open"``, ``"rate_limited"``...)."""
        return self.args[2]  # type: ignore[no-any-return]

    @reason.setter
    def reason(self, value: str) -> None:
        self._set(2, value)

    @property
    def retry_after(self) -> float | None:
        """Seconds after which the same call may be admitted, or ``None`` if unknown."""
        return self.args[3]  # type: ignore[no-any-return]

    @retry_after.setter
    def retry_after(self, value: float | None) -> None:
        self._set(3, value)

    def __str__(self) -> str:
        return self._describe()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()!r})"

    def _describe(self) -> str:
        parts = [f"{self.policy!r} rejected the call ({self.reason})"]
        if self.key is not None:
            parts.append(f"key={self.key!r}")
        if self.retry_after is not None:
            parts.append(f"retry after {self.retry_after:.3f}s")
        return ", ".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_rejected,
            (type(self), self.policy, self.key, self.reason, self.retry_after),
        )


def _rebuild_rejected(
    cls: type[RejectedError], policy: str, key: Any, reason: str, retry_after: float | None
) -> RejectedError:
    return cls(policy, key=key, reason=reason, retry_after=retry_after)


class _NewError(Protocol):
    def __call__(
        self,
        cls: type[_R],
        policy: str,
        key: Any,
        reason: str,
        retry_after: float | None,
        /,
    ) -> _R: ...


new_error: _NewError = cast(_NewError, BaseException.__new__)
"""``new_error(cls, policy, key, reason, retry_after)`` builds a :class:`RejectedError`
subclass equal to ``cls(policy, key=key, reason=reason, retry_after=retry_after)``
without running ``__init__``: one C call, for the hot paths that refuse floods of
calls. *reason* must be given (it is not defaulted)."""


class CircuitOpenError(RejectedError):
    """The circuit breaker is open (or its half-open probes are all taken)."""

    default_reason = "circuit_open"


class RateLimitedError(RejectedError):
    """A rate limiter has no capacity for this call now."""

    default_reason = "rate_limited"


class BulkheadFullError(RejectedError):
    """The bulkhead's concurrent slots and its queue are full (or the wait ran out)."""

    default_reason = "bulkhead_full"


class TimeoutExceededError(ResilienceError, TimeoutError):
    """A ``Timeout`` (or a retry deadline) ran out of its own budget.

    Attributes:
        policy: the name of the policy whose deadline passed.
        budget: the budget in seconds.
    """

    def __init__(self, policy: str, budget: float) -> None:
        self.policy = policy
        self.budget = budget
        super().__init__(f"{policy!r} exceeded its budget of {budget:.3f}s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.policy, self.budget))


class BackendError(ResilienceError):
    """The shared-state backend (e.g. Redis) failed; the original error is ``__cause__``.

    Attributes:
        backend: a redacted description of the backend (no credentials).
        operation: what was being done (``"token_bucket"``, ``"ping"``...).
    """

    def __init__(self, backend: str, operation: str, detail: str = "") -> None:
        self.backend = backend
        self.operation = operation
        self.detail = detail
        suffix = f": {detail}" if detail else ""
        super().__init__(f"backend {backend} failed during {operation}{suffix}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.backend, self.operation, self.detail))
