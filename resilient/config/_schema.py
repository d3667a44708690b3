"""The shape of a policy file: one set of frozen dataclasses.

A file is parsed into plain data, then validated into these dataclasses by
pydantic (``TypeAdapter``), which is imported only when a file is loaded: the
dataclasses carry no pydantic import, only ``Annotated`` markers that describe
how a scalar is converted (durations, rates, import paths) and what its JSON
Schema is. Field names are the keyword arguments of the policy constructors, so
a section reads like the Python call it becomes.

Each field's docstring is its documentation: it becomes the field's
``description`` in the JSON Schema and the reference in ``docs/config.md``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from .._duration import parse_rates, to_seconds
from .._errors import ConfigError

__all__ = [
    "DEFAULT_ORDER",
    "SECTIONS",
    "AdaptiveConcurrencySettings",
    "AsgiRoute",
    "BackendSettings",
    "BackoffSettings",
    "BulkheadSettings",
    "CircuitBreakerSettings",
    "ConfigDocument",
    "FallbackSettings",
    "GrpcRoute",
    "HttpxRoute",
    "PolicySettings",
    "RateLimitSettings",
    "RetryBudgetSettings",
    "RetrySettings",
    "Routes",
    "ThrottleSettings",
    "TimeoutSettings",
    "WindowSettings",
]

_STRICT: dict[str, Any] = {"extra": "forbid", "use_attribute_docstrings": True}

SectionName: TypeAlias = Literal[
    "fallback",
    "rate_limit",
    "bulkhead",
    "adaptive_concurrency",
    "timeout",
    "retry",
    "throttle",
    "circuit_breaker",
    "attempt_timeout",
]

DEFAULT_ORDER: tuple[SectionName, ...] = (
    "fallback",
    "rate_limit",
    "bulkhead",
    "adaptive_concurrency",
    "timeout",
    "retry",
    "throttle",
    "circuit_breaker",
    "attempt_timeout",
)
"""The pipeline order used when a policy gives none, outermost first.

