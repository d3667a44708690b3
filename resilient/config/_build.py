"""Turn validated settings into policies, and backends into stores.

Every step of a pipeline is built from its settings by the policy's own
constructor, whose checks therefore apply to files too (an error names the
file, line and dotted path). A build may start from the previous one (a
reload): a step whose settings did not change is the *same object*, so its
state (a breaker's window, a bulkhead's slots, a budget) carries on, and a
backend whose settings did not change keeps its store. Rate limiters without a
backend share one in-memory store that outlives reloads, so a limiter whose
rate did not change keeps its counts even when another of its settings did.

Exception classes and callables named by import path are imported when first
needed (so a policy file can name exceptions of a module that itself loads the
file), unless ``resolve_imports`` asks for them at once.
"""

from __future__ import annotations

import builtins
import pkgutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .._adaptive import AIMD, AdaptiveConcurrency, Gradient2, LimitAlgorithm, Vegas
from .._backoff import Backoff
from .._budget import RetryBudget
from .._bulkhead import Bulkhead
from .._circuit_breaker import CircuitBreaker
from .._clock import Clock
from .._errors import _MISSING, ConfigError
from .._fallback import Fallback
from .._pipeline import Pipeline, Policy
from .._rate_limit import FixedWindow, SlidingWindow, TokenBucket
from .._retry import Retry
from .._throttle import Throttle
from .._timeout import Timeout
from .._windows import CountWindow, TimeWindow
from ..backends import store_from_url
from ..backends.memory import MemoryStore
from ..observability._emit import Listener
from ._errors import FileConfigError, problem
from ._schema import (
    _ALGORITHM_OPTIONS,
    AdaptiveConcurrencySettings,
    BackendSettings,
    CircuitBreakerSettings,
    ConfigDocument,
    FallbackSettings,
    PolicySettings,
    RateLimitSettings,
    RetryBudgetSettings,
    RetrySettings,
    ThrottleSettings,
)
from ._validate import Locator

__all__ = ["Built", "Options", "build"]

Key: TypeAlias = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Options:
    """What the caller of ``load_config`` passes on to every policy."""

    clock: Clock | None = None
    listeners: Sequence[Listener] | None = None
    resolve_imports: bool = False