``timeout`` is the total timeout (``timeout.total``) and ``attempt_timeout`` the
per-attempt one (``timeout.attempt``): the retry sits between them, and the
breaker inside the retry sees every attempt. The adaptive concurrency limit sits
where a bulkhead does, around the total timeout (a timed-out call is an overload
signal to it); the throttle inside the retry judges every attempt, and outside
the breaker, whose open state it counts as refusals.
"""

SECTIONS = (
    "fallback",
    "rate_limit",
    "bulkhead",
    "adaptive_concurrency",
    "timeout",
    "retry",
    "throttle",
    "circuit_breaker",
)
"""The keys of a policy that each become one or two policies of its pipeline."""

# -- scalar markers --------------------------------------------------------------------------
#
# pydantic looks for ``__get_pydantic_core_schema__`` on ``Annotated`` metadata; these
# markers implement it (importing pydantic_core only when a schema is built) so that this
# module imports without pydantic. Each converter raises ConfigError with the wording the
# loader shows; the loader adds the file, line and dotted path.


class _Scalar:
    """``Annotated`` metadata: convert a scalar with *convert*, documented by *json*."""

    __slots__ = ("convert", "expected", "json")

    def __init__(self, convert: Callable[[Any], Any], expected: str, json: dict[str, Any]) -> None:
        self.convert = convert
        self.expected = expected
        self.json = json

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(self._validate)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return dict(self.json)

    def _validate(self, value: Any) -> Any:
        return self.convert(value)


class _Shorthand:
    """``Annotated`` metadata for a mapping that may be written as a scalar.

    ``true`` means "the section with its defaults" and a scalar fills *key*
    (``timeout: 2s`` is ``timeout: {total: 2s}``). ``false`` and ``null`` are
    handled by the loader (they remove an inherited section).
    """

    __slots__ = ("json", "key")

    def __init__(self, key: str | None, json: dict[str, Any] | None = None) -> None:
        self.key = key
        self.json = json

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self.expand, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        options = [handler(schema), {"type": "boolean"}]
        if self.json is not None:
            options.append(dict(self.json))
        return {"anyOf": options}

    def expand(self, value: Any) -> Any:
        return expand_shorthand(self.key, value)


def expand_shorthand(key: str | None, value: Any) -> Any:
    """``true`` -> ``{}``; a scalar -> ``{key: scalar}`` (when the section has a shorthand)."""
    if value is True:
        return {}
    if key is not None and isinstance(value, str | int | float) and not isinstance(value, bool):
        return {key: value}
    return value


class _JsonAs:
    """``Annotated`` metadata that only replaces the JSON Schema of a field."""

    __slots__ = ("json",)

    def __init__(self, json: dict[str, Any]) -> None:
        self.json = json

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return dict(self.json)


_DURATION_PATTERN = r"^\s*[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*(us|µs|ms|s|secs?|seconds?|m|mins?|minutes?|h|hr|hours?|d|days?)?\s*$"  # noqa: E501
_DURATION_TEXT = "seconds or a string such as '250ms', '30s', '5m'"


def _duration(*, positive: bool) -> _Scalar:
    expected = (
        f"a duration greater than zero: {_DURATION_TEXT}"
        if positive
        else f"a duration: {_DURATION_TEXT}"
    )

    def convert(value: Any) -> float:
        try:
            return to_seconds(value, name="", allow_zero=not positive)
        except ConfigError:
            raise ConfigError("", value, expected) from None

    number: dict[str, Any] = {"type": "number"}
    number["exclusiveMinimum" if positive else "minimum"] = 0
    return _Scalar(
        convert,
        expected,
        {
            "anyOf": [number, {"type": "string", "pattern": _DURATION_PATTERN}],
            "x-type": "duration" if not positive else "duration (> 0)",
        },
    )


def _number(
    kind: type[int] | type[float],
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    expected: str,
) -> _Scalar:
    def convert(value: Any) -> int | float:
        number: int | float
        if isinstance(value, bool):
            raise ConfigError("", value, expected)
        if isinstance(value, str):  # e.g. "3" from ${RETRIES}
            try:
                number = kind(value.strip())
            except ValueError:
                raise ConfigError("", value, expected) from None
        elif kind is int and isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, int) or (kind is float and isinstance(value, float)):
            number = kind(value)
        else:
            raise ConfigError("", value, expected)
        if (
            not math.isfinite(number)
            or (ge is not None and number < ge)
            or (gt is not None and number <= gt)
            or (le is not None and number > le)
        ):
            raise ConfigError("", value, expected)
        return number

    json: dict[str, Any] = {"type": "integer" if kind is int else "number"}
    for key, bound in (("minimum", ge), ("exclusiveMinimum", gt), ("maximum", le)):
        if bound is not None:
            json[key] = bound
    return _Scalar(convert, expected, json)


def _rate_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError("", value, _RATE_EXPECTED)
    try:
        parse_rates(value, name="")
    except ConfigError:
        raise ConfigError("", value, _RATE_EXPECTED) from None
    return value.strip()


_RATE_EXPECTED = "a rate such as '100/second', '100/s', '10 per minute' or '5/s;100/min'"
_IMPORT_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?$")
_EXCEPTIONS_EXPECTED = (
    "an exception class by import path, such as 'TimeoutError' or 'httpx.TransportError', "
    "or a list of them"
)
_CALLABLE_EXPECTED = "a callable by import path, such as 'myapp.fallbacks:cached_quote'"


def _import_paths(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError("", value, _EXCEPTIONS_EXPECTED)
    for item in items:
        if not isinstance(item, str) or not _IMPORT_RE.match(item.strip()):
            raise ConfigError("", value, _EXCEPTIONS_EXPECTED)
    return tuple(item.strip() for item in items)


def _callable_path(value: Any) -> str:
    if not isinstance(value, str) or not _IMPORT_RE.match(value.strip()):
        raise ConfigError("", value, _CALLABLE_EXPECTED)
    return value.strip()


_METHOD_RE = re.compile(r"^[A-Za-z]+$")
_METHODS_EXPECTED = "an HTTP method such as 'GET', or a list of them"


def _methods(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError("", value, _METHODS_EXPECTED)
    for item in items:
        if not isinstance(item, str) or not _METHOD_RE.match(item.strip()):
            raise ConfigError("", value, _METHODS_EXPECTED)
    return tuple(item.strip().upper() for item in items)


_KEY_RE = re.compile(r"^(client|global|path|user|header:[!#$%&'*+\-.^_`|~0-9A-Za-z]+)$", re.I)
_KEY_EXPECTED = (
    "'client', 'global', 'path', 'user', 'header:<Name>' or a callable by import path "
    "such as 'myapp.keys:tenant'"
)


def _key_spec(value: Any) -> str:
    if isinstance(value, str):
        text = value.strip()
        if _KEY_RE.match(text) or (":" in text and _IMPORT_RE.match(text)):
            return text
    raise ConfigError("", value, _KEY_EXPECTED)


_HOST_EXPECTED = "a host name, '*.suffix' or 'host:port'"
_PREFIX_EXPECTED = "a path prefix starting with '/'"


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or value.strip() != value:
        raise ConfigError("", value, _HOST_EXPECTED)
    return value.lower()


def _prefix(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError("", value, _PREFIX_EXPECTED)
    return value.rstrip("/") or "/"


Host = Annotated[
    str,
    _Scalar(
        _host,
        _HOST_EXPECTED,
        {"type": "string", "pattern": r"^[^/\s]+$", "x-type": "host pattern"},
    ),
]
PathPrefix = Annotated[
    str,
    _Scalar(
        _prefix, _PREFIX_EXPECTED, {"type": "string", "pattern": "^/", "x-type": "path prefix"}
    ),
]
_URL_EXPECTED = "a store URL such as 'memory://' or 'redis://host:6379/0'"


def _url(value: Any) -> str:
    if not isinstance(value, str) or "://" not in value:
        raise ConfigError("", value, _URL_EXPECTED)
    return value.strip()


StoreUrl = Annotated[
    str, _Scalar(_url, _URL_EXPECTED, {"type": "string", "pattern": "://", "x-type": "URL"})
]
Duration = Annotated[float, _duration(positive=False)]
PositiveDuration = Annotated[float, _duration(positive=True)]
Count = Annotated[int, _number(int, ge=1, expected="an integer >= 1")]
Size = Annotated[int, _number(int, ge=0, expected="an integer >= 0")]
Fraction = Annotated[
    float, _number(float, gt=0, le=1, expected="a fraction in (0, 1], e.g. 0.5 for 50%")
]
Multiplier = Annotated[float, _number(float, ge=1, expected="a number >= 1")]
RateText = Annotated[
    str,
    _Scalar(
        _rate_text,
        _RATE_EXPECTED,
        {"type": "string", "examples": ["100/second", "5/s;100/min"], "x-type": "rate"},
    ),
]
Exceptions = Annotated[
    tuple[str, ...],
    _Scalar(
        _import_paths,
        _EXCEPTIONS_EXPECTED,
        {
            "anyOf": [
                {"type": "string", "pattern": _IMPORT_RE.pattern},
                {"type": "array", "items": {"type": "string", "pattern": _IMPORT_RE.pattern}},
            ],
            "x-type": "exception class or list of them",
        },
    ),
]
CallablePath = Annotated[
    str,
    _Scalar(
        _callable_path,
        _CALLABLE_EXPECTED,
        {"type": "string", "pattern": _IMPORT_RE.pattern, "x-type": "import path"},
    ),
]
Methods = Annotated[
    tuple[str, ...],
    _Scalar(
        _methods,
        _METHODS_EXPECTED,
        {
            "anyOf": [
                {"type": "string", "pattern": _METHOD_RE.pattern},
                {"type": "array", "items": {"type": "string", "pattern": _METHOD_RE.pattern}},
            ],
            "x-type": "HTTP method or list of them",
        },
    ),
]
KeySpec = Annotated[str, _Scalar(_key_spec, _KEY_EXPECTED, {"type": "string", "x-type": "key"})]
OnBackendError: TypeAlias = Literal["raise", "allow", "deny", "local"]

# -- policy sections -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffSettings:
    """How long a retry waits: ``initial * multiplier ** (n - 1)`` (plus ``increment * (n - 1)``),
    capped by ``maximum``, then jittered."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    initial: Duration = 0.1
    """The first delay."""
    maximum: Duration = 10.0
    """The cap on every delay."""
    multiplier: Multiplier = 2.0
    """Each delay is this many times the previous one (1 for constant or linear backoff)."""
    jitter: Literal["full", "equal", "decorrelated", "none"] = "full"
    """``full``: uniform in [0, delay]; ``equal``: in [delay/2, delay]; ``decorrelated``: in
    [initial, 3 x previous]; ``none``: exactly the delay."""
    increment: Duration = 0.0
    """Added per retry (linear backoff, with ``multiplier: 1``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetSettings:
    """Cap retries at a share of recent calls (plus a minimum rate), so a fleet of clients
    cannot multiply an outage. Written in a retry, it is that policy's own budget; an entry
    of ``budgets`` is shared by every retry that names it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    ratio: Annotated[
        float, _number(float, ge=0, le=1000, expected="a number >= 0 (retries per call)")
    ] = 0.2
    """Retries allowed per recent call (0.2: at most 20% extra load)."""
    min_per_second: Annotated[float, _number(float, ge=0, expected="a number >= 0")] = 3.0
    """Retries always allowed per second, however few the calls."""
    ttl: PositiveDuration = 10.0
    """How long a call counts as recent."""
    buckets: Annotated[int, _number(int, ge=1, le=1000, expected="an integer in [1, 1000]")] = 10
    """Time slices the window is kept in."""
    backend: str | None = None
    """Where the counts live: the name of an entry of ``backends`` (a Redis backend shares
    the budget across every process using it); ``null``: this process's memory."""
    on_backend_error: OnBackendError | None = None
    """What a retry decision does when the backend fails: ``local`` (this process's own
    budget decides), ``allow``, ``deny`` or ``raise``; ``null``: ``local``."""

    def __post_init__(self) -> None:
        if self.on_backend_error is not None and self.backend is None:
            raise ConfigError(
                "on_backend_error",
                self.on_backend_error,
                "null without a backend (it says what to do when the backend fails)",
            )