@dataclass(slots=True)
class Built:
    """The policies of one version of a file."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    steps: dict[tuple[str, str], tuple[Any, Policy]] = field(default_factory=dict)
    """``(policy, step)`` -> ``(identity, object)``; equal identities share the object."""
    stores: dict[str, tuple[BackendSettings, Any]] = field(default_factory=dict)
    budgets: dict[str, tuple[Any, RetryBudget]] = field(default_factory=dict)
    """``budgets`` entries: name -> (identity, budget), the budget shared by every retry
    naming it (kept across reloads while its identity does not change)."""
    memory: MemoryStore | None = None


def build(
    document: ConfigDocument, locator: Locator, options: Options, previous: Built | None
) -> Built:
    """Build every policy of *document*, reusing what *previous* built where nothing changed."""
    return _Builder(document, locator, options, previous).run()


class _Builder:
    def __init__(
        self,
        document: ConfigDocument,
        locator: Locator,
        options: Options,
        previous: Built | None,
    ) -> None:
        self.document = document
        self.locator = locator
        self.options = options
        self.previous = previous or Built()
        self.errors: list[ConfigError] = []
        self.built = Built(memory=self.previous.memory)

    def run(self) -> Built:
        for name, backend in self.document.backends.items():
            self.store(name, backend)
        for name, budget in self.document.budgets.items():
            self.shared_budget(name, budget)
        for name, policy in self.document.policies.items():
            self.pipeline(name, policy)
        if self.errors:
            self.errors.sort(key=lambda e: (e.line is None, e.line or 0))
            raise ConfigError.combine(self.errors)
        return self.built

    # -- errors ------------------------------------------------------------------------------

    def fail(self, path: Key, error: ConfigError) -> None:
        """Report a constructor's error under the section it came from."""
        for one in error.errors:
            sub = tuple(p for p in one.path.split(".") if p) if one.path else ()
            at = (*path, *sub) if sub and self._is_field(path, sub[0]) else path
            value = one.value if one._has_value else _MISSING
            self.errors.append(self.locator.error(at, value, one.expected))

    def _is_field(self, path: Key, name: str) -> bool:
        node: Any = self.document
        for part in path:
            node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        return hasattr(node, "__dataclass_fields__") and name in node.__dataclass_fields__

    # -- backends ----------------------------------------------------------------------------

    def store(self, name: str, backend: BackendSettings) -> None:
        old = self.previous.stores.get(name)
        if old is not None and old[0] == backend:
            self.built.stores[name] = old
            return
        options: dict[str, Any] = {}
        if backend.url.lower().startswith("memory:") and self.options.clock is not None:
            options["clock"] = self.options.clock
        for option in (
            "on_backend_error",
            "prefix",
            "timeout",
            "connect_timeout",
            "probe_interval",
        ):
            value = getattr(backend, option)
            if value is not None:
                options[option] = value
        path = ("backends", name)
        try:
            store = store_from_url(backend.url, **options)
        except ConfigError as exc:
            expected = exc.expected
            option = exc.path.rpartition(".")[2] if exc.path != "store" else ""
            if option:
                expected = f"{option} to be {expected}"
            self.errors.append(self.locator.error((*path, "url"), backend.url, expected))
            return
        except TypeError:
            keys = ", ".join(sorted(set(options) - {"clock"}))
            self.errors.append(
                problem(
                    ".".join(path),
                    f"this store does not take {keys}",
                    value=backend.url,
                    file=self.locator.file,
                    line=self.locator.line(path),
                )
            )
            return
        except ImportError as exc:
            self.errors.append(
                problem(
                    ".".join((*path, "url")),
                    f"the store needs a package that is not installed ({exc})",
                    value=backend.url,
                    file=self.locator.file,
                    line=self.locator.line((*path, "url")),
                )
            )
            return
        self.built.stores[name] = (backend, store)

    # -- retry budgets -----------------------------------------------------------------------

    def budget_identity(self, settings: RetryBudgetSettings) -> Any:
        backend = self.built.stores.get(settings.backend) if settings.backend else None
        return (settings, backend[0] if backend else None)

    def shared_budget(self, name: str, settings: RetryBudgetSettings) -> None:
        identity = self.budget_identity(settings)
        old = self.previous.budgets.get(name)
        if old is not None and old[0] == identity:
            self.built.budgets[name] = old
            return
        path = ("budgets", name)
        try:
            budget = self.make_budget(settings, name)
        except ConfigError as exc:
            self.fail(path, exc)
            return
        if budget is not None:
            self.built.budgets[name] = (identity, budget)

    def make_budget(self, settings: RetryBudgetSettings, name: str) -> RetryBudget | None:
        """A budget in memory, or in the Redis of its backend (``None``: the backend failed
        to build, and said so)."""
        options: dict[str, Any] = {
            "min_per_second": settings.min_per_second,
            "ttl": settings.ttl,
            "buckets": settings.buckets,
            "name": name,
        }
        if settings.backend is not None:
            entry = self.built.stores.get(settings.backend)
            if entry is None:
                return None
            from ..backends.redis._core import StoreCore

            if isinstance(entry[1], StoreCore):
                from ..backends.redis._budget import RedisRetryBudget

                return RedisRetryBudget(
                    store=entry[1],
                    ratio=settings.ratio,
                    on_backend_error=settings.on_backend_error or "local",
                    listeners=self.options.listeners,
                    **options,
                )
            if settings.on_backend_error is not None:
                raise ConfigError(
                    "on_backend_error",
                    settings.on_backend_error,
                    f"null, as backend {settings.backend!r} keeps budgets in this process",
                )
        return RetryBudget(settings.ratio, clock=self.options.clock, **options)

    def memory(self) -> MemoryStore:
        if self.built.memory is None:
            self.built.memory = MemoryStore(clock=self.options.clock)
        return self.built.memory

    # -- pipelines ---------------------------------------------------------------------------

    def pipeline(self, name: str, policy: PolicySettings) -> None:
        steps: list[Policy] = []
        reused = True
        for step in policy.steps():
            identity = self.identity(policy, step)
            old = self.previous.steps.get((name, step))
            if old is not None and old[0] == identity:
                obj: Policy | None = old[1]
            else:
                reused = False
                obj = self.make(name, step, policy)
                if old is not None and isinstance(obj, CircuitBreaker):
                    # A changed breaker keeps its state (and counts, when its window
                    # has the same shape) rather than starting closed and empty.
                    previous_breaker = old[1]
                    if isinstance(previous_breaker, CircuitBreaker):
                        obj._take_over(previous_breaker)
            if obj is not None:
                self.built.steps[(name, step)] = (identity, obj)
                steps.append(obj)
        previous = self.previous.pipelines.get(name)
        if (
            reused
            and previous is not None
            and len(previous.policies) == len(steps)
            and all(a is b for a, b in zip(previous.policies, steps, strict=True))
        ):
            self.built.pipelines[name] = previous
        elif len(steps) == len(policy.steps()):
            self.built.pipelines[name] = Pipeline(*steps, name=name)

    def identity(self, policy: PolicySettings, step: str) -> Any:
        """What must stay equal for a step to be kept as it is across a reload."""
        if step in ("timeout", "attempt_timeout"):
            timeout = policy.timeout
            assert timeout is not None
            return (step, timeout.total if step == "timeout" else timeout.attempt)
        settings = getattr(policy, step)
        if (
            isinstance(settings, RateLimitSettings | CircuitBreakerSettings)
            and settings.backend is not None
        ):
            backend = self.built.stores.get(settings.backend)
            return (step, settings, backend[0] if backend else None)
        if isinstance(settings, RetrySettings) and settings.budget is not None:
            budget = settings.budget
            if isinstance(budget, str):
                shared = self.built.budgets.get(budget)
                return (step, settings, shared[0] if shared else None)
            return (step, settings, self.budget_identity(budget))
        return (step, settings)

    def make(self, name: str, step: str, policy: PolicySettings) -> Policy | None:
        path: Key = ("policies", name, step)
        common: dict[str, Any] = {"name": name, "listeners": self.options.listeners}
        clock = self.options.clock
        try:
            if step in ("timeout", "attempt_timeout"):
                assert policy.timeout is not None
                if step == "timeout":
                    path = ("policies", name, "timeout", "total")
                    return Timeout(policy.timeout.total or 0, clock=clock, **common)
                path = ("policies", name, "timeout", "attempt")
                common["name"] = f"{name}.attempt"
                return Timeout(policy.timeout.attempt or 0, clock=clock, **common)
            if step == "retry":
                assert policy.retry is not None
                return self.retry(policy.retry, path, clock, common)
            if step == "circuit_breaker":
                assert policy.circuit_breaker is not None
                if policy.circuit_breaker.backend not in (None, *self.built.stores):
                    return None  # the backend failed to build, and said so
                return self.breaker(policy.circuit_breaker, path, clock, common)
            if step == "rate_limit":
                assert policy.rate_limit is not None
                if policy.rate_limit.backend not in (None, *self.built.stores):
                    return None  # the backend failed to build, and said so
                return self.limiter(policy.rate_limit, clock, common)
            if step == "adaptive_concurrency":
                assert policy.adaptive_concurrency is not None
                return self.adaptive(policy.adaptive_concurrency, path, clock, common)
            if step == "throttle":
                assert policy.throttle is not None
                return self.throttle(policy.throttle, path, clock, common)
            if step == "bulkhead":
                bulkhead = policy.bulkhead
                assert bulkhead is not None
                return Bulkhead(
                    bulkhead.max_concurrent,
                    max_queued=bulkhead.max_queued,
                    max_wait=bulkhead.max_wait,
                    clock=clock,
                    **common,
                )
            assert policy.fallback is not None
            return self.fallback(policy.fallback, path, common)
        except ConfigError as exc:
            self.fail(path, exc)
            return None
        except _SkippedError:
            return None

    def retry(
        self, settings: RetrySettings, path: Key, clock: Clock | None, common: dict[str, Any]
    ) -> Retry:
        backoff = settings.backoff
        budget = None
        if isinstance(settings.budget, str):
            shared = self.built.budgets.get(settings.budget)
            if shared is None:
                raise _SkippedError  # the budget failed to build, and said so
            budget = shared[1]
        elif settings.budget is not None:
            try:
                budget = self.make_budget(settings.budget, common["name"])
            except ConfigError as exc:
                self.fail((*path, "budget"), exc)
            if budget is None and settings.budget.backend is not None:
                raise _SkippedError
        try:
            backoff_policy = Backoff(
                initial=backoff.initial,
                maximum=backoff.maximum,
                multiplier=backoff.multiplier,
                jitter=backoff.jitter,
                increment=backoff.increment,
            )
        except ConfigError as exc:
            raise _relative(exc, "backoff") from None
        return Retry(
            settings.attempts,
            backoff=backoff_policy,
            retry_on=self.exceptions(settings.retry_on, (*path, "retry_on")),
            deadline=settings.deadline,
            max_retry_after=settings.max_retry_after,
            retry_rejected=settings.retry_rejected,
            budget=budget,
            clock=clock,
            **common,
        )

    def adaptive(
        self,
        settings: AdaptiveConcurrencySettings,
        path: Key,
        clock: Clock | None,
        common: dict[str, Any],
    ) -> AdaptiveConcurrency:
        options = {
            name: getattr(settings, name)
            for name in _ALGORITHM_OPTIONS[settings.algorithm]
            if getattr(settings, name) is not None
        }
        if options.get("probe_interval") == 0:
            options["probe_interval"] = None
        kind: type[LimitAlgorithm] = {"gradient2": Gradient2, "aimd": AIMD, "vegas": Vegas}[
            settings.algorithm
        ]
        algorithm = kind(**options)
        return AdaptiveConcurrency(
            algorithm,
            min_limit=settings.min_limit,
            max_limit=settings.max_limit,
            initial_limit=settings.initial_limit,
            smoothing=settings.smoothing,
            max_queued=settings.max_queued,
            max_wait=settings.max_wait,
            drop_on=self.exceptions(settings.drop_on, (*path, "drop_on")),
            clock=clock,
            **common,
        )

    def throttle(
        self, settings: ThrottleSettings, path: Key, clock: Clock | None, common: dict[str, Any]
    ) -> Throttle:
        return Throttle(
            settings.k,
            window=settings.window,
            buckets=settings.buckets,
            min_requests=settings.min_requests,
            max_reject=settings.max_reject,
            rejected_on=self.exceptions(settings.rejected_on, (*path, "rejected_on")),
            clock=clock,
            **common,
        )

    def breaker(
        self,
        settings: CircuitBreakerSettings,
        path: Key,
        clock: Clock | None,
        common: dict[str, Any],
    ) -> CircuitBreaker:
        w = settings.window
        try:
            window = (
                CountWindow(w.size)
                if w.size is not None
                else TimeWindow(w.seconds or 0, buckets=w.buckets)
            )
        except ConfigError as exc:
            raise _relative(exc, "window") from None
        if settings.backend is not None:
            common = {**common, **self.shared_breaker(settings)}
        return CircuitBreaker(
            failure_rate=settings.failure_rate,
            slow_call_rate=settings.slow_call_rate,
            slow_call_duration=settings.slow_call_duration,
            window=window,
            minimum_calls=settings.minimum_calls,
            half_open_calls=settings.half_open_calls,
            open_for=settings.open_for,
            open_for_multiplier=settings.open_for_multiplier,
            max_open_for=settings.max_open_for,
            consecutive_failures=settings.consecutive_failures,
            half_open_max_wait=settings.half_open_max_wait,
            open_on_retry_after=settings.open_on_retry_after,
            max_retry_after=settings.max_retry_after,
            record=self.exceptions(settings.record, (*path, "record")),
            ignore=self.exceptions(settings.ignore, (*path, "ignore")),
            observe_only=settings.observe_only,
            clock=clock,
            **common,
        )

    def shared_breaker(self, settings: CircuitBreakerSettings) -> dict[str, Any]:
        """The arguments that share a breaker through its backend (none: the backend
        keeps state in this process's memory)."""
        store = self.built.stores[settings.backend or ""][1]
        from ..backends.redis._core import StoreCore

        if not isinstance(store, StoreCore):
            for option in ("on_backend_error", "flush_interval"):
                if getattr(settings, option) is not None:
                    raise ConfigError(
                        option,
                        getattr(settings, option),
                        f"null, as backend {settings.backend!r} keeps breakers in this process",
                    )
            return {}
        options: dict[str, Any] = {"store": store}
        if settings.on_backend_error is not None:
            options["on_backend_error"] = settings.on_backend_error
        if settings.flush_interval is not None:
            options["flush_interval"] = settings.flush_interval
        return options

    def limiter(
        self, settings: RateLimitSettings, clock: Clock | None, common: dict[str, Any]
    ) -> Policy:
        if settings.backend is None:
            store: Any = self.memory()
        else:
            store = self.built.stores[settings.backend][1]
            if settings.on_backend_error is not None:
                with_options = getattr(store, "with_options", None)
                if with_options is None:
                    raise ConfigError(
                        "on_backend_error",
                        settings.on_backend_error,
                        f"null, as backend {settings.backend!r} has no failure modes",
                    )
                store = with_options(on_backend_error=settings.on_backend_error)
        if settings.algorithm == "token_bucket":
            return TokenBucket(
                settings.rate,
                burst=settings.burst,
                initial=settings.initial,
                max_wait=settings.max_wait,
                store=store,
                clock=clock,
                **common,
            )
        if settings.algorithm == "sliding_window":
            return SlidingWindow(
                settings.rate,
                precise=settings.precise,
                max_wait=settings.max_wait,
                store=store,
                clock=clock,
                **common,
            )
        return FixedWindow(
            settings.rate, max_wait=settings.max_wait, store=store, clock=clock, **common
        )

    def fallback(self, settings: FallbackSettings, path: Key, common: dict[str, Any]) -> Fallback:
        on = self.exceptions(settings.on, (*path, "on"))
        if settings.handler is not None:
            handler = ImportedCallable(settings.handler, self.place((*path, "handler")))
            if self.options.resolve_imports:
                self.check_import(handler.resolve)
            return Fallback(handler=handler, on=on, **common)
        return Fallback(settings.value, on=on, **common)

    # -- imports -----------------------------------------------------------------------------

    def place(self, path: Key) -> _Place:
        at = self.locator.written_at(path)
        return _Place(".".join(at), self.locator.file, self.locator.lines.find(at))

    def exceptions(
        self, names: tuple[str, ...], path: Key
    ) -> tuple[type[BaseException], ...] | ImportedExceptions:
        if all(_is_builtin(name) for name in names):
            found = ImportedExceptions(names, self.place(path))
            self.check_import(found.resolve)
            return found.types or ()
        lazy = ImportedExceptions(names, self.place(path))
        if self.options.resolve_imports:
            self.check_import(lazy.resolve)
        return lazy

    def check_import(self, resolve: Callable[[], object]) -> None:
        try:
            resolve()
        except ConfigError as exc:
            self.errors.extend(exc.errors)