_BUDGET_NAME = "the name of an entry of budgets"


def _budget_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("", value, _BUDGET_NAME)
    return value.strip()


class _SettingsOrName:
    """``Annotated`` metadata for ``Settings | str | None``: a string is a name (checked by
    *name*), anything else is validated as *settings* (so errors point inside it, with no
    union branches in their paths)."""

    __slots__ = ("name", "settings")

    def __init__(self, settings: type, name: Callable[[Any], str]) -> None:
        self.settings = settings
        self.name = name

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        name = self.name

        def dispatch(value: Any, validate: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                return name(value)
            return validate(value)

        inner = handler.generate_schema(self.settings)
        return core_schema.no_info_wrap_validator_function(dispatch, inner)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        settings = handler(schema["schema"])
        return {"anyOf": [settings, {"type": "string", "x-type": "budget name"}, {"type": "null"}]}


@dataclass(frozen=True, slots=True, kw_only=True)
class RetrySettings:
    """Try a call again when it fails transiently."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    attempts: Count = 3
    """Total tries, the first included (3: one call and up to two retries)."""
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    """The delays between tries."""
    retry_on: Exceptions = ("OSError",)
    """Exception classes to retry, by import path (bare names are builtins); imported when
    first needed."""
    deadline: PositiveDuration | None = None
    """A budget for the whole call, retries and sleeps included; ``null``: none."""
    max_retry_after: Duration = 60.0
    """The cap on a server's ``Retry-After`` hint."""
    retry_rejected: bool = False
    """Also retry the library's own rejections (open breaker, full bulkhead, rate limit)."""
    budget: Annotated[
        RetryBudgetSettings | str | None, _SettingsOrName(RetryBudgetSettings, _budget_name)
    ] = None
    """A retry budget: the name of an entry of ``budgets`` (shared with every retry naming
    it), or settings of this policy's own; ``null``: none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutSettings:
    """Bound how long a call may take: ``total`` around the retries, ``attempt`` around each
    try. A bare duration (``timeout: 2s``) is the total."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    total: PositiveDuration | None = None
    """The budget of the whole call, retries included (pipeline step ``timeout``)."""
    attempt: PositiveDuration | None = None
    """The budget of each try (pipeline step ``attempt_timeout``)."""

    def __post_init__(self) -> None:
        if self.total is None and self.attempt is None:
            raise ConfigError("", expected="a total or an attempt timeout (or both)")


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSettings:
    """The outcomes a breaker judges: the last ``size`` calls, or the calls of the last
    ``seconds``. A bare integer is a size, a bare duration string (``60s``) a time window."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    size: Count | None = None
    """A count window: the last *size* calls."""
    seconds: PositiveDuration | None = None
    """A time window: the calls of the last *seconds*."""
    buckets: Annotated[int, _number(int, ge=1, le=10_000, expected="an integer in [1, 10000]")] = 10
    """A time window's resolution: outcomes expire one bucket (``seconds / buckets``) at a
    time."""

    def __post_init__(self) -> None:
        if (self.size is None) == (self.seconds is None):
            raise ConfigError(
                "", expected="exactly one of size (a count window) or seconds (a time window)"
            )


def _window_shorthand(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return value
    if isinstance(value, int | float) or value.strip().isdigit():
        return {"size": value}
    return {"seconds": value}


class _WindowShorthand(_Shorthand):
    __slots__ = ()

    def expand(self, value: Any) -> Any:
        return _window_shorthand(value)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        return {"anyOf": [handler(schema), *(self.json or {}).get("anyOf", [])]}


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerSettings:
    """Stop calling a failing dependency; probe it before trusting it again."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    failure_rate: Fraction = 0.5
    """Open when this fraction of the window's calls failed."""
    slow_call_rate: Fraction = 1.0
    """Open when this fraction of the window's calls were slow."""
    slow_call_duration: PositiveDuration = 60.0
    """A call taking longer than this is slow."""
    window: Annotated[
        WindowSettings,
        _WindowShorthand(
            "size",
            {
                "anyOf": [
                    {"type": "integer", "minimum": 1},
                    {"type": "string", "pattern": _DURATION_PATTERN},
                ]
            },
        ),
    ] = field(default_factory=lambda: WindowSettings(size=100))
    """The sliding window (default: the last 100 calls)."""
    minimum_calls: Count = 20
    """No verdict before the window holds this many calls."""
    half_open_calls: Count = 5
    """Probes admitted when half-open, and needed to decide."""
    open_for: PositiveDuration = 30.0
    """How long the breaker stays open before probing."""
    open_for_multiplier: Multiplier = 1.0
    """Each re-open in a row stays open this many times longer."""
    max_open_for: PositiveDuration | None = None
    """The cap on the grown open duration; ``null``: none."""
    consecutive_failures: Count | None = None
    """Also open after this many failures in a row; ``null``: off."""
    half_open_max_wait: PositiveDuration = 60.0
    """A probe silent for this long counts as a failed, slow probe."""
    open_on_retry_after: bool = False
    """A failure carrying ``retry_after`` (HTTP 429/503) opens the breaker for that long."""
    max_retry_after: PositiveDuration = 300.0
    """The cap on such a hint."""
    record: Exceptions = ("Exception",)
    """Exception classes that count as failures; other exceptions count as successes."""
    ignore: Exceptions = ()
    """Exception classes never counted, even if they match ``record``."""
    observe_only: bool = False
    """Run the state machine and emit events, but never reject."""
    backend: str | None = None
    """Share the breaker with every replica through this entry of ``backends`` (Redis);
    ``null``: this process's memory."""
    on_backend_error: OnBackendError | None = None
    """What the shared breaker does when its backend fails, instead of the backend's
    ``on_backend_error``."""
    flush_interval: Duration | None = None
    """Shared breaker: the longest a replica decides from its view of the shared state
    (``null``: 1s; ``0``: ask Redis on every call)."""

    def __post_init__(self) -> None:
        for name in ("on_backend_error", "flush_interval"):
            value = getattr(self, name)
            if value is not None and self.backend is None:
                raise ConfigError(name, value, "null without a backend (a shared breaker's)")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitSettings:
    """Admit at most ``rate`` calls. A bare rate (``rate_limit: 100/s``) is a token bucket."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    rate: RateText
    """The rate, such as ``100/second``, ``10 per minute`` or ``5/s;100/min`` (all enforced)."""
    algorithm: Literal["token_bucket", "sliding_window", "fixed_window"] = "token_bucket"
    """``token_bucket`` (rate plus burst), ``sliding_window`` or ``fixed_window``."""
    burst: Count | None = None
    """Token bucket: the bucket's size; ``null``: the rate's amount."""
    initial: Size | None = None
    """Token bucket: the tokens of a new bucket; ``null``: full."""
    precise: bool = True
    """Sliding window: exact (a log of calls) or approximate (two counters)."""
    max_wait: Duration = 0.0
    """Wait up to this long for capacity instead of rejecting at once."""
    backend: str | None = None
    """Where the state lives: the name of an entry of ``backends``; ``null``: this process's
    memory (kept across reloads)."""
    on_backend_error: OnBackendError | None = None
    """What this limiter does when its backend fails, instead of the backend's
    ``on_backend_error``."""

    def __post_init__(self) -> None:
        if self.algorithm != "token_bucket":
            for name in ("burst", "initial"):
                if getattr(self, name) is not None:
                    raise ConfigError(
                        name, getattr(self, name), f"no {name} for a {self.algorithm}"
                    )
        if self.algorithm != "sliding_window" and not self.precise:
            raise ConfigError("precise", False, "precise: false only for a sliding_window")
        if self.on_backend_error is not None and self.backend is None:
            raise ConfigError(
                "on_backend_error",
                self.on_backend_error,
                "null without a backend (it says what to do when the backend fails)",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadSettings:
    """Cap the calls in flight, with an optional FIFO queue. A bare integer is
    ``max_concurrent``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    max_concurrent: Count = 10
    """Calls allowed in flight at once."""
    max_queued: Size = 0
    """Calls allowed to wait for a slot (0: reject at once when full)."""
    max_wait: Duration | None = 0.0
    """How long a queued call waits for a slot at most (required, > 0, with a queue);
    ``null``: no limit."""


_Tolerance = Annotated[float, _number(float, ge=1, le=100, expected="a number in [1, 100]")]
_NonNegative = Annotated[float, _number(float, ge=0, expected="a number >= 0")]
_Positive = Annotated[float, _number(float, gt=0, expected="a number > 0")]
_Ratio = Annotated[float, _number(float, gt=0, le=1, expected="a fraction in (0, 1], e.g. 0.9")]
_ALGORITHM_OPTIONS: dict[str, tuple[str, ...]] = {
    "gradient2": ("tolerance", "long_window", "queue_size", "window", "probe_interval"),
    "aimd": ("latency_threshold", "backoff_ratio", "increase"),
    "vegas": ("alpha", "beta", "window"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveConcurrencySettings:
    """Cap the calls in flight at a limit that follows the measured latency (Gradient2, AIMD or
    Vegas). A bare algorithm name (``adaptive_concurrency: aimd``) is ``algorithm``. The
    algorithm's own settings are optional (``null``: its default) and only valid for it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    algorithm: Literal["gradient2", "aimd", "vegas"] = "gradient2"
    """``gradient2`` (long- vs short-term latency), ``aimd`` (additive increase,
    multiplicative decrease on drops and slow calls) or ``vegas`` (estimated queue)."""
    min_limit: Count = 1
    """The limit never goes below this."""
    max_limit: Count = 200
    """The limit never goes above this."""
    initial_limit: Count = 20
    """The limit before the first measurement."""
    smoothing: Fraction | None = None
    """How far each update moves the limit towards its target; ``null``: the algorithm's
    (gradient2 0.2, vegas 1); not for aimd."""
    max_queued: Size = 0
    """Calls allowed to wait for a slot (0: reject at once when full)."""
    max_wait: Duration | None = 0.0
    """How long a queued call waits at most (required, > 0, with a queue); ``null``: no
    limit."""
    drop_on: Exceptions = ("TimeoutError", "resilient.RejectedError")
    """Exception classes that are overload signals (the limit shrinks); other exceptions are
    ordinary latency samples."""
    tolerance: _Tolerance | None = None
    """gradient2: how much slower than the long-term latency calls may get before the limit
    shrinks (default 1.5)."""
    long_window: Count | None = None
    """gradient2: calls in the long-term latency average (default 600)."""
    queue_size: _NonNegative | None = None
    """gradient2: slots added at each update, the headroom to grow (default 4)."""
    window: Count | None = None
    """gradient2, vegas: calls per update, whose mean latency is one measurement (default
    10)."""
    probe_interval: Duration | None = None
    """gradient2: time between two measurements of the no-load latency at 3 calls in flight
    (default 60s; 0: never)."""
    latency_threshold: PositiveDuration | None = None
    """aimd: a call slower than this counts as a drop (default 5s)."""
    backoff_ratio: _Ratio | None = None
    """aimd: the multiplicative decrease, below 1 (default 0.9)."""
    increase: _Positive | None = None
    """aimd: slots added per round of calls (default 1)."""
    alpha: _Positive | None = None
    """vegas: the estimated queue (in steps of log10(limit)) below which the limit grows
    (default 3)."""
    beta: _Positive | None = None
    """vegas: the estimated queue above which the limit shrinks (default 6)."""

    def __post_init__(self) -> None:
        allowed = _ALGORITHM_OPTIONS[self.algorithm]
        for options in _ALGORITHM_OPTIONS.values():
            for name in options:
                if name not in allowed and getattr(self, name) is not None:
                    raise ConfigError(name, getattr(self, name), f"no {name} for {self.algorithm}")
        if self.smoothing is not None and self.algorithm == "aimd":
            raise ConfigError("smoothing", self.smoothing, "null for aimd")
        if self.backoff_ratio == 1:
            raise ConfigError("backoff_ratio", 1, "a fraction below 1, e.g. 0.9")
        if self.min_limit > self.max_limit:
            raise ConfigError("max_limit", self.max_limit, f"at least min_limit ({self.min_limit})")
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ConfigError(
                "initial_limit",
                self.initial_limit,
                f"between min_limit ({self.min_limit}) and max_limit ({self.max_limit})",
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleSettings:
    """Shed a share of calls locally while the dependency refuses them (client-side adaptive
    throttling): ``p = max(0, (requests - k * accepts) / (requests + 1))`` over ``window``.
    A bare number is ``k``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    k: Annotated[float, _number(float, ge=1, le=1000, expected="a number >= 1")] = 2.0
    """Requests allowed per accepted request before shedding starts (lower sheds sooner)."""
    window: PositiveDuration = 120.0
    """How long outcomes count."""
    buckets: Annotated[int, _number(int, ge=1, le=10_000, expected="an integer in [1, 10000]")] = 24
    """Time slices the window is kept in."""
    min_requests: Size = 0
    """No call is shed while the window holds fewer requests."""
    max_reject: Fraction = 1.0
    """The cap on the probability of shedding (0.9 keeps one call in ten probing)."""
    rejected_on: Exceptions = ("resilient.RejectedError", "TimeoutError")
    """Exception classes that mean the dependency did not accept the call; any other
    outcome is an accept."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackSettings:
    """Answer with a substitute when the call fails (or is rejected)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    value: Any = None
    """The substitute returned as is (used when there is no ``handler``)."""
    handler: CallablePath | None = None
    """A callable by import path, called with the exception; its result is returned."""
    on: Exceptions = ("Exception",)
    """Exception classes that trigger the fallback (the default includes rejections)."""


_NAMES_EXPECTED = "a name, or a list of names"


def _names(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) and i for i in items):
        raise ConfigError("", value, _NAMES_EXPECTED)
    return tuple(items)


Names = Annotated[
    tuple[str, ...],
    _Scalar(
        _names,
        _NAMES_EXPECTED,
        {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "x-type": "name or list of names",
        },
    ),
]

# Which key a scalar fills, per section (``timeout: 2s`` is ``timeout: {total: 2s}``).
SHORTHANDS: dict[str, str | None] = {
    "fallback": "value",
    "rate_limit": "rate",
    "bulkhead": "max_concurrent",
    "adaptive_concurrency": "algorithm",
    "timeout": "total",
    "retry": "attempts",
    "throttle": "k",
    "circuit_breaker": None,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySettings:
    """A named policy: the sections it has, and the order they wrap each other in."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    description: str | None = None
    """Free text, shown by ``resilient show``."""
    extends: Names | None = None
    """A base or another policy (or a list of them, merged left to right) to start from."""
    order: tuple[SectionName, ...] | None = None
    """The pipeline, outermost first; ``null``: fallback, rate_limit, bulkhead,
    adaptive_concurrency, timeout, retry, throttle, circuit_breaker, attempt_timeout."""
    fallback: Annotated[
        FallbackSettings | None,
        _Shorthand("value", {"type": ["string", "number", "integer"]}),
    ] = None
    """Answer with a substitute on failure."""
    rate_limit: Annotated[
        RateLimitSettings | None,
        _Shorthand("rate", {"type": "string", "examples": ["100/second"]}),
    ] = None
    """Limit the call rate."""
    bulkhead: Annotated[
        BulkheadSettings | None, _Shorthand("max_concurrent", {"type": "integer", "minimum": 1})
    ] = None
    """Limit the calls in flight."""
    adaptive_concurrency: Annotated[
        AdaptiveConcurrencySettings | None,
        _Shorthand("algorithm", {"type": "string", "enum": ["gradient2", "aimd", "vegas"]}),
    ] = None
    """Limit the calls in flight to what the measured latency allows."""
    timeout: Annotated[
        TimeoutSettings | None,
        _Shorthand(
            "total",
            {
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string", "pattern": _DURATION_PATTERN},
                ]
            },
        ),
    ] = None
    """Bound the call's duration (and each attempt's)."""
    retry: Annotated[
        RetrySettings | None, _Shorthand("attempts", {"type": "integer", "minimum": 1})
    ] = None
    """Retry transient failures."""
    throttle: Annotated[
        ThrottleSettings | None, _Shorthand("k", {"type": "number", "minimum": 1})
    ] = None
    """Shed calls locally while the dependency refuses them."""
    circuit_breaker: Annotated[CircuitBreakerSettings | None, _Shorthand(None)] = None
    """Stop calling a failing dependency."""

    def __post_init__(self) -> None:
        if self.order is None:
            return
        present = set(self.steps_present())
        problems = []
        seen: set[str] = set()
        for step in self.order:
            if step in seen:
                problems.append(f"{step} listed twice")
            seen.add(step)
            if step not in present:
                problems.append(f"{step} is not configured")
        missing = [step for step in DEFAULT_ORDER if step in present and step not in seen]
        if missing:
            problems.append(f"{', '.join(missing)} missing")
        if problems:
            raise ConfigError(
                "order",
                list(self.order),
                f"each configured step exactly once ({'; '.join(problems)})",
            )

    def steps_present(self) -> tuple[SectionName, ...]:
        """The pipeline steps this policy configures, in the default order."""
        steps: list[SectionName] = []
        for step in DEFAULT_ORDER:
            if step == "timeout":
                if self.timeout is not None and self.timeout.total is not None:
                    steps.append(step)
            elif step == "attempt_timeout":
                if self.timeout is not None and self.timeout.attempt is not None:
                    steps.append(step)
            elif getattr(self, step) is not None:
                steps.append(step)
        return tuple(steps)

    def steps(self) -> tuple[SectionName, ...]:
        """The pipeline steps, outermost first (the explicit ``order`` or the default)."""
        return self.order if self.order is not None else self.steps_present()


# -- backends and routes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSettings:
    """A state store shared by the limiters (and breakers) that name it."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    url: StoreUrl
    """``memory://``, ``redis://[:password@]host[:port][/db]``, ``rediss://...`` or
    ``redis+cluster://host:port``. Credentials are redacted whenever it is shown."""
    on_backend_error: OnBackendError | None = None
    """When the store fails: ``raise`` (BackendError), ``allow`` the call, ``deny`` it, or
    decide ``local``ly in memory until the store is back; ``null``: the store's default."""
    prefix: str | None = None
    """The first part of every key the store writes; ``null``: the store's default
    (``resilient``)."""
    timeout: PositiveDuration | None = None
    """How long to wait for each reply (Redis); ``null``: the store's default (250 ms)."""
    connect_timeout: PositiveDuration | None = None
    """How long to wait for a connection (Redis); ``null``: ``timeout``."""
    probe_interval: Duration | None = None
    """After a failure, how long the store is not called before one call probes it
    (Redis); ``null``: the store's default (500 ms)."""


def _glob(pattern: str, text: str) -> bool:
    return fnmatch.fnmatchcase(text, pattern)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpxRoute:
    """Outgoing httpx requests matching ``host``, ``path`` and ``methods`` use ``policy``
    (the transport tries its routes in order; the first match wins)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    policy: str
    """The policy to use."""
    host: Host | None = None
    """``api.example.com`` (exact, case-insensitive), ``*.example.com`` (any subdomain, not
    the apex) or ``api.example.com:8443`` (with the port); ``null``: every host."""
    path: PathPrefix | None = None
    """A path prefix matched on segment boundaries (``/v2`` matches ``/v2`` and ``/v2/users``,
    not ``/v20``); ``null``: every path."""
    methods: Methods = ()
    """The HTTP methods it applies to; empty: all."""

    def matches(self, method: str, host: str, path: str, port: int | None = None) -> bool:
        """Whether a request (``"GET"``, ``"api.example.com"``, ``"/v2/users"``) matches, as
        the httpx transport decides it."""
        if self.methods and method.upper() not in self.methods:
            return False
        pattern, host = self.host, host.lower()
        if pattern is not None:
            if pattern.startswith("*."):
                if not host.endswith(pattern[1:]):
                    return False
            elif ":" in pattern:
                if pattern != f"{host}:{port}":
                    return False
            elif pattern != host:
                return False
        prefix = self.path
        if prefix is None or prefix == "/" or path == prefix:
            return True
        return path.startswith(prefix + "/")


@dataclass(frozen=True, slots=True, kw_only=True)
class AsgiRoute:
    """Incoming requests matching ``path`` and ``methods`` go through ``policy`` (the
    middleware tries its routes in order; the first match wins)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    policy: str
    """The policy to use."""
    path: str = "*"
    """A glob on the request path (``/api/*``; ``*`` also crosses ``/``)."""
    methods: Methods = ()
    """The HTTP methods it applies to; empty: all."""
    key: KeySpec | None = None
    """What its rate limits count per: ``client`` (the client address), ``global`` (one
    limit for all), ``path``, ``user``, ``header:<Name>``, or a callable ``(scope) -> str``
    by import path; ``null``: the middleware's key (by default the client address)."""

    def matches(self, method: str, path: str) -> bool:
        """Whether a request (``"POST"``, ``"/api/orders"``) matches."""
        return (not self.methods or method.upper() in self.methods) and _glob(self.path, path)


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcRoute:
    """gRPC calls whose service and method match use ``policy``. The interceptors rank the
    patterns: an exact method, then a whole service, then other globs in file order, then
    ``*``."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    policy: str
    """The policy to use."""
    service: str = "*"
    """The full service name (``package.Service``), or a glob on it."""
    method: str = "*"
    """The method name, or a glob on it."""
    side: Literal["client", "server"] | None = None
    """Only for client or only for server interceptors; ``null``: both."""

    @property
    def pattern(self) -> str:
        """The interceptors' method pattern: ``package.Service/Method`` (or a glob)."""
        return (
            "*" if self.service == "*" and self.method == "*" else f"{self.service}/{self.method}"
        )

    def matches(self, full_method: str, side: str | None = None) -> bool:
        """Whether a call (``"/shop.v1.Orders/Create"``) matches this pattern, on *side*."""
        if self.side is not None and side is not None and side != self.side:
            return False
        return _glob(self.pattern, full_method.lstrip("/"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Routes:
    """Which requests the adapters send through which policy."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    httpx: tuple[HttpxRoute, ...] = ()
    """Routes for ``resilient.adapters.httpx`` transports
    (``ResilientTransport(registry=registry, routes=registry.routes.httpx_routes())``)."""
    asgi: tuple[AsgiRoute, ...] = ()
    """Routes for ``resilient.adapters.asgi.ResilienceMiddleware`` (read from its
    ``registry=``)."""
    grpc: tuple[GrpcRoute, ...] = ()
    """Routes for the ``resilient.adapters.grpc`` interceptors
    (``routes=registry.grpc_routes("client")``)."""

    def for_httpx(
        self, method: str, host: str, path: str, port: int | None = None
    ) -> HttpxRoute | None:
        """The first httpx route matching the request, or ``None``."""
        return next((r for r in self.httpx if r.matches(method, host, path, port)), None)

    def for_asgi(self, method: str, path: str) -> AsgiRoute | None:
        """The first ASGI route matching the request, or ``None``."""
        return next((r for r in self.asgi if r.matches(method, path)), None)

    def httpx_routes(self) -> tuple[Any, ...]:
        """The httpx routes as ``resilient.adapters.httpx.Route`` objects naming registry
        policies (needs httpx)."""
        from ..adapters.httpx import Route

        return tuple(
            Route(r.policy, host=r.host, path=r.path, methods=r.methods or None) for r in self.httpx
        )


# Resolved to a "$ref" to a copy of PolicySettings with nothing required, by json_schema().
PARTIAL_POLICY: dict[str, Any] = {"x-partial": "PolicySettings"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigDocument:
    """A whole policy file."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    version: Literal[1] = 1
    """The file format's version."""
    backends: dict[str, BackendSettings] = field(default_factory=dict)
    """Named state stores, referred to by ``backend:`` in limiters and budgets."""
    budgets: dict[str, RetryBudgetSettings] = field(default_factory=dict)
    """Named retry budgets, shared by every retry that names one (``budget: <name>``),
    whichever policy or adapter it serves."""
    defaults: Annotated[dict[str, Any], _JsonAs(PARTIAL_POLICY)] = field(default_factory=dict)
    """Default settings for each section kind, applied to the sections a policy has (a
    policy without a ``retry`` gets no retry from here)."""
    bases: Annotated[
        dict[str, dict[str, Any]],
        _JsonAs({"type": "object", "additionalProperties": PARTIAL_POLICY}),
    ] = field(default_factory=dict)
    """Named templates that policies ``extends``; not policies themselves, and they may be
    incomplete."""
    policies: dict[str, PolicySettings] = field(default_factory=dict)
    """The named policies: ``registry["name"]`` is the built pipeline."""
    routes: Routes = field(default_factory=Routes)
    """Which requests the adapters send through which policy."""