class _SkippedError(Exception):
    """A step that cannot be built because something it names failed (already reported)."""


def _relative(exc: ConfigError, prefix: str) -> ConfigError:
    """A constructor's error re-rooted under *prefix* (``backoff.maximum``)."""
    errors = [
        ConfigError(
            f"{prefix}.{e.path.split('.')[-1]}" if prefix else e.path.split(".")[-1],
            e.value,
            e.expected,
        )
        for e in exc.errors
    ]
    return ConfigError.combine(errors)


def _is_builtin(name: str) -> bool:
    return "." not in name and ":" not in name


@dataclass(frozen=True, slots=True)
class _Place:
    path: str
    file: str | None
    line: int | None


def _import(name: str, place: _Place, expected: str, check: Callable[[Any], bool]) -> Any:
    """The object *name* names: a builtin by bare name, else by import path."""
    try:
        obj = getattr(builtins, name) if _is_builtin(name) else pkgutil.resolve_name(name)
    except Exception as exc:  # an import may fail in any way; the user must see why
        reason = (
            f"{name!r} is not a builtin name; use an import path such as 'package.module.Name'"
            if _is_builtin(name) and isinstance(exc, AttributeError)
            else f"cannot import {name!r} ({type(exc).__name__}: {exc})"
        )
        raise problem(
            place.path, reason, value=name, expected=expected, file=place.file, line=place.line
        ) from None
    if not check(obj):
        raise FileConfigError(place.path, name, expected, file=place.file, line=place.line)
    return obj


def _is_exception_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseException)


class ImportedExceptions:
    """A predicate matching the exception classes named by import path, imported when it
    is first called (or by :meth:`resolve`). A failed import raises ``ConfigError`` naming
    the file, line and key it was written at."""

    __slots__ = ("_lock", "names", "place", "types")

    def __init__(self, names: tuple[str, ...], place: _Place) -> None:
        self.names = names
        self.place = place
        self.types: tuple[type[BaseException], ...] | None = None
        self._lock = threading.Lock()

    def resolve(self) -> tuple[type[BaseException], ...]:
        """Import the classes (once); raises ``ConfigError`` listing every failure."""
        with self._lock:
            if self.types is None:
                errors: list[ConfigError] = []
                found: list[type[BaseException]] = []
                for index, name in enumerate(self.names):
                    place = self.place
                    if len(self.names) > 1:
                        place = _Place(f"{place.path}.{index}", place.file, place.line)
                    try:
                        found.append(
                            _import(name, place, "an exception class", _is_exception_class)
                        )
                    except ConfigError as exc:
                        errors.append(exc)
                if errors:
                    raise ConfigError.combine(errors)
                self.types = tuple(found)
            return self.types

    def __call__(self, exc: BaseException) -> bool:
        types = self.types
        if types is None:
            try:
                types = self.resolve()
            except ConfigError as error:
                raise error from exc  # show the failure that was being classified too
        return isinstance(exc, types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImportedExceptions) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __repr__(self) -> str:
        return f"ImportedExceptions({', '.join(self.names)})"


class ImportedCallable:
    """A callable named by import path, imported when first called."""

    __slots__ = ("_target", "name", "place")

    def __init__(self, name: str, place: _Place) -> None:
        self.name = name
        self.place = place
        self._target: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        if self._target is None:
            self._target = _import(self.name, self.place, "a callable", callable)
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = self._target or self.resolve()
        return target(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ImportedCallable({self.name})"
